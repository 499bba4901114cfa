"""Global Channel Pruning: the masked network, the proximal optimizer, residual streams' scores,
and the schedule with its λ search."""
