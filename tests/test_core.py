"""The shared base: targets, input checks, hooks, output shape and normalisation."""

import pytest
import torch

import camkit
from camkit.methods import Targets, normalize_maps
from nets import GapLinearNet, ReluHeadNet, hook_count, images


def test_output_shape_dtype_device_and_range():
    model, x = ReluHeadNet().eval(), images(3, 16)
    maps = camkit.GradCAM(model, "features")(x)
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32 and maps.device == x.device
    assert maps.min() >= 0 and maps.max() <= 1 and not maps.requires_grad and maps.grad_fn is None
    raw = camkit.GradCAM(model, "features")(x, normalize=False, upsample=False)
    assert raw.shape == (3, 16, 16)  # stride-1 layer: raw resolution equals input here


def test_top1_default_equals_explicit_argmax_and_callable_target():
    model, x = ReluHeadNet().eval(), images(3)
    top1 = model(x).argmax(1)
    cam = camkit.GradCAM(model, "features")
    torch.testing.assert_close(cam(x), cam(x, top1))
    torch.testing.assert_close(cam(x, lambda logits: logits[:, 2]), cam(x, 2))
    two = cam(x, lambda logits: logits[:, [0, 2]])
    assert two.shape == (3, 2, 16, 16)
    torch.testing.assert_close(two[:, 1], cam(x, [2, 2, 2]))


def test_normalize_maps_guards_constant_maps():
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 3.0), torch.arange(16.0).reshape(4, 4)])
    out = normalize_maps(maps)
    assert torch.isfinite(out).all()
    assert (out[0] == 0).all() and (out[1] == 0).all()
    assert out[2].min() == 0 and out[2].max() == 1


def test_params_untouched_and_no_graph_below_layer():
    model, x = ReluHeadNet().eval(), images(2)
    flags = [p.requires_grad for p in model.parameters()]
    below = []
    handle = model.features[0].register_forward_hook(lambda m, i, o: below.append(o.requires_grad))
    try:
        camkit.GradCAM(model, "features")(x)
    finally:
        handle.remove()
    assert below == [False], "the forward below the target layer should build no graph"
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled(), "the caller's grad mode must be restored"


@pytest.mark.parametrize("name", sorted(camkit.METHODS))
def test_no_hooks_left_after_call_or_error(name):
    model = GapLinearNet().eval()
    method = camkit.METHODS[name](model, "features")
    method(images(2), 1)
    assert hook_count(model) == 0
    with pytest.raises(ValueError, match="out of range"):
        method(images(2), 99)
    assert hook_count(model) == 0


def test_hooks_released_when_model_raises():
    class Exploding(GapLinearNet):
        def forward(self, x):
            self.features(x)
            raise RuntimeError("boom inside the model")

    model = Exploding().eval()
    for name in camkit.METHODS:
        with pytest.raises(RuntimeError, match="boom"):
            camkit.METHODS[name](model, "features")(images(1), 0)
        assert hook_count(model) == 0, name
        assert torch.is_grad_enabled()


def test_many_objects_leak_no_hooks():
    model = GapLinearNet().eval()
    for _ in range(200):
        camkit.GradCAM(model, "features")
    assert hook_count(model) == 0
    with camkit.GradCAMPlusPlus(model, "features") as cam:
        cam(images(1))
    assert hook_count(model) == 0


@pytest.mark.parametrize("bad, error, match", [
    (torch.rand(3, 16, 16), ValueError, "unsqueeze"),
    (torch.rand(0, 3, 16, 16), ValueError, "empty batch"),
    (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), TypeError, "floating-point"),
    (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN"),
    ([[1.0]], TypeError, "torch.Tensor"),
])
def test_bad_images_raise_clear_errors(bad, error, match):
    with pytest.raises(error, match=match):
        camkit.GradCAM(GapLinearNet().eval(), "features")(bad)


@pytest.mark.parametrize("target, error, match", [
    (7, ValueError, r"out of range .*allowed 0\.\.4"),
    (-1, ValueError, ">= 0"),
    ([0, 1], ValueError, "N = 3"),
    (1.5, TypeError, "integer"),
    (torch.zeros(3, 0, dtype=torch.long), ValueError, "K = 0"),
    (True, TypeError, "booleans"),
])
def test_bad_targets_raise_clear_errors(target, error, match):
    with pytest.raises(error, match=match):
        camkit.GradCAM(GapLinearNet().eval(), "features")(images(3), target)


def test_unknown_layer_lists_close_names():
    with pytest.raises(ValueError, match=r"closest names: \['features'"):
        camkit.GradCAM(GapLinearNet(), "featurs")


def test_layer_the_output_does_not_depend_on():
    class SideBranch(GapLinearNet):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Conv2d(3, 2, 1)

        def forward(self, x):
            self.unused(x)
            return super().forward(x)

    with pytest.raises(ValueError, match="does not depend on layer 'unused'"):
        camkit.GradCAM(SideBranch().eval(), "unused")(images(1))


def test_non_spatial_layer_and_device_mismatch():
    with pytest.raises(ValueError, match="not a spatial"):
        camkit.GradCAM(GapLinearNet().eval(), "fc")(images(1))
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="model is on"):
            camkit.GradCAM(GapLinearNet().eval(), "features")(images(1).cuda())


def test_training_mode_warns_and_is_not_switched():
    model = GapLinearNet().train()
    with pytest.warns(UserWarning, match="training mode"):
        camkit.GradCAM(model, "features")(images(1))
    assert model.training


def test_targets_parse_shapes():
    assert Targets.parse(None, 2, torch.device("cpu")).squeeze
    parsed = Targets.parse(torch.tensor([[1, 2], [3, 4]]), 2, torch.device("cpu"))
    assert parsed.k == 2 and not parsed.squeeze
    assert Targets.parse([1, 2], 2, torch.device("cpu")).index.tolist() == [[1], [2]]


def test_cuda_parity(cuda_device):
    model, x = ReluHeadNet().eval(), images(2)
    cpu = {n: camkit.METHODS[n](model, "features")(x, 1) for n in ["gradcam", "gradcam++", "layercam"]}
    model_gpu = model.to(cuda_device)
    for name, expected in cpu.items():
        got = camkit.METHODS[name](model_gpu, "features")(x.to(cuda_device), 1)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), expected, rtol=1e-3, atol=1e-4)


def test_create_method_gives_each_method_the_settings_it_takes():
    import camkit

    model = GapLinearNet().eval()
    for name in camkit.METHODS:
        method = camkit.create_method(name, model, "features", steps=3, samples=2, seed=0)
        assert type(method) is camkit.METHODS[name] and method.label
    assert camkit.create_method("integrated-gradcam", model, "features", steps=3, samples=2).steps == 3
    assert camkit.create_method("expected-gradcam", model, "features", steps=3, samples=2).samples == 2
    with pytest.raises(ValueError, match="stepz"):
        camkit.create_method("gradcam", model, "features", stepz=3)
    with pytest.raises(ValueError, match="unknown method"):
        camkit.create_method("gradcamm", model, "features")


def test_every_method_has_a_fixed_colour_and_a_label():
    import camkit
    from camkit.report import viz

    colours = [viz.method_colour(name) for name in camkit.METHODS]
    assert len(set(colours)) == len(colours)
    assert viz.method_colour("Grad-CAM++") == viz.method_colour("gradcam++") and viz.method_colour("other") is None
    assert viz.method_label("integrated-gradcam") == "Integrated Grad-CAM" and viz.method_label("x") == "x"
