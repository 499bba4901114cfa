"""How a setting is declared: a dataclass field holding its default and a one-line help (and,
where the command line takes it, how its flag reads a value). The settings classes —
:class:`~prunenet.gcp.schedule.GCPConfig`, :class:`~prunenet.training.train.FinetuneConfig`,
:class:`~prunenet.run.settings.DataRun`, the demo's and an experiment's — are made of these
fields, and the command line, the Python API and experiment configs read their defaults from
them: a default is written once."""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING

__all__ = ["setting", "same_as", "field_of", "default_of", "help_of"]


def setting(default=MISSING, help: str = "", *, factory=MISSING, **meta) -> dataclasses.Field:
    """A settings field with its ``default`` (or a ``factory`` making it) and ``help``, one
    line that may name its default as ``{default}``. ``meta`` says how the command line takes
    it: ``flags`` (its option strings; default ``--NAME``, None: no generated flag), ``type``
    (an argparse type), ``choices`` (a callable returning them), ``metavar``, ``nargs``,
    ``group`` (the help's group), ``aliases`` (GluonCV's names of the flag), ``flag_default``
    (what the flag's absence means when not the default); and how an experiment checks it:
    ``check`` (value -> an error text or None)."""
    metadata = {"help": help, **meta}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def same_as(cls, name: str, required: bool = False, **meta) -> dataclasses.Field:
    """A field meaning ``cls``'s field ``name``: its default read from there whenever an
    object is made (and by :func:`default_of`), its help and flag from it unless ``meta``
    gives them. A field without a default, or ``required`` here, has none."""
    source = field_of(cls, name)
    metadata = {**source.metadata, **meta, "same_as": (cls, name)}
    if required or source.default is MISSING and source.default_factory is MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default_factory=lambda: default_of(cls, name), metadata=metadata)


def field_of(cls, name: str) -> dataclasses.Field:
    """The field ``name`` of the settings class ``cls``."""
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def default_of(cls, name: str):
    """The default of ``cls``'s field ``name`` as it is now (MISSING when it has none)."""
    f = field_of(cls, name)
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def help_of(cls, name: str) -> str:
    """The field's help, with its default written in where it says ``{default}``."""
    text = field_of(cls, name).metadata["help"]
    text = text() if callable(text) else text
    return text.format(default=_shown(default_of(cls, name)))


def _shown(value) -> str:
    """A default as the help writes it: numbers without trailing zeros, lists space-separated."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(_shown(v) for v in value)
    return str(value)
