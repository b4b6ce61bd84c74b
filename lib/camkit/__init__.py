"""camkit: class activation maps in batched, device-agnostic PyTorch.

>>> import camkit
>>> cam = camkit.GradCAM(model, layer="layer4")
>>> maps = cam(x)                    # (N, H, W) in [0, 1], on x's device
>>> camkit.METHODS["gradcam++"]      # every method by name
"""
from .cam import CAM
from .core import (METHODS, BaseCAM, GradientCAM, Targets, channels_last_to_first, normalize_maps, tokens_to_grid,
                   upsample_maps)
from .gradient_methods import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM, gradcampp_alpha
from .guided import GuidedBackprop, GuidedGradCAM, guided_relus
from .path_methods import ExpectedGradCAM, IntegratedGradCAM, ScoreCAM, SmoothGradCAMPlusPlus
from .layers import LayerChoice, resolve_layer, suggest_layer
from .transforms import Normalize, denormalize
from . import data, metrics, report, shapes, stats, viz, zoo  # noqa: E402  (submodules used by every notebook)
from .zoo import list_models, load_model

__version__ = "0.1.0"

__all__ = [
    "METHODS", "BaseCAM", "GradientCAM", "Targets", "CAM", "GradCAM", "GradCAMPlusPlus", "XGradCAM",
    "LayerCAM", "HiResCAM", "GuidedBackprop", "GuidedGradCAM", "Normalize", "denormalize",
    "suggest_layer", "resolve_layer", "LayerChoice", "normalize_maps", "upsample_maps",
    "IntegratedGradCAM", "ExpectedGradCAM", "SmoothGradCAMPlusPlus", "ScoreCAM", "gradcampp_alpha", "guided_relus", "metrics", "report", "viz", "data", "shapes", "stats", "zoo", "list_models", "load_model",
]
