"""Eigen-CAM, Eigen-Grad-CAM, Ablation-CAM, FullGrad, SS-CAM, IS-CAM, Score-CAM's peer weighting and the
eigen / augmentation smoothing options: against pytorch-grad-cam and torchcam, and against the maths
where a peer and the derivation disagree. Random-weight models; every tolerance is stated with the
difference measured when it was set."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet18

import camkit
from camkit.methods import (ISCAM, SSCAM, AblationCAM, EigenCAM, EigenGradCAM, FullGrad, GradCAM, LayerCAM,
                            ScoreCAM, normalize_maps, upsample_maps)
from camkit.methods.smoothing import aug_smooth, eigen_smooth, principal_projection
from nets import AffineNet, hook_count

NEW_METHODS = ["eigencam", "eigengradcam", "ablationcam", "fullgrad", "sscam", "iscam"]
#: Settings that keep the tests fast.
FAST = {"sscam": dict(samples=3, seed=0), "iscam": dict(steps=3)}


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_thread):
    """Small models: extra intra-op threads only spin on a shared CPU (fixture in conftest.py)."""


# --------------------------------------------------------------------------- models

@functools.lru_cache(maxsize=None)
def resnet() -> nn.Module:
    """torchvision's ResNet-18, random weights, 10 classes, batch-norm statistics from random images."""
    torch.manual_seed(0)
    model = resnet18(num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(99)))
    return model.eval()


class Small(nn.Module):
    """conv + ReLU -> ``features`` (target "features.1", 5 channels, 1/stride of the input) ->
    max-pool, conv, ReLU, GAP, linear. stride=1: the layer has the input's resolution."""

    def __init__(self, seed: int = 0, classes: int = 4, stride: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, stride=stride), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(5, 6, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes))

    def forward(self, x):
        return self.head(self.features(x))


def images(n: int = 2, size: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def make(name: str, model: nn.Module, layer="features.1", **kwargs):
    return camkit.METHODS[name](model, layer, **{**FAST.get(name, {}), **kwargs})


def raw(cam, x, target=None):
    return cam(x, target, normalize=False, upsample=False)


def layer_output(model, layer, x):
    store = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: store.update(a=output))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return store["a"], logits


def pgc_targets(classes):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return [ClassifierOutputTarget(int(c)) for c in classes]


def peer_post(raw_maps, size):
    """pytorch-grad-cam's post-processing of raw layer maps: ReLU, then (normalise, resize, normalise),
    which equals camkit's upsample-then-normalise (normalisation is affine, bilinear resizing keeps constants)."""
    return normalize_maps(upsample_maps(raw_maps.clamp_min(0).unsqueeze(1), size))[:, 0]


# --------------------------------------------------------------------------- Eigen-CAM, Eigen-Grad-CAM

def test_eigencam_matches_pytorch_grad_cam_up_to_the_svd_sign():
    # The peer's sign is whatever LAPACK returns for each image; camkit's is Σ_k v_k ≥ 0. Raw
    # projections agree up to that sign to 1e-5 of their scale (measured 6e-7), and the peer's maps
    # equal camkit's pipeline on the sign-matched projection to 1e-5 (measured 7e-7).
    from pytorch_grad_cam import EigenCAM as PeerEigenCAM
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, x = resnet(), images(3, 96)
    ours = raw(EigenCAM(model, "layer3"), x)  # (3, 6, 6)
    with torch.no_grad():
        activation, _ = layer_output(model, model.layer3, x)
    theirs = torch.from_numpy(get_2d_projection(activation.numpy()))
    sign = torch.sign((ours * theirs).flatten(1).sum(1))[:, None, None]
    assert ((ours - sign * theirs).abs().max() / theirs.abs().max()) < 1e-5
    peer = torch.from_numpy(PeerEigenCAM(model, [model.layer3])(x, targets=None))
    assert (peer_post(sign * ours, (96, 96)) - peer).abs().max() < 1e-5
    # the sign convention: the map correlates positively with the channel sum Σ_k A^k
    assert ((ours * activation.sum(1)).flatten(1).sum(1) >= 0).all()


