"""What the experiment chapters share: the protocol's setups, the images each one explains, and maps
computed once per setup and reused by every chapter (a cache under ``build/maps``).

A *setup* is "model @ layer" from ``notebooks/protocol.yaml``: the EfficientNet-Lite models at their
GAP-linear last layer (``bn2``, the control) and at ``blocks.6`` (a non-linear head, where the path
and sampling methods can act), and the shapes CNNs, each trained with several seeds (the seed is the
independent unit there). The images of a real-photo setup are corpus objects the model classifies
correctly, one per independent unit (:func:`photos_for`), or cut-out composites with exact masks
(:func:`composites_for`).

>>> setup = setups(["efficientnet_lite0 @ blocks.6"])[0]
>>> zm = setup.load()
>>> images = photos_for(zm, n=200, seed=0)                     # 200 independent objects
>>> cache = MapCache()
>>> raw = cache.raw(setup, zm, "integrated-gradcam", {"steps": 16}, images)   # (N, h, w), cached
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from ..data.shapes import TEST_SEED

__all__ = ["Setup", "setups", "Images", "correct_photos", "photos_for", "composites_for", "shapes_for", "references_for",
           "MapCache", "to_unit_maps", "method_key", "median_split", "seed_runs", "images_for", "references",
           "first_per_object", "concat", "joined", "key_settings", "as_map", "SHAPES_REFERENCE_SEED"]


# --------------------------------------------------------------------------- setups

@dataclass(frozen=True)
class Setup:
    """One "model @ layer" of the protocol. ``head`` is "gap_linear" or "nonlinear"; ``unit`` the
    independent unit ("source_object" or "seed"); ``seed`` the training seed of a shapes model."""

    name: str
    model: str
    layer: str
    head: str
    unit: str
    seed: int = 0

    @property
    def mechanism(self) -> bool:
        """True where the head above the layer is non-linear (the methods' mechanism can act)."""
        return self.head == "nonlinear"

    @property
    def is_shapes(self) -> bool:
        return self.model.startswith("shapes_")

    @property
    def kind(self) -> str:
        """The kind of images the setup explains: "shapes" or "photos"."""
        return "shapes" if self.is_shapes else "photos"

    def defines(self, method: str) -> bool:
        """Whether ``method`` is defined at this setup: CAM needs a GAP-linear head, every other method runs."""
        return not (method == "cam" and self.mechanism)

    def with_seed(self, seed: int) -> "Setup":
        """The same setup with a shapes model of training seed ``seed``."""
        return replace(self, seed=seed)

    def load(self, device: Optional[torch.device] = None):
        """The zoo model of this setup (its ``seed`` for shapes models), on ``device``."""
        from ..data.zoo import load_model

        return load_model(self.model, device, seed=self.seed)


def setups(names: Optional[Sequence[str]] = None, group: str = "experiment",
           protocol: Optional[Mapping[str, Any]] = None) -> list[Setup]:
    """The protocol's setups of ``group`` (in file order), or those named in ``names``."""
    from .claims import load_protocol

    table = (protocol or load_protocol())["setups"]
    chosen = list(names) if names is not None else [k for k, v in table.items() if v.get("group") == group]
    unknown = [name for name in chosen if name not in table]
    if unknown:
        raise ValueError(f"unknown setups {unknown}; the protocol has {list(table)}")
    return [Setup(name, table[name]["model"], table[name]["layer"], table[name]["head"], table[name]["unit"])
            for name in chosen]


# --------------------------------------------------------------------------- images

@dataclass
class Images:
    """A batch of images to explain, with what the statistics need.

    ``x`` (N, 3, S, S) in [0, 1] on the CPU; ``target`` (N,) the class explained (the model's top-1,
    which is in the object's accepted set); ``unit`` the independent unit of each image; ``name`` a
    stable id per image (the cache key); optional exact ``masks`` (N, S, S) bool, per-image ``boxes``
    and ``variant`` ("single" / "multi") for composites and the shapes world.
    """

    x: Tensor
    target: Tensor
    unit: list[str]
    name: list[str]
    masks: Optional[Tensor] = None
    boxes: Optional[list] = None
    variant: Optional[list[str]] = None
    rule: str = ""
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index: Sequence[int]) -> "Images":
        """The images at ``index`` (in that order)."""
        index = list(index)
        pick = lambda values: None if values is None else [values[i] for i in index]  # noqa: E731
        return Images(self.x[index], self.target[index], pick(self.unit), pick(self.name),
                      None if self.masks is None else self.masks[index], pick(self.boxes), pick(self.variant),
                      self.rule, dict(self.extra))

    def key(self) -> str:
        """A content hash of the images and their targets (part of the map cache's key)."""
        digest = hashlib.sha1(json.dumps(self.name).encode())
        digest.update(self.x.contiguous().numpy().tobytes())
        digest.update(self.target.numpy().tobytes())
        return digest.hexdigest()[:16]


