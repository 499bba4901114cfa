"""Datasets, training loops, parameter-server workers and GluonCV models."""
