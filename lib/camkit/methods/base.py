"""The machinery every camkit method shares.

:class:`BaseCAM` resolves the target layer, checks inputs, parses targets, holds the hooks for
the duration of one call, upsamples and normalises. :class:`GradientCAM` adds the one primitive
the gradient methods need, activations A and gradients g = ∂y^c/∂A of a batch, computed with the
forward pass *detached at the target layer* so no graph is built (and nothing is back-propagated)
below it. A method then overrides one thing: its channel weights or its map.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import check_positive_int, default_internal_batch_size, model_device, row_chunks
from .layers import LayerSpec, resolve_layer, suggest_layer

TargetSpec = Union[None, int, Sequence[int], Tensor, Callable[[Tensor], Tensor], Sequence[Callable]]
#: ``output=``: what the targets score when the model's output is not one tensor (a key, a position, a callable).
OutputSelector = Union[None, str, int, Callable]

#: Guard of the min-max normalisation: an all-zero (or constant) map stays all zero.
NORMALIZE_EPS = 1e-12

METHODS: dict[str, type["BaseCAM"]] = {}


def register(name: str, label: str):
    """Class decorator: add a method to :data:`camkit.METHODS` under ``name`` (``label``: its name in prose and figures)."""
    def wrap(cls):
        if name in METHODS:
            raise ValueError(f"method name {name!r} is registered twice")
        cls.name, cls.label = name, label
        METHODS[name] = cls
        return cls
    return wrap


# --------------------------------------------------------------------------- maps

def spatial_dims(t: Tensor, lead: int) -> tuple[int, ...]:
    """The dims of ``t`` after its ``lead`` leading ones: (-2, -1) for (…, h, w), (-3, -2, -1) for volumes."""
    return tuple(range(lead - t.ndim, 0))


def normalize_maps(maps: Tensor, eps: float = NORMALIZE_EPS, *, spatial: int = 2) -> Tensor:
    """Min-max scale each map (its last ``spatial`` dims: 2 for images, 3 for volumes) to [0, 1]:
    (M − min M) / max(max M − min M, eps). A constant map (an all-zero one in particular) becomes
    all zero, never NaN."""
    flat = maps.flatten(-spatial)
    shape = (*flat.shape[:-1], *([1] * spatial))
    low = flat.amin(-1).reshape(shape)
    high = flat.amax(-1).reshape(shape)
    return (maps - low) / (high - low).clamp_min(eps)


def upsample_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear (trilinear for volumes) upsampling, align_corners=False, of (N, K, h, w) maps to
    (N, K, H, W), or (N, K, d, h, w) to (N, K, D, H, W) when ``size`` has three entries."""
    size = tuple(int(v) for v in size)
    if tuple(maps.shape[-len(size):]) == size:
        return maps
    return F.interpolate(maps, size=size, mode="trilinear" if len(size) == 3 else "bilinear", align_corners=False)


def scale_by_max_abs(maps: Tensor, dims: int = 3, eps: float = NORMALIZE_EPS) -> Tensor:
    """Divide each input-space map by its largest absolute value over its last ``dims`` dims."""
    peak = maps.abs().flatten(-dims).amax(-1)
    return maps / peak.clamp_min(eps).reshape(*peak.shape, *([1] * dims))


# --------------------------------------------------------------------------- inputs

def check_images(x: Tensor, model: nn.Module) -> Tensor:
    """Validate a batch of images (N, C, H, W) or volumes (N, C, D, H, W): float, finite, non-empty,
    on the model's device and in its dtype (unless autocast is on)."""
    if not torch.is_tensor(x):
        raise TypeError(f"x must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim not in (4, 5):
        hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
        raise ValueError(f"x must have shape (N, C, H, W), or (N, C, D, H, W) for volumes and video, got "
                         f"{x.ndim}-D shape {tuple(x.shape)}{hint}")
    if x.ndim == 5 and not any(type(m).__name__.endswith("3d") for m in model.modules()):
        raise ValueError(f"x has 5-D shape {tuple(x.shape)}: (N, C, D, H, W) volumes need a model with 3-D layers "
                         "(Conv3d, ...), and this one has none; pass images as (N, C, H, W)")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (N = 0); pass at least one image")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor in [0, 1] pixel space, got {x.dtype}; "
                        "convert with x.float() / 255")
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
        raise ValueError(f"x contains {bad} NaN or Inf values; maps of such inputs are meaningless")
    device = model_device(model)
    if x.device != device:
        raise ValueError(f"x is on {x.device} but the model is on {device}; move one with .to()")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"x is {x.dtype} but the model's parameters are {dtype}; convert one "
                        f"(x.to({dtype}) or model.to({x.dtype})), or run under torch.autocast")
    return x


