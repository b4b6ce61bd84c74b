"""The shapes world: seeded images of textured shapes with exact masks, and tiny GAP + linear CNNs.

Real photos have approximate boxes; here the ground truth is exact. Every image is drawn from its
own generator ``numpy.random.default_rng([seed, index])``, so image ``i`` of a seed does not depend
on ``n`` (and ``shapes(10, seed)`` is a prefix of ``shapes(100, seed)``). Shape colours and
textures are random and independent of the class: only the outline tells the classes apart.

Variants:

* ``"single"``: one shape; ``labels`` is its class.
* ``"multi"``: 2–4 non-overlapping copies of one class.
* ``"distractor"``: one shape of the labelled class plus 1–2 shapes of other classes
  (``distractor_masks``); an exact test of whether a map picks the explained class.
* ``"mixed"``: single or multi with equal probability (the training distribution).

The CNNs end in global average pooling + one linear layer, so CAM applies at their target layer
(``layer3`` for the ResNet-like net, ``features`` for the VGG-like one).

>>> batch = shapes(8, seed=0, variant="multi")
>>> batch.images.shape, batch.masks.shape, batch.boxes[0]
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
IMAGE_SIZE = 32
#: Normalisation the shapes CNNs were trained with (it is their first module in the zoo).
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
VARIANTS = ("single", "multi", "distractor", "mixed")

#: The held-out set the accuracy in data/README.md is measured on (never used for training).
TEST_SEED = 10_000
TEST_SIZE = 1000
TEST_VARIANT = "mixed"

Box = tuple[int, int, int, int]


@dataclass
class ShapesBatch:
    """A generated batch; all pixel quantities are exact (rendered, not drawn by hand).

    Attributes:
        images: (N, 3, S, S) float32 in [0, 1].
        labels: (N,) long, the class to explain (index into :data:`CLASSES`).
        masks: (N, S, S) bool, pixels of every instance of ``labels[i]``.
        distractor_masks: (N, S, S) bool, pixels of shapes of other classes (empty unless
            ``variant="distractor"``).
        boxes: per image, the ``(x0, y0, x1, y1)`` boxes (x1, y1 exclusive) of the labelled instances.
        distractor_boxes / distractor_labels: per image, the boxes and classes of the distractors.
        variant, seed: how the batch was made.
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    distractor_masks: Tensor
    boxes: list[list[Box]]
    distractor_boxes: list[list[Box]] = field(default_factory=list)
    distractor_labels: list[list[int]] = field(default_factory=list)
    variant: str = "single"
    seed: int = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def counts(self) -> Tensor:
        """(N,) number of instances of the labelled class per image."""
        return torch.tensor([len(b) for b in self.boxes], dtype=torch.long)


# --------------------------------------------------------------------------- rendering

