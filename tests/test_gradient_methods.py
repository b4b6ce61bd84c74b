"""Grad-CAM, Grad-CAM++, XGrad-CAM, Layer-CAM, HiResCAM against plain references and the maths."""
import pytest
import torch

import camkit
from nets import GapLinearNet, ReluHeadNet, images

GRADIENT_METHODS = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam"]


def naive_activations_and_gradients(model, x, classes):
    """Plain reference: full forward with a hook, backward of the chosen logits, no camkit code."""
    stored = {}
    handle = model.features.register_forward_hook(lambda m, i, o: stored.update(a=o))
    try:
        logits = model(x)
        activation = stored["a"]
        (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), activation)
    finally:
        handle.remove()
    return activation.detach(), grads


def test_gradcam_matches_naive_reference():
    model, x = ReluHeadNet().eval(), images()
    classes = torch.tensor([0, 2, 3])
    a, g = naive_activations_and_gradients(model, x, classes)
    expected = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    got = camkit.GradCAM(model, "features")(x, classes, normalize=False, upsample=False)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_hirescam_and_layercam_match_naive_reference():
    model, x = ReluHeadNet().eval(), images()
    classes = torch.tensor([1, 1, 2])
    a, g = naive_activations_and_gradients(model, x, classes)
    hires = camkit.HiResCAM(model, "features", relu=False)(x, classes, normalize=False, upsample=False)
    torch.testing.assert_close(hires, (g * a).sum(1), rtol=1e-5, atol=1e-7)
    assert (hires < 0).any(), "the signed HiResCAM map should have negative entries here"
    layer = camkit.LayerCAM(model, "features")(x, classes, normalize=False, upsample=False)
    torch.testing.assert_close(layer, torch.relu((torch.relu(g) * a).sum(1)), rtol=1e-5, atol=1e-7)


