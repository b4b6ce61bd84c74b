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
