"""Every CAM method, registered by name in :data:`METHODS`.

* :mod:`~camkit.methods.base`: :class:`BaseCAM` (layer, hooks, targets, upsampling, normalisation)
  and :class:`GradientCAM` (activations and gradients of one pass);
* :mod:`~camkit.methods.single_pass`: Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM, HiResCAM;
  :mod:`~camkit.methods.cam`: CAM;
* :mod:`~camkit.methods.sampled`: methods that average gradients over sampled inputs
  (Integrated Grad-CAM, Expected Grad-CAM, Smooth Grad-CAM++);
* :mod:`~camkit.methods.gradient_free`: Score-CAM;
* :mod:`~camkit.methods.guided`: Guided Backprop and Guided Grad-CAM (input space).
"""
from .base import (METHODS, BaseCAM, GradientCAM, Targets, channels_last_to_first, normalize_maps, tokens_to_grid,
                   upsample_maps)
from .cam import CAM
from .gradient_free import ScoreCAM
from .guided import GuidedBackprop, GuidedGradCAM, guided_relus
from .layers import LayerChoice, resolve_layer, suggest_layer
from .sampled import ExpectedGradCAM, IntegratedGradCAM, SmoothGradCAMPlusPlus
from .single_pass import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM, gradcampp_alpha

__all__ = [
    "METHODS", "BaseCAM", "GradientCAM", "Targets", "channels_last_to_first", "normalize_maps", "tokens_to_grid",
    "upsample_maps", "CAM", "ScoreCAM", "GuidedBackprop", "GuidedGradCAM", "guided_relus", "LayerChoice",
    "resolve_layer", "suggest_layer", "ExpectedGradCAM", "IntegratedGradCAM", "SmoothGradCAMPlusPlus", "GradCAM",
    "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM", "gradcampp_alpha",
]