def test_eigengradcam_matches_pytorch_grad_cam_up_to_the_svd_sign():
    # Measured: 1e-6 on the maps of the images where LAPACK's sign matches ours, and on the others
    # once the peer's sign is applied.
    from pytorch_grad_cam import EigenGradCAM as PeerEigenGradCAM

    model, x = resnet(), images(3, 64, seed=2)
    classes = torch.tensor([0, 3, 7])
    ours = raw(EigenGradCAM(model, "layer3"), x, classes)
    activation, logits = layer_output(model, model.layer3, x)
    (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), activation)
    terms = (g * activation).detach()
    hiresmap = terms.sum(1)
    assert ((ours * hiresmap).flatten(1).sum(1) >= 0).all()  # sign: correlates with Σ_k g^k A^k
    peer = torch.from_numpy(PeerEigenGradCAM(model, [model.layer3])(x, targets=pgc_targets(classes)))
    for i in range(3):
        same = (peer_post(ours[i:i + 1], (64, 64))[0] - peer[i]).abs().max()
        flipped = (peer_post(-ours[i:i + 1], (64, 64))[0] - peer[i]).abs().max()
        assert min(same, flipped) < 1e-5


def test_principal_projection_is_the_first_principal_component():
    torch.manual_seed(0)
    terms = torch.randn(2, 3, 6, 4, 5)  # (N, K, C, h, w)
    proj = principal_projection(terms)
    for n in range(2):
        for k in range(3):
            matrix = terms[n, k].flatten(1).T.double()
            centred = matrix - matrix.mean(0)
            _, _, vh = torch.linalg.svd(centred, full_matrices=False)
            expected = (centred @ vh[0]).reshape(4, 5)
            expected = expected * torch.sign(vh[0].sum())
            assert torch.allclose(proj[n, k].double(), expected, atol=1e-5)
            uncentred = principal_projection(terms[n, k], center=False).double()
            _, _, vh = torch.linalg.svd(matrix, full_matrices=False)
            assert torch.allclose(uncentred, (matrix @ (vh[0] * torch.sign(vh[0].sum()))).reshape(4, 5), atol=1e-5)
    assert (principal_projection(torch.zeros(1, 4, 3, 3)) == 0).all()


def test_eigencam_is_class_agnostic_and_eigengradcam_takes_k_targets():
    model, x = Small().eval(), images(2)
    targets = torch.tensor([[0, 1, 3], [2, 2, 0]])
    eigen = EigenCAM(model, "features.1")(x, targets)
    assert eigen.shape == (2, 3, 16, 16) and torch.equal(eigen[:, 0], eigen[:, 2])
    grad = EigenGradCAM(model, "features.1")
    together = grad(x, targets)
    for k in range(3):
        assert torch.allclose(together[:, k], grad(x, targets[:, k]), atol=1e-5)


# --------------------------------------------------------------------------- Ablation-CAM

def hand_ablation(model, layer, x, classes, relu=True):
    """w_k = (y^c − y^c_k)/|y^c| with channel k zeroed by a hook, one image and channel at a time."""
    activation, logits = layer_output(model, layer, x)
    activation, base = activation.detach(), logits.detach().gather(1, classes[:, None])[:, 0]
    weights = torch.zeros(activation.shape[:2])
    for i in range(x.shape[0]):
        for k in range(activation.shape[1]):
            def zero(module, inputs, output, k=k):
                output = output.clone()
                output[:, k] = 0
                return output
            handle = layer.register_forward_hook(zero)
            with torch.no_grad():
                score = model(x[i:i + 1])[0, classes[i]]
            handle.remove()
            weights[i, k] = (base[i] - score) / base[i].abs()
    maps = torch.einsum("nc,nchw->nhw", weights, activation)
    return weights, maps.relu() if relu else maps, base


def test_ablationcam_matches_the_hand_computation_and_pytorch_grad_cam():
    # pytorch-grad-cam's AblationCAM (layer values ≥ 0, so it zeroes channels too) divides by y^c.
    # For the classes with y^c > 0 its maps equal camkit's to 1e-5 (measured 3e-7); for y^c < 0
    # its division flips every weight and its map is camkit's map of the *negated* sum, i.e. the
    # regions whose ablation raises the score.
    from pytorch_grad_cam import AblationCAM as PeerAblationCAM

    model, x = Small(3, classes=6, stride=2).eval(), images(3, 16, seed=4)
    with torch.no_grad():
        logits = model(x)
    for pick in (logits.argmax(1), logits.argmin(1)):
        cam = AblationCAM(model, "features.1", relu=False)
        weights, signed, base = hand_ablation(model, model.features[1], x, pick, relu=False)
        assert torch.allclose(cam.ablation_weights(x, camkit.Targets.parse(pick, 3, x.device))[1][:, 0], weights,
                              atol=1e-6)
        assert torch.allclose(raw(cam, x, pick), signed, atol=1e-6)
        peer = torch.from_numpy(PeerAblationCAM(model, [model.features[1]], batch_size=4)(
            x, targets=pgc_targets(pick)))
        expected = peer_post(torch.where(base[:, None, None] > 0, signed, -signed), (16, 16))
        assert (base > 0).all() or (base < 0).all()
        assert (expected - peer).abs().max() < 1e-5