def test_xgradcam_matches_naive_reference():
    model, x = ReluHeadNet().eval(), images()
    classes = torch.tensor([3, 0, 1])
    a, g = naive_activations_and_gradients(model, x, classes)
    weights = (a / a.sum(dim=(2, 3), keepdim=True) * g).sum(dim=(2, 3), keepdim=True)
    expected = torch.relu((weights * a).sum(1))
    got = camkit.XGradCAM(model, "features")(x, classes, normalize=False, upsample=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("relu", [False, True])
def test_gradcam_equals_cam_on_gap_linear_head(relu):
    model, x = GapLinearNet().eval(), images(4, 20)
    classes = torch.tensor([0, 1, 2, 4])
    cam = camkit.CAM(model, "features", relu=relu)(x, classes, normalize=False, upsample=False)
    grad = camkit.GradCAM(model, "features", relu=relu)(x, classes, normalize=False, upsample=False)
    z = cam.shape[-1] * cam.shape[-2]
    scale = cam.abs().max()
    assert scale > 0
    assert ((grad * z - cam).abs().max() / scale).item() <= 1e-5  # α_k = w_k / Z
    normalized = [camkit.CAM(model, "features", relu=relu)(x, classes),
                  camkit.GradCAM(model, "features", relu=relu)(x, classes)]
    assert (normalized[0] - normalized[1]).abs().max().item() <= 1e-5


def explicit_gradcampp_alpha(model, activation, cls):
    """α of Eq. 18 from explicit 2nd and 3rd derivatives of Y = exp(S) by autograd (one image)."""
    a = activation.detach().clone().requires_grad_(True)
    y = torch.exp(model.head(a)[0, cls])
    (dy,) = torch.autograd.grad(y, a, create_graph=True)
    flat_a, flat_dy = a.reshape(-1), dy.reshape(-1)
    second, third = torch.zeros_like(flat_a), torch.zeros_like(flat_a)
    for e in range(flat_a.numel()):
        (d2,) = torch.autograd.grad(flat_dy[e], a, create_graph=True)
        second[e] = d2.reshape(-1)[e]
        (d3,) = torch.autograd.grad(d2.reshape(-1)[e], a, retain_graph=True, allow_unused=True)
        third[e] = 0.0 if d3 is None else d3.reshape(-1)[e]
    second, third = second.reshape(a.shape), third.reshape(a.shape)
    total = a.detach().sum(dim=(2, 3), keepdim=True)
    denominator = 2 * second + total * third
    alpha = torch.where(denominator != 0, second / denominator, torch.zeros_like(second))
    return alpha.detach(), dy.detach()


def test_gradcampp_closed_form_equals_higher_order_autograd():
    model = ReluHeadNet(channels=3, seed=11).eval()
    x = images(1, 6, seed=5)
    cls = 1
    activation = model.features(x).detach()
    alpha_explicit, dy = explicit_gradcampp_alpha(model, activation, cls)
    a, g = naive_activations_and_gradients(model, x, torch.tensor([cls]))
    # the test network must make g vary over positions and take negative values
    assert (g < 0).any() and (g > 0).any()
    assert (g[0].flatten(1).std(dim=1) > 1e-4).all()
    alpha_closed = camkit.gradcampp_alpha(a, g[:, None])[:, 0]
    assert (alpha_explicit != 0).sum() > 5
    torch.testing.assert_close(alpha_closed, alpha_explicit, rtol=1e-4, atol=1e-6)
    # the map built from the explicit α equals camkit's Grad-CAM++ (exp(S) factor cancels)
    weights = (alpha_explicit * dy.relu()).sum(dim=(2, 3), keepdim=True)
    expected = camkit.normalize_maps(torch.relu((weights * a).sum(1)))
    got = camkit.GradCAMPlusPlus(model, "features")(x, cls, upsample=False)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_gradcampp_alpha_is_zero_where_gradient_is_zero():
    a = torch.rand(1, 2, 3, 3)
    g = torch.randn(1, 1, 2, 3, 3)
    g[..., 0, 0] = 0
    alpha = camkit.gradcampp_alpha(a, g)
    assert torch.isfinite(alpha).all() and (alpha[..., 0, 0] == 0).all()


@pytest.mark.parametrize("name", GRADIENT_METHODS + ["cam"])
def test_batched_equals_per_image(name):
    model, x = GapLinearNet().eval(), images(4, 20)
    classes = torch.tensor([0, 3, 1, 2])
    method = camkit.METHODS[name](model, "features")
    batched = method(x, classes)
    single = torch.cat([method(x[i:i + 1], classes[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    chunked = camkit.METHODS[name](model, "features", internal_batch_size=3)(x, classes)
    torch.testing.assert_close(batched, chunked, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", GRADIENT_METHODS + ["cam"])
def test_k_targets_at_once_equal_k_calls(name):
    model, x = ReluHeadNet(classes=5).eval() if name != "cam" else GapLinearNet().eval(), images(3, 16)
    targets = torch.tensor([[0, 1, 4], [2, 2, 3], [4, 0, 1]])
    method = camkit.METHODS[name](model, "features")
    together = method(x, targets)
    assert together.shape == (3, 3, 16, 16)
    for k in range(3):
        torch.testing.assert_close(together[:, k], method(x, targets[:, k]), rtol=1e-5, atol=1e-6)


def test_one_forward_pass_for_k_targets():
    model, x = ReluHeadNet(classes=5).eval(), images(2)
    calls = []
    handle = model.register_forward_hook(lambda *args: calls.append(1))
    try:
        camkit.GradCAM(model, "features")(x, torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
    finally:
        handle.remove()
    assert len(calls) == 1


def test_all_zero_gradient_gives_all_zero_map():
    model = GapLinearNet().eval()
    with torch.no_grad():
        model.fc.weight.zero_()
    for name in GRADIENT_METHODS + ["cam"]:
        maps = camkit.METHODS[name](model, "features")(images(2, 16), 0)
        assert torch.isfinite(maps).all() and (maps == 0).all(), name
