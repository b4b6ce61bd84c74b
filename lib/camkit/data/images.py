"""Offline photos with hand-drawn boxes, and a deterministic localization benchmark built from them.

Nothing is downloaded at run time. The photos come from installed packages (scikit-image,
matplotlib, scikit-learn, imgaug) and from Debian's ``darknet`` package, which ``make data``
(``tools/fetch_data.py``) unpacks into the git-ignored ``data/cache/``. Their boxes and ImageNet
labels live in ``data/boxes.json`` (see ``data/README.md``).

>>> from camkit.data import photos, localization_benchmark
>>> cat = photos(["chelsea"])[0]; cat.objects[0].imagenet, cat.objects[0].box
('tabby', (0, 0, 410, 300))
>>> bench = localization_benchmark(n=600, seed=0, model="efficientnet_lite0")  # 215 kept
>>> bench.n_kept, bench.images.shape, bench.items[0].boxes
"""
from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from .paths import DataUnavailableError, asset, find
from .zoo import ZooModel, imagenet_classes, load_model

Box = tuple[int, int, int, int]

BOXES_FILE = asset("boxes.json")
#: Where ``make data`` puts the darknet photos, relative to a data cache (see :mod:`camkit.data.paths`).
DARKNET_SUBDIR = "darknet/usr/share/darknet/data"
DARKNET_PHOTOS = ("dog", "eagle", "giraffe", "horses", "kite", "person")
PACKAGE_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "grace_hopper", "china",
                  "flower", "quokka")
PHOTO_NAMES = PACKAGE_PHOTOS + DARKNET_PHOTOS

#: ImageNet index ranges the box file may name as groups in "accept" lists.
CLASS_GROUPS = {"@dog": range(151, 269), "@cat": range(281, 286)}

LICENCES = {
    "chelsea": "CC0 (Stefan van der Walt), via scikit-image",
    "coffee": "CC0 (Rachel Michetti), via scikit-image",
    "astronaut": "public domain (NASA), via scikit-image",
    "rocket": "public domain (SpaceX), via scikit-image",
    "motorcycle": "Middlebury 2014 stereo benchmark, via scikit-image (BSD-3-Clause package)",
    "grace_hopper": "public domain (US Navy photo), via matplotlib",
    "china": "CC BY 2.0 (danielbuechele, Flickr), via scikit-learn",
    "flower": "CC BY 2.0 (vultilion, Flickr), via scikit-learn",
    "quokka": "imgaug sample image (imgaug is MIT-licensed)",
    **{name: "GPL-3.0+ or MIT or WTFPL (Debian package darknet, J. Redmon)" for name in DARKNET_PHOTOS},
}


@dataclass(frozen=True)
class PhotoObject:
    """One boxed object of a photo.

    ``index`` is the ImageNet index of ``imagenet`` (None when the object has no ImageNet class);
    ``accept`` the ImageNet indices counted as a correct prediction for it.
    """

    name: str
    imagenet: Optional[str]
    index: Optional[int]
    box: Box
    accept: tuple[int, ...]
    occluded: bool = False


@dataclass(frozen=True)
class Photo:
    """A real photo: ``image`` is an (H, W, 3) uint8 array; boxes are (x0, y0, x1, y1) pixels."""

    name: str
    image: np.ndarray
    objects: tuple[PhotoObject, ...]
    source: str
    licence: str

    @property
    def labels(self) -> list[str]:
        """The ImageNet classes of its objects, in box-file order, without repeats."""
        return list(dict.fromkeys(o.imagenet for o in self.objects if o.imagenet is not None))

    @property
    def boxes(self) -> list[Box]:
        return [o.box for o in self.objects]


# --------------------------------------------------------------------------- photos

def darknet_dir() -> Optional[Path]:
    """The folder holding the darknet photos in the first data cache that has them (None: not fetched)."""
    folder = find(DARKNET_SUBDIR)
    if folder is None or not all((folder / f"{name}.jpg").is_file() for name in DARKNET_PHOTOS):
        return None
    return folder


def darknet_available() -> bool:
    """True when ``make data`` has put the darknet photos into a data cache."""
    return darknet_dir() is not None


@lru_cache(maxsize=1)
def _box_file() -> dict:
    if not BOXES_FILE.is_file():
        raise DataUnavailableError(f"box file {BOXES_FILE} is missing; it is part of the repository")
    return json.loads(BOXES_FILE.read_text())


