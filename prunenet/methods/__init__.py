"""Pruning methods. Each module's ``select_channels`` returns a :class:`prunenet.select.Selection`.

``DATA_FREE`` methods need only the weights: ``select_channels(graph, params, cost, target,
round_to=8, min_width=8)``. ``DATA_DRIVEN`` methods also take ``net=``, ``batches=`` (an
iterable of (data, label) NDArray pairs), ``ctx=`` and ``max_batches=``. ``TRAINED`` methods
(``gcp``, ``slimming``) train the network while pruning it, in :mod:`prunenet.runs`.
"""
from . import activation_vote, globalpru, l1, qcqp, qcqp_exact, random, uniform, wsp

DATA_FREE = {"uniform": uniform.select_channels, "uniform-l1": uniform.select_channels_l1,
             "l1": l1.select_channels,
             "random": random.select_channels, "wsp": wsp.select_channels,
             "qcqp": qcqp_exact.select_channels, "qcqp-greedy": qcqp.select_channels}
DATA_DRIVEN = {"activation-vote": activation_vote.select_channels,
               "globalpru": globalpru.select_channels,
               "attention": activation_vote.select_channels_attention}  # deprecated alias
METHODS = sorted({**DATA_FREE, **DATA_DRIVEN})
# Data-free methods whose choice depends on ``seed=`` (random draws)
SEEDED = {"random", "uniform"}
# Methods that train the network while pruning it (prunenet.methods.gcp's schedule)
TRAINED = ["gcp", "slimming"]

__all__ = ["DATA_FREE", "DATA_DRIVEN", "METHODS", "SEEDED", "TRAINED"]
