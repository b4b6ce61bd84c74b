"""Guided Backprop / Guided Grad-CAM against captum, CAM's checks, layer suggestion, Normalize."""
import pytest
import torch
import torchvision

import camkit
from nets import GapLinearNet, ReluHeadNet, hook_count, images


def test_guided_backprop_matches_captum_and_restores_relus():
    from captum.attr import GuidedBackprop as CaptumGuided

    model, x = GapLinearNet().eval(), images(2)
    plain_before = torch.autograd.functional.jacobian(lambda t: model(t)[:, 1].sum(), x)
    ours = camkit.GuidedBackprop(model)(x, 1, normalize=False)
    theirs = CaptumGuided(model).attribute(x.clone().requires_grad_(True), target=1)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-5, atol=1e-7)
    assert hook_count(model) == 0
    plain_after = torch.autograd.functional.jacobian(lambda t: model(t)[:, 1].sum(), x)
    torch.testing.assert_close(plain_before, plain_after)
    assert not torch.allclose(ours, plain_after), "guided gradients should differ from plain ones"


def test_guided_outputs_shape_and_scaling():
    model, x = GapLinearNet().eval(), images(2)
    gb = camkit.GuidedBackprop(model)(x, torch.tensor([[0, 1], [2, 3]]))
    assert gb.shape == (2, 2, 3, 16, 16)
    assert torch.allclose(gb.abs().flatten(2).amax(-1), torch.ones(2, 2))
    ggc = camkit.GuidedGradCAM(model, "features")(x, 1, normalize=False)
    expected = camkit.GuidedBackprop(model)(x, 1, normalize=False) * camkit.GradCAM(model, "features")(x, 1)[:, None]
    torch.testing.assert_close(ggc, expected)


def test_guided_needs_relu_modules():
    class FunctionalRelu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return torch.relu(self.conv(x)).mean(dim=(2, 3))

    with pytest.raises(ValueError, match="no"):
        camkit.GuidedBackprop(FunctionalRelu().eval())(images(1))


def test_cam_refuses_a_head_that_is_not_gap_linear():
    with pytest.raises(ValueError, match="GAP \\+ linear head"):
        camkit.CAM(ReluHeadNet().eval(), "features")(images(1))
    with pytest.raises(ValueError, match="callable"):
        camkit.CAM(GapLinearNet().eval(), "features")(images(1), lambda logits: logits[:, 0])


def test_cam_with_explicit_weights_matches_found_classifier():
    model, x = GapLinearNet().eval(), images(2)
    found = camkit.CAM(model, "features")(x, 1)
    given = camkit.CAM(model, "features", weights=model.fc.weight, bias=model.fc.bias)(x, 1)
    torch.testing.assert_close(found, given)


def test_suggest_layer_on_torchvision_models():
    with pytest.warns(camkit.LayerChoice, match="layer4"):
        assert camkit.suggest_layer(torchvision.models.resnet18().eval()) == "layer4"
    vgg = torchvision.models.vgg11().eval()
    assert camkit.suggest_layer(vgg, torch.zeros(1, 3, 64, 64), announce=False) == "features"
    model = GapLinearNet()
    model.camkit_target_layer = "features.2"
    assert camkit.suggest_layer(model) == "features.2"


def test_layer_given_as_module_and_layer_none():
    model, x = GapLinearNet().eval(), images(1)
    by_module = camkit.GradCAM(model, model.features)(x)
    with pytest.warns(camkit.LayerChoice):
        suggested = camkit.GradCAM(model)(x)
    torch.testing.assert_close(by_module, suggested)
    with pytest.raises(ValueError, match="not a submodule"):
        camkit.GradCAM(model, torch.nn.Conv2d(1, 1, 1))


def test_normalize_module():
    norm = camkit.Normalize([0.5, 0.25, 0.0], [0.5, 0.25, 1.0])
    x = torch.ones(1, 3, 2, 2)
    torch.testing.assert_close(norm(x)[0, :, 0, 0], torch.tensor([1.0, 3.0, 1.0]))
    torch.testing.assert_close(camkit.denormalize(norm(x), [0.5, 0.25, 0.0], [0.5, 0.25, 1.0]), x)
    with pytest.raises(ValueError, match="positive"):
        camkit.Normalize([0.0], [0.0])
    with pytest.raises(ValueError, match="expects"):
        norm(torch.ones(1, 1, 2, 2))
