"""The shapes world: seeded images of textured shapes with exact masks (the CNNs: :mod:`.shapes_models`).

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

>>> batch = shapes(8, seed=0, variant="multi")
>>> batch.images.shape, batch.masks.shape, batch.boxes[0]
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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