def _is_index_like(value) -> bool:
    return isinstance(value, int) or (hasattr(value, "dtype") and hasattr(value, "ndim") and value.ndim == 0)


class Targets:
    """What to explain for each image: K class indices per image, or callables on the model's output.

    ``index`` is an (N, K) long tensor, or None for "the top-1 class of each row"; ``fn`` maps the
    (selected) model output of B rows to (B,) or (B, K) scores and must act row by row; ``fns`` is
    one such callable per row (per-image targets such as :class:`~camkit.targets.SegmentationTarget`),
    each called on its rows' slice of the output. ``squeeze`` says whether the caller asked for one
    target per image (output (N, H, W)) rather than K (output (N, K, H, W)).
    """

    def __init__(self, index: Optional[Tensor], fn: Optional[Callable[[Tensor], Tensor]], squeeze: bool,
                 fns: Optional[list] = None):
        self.index, self.fn, self.squeeze, self.fns = index, fn, squeeze, fns

    @property
    def callable(self) -> bool:
        """True when the scores come from callables rather than class indices."""
        return self.fn is not None or self.fns is not None

    @classmethod
    def parse(cls, target: TargetSpec, n: int, device: torch.device) -> "Targets":
        """Turn the ``target=`` argument of a call on ``n`` images into :class:`Targets`."""
        if target is None:
            return cls(None, None, True)
        if callable(target) and not torch.is_tensor(target):
            return cls(None, target, True)
        if isinstance(target, (list, tuple)) and target and all(callable(t) for t in target):
            if len(target) != n:
                raise ValueError(f"a list of callable targets needs one per image: got {len(target)} for N = {n}")
            return cls(None, None, True, list(target))
        if isinstance(target, str) or (isinstance(target, (list, tuple)) and any(isinstance(t, str) for t in target)):
            raise TypeError(f"target must be class indices, not class names ({target!r}); look the index up, "
                            "e.g. zoo_model.classes.index('tabby')")
        if isinstance(target, bool) or (torch.is_tensor(target) and target.dtype == torch.bool):
            raise TypeError("target must be class indices (int), not booleans")
        if _is_index_like(target) and not torch.is_tensor(target):
            target = [int(target)] * n
        index = torch.as_tensor(target, device=device) if not torch.is_tensor(target) else target.to(device)
        if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {index.dtype}")
        if index.numel() and (index < 0).any():
            raise ValueError(f"class indices must be >= 0, got {index.min().item()} (negative indices are not "
                             "read as counting from the end)")
        if index.ndim == 0:
            return cls(index.long().expand(n).reshape(n, 1), None, True)
        if index.ndim > 2 or index.shape[0] != n:
            raise ValueError(f"target must be an int, N = {n} ints, or an (N, K) tensor with N = {n}; "
                             f"got shape {tuple(index.shape)}")
        squeeze = index.ndim == 1
        index = index.long().reshape(n, -1)
        if index.shape[1] == 0:
            raise ValueError("target has K = 0 classes per image; give at least one")
        return cls(index, None, squeeze)

    @property
    def k(self) -> int:
        """Number of targets per image (1 for top-1 and callables until evaluated)."""
        return 1 if self.index is None else self.index.shape[1]

    def scores(self, output, rows: Optional[slice] = None) -> Tensor:
        """The (B, K) scores to explain, from a model output of B rows (rows ``rows`` of the batch)."""
        if self.fns is not None:
            fns = self.fns if rows is None else self.fns[rows]
            parts, start = [], 0
            while start < len(fns):
                stop = start + 1
                while stop < len(fns) and fns[stop] is fns[start]:
                    stop += 1
                parts.append(_checked_scores(fns[start], slice_output(output, start, stop), stop - start))
                start = stop
            widths = {p.shape[1] for p in parts}
            if len(widths) > 1:
                raise ValueError(f"per-image callable targets returned different numbers of scores per row: {widths}")
            return torch.cat(parts)
        if self.fn is not None:
            return _checked_scores(self.fn, output, output_rows(output))
        return output.gather(1, self.indices(output, rows))

    def indices(self, logits: Tensor, rows: Optional[slice] = None) -> Tensor:
        """The (B, K) class indices for a model output of B rows, checked against its class count."""
        if self.callable:
            raise ValueError("this method explains class logits: target must be class indices, not a callable")
        if not torch.is_tensor(logits) or logits.ndim != 2:
            shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
            raise ValueError(f"the model returns {shape}, not (N, classes) logits; pass target= a callable "
                             "output -> (N,) scores (e.g. camkit.targets.SegmentationTarget), or output= to "
                             "select the logits")
        if self.index is None:
            return logits.argmax(1, keepdim=True)
        index = self.index if rows is None else self.index[rows]
        if index.max().item() >= logits.shape[1]:
            raise ValueError(f"class index {index.max().item()} is out of range for a model with "
                             f"{logits.shape[1]} outputs (allowed 0..{logits.shape[1] - 1})")
        return index

    def repeat_interleave(self, times: int) -> "Targets":
        """Targets of a batch where each image is repeated ``times`` times consecutively."""
        index = None if self.index is None else self.index.repeat_interleave(times, dim=0)
        fns = None if self.fns is None else [fn for fn in self.fns for _ in range(times)]
        return Targets(index, self.fn, self.squeeze, fns)


