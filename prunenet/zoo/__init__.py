"""The model zoo: publish pruned networks and load them the way GluonCV loads its own
(``prunenet.zoo.get_model``), with their formats (:mod:`.pruned`) and the export to ONNX
(``prunenet.zoo.export.export``)."""
from .store import *  # noqa: F401,F403  (the zoo's public names)
from .store import __all__  # noqa: F401
from . import export  # noqa: F401,E402  (prunenet.zoo.export.export)
