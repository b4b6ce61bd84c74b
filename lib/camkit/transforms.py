"""Input-space helpers: keep images in [0, 1] and put the normalisation inside the model."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