def _checked_scores(fn: Callable, output, rows: int) -> Tensor:
    scores = fn(output)
    if not torch.is_tensor(scores) or scores.ndim not in (1, 2) or scores.shape[0] != rows:
        raise ValueError("a callable target must return a (B,) or (B, K) tensor of scores for B "
                         f"inputs (B = {rows}), got "
                         f"{tuple(scores.shape) if torch.is_tensor(scores) else type(scores).__name__}")
    return scores.reshape(rows, -1)


def output_rows(output) -> int:
    """The batch size of a model output: a tensor, or a tuple / list / dict of them (a list of
    per-image dicts, as detection models return, counts its items)."""
    if torch.is_tensor(output):
        return output.shape[0]
    if isinstance(output, dict):
        return output_rows(next(iter(output.values())))
    if isinstance(output, (list, tuple)) and output:
        return len(output) if isinstance(output[0], dict) else output_rows(output[0])
    raise ValueError(f"cannot find the batch size of a model output of type {type(output).__name__}")


def slice_output(output, start: int, stop: int):
    """Rows start..stop of a model output (a tensor; a tuple/list of tensors; a dict; a list of per-image dicts)."""
    if torch.is_tensor(output):
        return output[start:stop]
    if isinstance(output, dict):
        return {key: slice_output(value, start, stop) for key, value in output.items()}
    if isinstance(output, (list, tuple)) and output and isinstance(output[0], dict):
        return output[start:stop]
    if isinstance(output, (list, tuple)):
        return type(output)(slice_output(value, start, stop) for value in output)
    raise ValueError(f"cannot slice a model output of type {type(output).__name__}")


def select_output(output, selector: OutputSelector):
    """What the targets score: the model's output itself (a tensor), ``output[selector]`` for a key or
    position, or ``selector(output)`` for a callable."""
    if selector is None:
        if torch.is_tensor(output):
            return output
        if isinstance(output, dict):
            raise ValueError(f"the model returns a dict with keys {list(output)}; pass output='<key>' "
                             "(e.g. output='out' for torchvision's segmentation models) or a callable target")
        if isinstance(output, (list, tuple)) and output and all(isinstance(o, dict) for o in output):
            return output  # detection models: a list of per-image dicts, for a callable target
        if isinstance(output, (list, tuple)):
            raise ValueError(f"the model returns a {type(output).__name__} of {len(output)} items; pass output=0 "
                             "(a position), or output=callable to select what is explained")
        raise ValueError(f"the model returns {type(output).__name__}; pass output=callable to select a tensor")
    if callable(selector):
        return selector(output)
    try:
        return output[selector]
    except (KeyError, IndexError, TypeError):
        keys = list(output) if isinstance(output, dict) else f"positions 0..{len(output) - 1}" \
            if isinstance(output, (list, tuple)) else type(output).__name__
        raise ValueError(f"output={selector!r} does not select anything from the model's output ({keys})") from None


# --------------------------------------------------------------------------- hooks

class _Capture:
    """Holds the activation recorded by the forward hook during one forward pass."""

    def __init__(self, layer_name: str):
        self.layer_name = layer_name
        self.activation: Optional[Tensor] = None

    def get(self) -> Tensor:
        if self.activation is None:
            raise ValueError(f"layer {self.layer_name!r} was not called during the forward pass; "
                             "pick a layer the model actually runs")
        return self.activation