def _accepted(names: Sequence[str], classes: list[str]) -> tuple[int, ...]:
    out: list[int] = []
    for name in names:
        if name in CLASS_GROUPS:
            out.extend(CLASS_GROUPS[name])
        elif name in classes:
            out.append(classes.index(name))
        else:
            raise ValueError(f"{BOXES_FILE}: {name!r} is neither an ImageNet class nor one of {list(CLASS_GROUPS)}")
    return tuple(dict.fromkeys(out))


def _load_pixels(name: str) -> np.ndarray:
    from PIL import Image

    if name in DARKNET_PHOTOS:
        folder = darknet_dir()
        if folder is None:
            raise DataUnavailableError(f"photo {name!r} needs the darknet photos: run `make data` "
                                       "(tools/fetch_data.py) to unpack them into a data cache")
        return np.asarray(Image.open(folder / f"{name}.jpg").convert("RGB"))
    if name in ("chelsea", "coffee", "astronaut", "rocket"):
        import skimage.data

        return np.ascontiguousarray(getattr(skimage.data, name)())
    if name == "motorcycle":
        import skimage.data

        return np.ascontiguousarray(skimage.data.stereo_motorcycle()[0])
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return np.ascontiguousarray(load_sample_image(f"{name}.jpg"))
    if name == "quokka":
        spec = importlib.util.find_spec("imgaug")  # locate only: imgaug does not import under NumPy 2
        if spec is None or spec.origin is None:
            raise DataUnavailableError("photo 'quokka' needs the imgaug package files: "
                                       "pip install --no-deps imgaug==0.4.0")
        return np.asarray(Image.open(Path(spec.origin).parent / "quokka.jpg").convert("RGB"))
    raise ValueError(f"unknown photo {name!r}; photos are {PHOTO_NAMES}")


@lru_cache(maxsize=None)
def _photo(name: str) -> Photo:
    entry = _box_file()["photos"][name]
    image = _load_pixels(name)
    image.setflags(write=False)
    width, height = entry["size"]
    if image.shape[:2] != (height, width):
        raise ValueError(f"photo {name!r} is {image.shape[1]}x{image.shape[0]} but {BOXES_FILE} was drawn "
                         f"on {width}x{height}; the package's image changed")
    classes = imagenet_classes()
    objects = []
    for obj in entry["objects"]:
        label = obj["imagenet"]
        accept = _accepted(obj.get("accept", [label] if label else []), classes)
        objects.append(PhotoObject(name=obj["name"], imagenet=label,
                                   index=None if label is None else classes.index(label),
                                   box=tuple(int(v) for v in obj["box"]), accept=accept,
                                   occluded=bool(obj.get("occluded", False))))
    return Photo(name, image, tuple(objects), entry["source"], LICENCES[name])


def photos(names: Optional[Sequence[str]] = None) -> list[Photo]:
    """The offline photos with their boxed, ImageNet-labelled objects.

    With ``names=None`` every available photo is returned; the darknet ones are left out with a
    warning when ``make data`` has not fetched them. Naming an unavailable photo raises
    :class:`DataUnavailableError` saying how to get it.
    """
    if names is None:
        names = PHOTO_NAMES
        if not darknet_available():
            warnings.warn(f"darknet photos {DARKNET_PHOTOS} are not in a data cache; run `make data` "
                          "to fetch them. Returning the package photos only.", stacklevel=2)
            names = PACKAGE_PHOTOS
    if isinstance(names, str):
        raise TypeError("names must be a list of photo names, not a string; e.g. photos(['coffee'])")
    unknown = [n for n in names if n not in PHOTO_NAMES]
    if unknown:
        raise ValueError(f"unknown photos {unknown}; photos are {PHOTO_NAMES}")
    return [_photo(name) for name in names]


# --------------------------------------------------------------------------- benchmark

#: Smallest side (pixels) of a box used as a paste source: smaller crops are too blurry when scaled up.
MIN_SOURCE_SIDE = 60
#: Smallest side of a background window cut from a photo (outside every box).
MIN_BACKGROUND_SIDE = 96


@dataclass(frozen=True)
class SourceObject:
    """An object a composite was cut from: ``id`` is ``"<photo>/<object index>"``."""

    id: str
    photo: str
    name: str
    imagenet: str
    index: int
    accept: tuple[int, ...]
    box: Box


