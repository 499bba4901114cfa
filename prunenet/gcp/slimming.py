"""``slimming``: network slimming, the approach the paper argues against, as a GCP variant.

Every weight is trained with an L1 penalty λ·|γ| on each channel's BatchNorm scale (for channels
a residual stream ties together, on the mask they share), BatchNorm in ordinary training mode,
the same λ for every channel (no cost weights) and no rescaling of the scales by their
consumers' norms. The channels of least |γ| are then removed down to the target and the network
fine-tuned. With ``--steps`` above 1 these alternate as in GCP; the original is one step.
Regularizing runs on :class:`prunenet.gcp.schedule.GCPSchedule`, so checkpoints, resume and the outputs
are those of a GCP run.
"""
from __future__ import annotations

from .schedule import GCPConfig
from ..core.registry import register

__all__ = ["config"]


@register("slimming", needs="training")
def config(**settings) -> GCPConfig:
    """GCP's schedule with every one of GCP's choices turned off (``settings``: GCPConfig's)."""
    if settings.get("debias_epochs") is None:
        settings["debias_epochs"] = 0.0
    return GCPConfig(bn_off=False, rescale=False, cost_weighted=False, train_weights=True,
                     **settings)
