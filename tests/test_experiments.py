"""The experiment chapters' shared engine: the protocol's setups, the images, the map cache."""
from __future__ import annotations

import pytest
import torch

import camkit
from camkit.report import experiments


def test_setups_come_from_the_protocol_with_their_head_and_unit():
    everything = experiments.setups()
    names = [s.name for s in everything]
    assert "efficientnet_lite0 @ blocks.6" in names and "shapes_vgg_fc @ features" in names
    lite = experiments.setups(["efficientnet_lite0 @ bn2", "efficientnet_lite0 @ blocks.6"])
    assert [s.mechanism for s in lite] == [False, True] and {s.unit for s in lite} == {"source_object"}
    with pytest.raises(ValueError, match="unknown setups"):
        experiments.setups(["resnet @ layer9"])


def test_shapes_images_are_correct_and_nested_in_the_model_seed():
    setup = experiments.setups(["shapes_resnet @ layer3"])[0].with_seed(0)
    zm = setup.load()
    images = experiments.shapes_for(zm, 0, n=12)
    assert len(images) == 12 and set(images.unit) == {"seed0"}
    with torch.no_grad():
        assert torch.equal(zm.model(images.x).argmax(1), images.target)
    part = images.subset([3, 1])
    assert part.name == [images.name[3], images.name[1]] and torch.equal(part.x[0], images.x[3])


def test_map_cache_computes_once_and_returns_what_the_method_returns(tmp_path):
    setup = experiments.setups(["shapes_resnet @ layer2"])[0]
    zm = setup.load()
    images = experiments.shapes_for(zm, 0, n=6)
    cache = experiments.MapCache(tmp_path, progress=False, chunk=4)
    first = cache.raw(setup, zm, "integrated-gradcam", {"steps": 4}, images)
    again = cache.raw(setup, zm, "integrated-gradcam", {"steps": 4}, images)
    assert (cache.misses, cache.hits) == (1, 1) and torch.equal(first, again)
    direct = camkit.IntegratedGradCAM(zm.model, setup.layer, steps=4)(images.x, images.target, normalize=False,
                                                                        upsample=False)
    assert torch.allclose(first, direct, atol=1e-6)
    other = cache.raw(setup, zm, "integrated-gradcam", {"steps": 5}, images)
    assert cache.misses == 2 and not torch.equal(first, other)
    unit = cache.maps(setup, zm, "integrated-gradcam", {"steps": 4}, images)
    assert unit.shape == (6, 32, 32) and unit.min() >= 0 and unit.max() <= 1


def test_setup_kind_and_where_cam_is_defined():
    control, mechanism, shapes_fc = experiments.setups(
        ["efficientnet_lite0 @ bn2", "efficientnet_lite0 @ blocks.6", "shapes_vgg_fc @ features"])
    assert (control.kind, shapes_fc.kind) == ("photos", "shapes")
    assert control.defines("cam") and not mechanism.defines("cam") and not shapes_fc.defines("cam")
    assert mechanism.defines("gradcam") and shapes_fc.defines("integrated-gradcam")


def test_seed_runs_share_models_and_images_follow_the_run():
    setup = experiments.setups(["shapes_resnet @ layer3"])[0]
    runs = experiments.seed_runs(setup, [0, 1])
    assert [s.seed for s, _ in runs] == [0, 1] and runs[0][1] is not runs[1][1]
    assert experiments.seed_runs(setup.with_seed(0), [0])[0][1] is runs[0][1]      # loaded once
    with pytest.raises(ValueError, match="shape_seeds is empty"):
        experiments.seed_runs(setup, [])
    images = [experiments.images_for(s, zm, n_shapes=3) for s, zm in runs]
    assert [set(i.unit) for i in images] == [{"seed0"}, {"seed1"}]
    refs = experiments.references(runs[0][0], runs[0][1], images[0], n=4)
    assert refs.shape == (4, 3, 32, 32)
    joined = experiments.joined([(s, zm, i) for (s, zm), i in zip(runs, images)], lambda s, i: [s.seed] * len(i))
    assert joined == [0, 0, 0, 1, 1, 1]


def test_first_per_object_concat_and_keys():
    setup = experiments.setups(["shapes_resnet @ layer3"])[0]
    images = experiments.shapes_for(setup.load(), 0, n=5)
    images.unit = ["a", "a", "b", "a", "b"]
    kept = experiments.first_per_object(images, 1)
    assert kept.name == [images.name[0], images.name[2]] and "first 1 per object (2 of 5)" in kept.rule
    assert experiments.first_per_object(images, 0) is images
    both = experiments.concat([{"x": torch.ones(2), "n": ["a"]}, {"x": torch.zeros(1), "n": ["b"]}])
    assert torch.equal(both["x"], torch.tensor([1.0, 1.0, 0.0])) and both["n"] == ["a", "b"]
    with pytest.raises(ValueError, match="nothing"):
        experiments.concat([])
    assert experiments.key_settings("integrated-gradcam/authors-code", 8) == (
        "integrated-gradcam", {"steps": 8, "variant": "authors-code"})
    assert experiments.key_settings("gradcam++", 8) == ("gradcam++", {})
    assert camkit.viz.method_label("integrated-gradcam/authors-code") == "Integrated Grad-CAM (authors code)"


def test_as_map_turns_input_gradients_into_unit_maps():
    g = torch.zeros(1, 3, 2, 2)
    g[0, 1, 0, 1], g[0, 2, 1, 0] = -4.0, 2.0
    assert torch.equal(experiments.as_map(g), torch.tensor([[[0.0, 1.0], [0.5, 0.0]]]))
    maps = torch.rand(2, 4, 4)
    assert experiments.as_map(maps) is maps
