"""The version of prunenet (recorded in run reports, zoo manifests and HTTP requests)."""
__version__ = "0.1.0"
