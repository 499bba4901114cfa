"""Pruning methods. Each module's ``select_channels`` returns a :class:`prunenet.select.Selection`."""
from . import l1, uniform

DATA_FREE = {"uniform": uniform.select_channels, "l1": l1.select_channels}
METHODS = sorted(DATA_FREE)

__all__ = ["DATA_FREE", "METHODS"]