def test_ablationcam_k_targets_probability_score_and_max_channels():
    model, x = Small(1, classes=5, stride=2).eval(), images(2)
    targets = torch.tensor([[0, 4], [3, 1]])
    cam = AblationCAM(model, "features.1", relu=False)
    together = raw(cam, x, targets)
    for k in range(2):
        assert torch.allclose(together[:, k], raw(cam, x, targets[:, k]), atol=1e-6)
    kept = AblationCAM(model, "features.1", max_channels=2).ablation_weights(
        x, camkit.Targets.parse(targets, 2, x.device))[1]
    assert ((kept != 0).sum(-1) <= 2).all() and (kept != 0).any()
    prob = AblationCAM(model, "features.1", score="prob").ablation_weights(x, camkit.Targets.parse(0, 2, x.device))[1]
    with torch.no_grad():
        p = model(x).softmax(1)[:, 0]
    assert (prob.abs().amax(-1)[:, 0] <= 1 / p + 1e-6).all()  # drops of a probability, over p


def test_ablationcam_with_reshape_zeroes_the_tokens_of_the_channel():
    # A channels-last layer: reshape= maps (N, h, w, C) to (N, C, h, w); the ablation must zero
    # channel k in the layer's own layout, which the hand computation does directly.
    class ChannelsLast(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.block = nn.Identity()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.block(self.conv(x).relu().permute(0, 2, 3, 1)).mean(dim=(1, 2)))

    model, x = ChannelsLast().eval(), images(2, 8)
    cam = AblationCAM(model, "block", reshape=camkit.channels_last_to_first, relu=False)
    weights = cam.ablation_weights(x, camkit.Targets.parse(1, 2, x.device))[1][:, 0]
    with torch.no_grad():
        tokens = model.conv(x).relu().permute(0, 2, 3, 1)
        base = model.fc(tokens.mean(dim=(1, 2)))[:, 1]
        for k in range(4):
            ablated = tokens.clone()
            ablated[..., k] = 0
            drop = (base - model.fc(ablated.mean(dim=(1, 2)))[:, 1]) / base.abs()
            assert torch.allclose(weights[:, k], drop, atol=1e-6)


# --------------------------------------------------------------------------- FullGrad

def test_fullgrad_matches_pytorch_grad_cam():
    # The peer rescales each channel by (v − min)/(max − min + 1e-7): its ε shrinks channels whose
    # range is ~1e-5, so the maps differ by up to 5e-3 (measured 2e-3). With that ε, camkit's FullGrad
    # equals the peer to 1e-5 (measured 2e-6). On a model with camkit.Normalize inside, camkit takes
    # the input term after the normalisation: equal to the peer fed normalised images.
    from pytorch_grad_cam import FullGrad as PeerFullGrad

    class PeerEpsilon(FullGrad):
        def psi(self, terms, size):
            terms = terms.abs().float()
            terms = terms - terms.flatten(2).amin(-1)[..., None, None]
            terms = terms / (1e-7 + terms.flatten(2).amax(-1)[..., None, None])
            return upsample_maps(terms.sum(1, keepdim=True), size)[:, 0]

    model, x = resnet(), images(2, 64)
    classes = torch.tensor([3, 8])
    peer = torch.from_numpy(PeerFullGrad(model, [])(x, targets=pgc_targets(classes)))
    assert (FullGrad(model)(x, classes) - peer).abs().max() < 5e-3
    assert (PeerEpsilon(model)(x, classes) - peer).abs().max() < 1e-5
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    wrapped = nn.Sequential(camkit.Normalize(mean, std), model).eval()
    z = (x - mean[:, None, None]) / std[:, None, None]
    peer = torch.from_numpy(PeerFullGrad(model, [])(z, targets=pgc_targets(classes)))
    assert (PeerEpsilon(wrapped)(x, classes) - peer).abs().max() < 1e-5


