"""Pruning methods, one module each, registered in :mod:`.registry` with what they need.

``weights`` methods (``DATA_FREE``) need only the weights: ``select_channels(graph, params,
cost, target, round_to=8, min_width=8)``. ``data`` methods (``DATA_DRIVEN``) also take
``net=``, ``batches=`` (an iterable of (data, label) NDArray pairs), ``ctx=`` and
``max_batches=``. ``training`` methods (``TRAINED``: ``gcp``, ``slimming``) give the
:class:`~prunenet.gcp.schedule.GCPConfig` that :class:`~prunenet.gcp.schedule.GCPSchedule` trains and
prunes the network with.
"""
from ..gcp import schedule, slimming  # noqa: F401  (register gcp, slimming)
from . import (activation_vote, globalpru, l1, qcqp, qcqp_exact, random, uniform,  # noqa
               wsp)
from ..core.registry import Method, get, names, register

DATA_FREE = {name: get(name).select for name in names("weights")}
DATA_DRIVEN = {name: get(name).select for name in names("data", listed=False)}
METHODS = names("weights", "data", listed=False)  # what --method takes besides TRAINED
SEEDED = {name for name in names(listed=False) if get(name).seeded}
TRAINED = names("training")

__all__ = ["DATA_FREE", "DATA_DRIVEN", "METHODS", "SEEDED", "TRAINED", "Method", "get", "names",
           "register"]