def _check_count(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n


def correct_photos(zoo_model, root: Optional[Path] = None):
    """The corpus photos ``zoo_model`` classifies correctly (:func:`camkit.data.select_correct`) and the
    rule, remembered in ``<map cache>/selection/`` (keyed by the model's weights and the corpus table)
    so that chapters do not decode and classify the whole corpus again."""
    from ..data import corpus

    photos = corpus.corpus_photos(with_classes=True)
    key = hashlib.sha1(json.dumps([zoo_model.name, zoo_model.weights, [p.name for p in photos],
                                   [list(p.accept) for p in photos]]).encode()).hexdigest()[:16]
    path = Path(root or MapCache.default_root()) / "selection" / f"{zoo_model.name}-{key}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        by_name = {p.name: p for p in photos}
        return [by_name[name] for name in saved["kept"]], saved["rule"]
    kept, rule = corpus.select_correct(photos, zoo_model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kept": [p.name for p in kept], "rule": rule}))
    return kept, rule


def photos_for(zoo_model, n: int, seed: int = 0, *, exclude: Sequence[str] = ()) -> Images:
    """``n`` corpus photos that ``zoo_model`` classifies correctly, from ``n`` distinct units.

    The rule (papers select correctly classified images): photos with an accepted ImageNet class
    whose top-1 class is accepted (:func:`camkit.data.select_correct`); one photo per unit, units
    drawn with ``seed`` (:func:`camkit.data.sample_units`). Fewer correct units than ``n``: all of
    them. ``exclude`` drops photos by name (e.g. references held out for Expected Grad-CAM).
    """
    from ..data import corpus

    _check_count(n)
    kept, rule = correct_photos(zoo_model)
    kept = [item for item in kept if item.name not in set(exclude)]
    chosen = corpus.sample_units(kept, min(n, len({item.unit for item in kept})), seed=seed)
    chosen.sort(key=lambda item: item.name)
    x = zoo_model.prepare([item.image for item in chosen]).cpu()
    with torch.no_grad():
        target = zoo_model.model(x.to(zoo_model.device)).argmax(1).cpu()
    return Images(x, target, [item.unit for item in chosen], [item.name for item in chosen],
                  rule=f"{rule}; {len(chosen)} units drawn with seed {seed}")


def composites_for(zoo_model, n_generated: int, seed: int = 0, *, variant: Optional[str] = None) -> Images:
    """The cut-out composites (:func:`camkit.data.cutout_benchmark`) of ``n_generated`` draws that
    ``zoo_model`` classifies correctly, with exact masks and boxes; ``variant`` keeps "single" or
    "multi" ones only. The unit is the pasted object (many composites can share one)."""
    from ..data import corpus

    _check_count(n_generated, "n_generated")
    bench = corpus.cutout_benchmark(n_generated, seed, zoo_model)
    rows = [i for i, item in enumerate(bench.items) if variant is None or item.variant == variant]
    items = [bench.items[i] for i in rows]
    return Images(bench.images[rows], torch.tensor([item.target for item in items], dtype=torch.long),
                  [item.unit for item in items], [f"composite/{seed}/{item.index}" for item in items],
                  masks=bench.masks[rows], boxes=[list(item.boxes) for item in items],
                  variant=[item.variant for item in items], rule=bench.rule)


def shapes_for(zoo_model, seed: int, n: int, variant: str = "mixed", image_seed: Optional[int] = None) -> Images:
    """``n`` held-out shapes images the shapes CNN ``zoo_model`` (training seed ``seed``) classifies
    correctly, drawn from ``image_seed`` (default: the held-out test seed). Every image's unit is
    the model's seed: images are nested in seeds."""
    from ..data import shapes as world

    _check_count(n)
    image_seed = world.TEST_SEED if image_seed is None else image_seed
    batch = world.shapes(2 * n, image_seed, variant=variant)
    with torch.no_grad():
        top1 = zoo_model.model(batch.images.to(zoo_model.device)).argmax(1).cpu()
    rows = (top1 == batch.labels).nonzero().flatten()[:n].tolist()
    return Images(batch.images[rows], batch.labels[rows], [f"seed{seed}"] * len(rows),
                  [f"shapes/{variant}/{image_seed}/{i}" for i in rows], masks=batch.masks[rows],
                  boxes=[batch.boxes[i] for i in rows],
                  variant=[("single" if len(batch.boxes[i]) == 1 else "multi") for i in rows],
                  rule=f"top-1 correct on shapes({2 * n}, {image_seed}, variant={variant!r}); first {len(rows)}")


def references_for(zoo_model, exclude: Images, n: int, seed: int = 0) -> Tensor:
    """``n`` corpus photos (R, 3, S, S) that are not among ``exclude``'s units: the data distribution
    Expected Grad-CAM draws its references from, held out from the explained images."""
    from ..data import corpus

    _check_count(n)
    held_out = [item for item in corpus.corpus_photos() if item.unit not in set(exclude.unit)]
    chosen = corpus.sample_units(held_out, min(n, len({item.unit for item in held_out})), seed=seed)
    return zoo_model.prepare([item.image for item in chosen]).cpu()


#: Shapes images neither trained on (seeds 0-4) nor explained (the test seed): Expected Grad-CAM's
#: references on the shapes setups.
SHAPES_REFERENCE_SEED = TEST_SEED + 1


def references(setup: Setup, zoo_model, exclude: Images, n: int, seed: int = 0) -> Tensor:
    """Expected Grad-CAM's reference images (R, 3, S, S) for ``setup``: held-out data of its own kind
    (shapes images of :data:`SHAPES_REFERENCE_SEED`, or corpus photos of other objects than ``exclude``)."""
    if setup.is_shapes:
        from ..data import shapes

        return shapes.shapes(_check_count(n), SHAPES_REFERENCE_SEED, variant="mixed").images
    return references_for(zoo_model, exclude=exclude, n=n, seed=seed)


# --------------------------------------------------------------------------- runs: one per trained seed

_MODELS: dict = {}
_COMPOSITES: dict = {}


def load_shared(setup: Setup, device: Optional[torch.device] = None):
    """The zoo model of ``setup``, loaded once per (model, training seed, device) and shared by its layers."""
    key = (setup.model, setup.seed, str(device))
    if key not in _MODELS:
        _MODELS[key] = setup.load(device)
    return _MODELS[key]


def seed_runs(setup: Setup, shape_seeds: Sequence[int], device: Optional[torch.device] = None) -> list[tuple]:
    """``[(setup of one training seed, its zoo model)]``: one per seed of ``shape_seeds`` for a shapes
    setup (the seed is the unit there), one for a real-photo setup. Models are shared (:func:`load_shared`)."""
    seeds = list(shape_seeds) if setup.is_shapes else [0]
    if not seeds:
        raise ValueError(f"{setup.name}: shape_seeds is empty; give at least one training seed")
    return [(s, load_shared(s, device)) for s in (setup.with_seed(seed) for seed in seeds)]


def first_per_object(images: Images, n: int) -> Images:
    """The first ``n`` images (in draw order) of each unit; all of them when ``n`` is 0."""
    if not n:
        return images
    seen: dict = {}
    rows = []
    for i, unit in enumerate(images.unit):
        seen[unit] = seen.get(unit, 0) + 1
        if seen[unit] <= n:
            rows.append(i)
    kept = images.subset(rows)
    kept.rule += f"; the first {n} per object ({len(rows)} of {len(images)})"
    return kept


def images_for(setup: Setup, zoo_model, *, n_shapes: int, n_photos: int = 0, n_generated: int = 0,
               per_object: int = 0, seed: int = 0) -> Images:
    """The images a run explains: ``n_shapes`` held-out shapes images of the run's training seed for a
    shapes setup; else ``n_photos`` corpus objects (:func:`photos_for`) when given, or the correctly
    classified of ``n_generated`` cut-out composites (:func:`composites_for`, computed once per model
    and shared by its layers), the first ``per_object`` of each object (0: all)."""
    if setup.is_shapes:
        return shapes_for(zoo_model, setup.seed, n_shapes, "mixed")
    if n_photos:
        return photos_for(zoo_model, n_photos, seed)
    if not n_generated:
        raise ValueError(f"{setup.name}: give n_photos or n_generated (both are 0)")
    key = (setup.model, n_generated, seed, str(next(zoo_model.model.parameters()).device))
    if key not in _COMPOSITES:
        _COMPOSITES[key] = composites_for(zoo_model, n_generated, seed)
    return first_per_object(_COMPOSITES[key], per_object)


def concat(parts: Sequence):
    """Join per-run tensors (``torch.cat``), lists, or dicts of them (key by key)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    if isinstance(parts[0], dict):
        return {k: concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(list(parts)) if torch.is_tensor(parts[0]) else sum(parts, [])


def joined(runs: Sequence[tuple], fn):
    """``fn(setup of one seed, images)`` for every run ``(setup, model, images, ...)``, concatenated."""
    return concat([fn(run[0], run[2]) for run in runs])


# --------------------------------------------------------------------------- methods and subsets

#: Settings that a "name/variant" key adds (the protocol names a reading of a method that way).
VARIANT_SETTINGS = {"authors-code": {"variant": "authors-code"}}


def method_key(key: str, **settings) -> tuple[str, dict[str, Any]]:
    """``"integrated-gradcam/authors-code"`` → ``("integrated-gradcam", {"variant": "authors-code", **settings})``."""
    from ..methods import METHODS

    name, _, variant = key.partition("/")
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} in {key!r}; methods are {list(METHODS)}")
    if variant and variant not in VARIANT_SETTINGS:
        raise ValueError(f"unknown reading {variant!r} in {key!r}; readings are {list(VARIANT_SETTINGS)}")
    return name, {**settings, **VARIANT_SETTINGS.get(variant, {})}


def key_settings(key: str, ig_steps: int) -> tuple[str, dict[str, Any]]:
    """(method, settings) of a chapter's method key: Integrated Grad-CAM (either reading) with
    ``ig_steps`` path points, every other method with its defaults."""
    return method_key(key, steps=ig_steps) if key.startswith("integrated-gradcam") else method_key(key)


def as_map(values: Tensor) -> Tensor:
    """(N, H, W) maps in [0, 1]: the guided methods' input-space (N, 3, H, W) gradients become the
    largest ``|g|`` over the colour channels, min-max scaled; (N, H, W) maps are returned as they are."""
    from ..methods import normalize_maps

    return normalize_maps(values.abs().amax(1, keepdim=True))[:, 0] if values.ndim == 4 else values


def median_split(values: Sequence[float], units: Sequence[str]) -> list[bool]:
    """True for the images above the median of ``values``: the median of all images when each unit
    holds one image (photos), else each unit's own median (images nested in a shapes model's seed),
    so both halves keep every unit."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    units = list(units)
    if len(set(units)) == len(units):
        return (values > np.median(values)).tolist()
    high = np.zeros(len(values), dtype=bool)
    for unit in set(units):
        rows = np.array([u == unit for u in units])
        high[rows] = values[rows] > np.median(values[rows])
    return high.tolist()


# --------------------------------------------------------------------------- maps

def to_unit_maps(raw: Tensor, size: Sequence[int]) -> Tensor:
    """Raw (N, h, w) layer-resolution maps → (N, H, W) maps upsampled (bilinear) and min-max normalised."""
    from ..methods import normalize_maps, upsample_maps

    return normalize_maps(upsample_maps(raw[:, None].float(), size))[:, 0]


def _code_version() -> str:
    """A hash of camkit's method code: the cache is invalidated when a method changes."""
    methods = Path(__file__).resolve().parents[1] / "methods"
    digest = hashlib.sha1()
    for path in sorted(methods.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _settings_key(settings: Mapping[str, Any]) -> str:
    def encode(value):
        if torch.is_tensor(value):
            return "tensor:" + hashlib.sha1(value.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
        return value
    return json.dumps({k: encode(v) for k, v in sorted(settings.items())}, default=str)


class MapCache:
    """Raw maps computed once per (setup, model weights, method, settings, images) and stored under
    ``root`` (default ``$CAMKIT_MAP_CACHE`` or ``build/maps`` of the report), so the chapters that
    score the same maps do not recompute them. The key includes a hash of camkit's method code.

    ``raw`` returns (N, h, w) float32 maps at the layer's resolution, after the method's ReLU
    (``normalize=False, upsample=False``), computed ``chunk`` images at a time with a progress bar.
    """

    def __init__(self, root: Optional[Path] = None, device: Optional[torch.device] = None, chunk: int = 16,
                 progress: bool = True):
        self.root = Path(root or self.default_root())
        self.device = device
        self.chunk = _check_count(chunk, "chunk")
        self.progress = progress
        self.hits = self.misses = 0

    @staticmethod
    def default_root() -> Path:
        """``$CAMKIT_MAP_CACHE``, else ``build/maps`` of the report's checkout."""
        from . import repo_root

        return Path(os.environ.get("CAMKIT_MAP_CACHE") or repo_root() / "build" / "maps")

    def path(self, setup: Setup, zoo_model, method: str, settings: Mapping[str, Any], images: Images) -> Path:
        """Where the maps of this combination are stored."""
        key = json.dumps([setup.name, setup.seed, zoo_model.weights, setup.layer, method, _settings_key(settings),
                          images.key(), _code_version()])
        digest = hashlib.sha1(key.encode()).hexdigest()[:20]
        return self.root / setup.name.replace(" ", "").replace("@", "_at_") / f"{method}-{digest}.pt"

    def raw(self, setup: Setup, zoo_model, method: str, settings: Mapping[str, Any], images: Images) -> Tensor:
        """The (N, h, w) raw maps of ``method`` with ``settings`` on ``images`` for their targets."""
        from ..methods import create_method

        path = self.path(setup, zoo_model, method, settings, images)
        if path.is_file():
            self.hits += 1
            return torch.load(path, weights_only=True)
        self.misses += 1
        device = self.device or zoo_model.device
        cam = create_method(method, zoo_model.model, setup.layer, **settings)
        chunks = range(0, len(images), self.chunk)
        if self.progress and len(chunks) > 1:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"{method} @ {setup.name}", leave=False)
        out = []
        for start in chunks:
            x = images.x[start:start + self.chunk].to(device)
            target = images.target[start:start + self.chunk].to(device)
            out.append(cam(x, target, normalize=False, upsample=False).float().cpu())
        maps = torch.cat(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        torch.save(maps, partial)
        partial.replace(path)  # atomic: an interrupted run leaves no half-written cache entry
        return maps

    def maps(self, setup: Setup, zoo_model, method: str, settings: Mapping[str, Any], images: Images) -> Tensor:
        """:meth:`raw` upsampled to the images and min-max normalised: (N, H, W) in [0, 1]."""
        return to_unit_maps(self.raw(setup, zoo_model, method, settings, images), images.x.shape[-2:])