def test_fullgrad_terms_are_complete():
    # FullGrad's decomposition (Srinivas & Fleuret, Eq. 2): for a ReLU network with biases,
    # y = Σ ∇_z y ⊙ z + Σ_l Σ b_l ∂y/∂z_l + (linear biases · their gradient), with z the normalised input.
    # The recorded tensors (ResNet-18: in-place ReLUs after every batch norm) must satisfy it to 1e-4.
    model = resnet()
    wrapped = nn.Sequential(camkit.Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]), model).eval()
    x, classes = images(2, 64).requires_grad_(True), torch.tensor([1, 6])
    cam = FullGrad(wrapped)
    with cam.record() as records:
        logits = wrapped(x)
        score = logits.gather(1, classes[:, None])[:, 0]
        tensors = [records.normalized] + [z for z, _ in records.biases]
        grads = torch.autograd.grad(score.sum(), tensors)
    total = (grads[0] * records.normalized).flatten(1).sum(1)
    for g, (z, bias) in zip(grads[1:], records.biases):
        total = total + (g * bias[None, :, None, None]).flatten(1).sum(1)
    total = total + model.fc.bias[classes]
    assert len(records.biases) == 20  # 20 batch norms (ResNet-18's convolutions have no bias)
    assert torch.allclose(total, score, rtol=1e-4, atol=1e-4)
    assert hook_count(wrapped) == 0


def test_fullgrad_ignores_the_layer_and_its_variants_differ():
    model, x = Small(2, stride=2).eval(), images(2)
    plain = FullGrad(model)(x, [0, 1])
    assert torch.equal(plain, FullGrad(model, "features.1")(x, [0, 1]))
    authors = FullGrad(model, variant="authors-code")(x, [0, 1])
    assert authors.shape == plain.shape and (authors - plain).abs().max() > 1e-3
    assert torch.isfinite(authors).all() and authors.min() >= 0 and authors.max() <= 1


# --------------------------------------------------------------------------- Score-CAM's weighting, SS-CAM, IS-CAM

def torchcam_maps(cls, model, x, target, **kwargs):
    with cls(model, "features.1", batch_size=4, input_shape=tuple(x.shape[1:]), **kwargs) as extractor:
        with torch.no_grad():
            scores = model(x)
        maps = extractor(class_idx=target, scores=scores)[0]
    return normalize_maps(upsample_maps(maps.unsqueeze(1), x.shape[-2:]))[:, 0]


@pytest.mark.parametrize("stride, tolerance", [(1, 1e-5), (4, 3e-3)])
def test_scorecam_softmax_weighting_reproduces_torchcam_and_pytorch_grad_cam(stride, tolerance):
    # score="logit", weighting="softmax" is the peers' Score-CAM. At the input resolution the maps
    # agree to 1e-5 (measured 2e-7). Below it the masks differ by convention: torchcam normalises A^k
    # before upsampling, pytorch-grad-cam upsamples with align_corners=True, camkit upsamples
    # (align_corners=False) then normalises; measured ≤ 1.3e-3 at 1/4 resolution, tolerance 3e-3.
    from pytorch_grad_cam import ScoreCAM as PeerScoreCAM
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    model, x, target = Small(stride=stride).eval(), images(2), [1, 3]
    ours = ScoreCAM(model, "features.1", score="logit", weighting="softmax")(x, torch.tensor(target))
    assert (ours - torchcam_maps(TorchcamScoreCAM, model, x, target)).abs().max() < tolerance
    peer = torch.from_numpy(PeerScoreCAM(model, [model.features[1]])(x, targets=pgc_targets(target)))
    assert (ours - peer).abs().max() < tolerance


def test_softmax_weighting_with_max_channels_leaves_unscored_channels_at_zero():
    model, x = Small().eval(), images(2)
    weights = ScoreCAM(model, "features.1", weighting="softmax", max_channels=2).score_weights(x, [0, 1])
    assert ((weights > 0).sum(1) == 2).all() and torch.allclose(weights.sum(1), torch.ones(2))


def test_iscam_cumulative_variant_reproduces_torchcam():
    # torchcam's ISCAM: c_s = Σ_{j ≤ s} j/m times the masked image, softmax of the logit gains. Measured 6e-8.
    from torchcam.methods import ISCAM as TorchcamISCAM

    model, x, target = Small().eval(), images(2), [1, 3]
    ours = ISCAM(model, "features.1", steps=4, variant="cumulative", score="logit", weighting="softmax")
    theirs = torchcam_maps(TorchcamISCAM, model, x, target, num_samples=4)
    assert (ours(x, torch.tensor(target)) - theirs).abs().max() < 1e-5


