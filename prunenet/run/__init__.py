"""A pruning run: the one pipeline, its settings, its run folder and its report."""
