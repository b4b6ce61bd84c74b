"""camkit.shapes: the seeded shapes world and its tiny GAP + linear CNNs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import camkit
from camkit import shapes

README = Path(__file__).resolve().parents[1] / "data" / "README.md"


def test_generator_is_deterministic_and_prefix_stable():
    a = shapes.shapes(12, seed=5, variant="mixed")
    b = shapes.shapes(12, seed=5, variant="mixed")
    assert torch.equal(a.images, b.images) and a.boxes == b.boxes and torch.equal(a.masks, b.masks)
    assert torch.equal(shapes.shapes(4, seed=5, variant="mixed").images, a.images[:4])
    assert not torch.equal(shapes.shapes(12, seed=6, variant="mixed").images, a.images)


@pytest.mark.parametrize("variant", ["single", "multi", "distractor"])
def test_masks_boxes_and_counts_agree(variant):
    batch = shapes.shapes(20, seed=1, variant=variant)
    assert batch.images.shape == (20, 3, 32, 32) and 0 <= batch.images.min() and batch.images.max() <= 1
    for i in range(len(batch)):
        mask = batch.masks[i]
        ys, xs = torch.nonzero(mask, as_tuple=True)
        union = (min(b[0] for b in batch.boxes[i]), min(b[1] for b in batch.boxes[i]),
                 max(b[2] for b in batch.boxes[i]), max(b[3] for b in batch.boxes[i]))
        assert union == (xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1)
        assert not (mask & batch.distractor_masks[i]).any()
        assert all(0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32 for x0, y0, x1, y1 in batch.boxes[i])
    counts = batch.counts
    if variant == "multi":
        assert ((counts >= 2) & (counts <= 4)).all()
    else:
        assert (counts == 1).all()
    if variant == "distractor":
        assert all(1 <= len(d) <= 2 and batch.labels[i].item() not in d
                   for i, d in enumerate(batch.distractor_labels))
        assert batch.distractor_masks.flatten(1).any(1).all()
    else:
        assert not batch.distractor_masks.any()


def test_requested_labels_are_drawn():
    labels = [0, 1, 2, 3, 4, 4]
    assert shapes.shapes(6, seed=2, labels=labels).labels.tolist() == labels


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        shapes.shapes(2, variant="crowded")
    with pytest.raises(ValueError, match="n must be"):
        shapes.shapes(0)
    with pytest.raises(ValueError, match="unknown shapes architecture"):
        shapes.build_model("transformer")


@pytest.mark.parametrize("arch", ["resnet", "vgg"])
def test_models_are_tiny_and_gap_linear(arch):
    net = shapes.build_model(arch)
    assert sum(p.numel() for p in net.parameters()) <= 200_000
    net.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = camkit.CAM(net, layer=net.target_layer)(x, upsample=False, normalize=False)  # checks W·GAP(A) + b
    assert maps.shape == (2, 16, 16)


def stated_accuracy(arch: str) -> float:
    match = re.search(rf"\|\s*`?shapes_{arch}`?\s*\|[^\n]*?\|\s*([01]\.\d+)\s*\|", README.read_text())
    assert match, f"data/README.md has no held-out accuracy row for shapes_{arch}"
    return float(match.group(1))


@pytest.fixture(scope="module")
def held_out() -> shapes.ShapesBatch:
    return shapes.shapes(shapes.TEST_SIZE, shapes.TEST_SEED, variant=shapes.TEST_VARIANT)


COMMITTED = [(arch, seed) for arch in shapes.ARCHITECTURES for seed in shapes.SEEDS
             if shapes.weights_path(arch, seed=seed).exists()]


def test_every_architecture_has_at_least_two_trained_seeds():
    for arch in shapes.ARCHITECTURES:
        assert sum(a == arch for a, _ in COMMITTED) >= 2, f"shapes_{arch}: seeds {[s for a, s in COMMITTED if a == arch]}"


@pytest.mark.parametrize("arch, seed", COMMITTED)
def test_trained_models_reach_the_readme_accuracy_on_held_out_images(arch, seed, held_out):
    net, meta, path = shapes.load_trained(arch, seed=seed)
    assert path.stat().st_size < 2.5 * 2**20
    assert meta["train"]["seed"] == seed != shapes.TEST_SEED
    model = torch.nn.Sequential(camkit.Normalize(shapes.MEAN, shapes.STD), net).eval()
    accuracy = shapes.evaluate(model, held_out)
    assert accuracy >= stated_accuracy(path.stem.removeprefix("shapes_")) - 0.005
    assert accuracy > 0.8  # far above the 0.2 of guessing
