"""The shapes world's CNNs and their training.

Three architectures: a ResNet-like and a VGG-like net ending in GAP + linear (CAM applies at their
target layer), and a VGG-style net with two hidden fully connected layers (a non-linear head, as
in the VGG-16 of the Grad-CAM papers). Each is trained with the seeds :data:`SEEDS` (seed s draws
the training images and the initialisation), so a trained seed is an independent replicate.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .paths import ASSETS
from .shapes import CLASSES, IMAGE_SIZE, MEAN, STD, TEST_SEED, TEST_SIZE, TEST_VARIANT, ShapesBatch, shapes


class WeightsUnavailableError(RuntimeError):
    """Raised when a model's pretrained weights are not on this machine (nothing is downloaded)."""


# --------------------------------------------------------------------------- models

class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3 conv-BN, identity (or 1×1 projection) shortcut, ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ShapesResNet(nn.Module):
    """Stride-2 stem + three basic blocks (16, 24, 32 channels), all at 16 px, GAP, linear. ~37k parameters.

    The target layer ``layer3`` gives 16 × 16 maps on 32 px images (2 px per cell).
    """

    target_layer = "layer3"

    def __init__(self, num_classes: int = len(CLASSES), widths: tuple[int, int, int] = (16, 24, 32)):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 3, 2, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.layer1 = BasicBlock(w1, w1, 1)
        self.layer2 = BasicBlock(w1, w2, 1)
        self.layer3 = BasicBlock(w2, w3, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


class ShapesVGG(nn.Module):
    """Plain conv-BN-ReLU stack (16 @ 32 px, pool, 32, 32, 32 @ 16 px), GAP, linear. ~33k parameters.

    The target layer ``features`` (ending in a ReLU) gives 16 × 16 maps on 32 px images.
    """

    target_layer = "features"

    def __init__(self, num_classes: int = len(CLASSES), widths: Sequence = (16, "M", 32, 32, 32)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout in widths:
            if cout == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


class ShapesVGGFC(nn.Module):
    """ShapesVGG's conv stack, then a VGG-style head: 4 × 4 max-pool, flatten (32 × 4 × 4), two hidden
    fully connected layers (64, 64) with ReLU, and the linear classifier. ~60k parameters.

    The head is non-linear in the target layer ``features`` (16 × 16 maps): the gradient there
    changes along a path, so the path and sampling methods can differ from Grad-CAM.
    """

    target_layer = "features"

    def __init__(self, num_classes: int = len(CLASSES), widths: Sequence = (16, "M", 32, 32, 32), hidden: int = 64):
        super().__init__()
        self.features = ShapesVGG(num_classes, widths).features
        self.pool = nn.MaxPool2d(4)
        channels = [w for w in widths if w != "M"][-1]
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * 4 * 4, hidden), nn.ReLU(),
                                        nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)))


ARCHITECTURES = {"resnet": ShapesResNet, "vgg": ShapesVGG, "vgg_fc": ShapesVGGFC}
#: The training seeds of every architecture (seed 0 is the file without a suffix).
SEEDS = (0, 1, 2, 3, 4)


def build_model(arch: str) -> nn.Module:
    """A randomly initialised shapes CNN of :data:`ARCHITECTURES` (no normalisation inside)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown shapes architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]()


def weights_path(arch: str, data_dir: Union[str, Path, None] = None, seed: int = 0) -> Path:
    """``shapes_<arch>.pt`` (seed 0) or ``shapes_<arch>_seed<s>.pt`` in ``data_dir`` (default: the
    package assets, ``camkit/data/assets/``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    suffix = "" if seed == 0 else f"_seed{seed}"
    return Path(data_dir or ASSETS) / f"shapes_{arch}{suffix}.pt"


def load_trained(arch: str, data_dir: Union[str, Path, None] = None, seed: int = 0) -> tuple[nn.Module, dict, Path]:
    """The trained shapes CNN ``arch`` of training seed ``seed`` (without normalisation), its metadata and its file."""
    build_model(arch)  # validates the name
    path = weights_path(arch, data_dir, seed)
    if not path.is_file():
        raise WeightsUnavailableError(f"no trained weights at {path}; run `python tools/train_shapes.py --arch {arch} "
                                      f"--seeds {seed}` (a few CPU minutes) to create them")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    net = build_model(arch)
    net.load_state_dict(checkpoint["state_dict"])
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return net.eval(), meta, path


# --------------------------------------------------------------------------- training

def evaluate(model: nn.Module, batch: ShapesBatch, batch_size: int = 250) -> float:
    """Top-1 accuracy of ``model`` (which includes its normalisation) on ``batch``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(batch), batch_size):
            x = batch.images[start:start + batch_size].to(device)
            correct += (model(x).argmax(1).cpu() == batch.labels[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(batch)


def train(arch: str, *, n_train: int = 3000, epochs: int = 24, batch_size: int = 32, lr: float = 3e-3,
          seed: int = 0, device: Union[str, torch.device] = "cpu", verbose: bool = True) -> tuple[nn.Module, dict]:
    """Train a shapes CNN on ``n_train`` "mixed" images (seed ``seed``) with AdamW + one-cycle LR.

    Returns ``(model, meta)`` where ``model`` is ``nn.Sequential(Normalize, net)`` and ``meta``
    records the settings and the accuracy on the held-out set (:data:`TEST_SEED`, :data:`TEST_SIZE`).
    Random flips and 90° rotations augment the data (the classes are invariant to them).
    """
    from collections import OrderedDict

    from ..transforms import Normalize

    if seed == TEST_SEED:
        raise ValueError(f"seed {TEST_SEED} is the held-out test seed; train with another")
    torch.manual_seed(seed)
    start = time.time()
    data = shapes(n_train, seed, variant="mixed")
    test = shapes(TEST_SIZE, TEST_SEED, variant=TEST_VARIANT)
    net = build_model(arch)
    model = nn.Sequential(OrderedDict(normalize=Normalize(MEAN, STD), net=net)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(n_train / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.15,
                                                   div_factor=10)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=generator)
        total = 0.0
        for i in range(0, n_train, batch_size):
            index = order[i:i + batch_size]
            x, y = data.images[index], data.labels[index]
            if torch.rand(1, generator=generator).item() < 0.5:
                x = x.flip(3)
            x = torch.rot90(x, int(torch.randint(4, (1,), generator=generator)), dims=(2, 3))
            loss = F.cross_entropy(model(x.to(device)), y.to(device))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(index)
        if verbose:
            print(f"{arch} epoch {epoch + 1}/{epochs}: train loss {total / n_train:.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    model.eval()
    meta = {
        "arch": arch, "classes": list(CLASSES), "image_size": IMAGE_SIZE, "mean": list(MEAN), "std": list(STD),
        "train": {"seed": seed, "n": n_train, "variant": "mixed", "epochs": epochs, "batch_size": batch_size, "lr": lr},
        "test": {"seed": TEST_SEED, "n": TEST_SIZE, "variant": TEST_VARIANT},
        "test_accuracy": evaluate(model, test),
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(time.time() - start, 1),
    }
    return model, meta


def save_trained(model: nn.Module, meta: dict, data_dir: Union[str, Path, None] = None) -> Path:
    """Write the network's weights (not the Normalize module) and ``meta`` to :func:`weights_path` of its arch and seed."""
    net = model.net if hasattr(model, "net") else model
    path = weights_path(meta["arch"], data_dir, meta["train"]["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({**meta, "state_dict": state}, path)
    return path