def test_iscam_path_variant_is_the_integral_of_the_gain():
    # On an affine model the gain along the path is linear in t: s^c(x' + t H ⊙ (x − x')) − s^c(x') = t · g_k,
    # so the right Riemann mean over t = s/m is (m + 1)/(2m) · g_k, g_k Score-CAM's logit weight.
    # The cumulative reading instead gives (1/m) Σ_s s(s + 1)/(2m) · g_k = (m + 1)(m + 2)/(6m) · g_k.
    model, x, target = AffineNet().eval(), images(2, 8), torch.tensor([2, 0])
    gains = ScoreCAM(model, "features", score="logit").score_weights(x, target)
    m = 5
    path = ISCAM(model, "features", steps=m, score="logit").score_weights(x, target)
    cumulative = ISCAM(model, "features", steps=m, score="logit", variant="cumulative").score_weights(x, target)
    assert torch.allclose(path, (m + 1) / (2 * m) * gains, rtol=1e-4, atol=1e-6)
    assert torch.allclose(cumulative, (m + 1) * (m + 2) / (6 * m) * gains, rtol=1e-4, atol=1e-5)


def test_sscam_with_torchcam_noise_reproduces_torchcam():
    # torchcam's SSCAM adds N(0, σ²) noise, drawn from torch's global RNG per (sample, image, channel),
    # to the normalised masks. Fed exactly that noise, camkit's SS-CAM gives its maps (measured 6e-8).
    from torchcam.methods import SSCAM as TorchcamSSCAM

    class TorchcamNoise(SSCAM):
        def prepare(self, x, rows):
            torch.manual_seed(123)
            normal = torch.distributions.normal.Normal(0, self.sigma)
            return {"noise": torch.stack([normal.sample((x.shape[0], 5, *x.shape[2:])) for _ in range(self.samples)])}

        def masked_inputs(self, x, baseline, masks, at, context):
            return torch.lerp(baseline, x, masks + context["noise"][at.r, at.image, at.channel].unsqueeze(1))

    model, x, target = Small().eval(), images(2), [1, 3]
    with TorchcamSSCAM(model, "features.1", batch_size=4, num_samples=3, std=2.0, input_shape=(3, 16, 16)) as extractor:
        with torch.no_grad():
            scores = model(x)
        torch.manual_seed(123)
        theirs = normalize_maps(extractor(class_idx=target, scores=scores)[0])
    ours = TorchcamNoise(model, "features.1", samples=3, sigma=2.0, score="logit", weighting="softmax")
    assert (ours(x, torch.tensor(target)) - theirs).abs().max() < 1e-5


def test_sscam_seeds_and_zero_noise():
    model, x = Small(1).eval(), images(2)

    def weights(**kw):
        return SSCAM(model, "features.1", samples=4, **kw).score_weights(x, [0, 2])
    assert torch.equal(weights(seed=3), weights(seed=3))
    assert not torch.allclose(weights(seed=3), weights(seed=4))
    assert torch.allclose(weights(seed=3, internal_batch_size=1), weights(seed=3, internal_batch_size=None), atol=1e-6)
    zero = weights(seed=3, sigma=0.0)
    assert torch.allclose(zero, ScoreCAM(model, "features.1").score_weights(x, [0, 2]), atol=1e-6)


# --------------------------------------------------------------------------- eigen_smooth and aug_smooth

@pytest.mark.parametrize("ours_cls, peer_name", [(GradCAM, "GradCAM"), (LayerCAM, "LayerCAM")])
def test_eigen_smooth_matches_pytorch_grad_cam(ours_cls, peer_name):
    # Per-channel terms (Grad-CAM: α_k A^k; Layer-CAM: ReLU(g^k) ⊙ A^k), first principal component,
    # ReLU, normalise. The peer's SVD sign is LAPACK's: each image matches one of the two signs to
    # 1e-5 (measured 5e-7).
    import pytorch_grad_cam

    model, x, target = Small(2, classes=5, stride=2).eval(), images(3), [0, 2, 4]
    ours = eigen_smooth(ours_cls(model, "features.1"), x, target, normalize=False, upsample=False)
    peer = torch.from_numpy(getattr(pytorch_grad_cam, peer_name)(model, [model.features[1]])(
        x, targets=pgc_targets(target), eigen_smooth=True))
    signed = eigen_smooth(ours_cls(model, "features.1", relu=False), x, target, normalize=False, upsample=False)
    for i in range(3):
        assert min((peer_post(s * signed[i:i + 1], (16, 16))[0] - peer[i]).abs().max() for s in (1, -1)) < 1e-5
    assert torch.allclose(ours, signed.relu())