@dataclass(frozen=True)
class Composite:
    """One benchmark image: ``boxes`` are the exact pasted rectangles (x0, y0, x1, y1), x1/y1 exclusive.

    ``target`` is the class to explain: the model's top-1 when it is in the source's accepted set
    (the kept composites), else the source's own class. ``background`` names the photo window used.
    """

    source: SourceObject
    variant: str
    boxes: tuple[Box, ...]
    label: int
    target: int
    background: tuple[str, Box]
    kept: bool
    probability: float


@dataclass
class Benchmark:
    """A localization benchmark. Statistics must resample by ``source`` (many composites share one)."""

    images: Tensor
    items: list[Composite]
    n_generated: int
    model: Optional[str]
    seed: int
    size: int

    @property
    def n_kept(self) -> int:
        return len(self.items)

    @property
    def sources(self) -> list[str]:
        """Source-object id of every image (the unit to resample in a bootstrap)."""
        return [item.source.id for item in self.items]

    def masks(self) -> Tensor:
        """(N, S, S) bool: the union of each image's boxes."""
        out = torch.zeros(len(self.items), self.size, self.size, dtype=torch.bool)
        for i, item in enumerate(self.items):
            for x0, y0, x1, y1 in item.boxes:
                out[i, y0:y1, x0:x1] = True
        return out


def source_objects(photo_list: Optional[Sequence[Photo]] = None) -> list[SourceObject]:
    """Objects usable as paste sources: an ImageNet class, not occluded, both box sides >= MIN_SOURCE_SIDE."""
    out = []
    for photo in photo_list if photo_list is not None else photos():
        for k, obj in enumerate(photo.objects):
            x0, y0, x1, y1 = obj.box
            if obj.index is None or obj.occluded or min(x1 - x0, y1 - y0) < MIN_SOURCE_SIDE:
                continue
            out.append(SourceObject(f"{photo.name}/{k}", photo.name, obj.name, obj.imagenet, obj.index,
                                    obj.accept, obj.box))
    return out


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def background_windows(photo_list: Sequence[Photo], step: int = 16) -> list[tuple[str, Box]]:
    """The largest square window per grid position that avoids every box, per photo (side >= MIN_BACKGROUND_SIDE).

    For each photo, candidate squares on a ``step`` grid are tried from large to small; the kept
    windows do not overlap each other, so each background is a distinct patch of real scenery.
    """
    out = []
    for photo in photo_list:
        h, w = photo.image.shape[:2]
        chosen: list[Box] = []
        for side in range(min(h, w), MIN_BACKGROUND_SIDE - 1, -step):
            for y in range(0, h - side + 1, step):
                for x in range(0, w - side + 1, step):
                    box = (x, y, x + side, y + side)
                    if not any(_overlaps(box, o.box) for o in photo.objects) and \
                            not any(_overlaps(box, c) for c in chosen):
                        chosen.append(box)
        out.extend((photo.name, box) for box in chosen)
    return out


@lru_cache(maxsize=None)
def _windows(name: str) -> list[tuple[str, Box]]:
    return background_windows([_photo(name)])


def _resize(array: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(array).resize((width, height), Image.BICUBIC))


def place_rectangles(rng: np.random.Generator, aspect: float, copies: int, size: int,
                     low: float, high: float) -> list[Box]:
    """``copies`` non-overlapping rectangles of aspect ratio ``aspect`` (w / h) in a ``size`` square,
    longest side U(low, high) · size (at least 8 px); all the ranges shrink by 0.85 until they fit."""
    while True:
        boxes: list[Box] = []
        for _ in range(copies):
            longest = rng.uniform(low, high) * size
            w = max(int(round(longest if aspect >= 1 else longest * aspect)), 8)
            h = max(int(round(longest / aspect if aspect >= 1 else longest)), 8)
            for _ in range(100):
                px, py = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
                box = (px, py, px + w, py + h)
                if not any(_overlaps(box, b) for b in boxes):
                    boxes.append(box)
                    break
            else:
                break
        if len(boxes) == copies:
            return boxes
        low, high = 0.85 * low, 0.85 * high


