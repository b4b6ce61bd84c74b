"""camkit.zoo: offline pretrained models with [0, 1] inputs and a named target layer."""
from __future__ import annotations

import copy
import socket
import time

import numpy as np
import pytest
import torch

import camkit
from camkit import zoo

skimage_data = pytest.importorskip("skimage.data")
CATS = {"tabby", "tiger cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def lite0() -> zoo.ZooModel:
    return zoo.load_model("efficientnet_lite0")


def top1(zm: zoo.ZooModel, image: np.ndarray) -> str:
    with torch.no_grad():
        return zm.classes[int(zm.model(zm.prepare([image])).argmax())]


def test_list_models_names_the_required_models():
    assert {"efficientnet_lite0", "efficientnet_lite2", "resnet50", "vgg16",
            "shapes_resnet", "shapes_vgg"} <= set(zoo.list_models())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="efficientnet_lite0.*resnet50"):
        zoo.load_model("efficientnet_b7")


def test_lite0_is_wrapped_in_pixel_space(lite0):
    assert isinstance(lite0.model.normalize, camkit.Normalize)
    assert torch.allclose(lite0.model.normalize.mean.flatten(), torch.full((3,), 0.5))
    assert not lite0.model.training
    assert lite0.model.camkit_target_layer == lite0.target_layer == "net.bn2"
    assert camkit.suggest_layer(lite0.model) == "net.bn2"
    assert len(lite0.classes) == 1000 and lite0.classes[967] == "espresso"


def test_transform_resizes_and_crops_to_unit_range(lite0):
    image = skimage_data.coffee()
    x = lite0.transform(image)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert lite0.transform.resize_to == 256  # 224 / 0.875, bicubic
    # a uint8 image and the same image as floats give the same tensor up to interpolation rounding
    assert (lite0.transform(image.astype(np.float32) / 255) - x).abs().mean() < 0.01


def test_lite0_classifies_coffee_as_espresso(lite0):
    assert top1(lite0, skimage_data.coffee()) == "espresso"


def test_lite0_classifies_chelsea_as_a_cat(lite0):
    assert top1(lite0, skimage_data.chelsea()) in CATS


def test_lite0_logits_equal_the_package_model(lite0):
    package = pytest.importorskip("efficientnet_lite_pytorch")
    reference = package.EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(zoo.efficientnet_lite_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    reference.load_state_dict(state, strict=True)
    reference.eval()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = lite0.model(x), reference((x - 0.5) / 0.5)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_lite0_on_cpu_is_channels_last_and_explains_like_a_contiguous_copy(lite0):
    conv = lite0.model.net.conv_stem.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    contiguous = copy.deepcopy(lite0.model).to(memory_format=torch.contiguous_format)
    assert contiguous.net.conv_stem.weight.is_contiguous()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    for layer in ("net.bn2", "net.blocks.6"):
        fast, plain = camkit.GradCAM(lite0.model, layer)(x), camkit.GradCAM(contiguous, layer)(x)
        assert fast.shape == plain.shape == (2, 224, 224)
        assert torch.allclose(fast, plain, atol=1e-4), (layer, (fast - plain).abs().max())


def test_cam_applies_at_the_lite0_default_layer(lite0):
    x = lite0.prepare([skimage_data.coffee()])
    maps = camkit.CAM(lite0.model)(x, target=967)  # raises ValueError unless logits = W·GAP(A) + b
    assert maps.shape == (1, 224, 224)


def test_lite2_takes_260_pixels_and_classifies_coffee():
    zm = zoo.load_model("efficientnet_lite2")
    assert zm.input_size == 260 and zm.transform.resize_to == 297
    assert top1(zm, skimage_data.coffee()) == "espresso"


def test_map_state_dict_by_position_checks_shapes():
    a = {"w": torch.zeros(2, 3), "b": torch.zeros(2)}
    with pytest.raises(ValueError, match="shape mismatch"):
        zoo.map_state_dict_by_position(a, {"x": torch.zeros(3, 2), "y": torch.zeros(2)})
    assert set(zoo.map_state_dict_by_position(a, {"x": torch.zeros(2, 3), "y": torch.zeros(2)})) == {"x", "y"}


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_torchvision_weights_offline_fail_fast_with_instructions(name, tmp_path, monkeypatch):
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))  # an empty cache

    def no_network(*args, **kwargs):
        raise AssertionError("load_model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    try:
        start = time.perf_counter()
        with pytest.raises(zoo.WeightsUnavailableError) as info:
            zoo.load_model(name)
        elapsed = time.perf_counter() - start
    finally:
        torch.hub.set_dir(hub_dir)
    assert elapsed < 1.0
    message = str(info.value)
    assert "IMAGENET1K_V1" in message and str(tmp_path) in message and "pretrained=False" in message


def test_random_resnet50_has_pixel_space_input_and_layer4():
    zm = zoo.load_model("resnet50", pretrained=False)
    assert zm.weights == "random" and zm.target_layer == "net.layer4"
    with torch.no_grad():
        assert zm.model(torch.rand(1, 3, 224, 224)).shape == (1, 1000)


def test_pretrained_must_be_a_bool():
    with pytest.raises(TypeError, match="pretrained"):
        zoo.load_model("resnet50", pretrained="no")


@pytest.mark.parametrize("name", ["shapes_resnet", "shapes_vgg"])
def test_shapes_models_are_gap_linear_at_their_layer(name):
    zm = zoo.load_model(name)
    assert zm.input_size == 32 and zm.classes[0] == "circle"
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert camkit.CAM(zm.model)(x).shape == (3, 32, 32)