def test_eigen_smooth_of_every_supported_method_and_its_errors():
    model, x = Small(1, stride=2).eval(), images(2)
    targets = torch.tensor([[0, 1], [2, 3]])
    for cam in (GradCAM(model, "features.1"), camkit.GradCAMPlusPlus(model, "features.1"),
                camkit.HiResCAM(model, "features.1"), ScoreCAM(model, "features.1"),
                AblationCAM(model, "features.1"), ISCAM(model, "features.1", steps=2)):
        maps = eigen_smooth(cam, x, targets)
        assert maps.shape == (2, 2, 16, 16) and torch.isfinite(maps).all(), cam
    # HiResCAM's terms are Eigen-Grad-CAM's: the same map
    assert torch.allclose(eigen_smooth(camkit.HiResCAM(model, "features.1", relu=False), x, 1),
                          EigenGradCAM(model, "features.1")(x, 1), atol=1e-5)
    with pytest.raises(ValueError, match="sum of per-channel terms"):
        eigen_smooth(camkit.IntegratedGradCAM(model, "features.1", steps=2), x)
    with pytest.raises(ValueError, match="out of range"):
        eigen_smooth(GradCAM(model, "features.1"), x, 9)
    assert hook_count(model) == 0


def test_aug_smooth_matches_pytorch_grad_cam():
    # pytorch-grad-cam (ttach): flips × factors (0.9, 1, 1.1) of the input, maps flipped back, the mean
    # of the normalised maps; camkit normalises that mean again. Same targets: agreement 1e-5 (measured 6e-7).
    from pytorch_grad_cam import GradCAM as PeerGradCAM

    model, x, target = Small(2, classes=5, stride=2).eval(), images(2), [1, 4]
    peer = torch.from_numpy(PeerGradCAM(model, [model.features[1]])(x, targets=pgc_targets(target), aug_smooth=True))
    ours = aug_smooth(GradCAM(model, "features.1"), x, target)
    assert (ours - normalize_maps(peer)).abs().max() < 1e-5
    peer = torch.from_numpy(PeerGradCAM(model, [model.features[1]])(
        x, targets=pgc_targets(target), aug_smooth=True, eigen_smooth=True))
    # With eigen_smooth too the peer takes LAPACK's SVD sign for each augmented copy, so its mean can
    # average a map with an inverted one (here it does: they differ by 1.0); camkit's sign convention
    # is the same for every copy, so its mean is the mean of its eigen-smoothed maps.
    both = aug_smooth(GradCAM(model, "features.1"), x, target, eigen_smooth=True)
    copies = [eigen_smooth(GradCAM(model, "features.1"), x * s, target) for s in (0.9, 1.0, 1.1)]
    copies += [eigen_smooth(GradCAM(model, "features.1"), (x * s).flip(-1), target).flip(-1) for s in (0.9, 1.0, 1.1)]
    assert torch.allclose(both, normalize_maps(torch.stack(copies).mean(0)), atol=1e-6)
    assert torch.isfinite(peer).all()


def test_aug_smooth_properties():
    model, x = Small(1, stride=2).eval(), images(2)
    cam = GradCAM(model, "features.1")
    assert torch.allclose(aug_smooth(cam, x, flips=(False,), factors=(1.0,)), cam(x), atol=1e-6)
    # top-1 is fixed on the clean image, K targets and raw maps keep their shapes
    top1 = model(x).argmax(1)
    assert torch.equal(aug_smooth(cam, x), aug_smooth(cam, x, top1))
    assert aug_smooth(cam, x, torch.tensor([[0, 1], [2, 3]])).shape == (2, 2, 16, 16)
    flipped = aug_smooth(cam, x, 1, flips=(True,), factors=(1.0,), normalize=False, upsample=False)
    assert torch.allclose(flipped, raw(cam, x.flip(-1), 1).flip(-1), atol=1e-6)
    guided = aug_smooth(camkit.GuidedBackprop(model), x, 0)
    assert guided.shape == (2, 3, 16, 16) and guided.abs().max() <= 1 + 1e-6
    for bad in (dict(flips=()), dict(flips=(1,)), dict(factors=(0.0,)), dict(factors=())):
        with pytest.raises(ValueError, match="flips|factors"):
            aug_smooth(cam, x, **bad)


