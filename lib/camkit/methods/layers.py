"""Finding the target layer of a model: by name, by module, or by suggestion."""
from __future__ import annotations

import difflib
import warnings
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ..common import model_device

LayerSpec = Union[str, nn.Module, None]

#: Attribute a model may carry to name its own default target layer (camkit's zoo sets it).
TARGET_LAYER_ATTRIBUTE = "camkit_target_layer"

#: Name prefixes of wrappers (nn.DataParallel / DDP: ``module.``; torch.compile: ``_orig_mod.``)
#: that :func:`resolve_layer` adds or strips when a name is not found as given.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class LayerChoice(UserWarning):
    """Announces the layer camkit picked when the caller passed ``layer=None``."""


def resolve_layer(model: nn.Module, layer: Union[str, nn.Module]) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for ``layer`` given as a dotted name or a submodule.

    A name not found as given is tried with a wrapper prefix of :data:`WRAPPER_PREFIXES` added
    or removed. Raises ``ValueError`` listing the closest valid names when a name does not exist,
    and when a module object is not part of ``model``.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError("the layer module passed is not a submodule of the model; pass one of "
                         "model.named_modules() or its dotted name")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a dotted module name (str), an nn.Module or None, "
                        f"got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return layer, modules[layer]
    for prefix in WRAPPER_PREFIXES:  # "layer4" on a wrapped model, "module.layer4" on the bare one
        for name in (prefix + layer, layer[len(prefix):] if layer.startswith(prefix) else None):
            if name and name in modules:
                return name, modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.5)
    top = [n for n in names if "." not in n]
    hint = f"closest names: {close}" if close else f"top-level modules: {top[:12]}"
    raise ValueError(f"model has no layer named {layer!r}; {hint}")


def _spatial_outputs(model: nn.Module, example_input: Tensor) -> list[tuple[str, nn.Module, tuple]]:
    """Run ``model`` once and list (name, module, output shape) in order of completion."""
    seen: list[tuple[str, nn.Module, tuple]] = []
    handles = []

    def recorder(name: str):
        def hook(module, inputs, output):
            if torch.is_tensor(output):
                seen.append((name, module, tuple(output.shape)))
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(recorder(name)))
    modes = [(module, module.training) for module in model.modules()]
    try:
        model.eval()  # the probe must not update batch-norm statistics of a model in training mode
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.train(training)
    return seen


def suggest_layer(model: nn.Module, example_input: Optional[Tensor] = None, *, announce: bool = True) -> str:
    """Suggest a target layer: the last module whose output is a spatial map (N, C, h, w), h·w > 1.

    A model that names its own layer in the attribute ``camkit_target_layer`` (camkit's zoo
    models do) gets that name. Otherwise the model runs once on ``example_input`` (default: one
    224 × 224 RGB image of zeros on the model's device) and the last module to finish with a
    4-D output is chosen; adaptive pooling layers are skipped because they only resample.
    The choice is announced with a :class:`LayerChoice` warning unless ``announce=False``.
    """
    named = getattr(model, TARGET_LAYER_ATTRIBUTE, None)
    if isinstance(named, str):
        resolve_layer(model, named)
        return named
    if example_input is None:
        example_input = torch.zeros(1, 3, 224, 224, device=model_device(model))
    skip = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Identity, nn.Dropout, nn.Dropout2d)
    candidates = [(name, shape) for name, module, shape in _spatial_outputs(model, example_input[:1])
                  if len(shape) == 4 and shape[2] * shape[3] > 1 and not isinstance(module, skip)]
    if not candidates:
        raise ValueError("no submodule of the model returns a spatial map (N, C, h, w) with h·w > 1; "
                         "pass layer= explicitly (token layers need a reshape)")
    name, shape = candidates[-1]
    if announce:
        warnings.warn(f"camkit: layer=None, using {name!r} (output {tuple(shape[1:])}); "
                      f"pass layer={name!r} to silence this", LayerChoice, stacklevel=3)
    return name