def _compose(rng: np.random.Generator, source: SourceObject, variant: str, size: int,
             backgrounds: list[tuple[str, Box]], pixels: dict[str, np.ndarray]):
    """Paste 1 (single) or 2–4 (multi) copies of ``source``'s crop onto a background window."""
    bg_name, (bx0, by0, bx1, by1) = backgrounds[int(rng.integers(len(backgrounds)))]
    canvas = _resize(np.ascontiguousarray(pixels[bg_name][by0:by1, bx0:bx1]), size, size).copy()
    x0, y0, x1, y1 = source.box
    crop = pixels[source.photo][y0:y1, x0:x1]
    aspect = (x1 - x0) / (y1 - y0)
    copies = 1 if variant == "single" else int(rng.integers(2, 5))
    low, high = (0.45, 0.8) if variant == "single" else (0.28, 0.5)
    boxes = place_rectangles(rng, aspect, copies, size, low, high)
    for bx0_, by0_, bx1_, by1_ in boxes:
        canvas[by0_:by1_, bx0_:bx1_] = _resize(np.ascontiguousarray(crop), bx1_ - bx0_, by1_ - by0_)
    return canvas, tuple(boxes), (bg_name, (bx0, by0, bx1, by1))


def localization_benchmark(n: int = 600, seed: int = 0, model: Union[str, ZooModel, None] = "efficientnet_lite0",
                           *, multi_fraction: float = 0.5, size: Optional[int] = None,
                           keep: bool = True, batch_size: int = 32) -> Benchmark:
    """Generate ``n`` composites of real object crops on real backgrounds, with exact boxes.

    Composite ``i`` is drawn by ``numpy.random.default_rng([seed, i])``: a source object (uniform
    over :func:`source_objects`), a background window from a photo that does not contain that class,
    the variant (multi-instance with probability ``multi_fraction``: 2–4 copies), scales and positions.
    The box of each copy is its pasted rectangle, so it is exact by construction.

    Args:
        n: composites to generate (before filtering); with Lite0 about a third are kept
            (seed 0: 600 -> 215).
        seed: non-negative integer seed.
        model: zoo name or :class:`~camkit.zoo.ZooModel` that filters the composites (kept when its
            top-1 class is in the source's accepted set), or None for no model and no filtering.
        multi_fraction: probability of the multi-instance variant.
        size: canvas side (default: the model's input size, else 224).
        keep: with a model, return only the kept composites (False: all, with ``kept`` set).
        batch_size: images per forward pass of the filter.

    Requires the darknet photos (``make data``): they hold most of the sources.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= multi_fraction <= 1.0:
        raise ValueError(f"multi_fraction must lie in [0, 1], got {multi_fraction}")
    if not darknet_available():
        raise DataUnavailableError("the localization benchmark needs the darknet photos; run `make data` "
                                   "(tools/fetch_data.py) to unpack them into a data cache")
    zoo_model = load_model(model) if isinstance(model, str) else model
    size = size or (zoo_model.input_size if zoo_model is not None else 224)
    all_photos = photos()
    pixels = {p.name: p.image for p in all_photos}
    sources = source_objects(all_photos)
    windows = {p.name: _windows(p.name) for p in all_photos}

    images, drafts = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        source = sources[int(rng.integers(len(sources)))]
        # backgrounds come from photos with no object of the source's accepted classes
        allowed = [w for p in all_photos if not any(o.index in source.accept for o in p.objects)
                   for w in windows[p.name]]
        variant = "multi" if rng.uniform() < multi_fraction else "single"
        canvas, boxes, background = _compose(rng, source, variant, size, allowed, pixels)
        images.append(torch.from_numpy(canvas).permute(2, 0, 1).float() / 255.0)
        drafts.append((source, variant, boxes, background))
    images_t = torch.stack(images)

    if zoo_model is None:
        items = [Composite(s, v, b, s.index, s.index, bg, True, float("nan")) for s, v, b, bg in drafts]
        return Benchmark(images_t, items, n, None, seed, size)

    probabilities = _predict(zoo_model.model, images_t, batch_size)
    items, kept_rows = [], []
    for i, (source, variant, boxes, background) in enumerate(drafts):
        top1 = int(probabilities[i].argmax())
        kept = top1 in source.accept
        target = top1 if kept else source.index
        items.append(Composite(source, variant, boxes, source.index, target, background, kept,
                               float(probabilities[i, target])))
        if kept or not keep:
            kept_rows.append(i)
    items = [items[i] for i in kept_rows]
    return Benchmark(images_t[kept_rows], items, n, zoo_model.name, seed, size)


def _predict(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            out.append(model(images[start:start + batch_size].to(device)).softmax(1).cpu())
    return torch.cat(out)
