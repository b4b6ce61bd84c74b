"""camkit: class activation maps in batched, device-agnostic PyTorch.

>>> import camkit
>>> cam = camkit.GradCAM(model, layer="layer4")
>>> maps = cam(x)                    # (N, H, W) in [0, 1], on x's device
>>> camkit.METHODS["gradcam++"]      # every method by name

``import camkit`` loads torch and the methods only; the metrics, data, zoo and report modules
(and matplotlib) load on first use, e.g. ``camkit.metrics.deletion`` or ``import camkit.zoo``.
"""
from __future__ import annotations

import importlib
from typing import Any

from .methods import (CAM, METHODS, BaseCAM, ExpectedGradCAM, GradCAM, GradCAMPlusPlus, GradientCAM,
                      GuidedBackprop, GuidedGradCAM, HiResCAM, IntegratedGradCAM, LayerCAM, LayerChoice, ScoreCAM,
                      SmoothGradCAMPlusPlus, Targets, XGradCAM, channels_last_to_first, create_method, gradcampp_alpha,
                      guided_relus, normalize_maps, resolve_layer, suggest_layer, tokens_to_grid, upsample_maps)
from .methods import (ISCAM, SSCAM, AblationCAM, EigenCAM, EigenGradCAM, FullGrad, aug_smooth, eigen_smooth)
from .transforms import Normalize, denormalize

__version__ = "0.2.0"

#: Submodules loaded on first attribute access (``camkit.metrics``), so ``import camkit`` stays light.
_SUBMODULES = {
    "common": "camkit.common", "data": "camkit.data", "methods": "camkit.methods", "metrics": "camkit.metrics",
    "report": "camkit.report", "transforms": "camkit.transforms", "cli": "camkit.cli", "targets": "camkit.targets",
    "zoo": "camkit.data.zoo", "shapes": "camkit.shapes", "stats": "camkit.report.stats", "viz": "camkit.report.viz",
}
#: Functions re-exported lazily from a submodule.
_LAZY_NAMES = {"list_models": "camkit.data.zoo", "load_model": "camkit.data.zoo"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(_SUBMODULES[name])
    elif name in _LAZY_NAMES:
        module = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'camkit' has no attribute {name!r}")
    globals()[name] = module
    return module


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES) | set(_LAZY_NAMES))


__all__ = [
    "METHODS", "BaseCAM", "GradientCAM", "Targets", "CAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM",
    "LayerCAM", "HiResCAM", "GuidedBackprop", "GuidedGradCAM", "Normalize", "denormalize",
    "suggest_layer", "resolve_layer", "LayerChoice", "normalize_maps", "upsample_maps", "tokens_to_grid",
    "channels_last_to_first", "IntegratedGradCAM", "ExpectedGradCAM", "SmoothGradCAMPlusPlus", "ScoreCAM",
    "gradcampp_alpha", "guided_relus", "create_method", "list_models", "load_model",
    "AblationCAM", "EigenCAM", "EigenGradCAM", "FullGrad", "ISCAM", "SSCAM", "aug_smooth", "eigen_smooth",
]