def tokens_to_grid(tokens: Tensor, prefix_tokens: int = 1) -> Tensor:
    """``reshape=`` for ViT-style token layers: (N, P + h·w, C) → (N, C, h, w) on a square grid.

    Drops the P = ``prefix_tokens`` leading tokens (1: the class token of torchvision's and timm's
    ViT; 2 for DeiT's class + distillation tokens: ``functools.partial(tokens_to_grid, prefix_tokens=2)``).
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens_to_grid expects (N, tokens, C) tokens, got shape {tuple(tokens.shape)}")
    patches = tokens[:, prefix_tokens:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1] or side == 0:
        raise ValueError(f"{patches.shape[1]} tokens after dropping {prefix_tokens} prefix tokens do not form "
                         "a square grid; set prefix_tokens= or write a reshape for this layout")
    return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], side, side)


def channels_last_to_first(features: Tensor) -> Tensor:
    """``reshape=`` for (N, h, w, C) layers (Swin, ConvNeXt-style blocks): → (N, C, h, w)."""
    if features.ndim != 4:
        raise ValueError(f"channels_last_to_first expects (N, h, w, C), got shape {tuple(features.shape)}")
    return features.permute(0, 3, 1, 2)


def _route_through(reshape: Callable[[Tensor], Tensor], output: Tensor, leaf: Tensor) -> Tensor:
    """``output`` (same values) made to depend on ``leaf`` = reshape(output) detached: the result is
    output + Rᵀ(leaf − leaf), R the Jacobian of ``reshape``, so ∂y/∂leaf = R ∂y/∂output (for a
    rearrangement R: the gradient rearranged the same way as A; dropped tokens get none)."""
    probe = output.detach().requires_grad_(True)
    (back,) = torch.autograd.grad(reshape(probe), probe, leaf - leaf.detach(), create_graph=True)
    return output.detach() + back


@contextmanager
def capture_activation(layer: nn.Module, layer_name: str, *, detach_below: bool,
                       reshape: Optional[Callable[[Tensor], Tensor]] = None,
                       layer_input: bool = False) -> Iterator[_Capture]:
    """Record the output A of ``layer`` (its first input with ``layer_input=True``, as captum's
    ``attribute_to_layer_input``) during a forward pass run inside this block.

    With ``detach_below=True`` the forward runs with autograd off until ``layer`` and on after it,
    and A becomes a leaf that requires grad: ``torch.autograd.grad(score, A)`` then differentiates
    the head only, and no graph is kept for the layers below. ``reshape`` turns the layer's output
    into the (N, C, h, w) map A (e.g. :func:`tokens_to_grid`); it must only select and rearrange
    entries, and gradients reach A rearranged the same way. Volumes (N, C, d, h, w) are kept as they
    are. The hook is removed and the caller's grad mode restored on exit, also when the block raises.
    """
    capture = _Capture(layer_name)
    previous_grad_mode = torch.is_grad_enabled()
    what = "input" if layer_input else "output"

    def record(output: Tensor) -> Optional[Tensor]:
        if not torch.is_tensor(output):
            raise ValueError(f"layer {layer_name!r}'s {what} is a {type(output).__name__}, not a tensor; "
                             "pick a layer whose output is a (N, C, h, w) feature map")
        if capture.activation is not None:
            raise ValueError(f"layer {layer_name!r} runs more than once per forward pass (a shared "
                             "module); pick a layer that runs once")
        shaped = output if reshape is None else reshape(output)
        if shaped.ndim not in (4, 5):
            raise ValueError(f"layer {layer_name!r}'s {what} has shape {tuple(output.shape)}"
                             f"{'' if reshape is None else f', reshaped to {tuple(shaped.shape)}'}, not a "
                             "spatial (N, C, h, w) map; pick a convolutional feature layer, or pass "
                             "reshape= (e.g. camkit.tokens_to_grid) for a token layer")
        if not detach_below:
            capture.activation = shaped.clone()  # an in-place op that follows (ReLU(inplace=True)) must not change A
            return None
        capture.activation = shaped.detach().requires_grad_(True)
        torch.set_grad_enabled(True)
        if reshape is not None:
            return _route_through(reshape, output, capture.activation)
        return capture.activation.clone()  # a non-leaf, so in-place ops that follow are allowed

    def output_hook(module, inputs, output):
        return record(output)

    def input_hook(module, inputs):
        if not inputs:
            raise ValueError(f"layer {layer_name!r} is called without positional inputs; use its output")
        replaced = record(inputs[0])
        return None if replaced is None else (replaced, *inputs[1:])

    handle = (layer.register_forward_pre_hook(input_hook) if layer_input else layer.register_forward_hook(output_hook))
    try:
        if detach_below:
            torch.set_grad_enabled(False)
        yield capture
    finally:
        handle.remove()
        torch.set_grad_enabled(previous_grad_mode)


# --------------------------------------------------------------------------- base classes

#: ``internal_batch_size="auto"``: 16 rows per pass on a CPU, 64 on an accelerator (see camkit.common).
AUTO = "auto"
BatchSizeSpec = Union[int, None, str]


class BaseCAM:
    """Base of every method: ``maps = method(x, target)``.

    Args:
        model: a classifier whose first module takes images in [0, 1] pixel space.
        layer: target layer as a dotted name (``"layer4"``) or a submodule; None picks
            :func:`camkit.suggest_layer` on the first call and announces it. A list of layers gives
            one map per layer, each upsampled to the input and min-max normalised, fused by ``fuse``.
        relu: apply ReLU to the final map (each method documents its default).
        internal_batch_size: the most input rows sent through the model at once (None: the
            whole batch; ``"auto"``: 16 on a CPU, 64 on an accelerator); bounds peak memory.
        reshape: turns the layer's output into the (N, C, h, w) map A, for layers that are not
            channels-first maps: :func:`tokens_to_grid` for ViT tokens (N, 1 + h·w, C),
            :func:`channels_last_to_first` for Swin's (N, h, w, C). It may only select and
            rearrange entries; the gradients are rearranged the same way. None: the output as is.
        output: what the targets score when the model does not return one tensor: a key
            (``"out"`` for torchvision's segmentation models), a position, or a callable on the raw
            output. A list of per-image dicts (detection models) goes to a callable target as is.
        layer_input: explain the layer's input instead of its output (captum's ``attribute_to_layer_input``).
        fuse: how the maps of several layers combine: ``"mean"`` (pytorch-grad-cam) or ``"max"`` (torchcam).

    ``nn.DataParallel`` / ``DistributedDataParallel`` wrappers are unwrapped: the maps are computed
    by the wrapped module on its own device in one pass (replicas would each run the hooks), and
    layer names work with or without the ``module.`` prefix. A ``torch.compile``-d model is kept
    (names with or without ``_orig_mod.``).

    Calling returns float32 maps on ``x``'s device, shape (N, H, W) for one target per image or
    (N, K, H, W) for an (N, K) target tensor ((N, D, H, W) for volumes), upsampled (bilinear or
    trilinear, align_corners=False) and min-max normalised per map; ``normalize=False,
    upsample=False`` gives the raw (N, h, w) maps. Hooks exist only while a call runs. A method
    implements :meth:`compute` (raw maps before the ReLU); the ReLU, upsampling, normalisation,
    layer fusion and squeezing happen here.
    """

    name: str = ""
    label: str = ""
    relu_default: bool = True
    #: Whether the method differentiates (then it cannot run under torch.inference_mode()).
    needs_gradients: bool = True

    def __init__(self, model: nn.Module, layer: Union[LayerSpec, Sequence[LayerSpec]] = None, *,
                 relu: Optional[bool] = None, internal_batch_size: BatchSizeSpec = None,
                 reshape: Optional[Callable[[Tensor], Tensor]] = None, output: OutputSelector = None,
                 layer_input: bool = False, fuse: str = "mean"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        if reshape is not None and not callable(reshape):
            raise TypeError(f"reshape must be a callable tensor -> (N, C, h, w) tensor or None, "
                            f"got {type(reshape).__name__}")
        if fuse not in ("mean", "max"):
            raise ValueError(f"fuse must be 'mean' or 'max', got {fuse!r}")
        self.model = model
        self.reshape = reshape
        self.output = output
        self.layer_input = bool(layer_input)
        self.fuse = fuse
        self.relu = self.relu_default if relu is None else bool(relu)
        self.internal_batch_size = (AUTO if internal_batch_size == AUTO else
                                    check_positive_int(internal_batch_size, "internal_batch_size", allow_none=True))
        self.layer_name: Optional[str] = None
        self._layer: Optional[nn.Module] = None
        self.layers: list[tuple[str, nn.Module]] = []
        if isinstance(layer, (list, tuple)):
            if not layer:
                raise ValueError("layer is an empty list; give one or more layers")
            self.layers = [resolve_layer(model, one) for one in layer]
            self.layer_name, self._layer = self.layers[-1]
        elif layer is not None:
            self.layer_name, self._layer = resolve_layer(model, layer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer_name!r}, relu={self.relu})"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None  # hooks never outlive a call; nothing to release

    def target_layer(self, x: Tensor) -> nn.Module:
        """The target layer module, suggested from ``x`` on the first call when ``layer=None``."""
        if self._layer is None:
            if self.reshape is not None:
                raise ValueError("reshape= needs an explicit layer=: the layer suggestion looks for (N, C, h, w) "
                                 "feature maps and cannot tell which token layer your reshape expects")
            self.layer_name, self._layer = resolve_layer(self.model, suggest_layer(self.model, x[:1]))
        return self._layer

    def rows_per_pass(self, device: torch.device) -> Optional[int]:
        """``internal_batch_size`` with ``"auto"`` resolved for ``device``."""
        if self.internal_batch_size == AUTO:
            return default_internal_batch_size(device)
        return self.internal_batch_size

    def forward(self, x: Tensor):
        """The model's output for ``x``, with ``output=`` applied: what the targets score."""
        return select_output(self.model(x), self.output)

    def __call__(self, x: Tensor, target: TargetSpec = None, *, normalize: bool = True,
                 upsample: bool = True) -> Tensor:
        check_images(x, self.model)
        if self.needs_gradients and torch.is_inference_mode_enabled():
            raise RuntimeError(f"{type(self).__name__} differentiates the model, but it was called inside "
                               "torch.inference_mode(), where autograd is off for good; call it outside that "
                               "block (torch.no_grad() around the call is fine: camkit turns gradients on itself)")
        targets = Targets.parse(target, x.shape[0], x.device)
        if self.model.training:
            warnings.warn("the model is in training mode: dropout and batch statistics make maps random "
                          "and couple the images of a batch; call model.eval() first", stacklevel=2)
        if len(self.layers) > 1:
            maps = self.fused_maps(x, targets, normalize=normalize, upsample=upsample)
        else:
            maps = self.finish(self.raw_maps(x, targets), x, normalize=normalize, upsample=upsample)
        squeeze = targets.squeeze if not targets.callable else maps.shape[1] == 1
        return maps[:, 0] if squeeze else maps

    def fused_maps(self, x: Tensor, targets: Targets, *, normalize: bool, upsample: bool) -> Tensor:
        """One map per layer of ``layer=[...]``, upsampled and min-max normalised, fused by ``fuse``."""
        if not upsample:
            raise ValueError("maps of several layers have different sizes: call with upsample=True to fuse them")
        per_layer = []
        for self.layer_name, self._layer in self.layers:
            per_layer.append(self.finish(self.raw_maps(x, targets), x, normalize=True, upsample=True))
        stacked = torch.stack(per_layer)
        fused = stacked.mean(0) if self.fuse == "mean" else stacked.amax(0)
        return normalize_maps(fused, spatial=x.ndim - 2) if normalize else fused

    def raw_maps(self, x: Tensor, targets: Targets) -> Tensor:
        """:meth:`compute`'s maps as float32, with the ReLU when ``relu`` is set: (N, K, h, w)."""
        maps = self.compute(x, targets).detach().float()
        return maps.relu() if self.relu else maps

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        """Raw maps (N, K, h, w) at the layer's resolution, before the ReLU. Each method implements this."""
        raise NotImplementedError

    def finish(self, maps: Tensor, x: Tensor, *, normalize: bool, upsample: bool) -> Tensor:
        """Upsample to the input size, then min-max normalise each map."""
        if upsample:
            maps = upsample_maps(maps, x.shape[2:])
        return normalize_maps(maps, spatial=x.ndim - 2) if normalize else maps

    def capture(self, layer: nn.Module, *, detach_below: bool):
        """:func:`capture_activation` of ``layer`` with this method's ``reshape`` and ``layer_input``."""
        return capture_activation(layer, self.layer_name, detach_below=detach_below, reshape=self.reshape,
                                  layer_input=self.layer_input)

    def forward_scores(self, x: Tensor, targets: Targets, rows: Optional[slice] = None) -> Tensor:
        """The (B, K) target scores of ``x`` without gradients (used for top-1 and score deltas)."""
        with torch.no_grad():
            return targets.scores(self.forward(x), rows)

    def fix_targets(self, x: Tensor, targets: Targets) -> Targets:
        """Replace "top-1" by the explicit top-1 classes of ``x`` (needed before perturbing x)."""
        if targets.index is not None or targets.callable:
            return targets
        with torch.no_grad():
            logits = self.forward(x)
        return Targets(targets.indices(logits), None, targets.squeeze)

    def layer_outputs(self, x: Tensor, targets: Optional[Targets] = None,
                      transform: Optional[Callable[[Tensor], Tensor]] = None) -> tuple[Tensor, Optional[Tensor]]:
        """Activations A (N, C, h, w) of the target layer and, with ``targets``, the (N, K) scores of
        ``transform(output)``; no gradients, in chunks of :meth:`rows_per_pass` rows."""
        layer = self.target_layer(x)
        activations, scores = [], []
        for rows in row_chunks(x.shape[0], self.rows_per_pass(x.device)):
            with torch.no_grad(), self.capture(layer, detach_below=False) as capture:
                logits = self.forward(x[rows])
                activations.append(capture.get().float())
                if targets is not None:
                    scores.append(targets.scores(transform(logits) if transform else logits, rows))
        return torch.cat(activations), (torch.cat(scores) if targets is not None else None)


