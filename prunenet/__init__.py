"""prunenet: Global Channel Pruning (PruneNet) for MXNet Gluon and GluonCV networks.

``prunenet.prune(net, "l1", "flops", 0.5, input_shape=...)`` prunes a network without data;
``prunenet.GCP(net, target=0.5, input_shape=...).fit(loader).prune()`` with the paper's method on
any iterable of ``(data, label)`` batches; ``prunenet.finetune(small, loader)`` trains the result;
``prunenet.replace_classifier(net, classes)`` gives a network a fresh output layer (transfer);
``gcp.save(folder, data=...)``, ``prunenet.zoo.publish(folder, zoo, name)``,
``prunenet.zoo.get_model(name, pretrained=True, root=zoo)`` and
``prunenet.zoo.export.export(name, zoo, "onnx", out)`` carry the result to a zoo and to ONNX.
See docs/api.md.

Importing prunenet before MXNet sets ``OMP_NUM_THREADS`` to the number of cores when the user
has not set it (MXNet's CPU kernels otherwise run markedly slower on small machines).
"""
import os as _os

_os.environ.setdefault("OMP_NUM_THREADS", str(_os.cpu_count() or 1))

from . import _moved  # noqa: E402

_moved.install()  # the old import paths, for one release
from .api import GCP, finetune, prune, replace_classifier  # noqa: E402
from .core.costs import cost_model, count  # noqa: E402
from .errors import PrunenetError  # noqa: E402
from .core.graph import ChannelGraph, Group, Layer, Norm, UnsupportedOpError, trace  # noqa: E402
from . import latency  # noqa: E402,F401  (registers the latency objective)
from . import zoo  # noqa: E402,F401  (prunenet.zoo.publish, prunenet.zoo.export.export)
from .core.select import InfeasibleTargetError, Selection, select  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = ["prune", "GCP", "finetune", "replace_classifier", "trace", "ChannelGraph", "Group",
           "Layer", "Norm", "UnsupportedOpError", "cost_model", "count", "select", "Selection",
           "InfeasibleTargetError", "PrunenetError", "__version__"]
