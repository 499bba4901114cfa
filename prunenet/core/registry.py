"""The table of pruning methods. Each method registers itself with what it needs — the weights
alone, batches of data to read, or a training schedule — so that the pipeline asks the table
instead of testing method names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from ..errors import PrunenetError

__all__ = ["Method", "NEEDS", "register", "get", "names"]

NEEDS = ("weights", "data", "training")


@dataclass(frozen=True)
class Method:
    """A registered method. ``select(graph, params, cost, target, **options)`` gives the
    :class:`~prunenet.core.select.Selection` of a ``weights`` or ``data`` method (``data``: also
    ``net=, batches=, ctx=``); ``config(**settings)`` the :class:`~prunenet.gcp.schedule.GCPConfig`
    a ``training`` method runs GCP's schedule with. ``seeded``: its choice depends on ``seed=``."""

    name: str
    needs: str
    select: Optional[Callable] = None
    config: Optional[Callable] = None
    seeded: bool = False
    listed: bool = True  # False for a deprecated alias: accepted, not offered


_TABLE: Dict[str, Method] = {}


def register(name: str, needs: str = "weights", seeded: bool = False, listed: bool = True):
    """Decorator: put the function (for ``training``, the config factory) in the table as
    method ``name``; a name taken twice is a programming error."""
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}, not {needs!r}")

    def add(fn: Callable) -> Callable:
        if name in _TABLE:
            raise ValueError(f"method {name!r} is registered twice")
        role = "config" if needs == "training" else "select"
        _TABLE[name] = Method(name, needs, seeded=seeded, listed=listed, **{role: fn})
        return fn
    return add


def get(name: str) -> Method:
    """The method called ``name``, or a one-line refusal naming the choices."""
    try:
        return _TABLE[name]
    except KeyError:
        raise PrunenetError(f"unknown method {name!r}: choose one of "
                            f"{', '.join(names())}") from None


def names(*needs: str, listed: bool = True) -> List[str]:
    """The methods (all, or those that need one of ``needs``), sorted; deprecated aliases only
    when ``listed`` is False."""
    return sorted(m.name for m in _TABLE.values()
                  if (not needs or m.needs in needs) and (m.listed or not listed))
