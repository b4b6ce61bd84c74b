"""Models whose output is not one tensor, segmentation and detection targets, several layers, layer
inputs, volumes, and the rough edges a peer's user meets first (each test fails without its fix)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camkit
from camkit.targets import DetectionTarget, SegmentationTarget
from nets import GapLinearNet, hook_count, images


class TupleNet(nn.Module):
    """GapLinearNet whose forward returns (logits, features) or a dict."""

    def __init__(self, as_dict: bool = False):
        super().__init__()
        self.net, self.as_dict = GapLinearNet(), as_dict

    def forward(self, x):
        logits = self.net(x)
        return {"logits": logits, "aux": logits.detach() * 0} if self.as_dict else (logits, logits.detach() * 0)


def test_tuple_and_dict_outputs_need_and_take_a_selector():
    x = images(2)
    plain = camkit.GradCAM(GapLinearNet().eval(), "features")(x, 1)
    for model, selector in [(TupleNet().eval(), 0), (TupleNet(as_dict=True).eval(), "logits"),
                            (TupleNet().eval(), lambda out: out[0])]:
        with pytest.raises(ValueError, match="output="):
            camkit.GradCAM(model, "net.features")(x, 1)
        assert torch.allclose(camkit.GradCAM(model, "net.features", output=selector)(x, 1), plain, atol=1e-6)
    with pytest.raises(ValueError, match="does not select anything"):
        camkit.GradCAM(TupleNet(as_dict=True).eval(), "net.features", output="out")(x, 1)
    # a callable target receives the selected output; top-1 and the multi-pass methods work too
    cam = camkit.IntegratedGradCAM(TupleNet().eval(), "net.features", steps=4, output=0)
    assert cam(x).shape == (2, 16, 16) and cam(x, lambda logits: logits[:, 2]).shape == (2, 16, 16)


def small_segmenter():
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    return deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3, aux_loss=False).eval()


def test_segmentation_target_is_the_class_logits_summed_over_the_mask():
    model, x = small_segmenter(), torch.rand(2, 3, 64, 64)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:30, 20:50] = True
    target = SegmentationTarget(1, mask)
    with torch.no_grad():
        out = model(x)["out"]
    assert torch.allclose(target(out), (out[:, 1] * mask).sum((-2, -1)))
    cam = camkit.GradCAM(model, "backbone.16", output="out")
    maps = cam(x, [target, SegmentationTarget(2)])  # one target per image
    assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all() and maps.amax((-2, -1)).gt(0).all()
    # the same as differentiating that score by hand at the layer
    manual = camkit.GradCAM(model, "backbone.16", output=lambda o: o["out"])(x[:1], lambda o: target(o))
    assert torch.allclose(maps[:1], manual, atol=1e-5)
    with pytest.raises(ValueError, match="output='out'"):
        camkit.GradCAM(model, "backbone.16")(x, target)
    assert hook_count(model) == 0


def test_detection_target_on_a_torchvision_detector_matches_and_misses():
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=5).eval()
    model.roi_heads.score_thresh = 0.0  # random weights: keep every detection
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        detections = model(x)
    assert detections[0]["boxes"].shape[0] > 0
    label, box = int(detections[0]["labels"][0]), detections[0]["boxes"][0].tolist()
    hit = DetectionTarget([label], [box])
    assert hit(detections).item() == pytest.approx(1 + detections[0]["scores"][0].item(), rel=1e-5)
    cam = camkit.GradCAM(model, "backbone.body.12")
    maps = cam(x, [hit])
    assert maps.shape == (1, 128, 128) and maps.max() > 0
    far = DetectionTarget([label], [[0.0, 0.0, 0.5, 0.5]])  # overlaps nothing: a zero map, not an error
    assert cam(x, [far]).abs().max() == 0
    assert hook_count(model) == 0


def test_several_layers_are_fused_by_mean_or_max_of_normalised_maps():
    model, x = GapLinearNet().eval(), images(3)
    layers = ["features.1", "features.3"]
    single = [camkit.GradCAM(model, name)(x, 2) for name in layers]
    for fuse, combine in [("mean", lambda a, b: (a + b) / 2), ("max", torch.maximum)]:
        fused = camkit.GradCAM(model, layers, fuse=fuse)(x, 2)
        assert torch.allclose(fused, camkit.normalize_maps(combine(*single)), atol=1e-6)
    with pytest.raises(ValueError, match="upsample=True"):
        camkit.GradCAM(model, layers)(x, upsample=False)
    with pytest.raises(ValueError, match="fuse"):
        camkit.GradCAM(model, layers, fuse="sum")


def test_layer_input_is_the_previous_layers_output():
    model, x = GapLinearNet().eval(), images(2)
    # features = Conv, ReLU, Conv, ReLU: the input of features.3 is the output of features.2
    a = camkit.GradCAM(model, "features.3", layer_input=True)(x, 1, normalize=False, upsample=False)
    b = camkit.GradCAM(model, "features.2")(x, 1, normalize=False, upsample=False)
    assert torch.allclose(a, b, atol=1e-6)
    c = camkit.GradCAM(model, "features.3")(x, 1, normalize=False, upsample=False)
    assert not torch.allclose(a, c)


class VolumeNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 5, 3, stride=2, padding=1),
                                      nn.ReLU())
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3, 4)))


def test_volumes_give_trilinear_maps_and_the_grad_cam_formula():
    model, x = VolumeNet().eval(), torch.rand(2, 2, 6, 8, 8)
    maps = camkit.GradCAM(model, "features")(x, 1)
    assert maps.shape == (2, 6, 8, 8) and maps.amin() == 0 and maps.flatten(1).amax(1).allclose(torch.ones(2))
    raw = camkit.GradCAM(model, "features")(x, 1, normalize=False, upsample=False)
    activation = model.features(x).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.fc(activation.mean(dim=(2, 3, 4)))[:, 1].sum(), activation)
    expected = (grad.mean(dim=(2, 3, 4), keepdim=True) * activation).sum(1).relu()
    assert torch.allclose(raw, expected, atol=1e-6)
    for name in ("gradcam++", "xgradcam", "layercam", "hirescam", "integrated-gradcam", "smooth-gradcam++"):
        out = camkit.create_method(name, model, "features", steps=3, samples=2, seed=0)(x, [0, 2])
        assert out.shape == (2, 6, 8, 8) and torch.isfinite(out).all(), name


def test_inference_mode_is_named_in_the_error():
    model, x = GapLinearNet().eval(), images(1)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        camkit.GradCAM(model, "features")(x)
    with torch.no_grad():  # no_grad is fine: camkit turns gradients on at the layer
        assert camkit.GradCAM(model, "features")(x).shape == (1, 16, 16)
    assert hook_count(model) == 0


@pytest.mark.parametrize("target", [torch.tensor(-1), np.int64(-1), [np.int64(-1)]])
def test_negative_class_indices_are_refused_in_every_spelling(target):
    with pytest.raises(ValueError, match="must be >= 0"):
        camkit.GradCAM(GapLinearNet().eval(), "features")(images(1), target)


def test_numpy_and_zero_d_indices_select_that_class():
    model, x = GapLinearNet().eval(), images(2)
    expected = camkit.GradCAM(model, "features")(x, 3)
    for target in (np.int64(3), torch.tensor(3), np.array([3, 3])):
        assert torch.equal(camkit.GradCAM(model, "features")(x, target), expected)


def test_class_names_and_mismatched_dtypes_get_clear_errors():
    model = GapLinearNet().eval()
    with pytest.raises(TypeError, match="class names"):
        camkit.GradCAM(model, "features")(images(1), "tabby")
    with pytest.raises(TypeError, match=r"x is torch.float16 but the model's parameters are torch.float32"):
        camkit.GradCAM(model, "features")(images(1).half())


def test_reshape_without_a_layer_asks_for_the_layer():
    with pytest.raises(ValueError, match="reshape= needs an explicit layer="):
        camkit.GradCAM(GapLinearNet().eval(), reshape=camkit.tokens_to_grid)(images(1))


def test_suggest_layer_leaves_batch_norm_statistics_and_training_mode_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2)).train()
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    assert camkit.suggest_layer(model, torch.rand(1, 3, 16, 16), announce=False) == "2"
    assert all(torch.equal(before[k], v) for k, v in model[1].state_dict().items())
    assert model.training and model[1].training