class GradientCAM(BaseCAM):
    """Base of the gradient methods: M = Σ_k w_k A^k with method-specific channel weights w_k.

    Subclasses override :meth:`channel_weights` (A, g) → w, or :meth:`combine` for an element-wise map.
    """

    def activations_and_gradients(self, x: Tensor, targets: Targets,
                                  rows: Optional[slice] = None) -> tuple[Tensor, Tensor, Tensor]:
        """One forward pass of ``x`` (B rows) and K backward passes from the scores to the layer.

        Returns A (B, C, h, w), g = ∂y^c/∂A (B, K, C, h, w) and the scores y (B, K), all detached.
        ``rows`` selects the rows of ``targets`` that ``x`` corresponds to.
        """
        layer = self.target_layer(x)
        with self.capture(layer, detach_below=True) as capture:
            logits = self.forward(x)
            activation = capture.get()
            scores = targets.scores(logits, rows)
            if not scores.requires_grad and not targets.callable:
                raise ValueError(f"the model's output does not depend on layer {self.layer_name!r}; "
                                 "pick a layer on the path to the output")
            grads = []
            for k in range(scores.shape[1]):
                g = None
                if scores.requires_grad:
                    (g,) = torch.autograd.grad(scores[:, k].sum(), activation, allow_unused=True,
                                               retain_graph=k + 1 < scores.shape[1])
                if g is None and not targets.callable:
                    raise ValueError(f"the model's output does not depend on layer {self.layer_name!r}; "
                                     "pick a layer on the path to the output")
                # a callable target whose score does not reach the layer (no detected box matches): zero map
                grads.append(torch.zeros_like(activation) if g is None else g)
        return activation.detach(), torch.stack(grads, 1), scores.detach()

    def compute(self, x: Tensor, targets: Targets) -> Tensor:
        maps = []
        for rows in row_chunks(x.shape[0], self.rows_per_pass(x.device)):
            activation, grads, _ = self.activations_and_gradients(x[rows], targets, rows)
            maps.append(self.combine(activation.float(), grads.float()))
        return torch.cat(maps)

    def combine(self, activation: Tensor, grads: Tensor) -> Tensor:
        """Map (B, K, h, w) from A (B, C, h, w) and g (B, K, C, h, w): Σ_k w_k A^k (before the ReLU)."""
        return weighted_sum(self.channel_weights(activation, grads), activation)

    def channel_weights(self, activation: Tensor, grads: Tensor) -> Tensor:
        """Channel weights w (B, K, C). Each weighted-sum method implements this."""
        raise NotImplementedError


def weighted_sum(weights: Tensor, activation: Tensor) -> Tensor:
    """Σ_k w_k A^k: (B, K, C) weights and (B, C, h, w) maps → (B, K, h, w) (volumes: (B, C, d, h, w) → (B, K, d, h, w))."""
    return torch.einsum("bkc,bc...->bk...", weights, activation)
