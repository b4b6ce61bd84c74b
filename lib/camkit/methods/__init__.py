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
from .ablation import AblationCAM
from .eigen import EigenCAM, EigenGradCAM
from .fullgrad import FullGrad
from .gradient_free import ISCAM, SSCAM
from .smoothing import aug_smooth, eigen_smooth


def method_settings(name: str) -> set[str]:
    """The keyword settings the constructor of method ``name`` accepts (besides model and layer)."""
    import inspect

    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; methods are {', '.join(METHODS)}")
    found: set[str] = set()
    for cls in METHODS[name].__mro__:  # **options go up the classes to BaseCAM
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters
        found |= {p for p, spec in parameters.items() if spec.kind is inspect.Parameter.KEYWORD_ONLY}
        if not any(spec.kind is inspect.Parameter.VAR_KEYWORD for spec in parameters.values()):
            break
    return found


def create_method(name: str, model, layer=None, **settings) -> BaseCAM:
    """Build method ``name`` of :data:`METHODS` with the ``settings`` it accepts, skipping the others.

    One call configures a whole family consistently, e.g. ``create_method(name, model, "layer4",
    steps=50, samples=32, seed=0)`` gives Integrated Grad-CAM its ``steps``, Expected Grad-CAM its
    ``samples`` and ``seed``, and Grad-CAM neither. A setting that no method accepts is an error
    (a typo), as is an unknown name. Guided Backprop takes no layer; ``layer`` is dropped for it.

    >>> cams = {name: create_method(name, model, "layer4", steps=16, samples=8, seed=0) for name in METHODS}
    """
    accepted = method_settings(name)
    everywhere = set().union(*(method_settings(other) for other in METHODS))
    unknown = sorted(set(settings) - everywhere)
    if unknown:
        raise ValueError(f"no camkit method takes the setting(s) {unknown}; settings are {sorted(everywhere)}")
    kept = {key: value for key, value in settings.items() if key in accepted}
    if name == "guided-backprop":
        return METHODS[name](model, **kept)
    return METHODS[name](model, layer, **kept)

__all__ = [
    "METHODS", "BaseCAM", "GradientCAM", "Targets", "channels_last_to_first", "normalize_maps", "tokens_to_grid",
    "upsample_maps", "CAM", "ScoreCAM", "GuidedBackprop", "GuidedGradCAM", "guided_relus", "LayerChoice",
    "resolve_layer", "suggest_layer", "ExpectedGradCAM", "IntegratedGradCAM", "SmoothGradCAMPlusPlus", "GradCAM",
    "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM", "gradcampp_alpha", "create_method", "method_settings",
    "AblationCAM", "EigenCAM", "EigenGradCAM", "FullGrad", "ISCAM", "SSCAM", "aug_smooth", "eigen_smooth",
]
