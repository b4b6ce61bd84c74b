"""Tiny seeded CNNs shared by the core tests."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GapLinearNet(nn.Module):
    """conv stack -> ``features`` (target layer) -> global average pooling -> linear: CAM applies."""

    def __init__(self, classes: int = 5, channels: int = 6, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class ReluHeadNet(nn.Module):
    """``features`` (target layer) followed by a 1x1 conv + ReLU before pooling, so g varies over
    positions and has negative entries, while the score stays piecewise linear in A."""

    def __init__(self, classes: int = 4, channels: int = 3, hidden: int = 5, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU())
        self.hidden = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU())
        self.fc = nn.Linear(hidden, classes)

    def head(self, activation):
        return self.fc(self.hidden(activation).mean(dim=(2, 3)))

    def forward(self, x):
        return self.head(self.features(x))


def images(n: int = 3, size: int = 16, seed: int = 1) -> torch.Tensor:
    """A seeded batch of [0, 1] images."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def hook_count(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks currently registered on any module of ``model``."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


#: Settings that keep every multi-pass method fast in the reliability tests (all methods, every model family).
FAST = {"integrated-gradcam": dict(steps=2), "expected-gradcam": dict(samples=2, seed=0),
        "smooth-gradcam++": dict(samples=2, seed=0), "scorecam": dict(max_channels=16),
        "sscam": dict(samples=2, max_channels=16, seed=0), "iscam": dict(steps=2, max_channels=16),
        "ablationcam": dict(max_channels=16)}


class AffineNet(nn.Module):
    """Affine in the input: a strided conv "features" (half resolution, so Score-CAM upsamples) ->
    2 × 2 average pooling -> linear on the flat maps. Score gains are exact linear functions."""

    def __init__(self, seed: int = 0, classes: int = 3, size: int = 8):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * (size // 4) ** 2, classes)

    def forward(self, x):
        return self.fc(F.avg_pool2d(self.features(x), 2).flatten(1))