def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit-size shape in its own rotated coordinates (u, v), radius ~ 1."""
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.85
    if kind == "triangle":  # equilateral, circumradius 1.15 (inradius 0.575)
        inside = np.ones_like(u, dtype=bool)
        for angle in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6):
            inside &= u * math.cos(angle) + v * math.sin(angle) <= 0.575
        return inside
    if kind == "cross":
        return ((np.abs(u) <= 0.32) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 1.0))
    if kind == "star":  # five points: radius goes linearly from 0.45 (notch) to 1.1 (tip) with angle
        rho, phi = np.hypot(u, v), np.arctan2(v, u)
        t = (phi * 5 / (2 * math.pi)) % 1.0
        return rho <= 0.45 + 0.65 * np.abs(1 - 2 * t)
    raise ValueError(f"unknown shape {kind!r}; shapes are {CLASSES}")


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """A random two-colour texture (stripes, checks, dots or smooth noise), (S, S, 3)."""
    kind = rng.integers(4)
    if kind == 0:    # stripes at a random angle
        angle, period = rng.uniform(0, math.pi), rng.uniform(3, 8)
        p = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    elif kind == 1:  # checks
        period = rng.uniform(3, 8)
        p = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float64)
    elif kind == 2:  # dots
        period = rng.uniform(4, 8)
        p = (np.hypot((xx % period) - period / 2, (yy % period) - period / 2) < period / 3.5).astype(np.float64)
    else:            # smooth noise: a coarse grid upsampled
        size = xx.shape[0]
        coarse = torch.from_numpy(rng.uniform(0, 1, (1, 1, 6, 6)))
        p = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy().clip(0, 1)
    return colours[0] * p[..., None] + colours[1] * (1 - p[..., None])


def _colours(rng: np.random.Generator, avoid: Optional[float] = None) -> np.ndarray:
    """Two RGB colours; with ``avoid`` their mean brightness differs from ``avoid`` by >= 0.3."""
    while True:
        pair = rng.uniform(0, 1, (2, 3))
        if avoid is None or abs(pair.mean() - avoid) >= 0.3:
            return pair


def _place(rng: np.random.Generator, size: int, radii: Sequence[float],
           max_tries: int = 200) -> Optional[list[tuple[float, float]]]:
    """Centres for shapes of the given radii, inside the image and not overlapping (None on failure)."""
    centres: list[tuple[float, float]] = []
    for r in radii:
        extent = 1.15 * r + 1
        for _ in range(max_tries):
            c = (rng.uniform(extent, size - extent), rng.uniform(extent, size - extent))
            if all(math.hypot(c[0] - o[0], c[1] - o[1]) > 1.15 * (r + ro) + 2 for o, ro in zip(centres, radii)):
                centres.append(c)
                break
        else:
            return None
    return centres


def _box(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def render(rng: np.random.Generator, variant: str, size: int = IMAGE_SIZE, label: Optional[int] = None):
    """Draw one image: returns (image HxWx3, label, target instance masks, distractor masks, distractor labels)."""
    n_classes = len(CLASSES)
    if variant == "mixed":
        variant = "single" if rng.uniform() < 0.5 else "multi"
    label = int(rng.integers(n_classes)) if label is None else int(label)
    if variant == "single":
        kinds = [label]
        radii = [size * rng.uniform(0.16, 0.3)]
    elif variant == "multi":
        kinds = [label] * int(rng.integers(2, 5))
        radii = [size * rng.uniform(0.1, 0.16) for _ in kinds]
    elif variant == "distractor":
        others = [c for c in range(n_classes) if c != label]
        kinds = [label] + [int(c) for c in rng.choice(others, size=int(rng.integers(1, 3)), replace=False)]
        radii = [size * rng.uniform(0.11, 0.18) for _ in kinds]
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    centres = None
    while centres is None:  # shrink until the shapes fit without overlap
        centres = _place(rng, size, radii)
        radii = [0.9 * r for r in radii] if centres is None else radii

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    bg_colours = _colours(rng)
    image = 0.3 * _texture(rng, yy, xx, bg_colours) + 0.7 * bg_colours.mean(0)  # low-contrast background
    target_masks, distractor_masks = [], []
    for k, kind in enumerate(kinds):
        (cx, cy), r, angle = centres[k], radii[k], rng.uniform(0, 2 * math.pi)
        dx, dy = (xx - cx) / r, (yy - cy) / r
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = -dx * math.sin(angle) + dy * math.cos(angle)
        mask = _shape_mask(CLASSES[kind], u, v)
        fg_colours = _colours(rng, avoid=float(bg_colours.mean()))
        fill = 0.4 * _texture(rng, yy, xx, fg_colours) + 0.6 * fg_colours.mean(0)  # textured, mostly one tone
        image[mask] = fill[mask]
        (target_masks if k == 0 or variant == "multi" else distractor_masks).append(mask)
    image = np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1)
    return image.astype(np.float32), label, target_masks, distractor_masks, kinds[len(target_masks):]


def shapes(n: int, seed: int = 0, *, variant: str = "single", size: int = IMAGE_SIZE,
           labels: Optional[Sequence[int]] = None) -> ShapesBatch:
    """Generate ``n`` shapes images; image ``i`` depends only on ``(seed, i, variant, size, label)``.

    Args:
        n: number of images (>= 1).
        seed: non-negative integer seed.
        variant: ``"single"``, ``"multi"``, ``"distractor"`` or ``"mixed"`` (see the module doc).
        size: image side in pixels (>= 32; the trained models use :data:`IMAGE_SIZE`).
        labels: optional class index per image (default: uniform random).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    if labels is not None and (len(labels) != n or any(not 0 <= int(c) < len(CLASSES) for c in labels)):
        raise ValueError(f"labels must hold n = {n} class indices in 0..{len(CLASSES) - 1}")
    images, out_labels, masks, dmasks, boxes, dboxes, dlabels = [], [], [], [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        image, label, tm, dm, dl = render(rng, variant, size, None if labels is None else labels[i])
        images.append(image)
        out_labels.append(label)
        masks.append(np.any(tm, axis=0))
        dmasks.append(np.any(dm, axis=0) if dm else np.zeros((size, size), bool))
        boxes.append([_box(m) for m in tm])
        dboxes.append([_box(m) for m in dm])
        dlabels.append(list(dl))
    return ShapesBatch(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor(out_labels, dtype=torch.long),
        masks=torch.from_numpy(np.stack(masks)), distractor_masks=torch.from_numpy(np.stack(dmasks)),
        boxes=boxes, distractor_boxes=dboxes, distractor_labels=dlabels, variant=variant, seed=seed)


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


ARCHITECTURES = {"resnet": ShapesResNet, "vgg": ShapesVGG}


def build_model(arch: str) -> nn.Module:
    """A randomly initialised shapes CNN: ``arch`` is ``"resnet"`` or ``"vgg"`` (no normalisation inside)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown shapes architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]()


def weights_path(arch: str, data_dir: Union[str, Path, None] = None) -> Path:
    """``data/shapes_<arch>.pt``."""
    from .zoo import DATA_DIR

    return Path(data_dir or DATA_DIR) / f"shapes_{arch}.pt"


def load_trained(arch: str, data_dir: Union[str, Path, None] = None) -> tuple[nn.Module, dict, Path]:
    """The trained shapes CNN ``arch`` (without normalisation), its metadata and its file."""
    build_model(arch)  # validates the name
    path = weights_path(arch, data_dir)
    if not path.is_file():
        from .zoo import WeightsUnavailableError

        raise WeightsUnavailableError(f"no trained weights at {path}; run `python tools/train_shapes.py` "
                                      "(a few CPU minutes) to create them")
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

    from .transforms import Normalize

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
    """Write the network's weights (not the Normalize module) and ``meta`` to ``data/shapes_<arch>.pt``."""
    net = model.net if hasattr(model, "net") else model
    path = weights_path(meta["arch"], data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save({**meta, "state_dict": state}, path)
    return path
