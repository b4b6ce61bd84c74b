"""Input-space helpers: [0, 1] images, the normalisation inside the model, blur and baselines.

A *baseline* is the image that stands for "no information" wherever camkit needs one: the start
of Integrated Grad-CAM's path, Score-CAM's masked-out pixels, the canvas of insertion and
deletion, the start of the saturation curve. Every method and metric names it the same way:

* ``"black"``: all zeros (black in [0, 1] pixel space);
* ``"blur"``: the image blurred by :func:`gaussian_blur` with ``blur_sigma`` pixels;
* ``"mean"``: each image's mean colour;
* a number (a uniform grey level) or a tensor broadcastable to the images.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Named baselines (a number or a tensor is also accepted).
BASELINES = ("black", "blur", "mean")
#: Old names of baselines, accepted with a DeprecationWarning.
BASELINE_ALIASES = {"zero": "black"}
BaselineSpec = Union[str, float, Tensor]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first module of a model.

    camkit's methods and metrics work in the model's input space. Wrapping a model as
    ``nn.Sequential(camkit.Normalize(mean, std), model)`` makes that space [0, 1] pixels,
    so a black baseline is 0, noise σ is in pixel units and ``x * map`` keeps its meaning.

    >>> model = nn.Sequential(Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), nn.Identity())
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std need the same length, got {mean_t.numel()} and {std_t.numel()}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.flatten().tolist()}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"Normalize expects (N, {self.mean.shape[1]}, H, W) images, got shape {tuple(x.shape)}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Invert a normalisation: ``x * std + mean`` per channel, clamped to [0, 1]."""
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    squeeze = x.ndim == 3
    x4 = x.unsqueeze(0) if squeeze else x
    out = (x4 * std_t + mean_t).clamp(0, 1)
    return out[0] if squeeze else out


def gaussian_kernel(size: int, sigma: float, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian of ``size`` taps centred on the middle one (as torchvision builds it)."""
    t = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def separable_conv(z: Tensor, kernel: Tensor, padding: str) -> Tensor:
    """Convolve each channel of (B, C, H, W) with the outer product of a 1-D kernel (rows, then columns).

    ``padding="replicate"`` keeps the size (edge pixels repeated), ``"valid"`` crops the border.
    """
    c, r = z.shape[1], kernel.numel() // 2
    if padding == "replicate":
        z = F.pad(z, (r, r, r, r), mode="replicate")
    z = F.conv2d(z, kernel.to(z.dtype).reshape(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(z, kernel.to(z.dtype).reshape(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) images, σ in pixels, radius ⌈3σ⌉, replicate padding (σ = 0: x).

    The one blur of camkit: the ``"blur"`` baseline of every method and metric (with its
    ``blur_sigma``). Edge replication keeps the borders' brightness (RISE zero-pads).
    """
    if sigma == 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    return separable_conv(x, gaussian_kernel(2 * radius + 1, sigma, x.device), "replicate")


def make_baseline(spec: BaselineSpec, x: Tensor, blur_sigma: float) -> Tensor:
    """The (N, C, H, W) baseline of each image of x: "black" (0), "blur" (x blurred with ``blur_sigma``
    pixels), "mean" (x's mean colour), a number (a constant image) or a tensor broadcastable to x."""
    from .common import check_images_like, renamed_value

    spec = renamed_value(spec, BASELINE_ALIASES, "baseline")
    if isinstance(spec, str):
        if spec == "black":
            return torch.zeros_like(x)
        if spec == "blur":
            return gaussian_blur(x, blur_sigma)
        if spec == "mean":
            return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)
        raise ValueError(f"unknown baseline {spec!r}; allowed: {', '.join(map(repr, BASELINES))}, "
                         "a number or a tensor")
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full_like(x, float(spec))
    if torch.is_tensor(spec):
        if not torch.isfinite(spec).all():
            raise ValueError("the baseline tensor contains NaN or Inf values")
        if spec.ndim >= 3:  # images: (C, H, W), (1, C, H, W) or (N, C, H, W)
            return check_images_like(spec, x, "baseline", per_image_ok=True).expand_as(x)
        try:
            return torch.broadcast_to(spec.to(x.device, x.dtype), x.shape)
        except RuntimeError:
            raise ValueError(f"a baseline tensor must broadcast to the images {tuple(x.shape)}, "
                             f"got {tuple(spec.shape)}") from None
    raise TypeError(f"baseline must be one of {BASELINES}, a number or a tensor, got {type(spec).__name__}")