# --------------------------------------------------------------------------- shared behaviour of the new methods

@pytest.mark.parametrize("name", NEW_METHODS)
def test_registered_and_k_targets_at_once_equal_k_calls(name):
    model, x = Small(3, classes=5, stride=2).eval(), images(2)
    assert type(make(name, model)).name == name and camkit.METHODS[name].label
    targets = torch.tensor([[0, 1, 4], [2, 2, 3]])
    cam = make(name, model)
    together = cam(x, targets)
    assert together.shape == (2, 3, 16, 16)
    for k in range(3):
        assert torch.allclose(together[:, k], cam(x, targets[:, k]), atol=1e-5), k
    by_callable = cam(x, lambda scores: scores[:, [0, 4]])  # a callable target works like class indices
    assert torch.allclose(by_callable, cam(x, torch.tensor([[0, 4], [0, 4]])), atol=1e-5)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_maps_do_not_depend_on_internal_batch_size(name):
    model, x = Small(4, stride=2).eval(), images(3)
    whole = raw(make(name, model, internal_batch_size=None), x, [1, 2, 3])
    chunked = raw(make(name, model, internal_batch_size=2), x, [1, 2, 3])
    assert whole.abs().max() > 0
    assert torch.allclose(whole, chunked, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_deterministic_and_no_hooks_or_graph_left_after_errors(name):
    model, x = Small(5, stride=2).eval(), images(2)
    first = raw(make(name, model), x)
    assert torch.equal(first, raw(make(name, model), x))
    with pytest.raises(ValueError, match="out of range"):
        make(name, model)(x, 9)
    assert hook_count(model) == 0 and torch.is_grad_enabled()

    class Exploding(Small):
        def forward(self, x):
            self.features(x)
            raise RuntimeError("boom inside the model")

    broken = Exploding().eval()
    with pytest.raises(RuntimeError, match="boom"):
        make(name, broken)(x, 0)
    assert hook_count(broken) == 0 and torch.is_grad_enabled()
    leaf = x.clone().requires_grad_(True)
    maps = make(name, model)(leaf, [0, 1])
    assert not maps.requires_grad and leaf.grad is None and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("make_bad, match", [
    (lambda m: ScoreCAM(m, weighting="peers"), "unknown weighting 'peers'; allowed: 'gain', 'softmax'"),
    (lambda m: AblationCAM(m, score="probability"), "unknown score 'probability'"),
    (lambda m: AblationCAM(m, max_channels=0), "max_channels must be a positive integer or None"),
    (lambda m: AblationCAM(m, internal_batch_size=-1), "internal_batch_size"),
    (lambda m: FullGrad(m, variant="official"), "unknown variant 'official'; allowed: 'paper', 'authors-code'"),
    (lambda m: SSCAM(m, samples=0), "samples must be a positive integer"),
    (lambda m: SSCAM(m, sigma=-1.0), "sigma must be a finite number >= 0"),
    (lambda m: SSCAM(m, seed=0, generator=torch.Generator()), "not both"),
    (lambda m: ISCAM(m, steps=0), "steps must be a positive integer"),
    (lambda m: ISCAM(m, variant="integral"), "unknown variant 'integral'; allowed: 'path', 'cumulative'"),
])
def test_bad_settings_raise_clear_errors(make_bad, match):
    with pytest.raises(ValueError, match=match):
        make_bad(Small())


def test_bad_inputs_raise_clear_errors():
    model = Small().eval()
    for name in NEW_METHODS:
        cam = make(name, model)
        with pytest.raises(ValueError, match="unsqueeze"):
            cam(images(1)[0])
        with pytest.raises(TypeError, match="floating-point"):
            cam((images(1) * 255).to(torch.uint8))
        with pytest.raises(ValueError, match="N = 2"):
            cam(images(2), [0, 1, 2])
    assert hook_count(model) == 0
    assert np.isfinite(EigenCAM(model, "features.1")(torch.zeros(1, 3, 16, 16)).numpy()).all()
