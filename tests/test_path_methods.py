"""Integrated Grad-CAM, Expected Grad-CAM, Smooth Grad-CAM++ and Score-CAM on tiny seeded CNNs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from camkit.methods import (METHODS, ExpectedGradCAM, GradCAMPlusPlus, IntegratedGradCAM, ScoreCAM,
                            SmoothGradCAMPlusPlus, normalize_maps)
from camkit.transforms import gaussian_blur, make_baseline
from nets import AffineNet


class ReluHead(nn.Module):
    """conv, ReLU, pool, conv, ReLU -> ``features`` (target "features.4", 8x8) -> 1x1 conv, ReLU,
    GAP, linear: the score is piecewise linear in A with ReLUs after the target layer."""

    def __init__(self, seed: int = 0, classes: int = 5):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(8, classes))

    def forward(self, x):
        return self.head(self.features(x))


class GapLinear(nn.Module):
    """Target "features.3" (8x8) followed by GAP + linear only: ∂y/∂A is constant in the input."""

    def __init__(self, seed: int = 0, classes: int = 5):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 6, 3, padding=1))
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(-2, -1)))


class FullRes(nn.Module):
    """Target "features.1" at the input resolution (no upsampling in Score-CAM)."""

    def __init__(self, seed: int = 0, classes: int = 4):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(5, 6, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes))

    def forward(self, x):
        return self.head(self.features(x))


def images(n: int = 3, seed: int = 1, size: int = 16) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(n, 3, size, size)


def raw(cam, x, target=None):
    return cam(x, target, normalize=False, upsample=False)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# --------------------------------------------------------------------------- Integrated Grad-CAM

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_completeness_error_decreases_and_is_below_2_percent_at_64_steps(seed):
    model, x = ReluHead(seed).eval(), images(4, seed=100 + seed)
    with torch.no_grad():  # explain the class whose score moves most between x' = 0 and x
        change = model(x) - model(torch.zeros_like(x))
    target = change.abs().argmax(1)
    expected = change.gather(1, target[:, None])[:, 0]
    errors = []
    for steps in (4, 16, 64):
        cam = IntegratedGradCAM(model, "features.4", steps=steps)
        a, delta = cam.layer_attribution(x, target, return_delta=True)
        assert a.shape == (4, 8, 8, 8)
        assert torch.allclose(delta, a.flatten(1).sum(1) - expected, atol=1e-5)
        errors.append((delta.abs() / expected.abs()).mean().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_layer_attribution_is_captum_conductance_on_the_reversed_path():
    # captum's LayerConductance (riemann_trapezoid) uses the *left* gradient of each segment,
    # Σ g(u_j) ⊙ (A(u_{j+1}) − A(u_j)). Walking from x to x′ its left points are our right points,
    # so on the reversed path it equals −a exactly (same points, same products).
    from captum.attr import LayerConductance

    model, x = ReluHead(3).eval(), images(2)
    baseline = torch.full_like(x, 0.2)
    target = torch.tensor([1, 3])
    ours = IntegratedGradCAM(model, "features.4", steps=12, baseline=baseline).layer_attribution(x, target)
    theirs = LayerConductance(model, model.features[4]).attribute(
        baseline, baselines=x, target=target, n_steps=12, method="riemann_trapezoid")
    assert torch.allclose(ours, -theirs, rtol=1e-4, atol=1e-6)


def test_baseline_equal_to_input_gives_all_zero_maps():
    model, x = ReluHead().eval(), images(2)
    cam = IntegratedGradCAM(model, "features.4", steps=5, baseline=x)
    assert raw(cam, x).abs().max() == 0
    assert cam(x).abs().max() == 0  # normalisation keeps an all-zero map zero
    assert cam.layer_attribution(x).abs().max() == 0
    assert raw(IntegratedGradCAM(model, "features.4", steps=5), x).abs().max() > 0
    # Expected Grad-CAM with D = δ_x, even with noise: A(z0) − A(x′) = 0 up to the float noise of
    # evaluating one image in batches of different sizes (≈ 1e-11 here).
    eg = ExpectedGradCAM(model, "features.4", samples=4, references=x[:1], sigma=0.2, seed=0)
    assert raw(eg, x[:1]).abs().max() < 1e-8
    assert raw(ExpectedGradCAM(model, "features.4", samples=4, sigma=0.2, seed=0), x[:1]).abs().max() > 1e-4


def test_batch_equals_per_image():
    model, x = ReluHead().eval(), images(3)
    target = torch.tensor([0, 2, 4])
    for cam in (IntegratedGradCAM(model, "features.4", steps=8, baseline="blur", blur_sigma=2.0),
                IntegratedGradCAM(model, "features.4", steps=8, variant="authors-code"),
                ScoreCAM(model, "features.4", score="logit"),
                SmoothGradCAMPlusPlus(model, "features.4", sigma=0.0)):
        batch = raw(cam, x, target)
        single = torch.cat([raw(cam, x[i:i + 1], target[i:i + 1]) for i in range(3)])
        assert torch.allclose(batch, single, rtol=1e-4, atol=1e-6), cam


@pytest.mark.parametrize("make", [
    lambda m: IntegratedGradCAM(m, "features.4", steps=6, baseline="mean"),
    lambda m: ExpectedGradCAM(m, "features.4", samples=6, references="uniform-noise", sigma=0.1, seed=3),
    lambda m: ExpectedGradCAM(m, "features.4", samples=6, references="shuffled-pixels", sigma=0.0, seed=3),
    lambda m: ExpectedGradCAM(m, "features.4", samples=6, references=images(5, seed=9), sigma=0.1, seed=3),
    lambda m: SmoothGradCAMPlusPlus(m, "features.4", samples=6, sigma=0.2, seed=3),
    lambda m: ScoreCAM(m, "features.4", score="logit"),
], ids=["igcam", "egcam-noise", "egcam-shuffle", "egcam-set", "sgcampp", "scorecam"])
def test_chunked_equals_unchunked(make):
    model, x = ReluHead().eval(), images(2)
    target = torch.tensor([[0, 1], [2, 3]])  # K = 2 targets per image
    unchunked, chunked = make(model), make(model)
    unchunked.internal_batch_size, chunked.internal_batch_size = None, 1
    a, b = raw(unchunked, x, target), raw(chunked, x, target)
    assert a.shape == (2, 2, 8, 8)
    assert a.abs().max() > 0
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_internal_batch_size_bounds_the_rows_of_every_forward():
    model, x = ReluHead().eval(), images(2)
    sizes = []
    handle = model.register_forward_pre_hook(lambda module, inputs: sizes.append(inputs[0].shape[0]))
    try:
        for ibs in (None, 5):
            sizes.clear()
            raw(IntegratedGradCAM(model, "features.4", steps=16, internal_batch_size=ibs), x, 0)
            if ibs is None:  # all 2 x 16 path points in one batched pass (plus the baselines)
                assert max(sizes) == 32
            else:
                assert max(sizes) == 5 and sum(sizes) == 32 + 2
            sizes.clear()
            raw(ExpectedGradCAM(model, "features.4", samples=16, sigma=0.1, seed=0,
                                internal_batch_size=ibs), x, 0)
            assert max(sizes) == (32 if ibs is None else 5)
            sizes.clear()
            raw(ScoreCAM(model, "features.4", internal_batch_size=ibs), x, 0)
            assert max(sizes) == (16 if ibs is None else 5)  # 2 images x 8 channels
    finally:
        handle.remove()


def plain_authors_code(model: nn.Module, layer: nn.Module, x, baseline, target, steps):
    """The authors' notebook, one step at a time: left points, a ReLU'd Grad-CAM map per step, mean."""
    maps = []
    for s in range(steps):
        store = {}
        handle = layer.register_forward_hook(lambda module, inputs, output: store.update(a=output))
        score = model(baseline + (s / steps) * (x - baseline)).gather(1, target[:, None]).sum()
        handle.remove()
        (g,) = torch.autograd.grad(score, store["a"])
        maps.append((g.mean(dim=(2, 3), keepdim=True) * store["a"]).sum(1).clamp(min=0))
    return torch.stack(maps).mean(0).detach()


@pytest.mark.parametrize("baseline", ["black", "tensor"])
def test_authors_code_variant_matches_plain_reimplementation(baseline):
    model, x = ReluHead(4).eval(), images(2)
    target = torch.tensor([1, 2])
    spec = torch.full((3, 16, 16), 0.3) if baseline == "tensor" else "black"
    x0 = torch.zeros_like(x) if baseline == "black" else spec.expand_as(x)
    cam = IntegratedGradCAM(model, "features.4", steps=7, baseline=spec, variant="authors-code")
    expected = plain_authors_code(model, model.features[4], x, x0, target, 7)
    assert torch.allclose(raw(cam, x, target), expected, rtol=1e-4, atol=1e-6)
    paper = IntegratedGradCAM(model, "features.4", steps=7, baseline=spec)
    assert rel(raw(paper, x, target), expected) > 1e-3  # the two readings really differ


def test_gap_linear_head_integrated_gradcam_averages_the_activation_changes_along_the_path():
    # ∂y/∂A is constant for a GAP + linear head (ᾱ_k = w^c_k / Z), so M = Σ_k ᾱ_k · mean_s ΔA^k(t_s).
    model, x = GapLinear().eval(), images(2)
    target, steps = torch.tensor([0, 4]), 3
    with torch.no_grad():
        start = model.features(torch.zeros_like(x))
        change = sum(model.features(s / steps * x) - start for s in range(1, steps + 1)) / steps
    weights = model.fc.weight[target] / 64
    expected = torch.einsum("nc,nchw->nhw", weights, change).relu().detach()
    assert torch.allclose(raw(IntegratedGradCAM(model, "features.3", steps=steps), x, target), expected,
                          rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- Expected Grad-CAM

def test_expected_gradcam_point_mass_no_noise_approaches_integrated_gradcam():
    # Relative L2 error of the raw signed maps against IG-CAM (m = 256). Uniform t: a plain Monte-Carlo
    # mean, error ∝ S^(-1/2); measured 18.5 % at S = 16 and 0.6 % at S = 1024 (seed 0; 0.5-2.4 % over
    # seeds at S = 4096), tolerance 3 %. Stratified t: measured 1.5 % -> 0.47 %, tolerance 1 %; its
    # floor is IG-CAM's own Riemann error at m = 256.
    model, x = ReluHead(1).eval(), images(2, seed=5)
    ig = raw(IntegratedGradCAM(model, "features.4", steps=256, relu=False), x, 0)
    errors = {}
    for law in ("uniform", "stratified"):
        for samples in (16, 1024):
            eg = ExpectedGradCAM(model, "features.4", samples=samples, references="black", sigma=0.0,
                                 t_law=law, seed=0, relu=False, internal_batch_size=512)
            errors[law, samples] = rel(raw(eg, x, 0), ig)
    assert errors["uniform", 1024] < errors["uniform", 16]
    assert errors["uniform", 1024] < 0.03
    assert errors["stratified", 1024] < errors["stratified", 16] and errors["stratified", 1024] < 0.01


def test_expected_gradcam_seed_and_generator_reproducibility():
    model, x = ReluHead().eval(), images(2)

    def make(**kw):
        return ExpectedGradCAM(model, "features.4", samples=8, sigma=0.1, **kw)
    assert torch.equal(raw(make(seed=7), x), raw(make(seed=7), x))
    assert not torch.allclose(raw(make(seed=7), x), raw(make(seed=8), x))
    cam = make(generator=torch.Generator().manual_seed(7))
    first, second = raw(cam, x), raw(cam, x)  # a generator is consumed: the next call differs
    assert not torch.allclose(first, second)
    assert torch.equal(first, raw(make(generator=torch.Generator().manual_seed(7)), x))
    torch.manual_seed(11)
    a = raw(make(), x)
    torch.manual_seed(11)
    assert torch.equal(a, raw(make(), x))


def test_expected_gradcam_t_law_constant_one_is_gradcam_weights_on_the_activation_change():
    model, x = ReluHead(2).eval(), images(2)
    target = torch.tensor([3, 1])
    store = {}
    handle = model.features[4].register_forward_hook(lambda module, inputs, output: store.update(a=output))
    score = model(x).gather(1, target[:, None]).sum()
    handle.remove()
    (g,) = torch.autograd.grad(score, store["a"])
    with torch.no_grad():
        change = store["a"] - model.features(torch.zeros_like(x))
    expected = (g.mean(dim=(2, 3), keepdim=True) * change).sum(1).detach()
    cam = ExpectedGradCAM(model, "features.4", samples=3, references="black", sigma=0.0, t_law=1.0, relu=False)
    assert torch.allclose(raw(cam, x, target), expected, rtol=1e-4, atol=1e-6)
    law = ExpectedGradCAM(model, "features.4", samples=3, references="black", sigma=0.0, relu=False,
                          t_law=lambda n, generator: torch.ones(n))
    assert torch.allclose(raw(law, x, target), expected, rtol=1e-4, atol=1e-6)


def test_reference_samplers():
    model, x = ReluHead().eval(), images(2)
    cam = ExpectedGradCAM(model, "features.4", references="shuffled-pixels")
    image = torch.tensor([0, 1, 1])
    shuffled = cam.draw_references(x, image, [1, 2, 3])
    assert shuffled.shape == (3, 3, 16, 16)
    for row, i in enumerate(image.tolist()):  # a permutation of the pixel positions, shared by channels
        assert torch.equal(shuffled[row].flatten(1).sort(1).values, x[i].flatten(1).sort(1).values)
        order = shuffled[row, 0].flatten()[:, None] == x[i, 0].flatten()[None]
        assert not torch.equal(shuffled[row], x[i])
        assert order.any(1).all()
    cam = ExpectedGradCAM(model, "features.4", references="uniform-noise")
    noise = cam.draw_references(x, image, [1, 2, 1])
    assert noise.min() >= 0 and noise.max() <= 1 and torch.equal(noise[0], noise[2])
    assert not torch.equal(noise[0], noise[1])
    assert ExpectedGradCAM(model, "features.4", references="black").point_mass(x).abs().max() == 0
    blurred = ExpectedGradCAM(model, "features.4", references="blur", blur_sigma=1.5).point_mass(x)
    assert torch.allclose(blurred, gaussian_blur(x, 1.5))


def test_baselines_blur_and_mean():
    x = images(2)
    flat = torch.full((1, 3, 9, 9), 0.4)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat)  # a constant image is a fixed point
    blurred = gaussian_blur(x, 2.0)
    assert blurred.shape == x.shape and blurred.var() < 0.5 * x.var()
    assert torch.allclose(blurred.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.03)
    mean = make_baseline("mean", x, 0.0)
    assert torch.allclose(mean, x.mean(dim=(2, 3), keepdim=True).expand_as(x))


# --------------------------------------------------------------------------- Smooth Grad-CAM++

def test_smooth_gradcampp_with_zero_sigma_equals_gradcampp():
    model, x = ReluHead(5).eval(), images(3)
    target = torch.tensor([[0, 1], [2, 3], [4, 0]])
    ours = raw(SmoothGradCAMPlusPlus(model, "features.4", samples=4, sigma=0.0), x, target)
    reference = raw(GradCAMPlusPlus(model, "features.4"), x, target)
    assert reference.abs().max() > 0
    assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_smooth_gradcampp_noise_changes_only_the_gradients():
    # A GAP + linear head has constant gradients, so noise changes nothing: this also checks
    # that the activations are the clean image's. On a ReLU head the noise does matter.
    model, x = GapLinear().eval(), images(2)
    smooth = raw(SmoothGradCAMPlusPlus(model, "features.3", samples=5, sigma=0.3, seed=0), x, 1)
    assert torch.allclose(smooth, raw(GradCAMPlusPlus(model, "features.3"), x, 1), rtol=1e-4, atol=1e-6)
    model = ReluHead().eval()
    smooth = SmoothGradCAMPlusPlus(model, "features.4", samples=5, sigma=0.3, seed=0)
    assert rel(raw(smooth, x, 1), raw(GradCAMPlusPlus(model, "features.4"), x, 1)) > 1e-3
    assert torch.equal(raw(smooth, x, 1), raw(smooth, x, 1))
    # No cross-check with torchcam's SmoothGradCAMpp: it ReLUs the *last* noisy gradient instead of
    # the mean, uses Σ_ab(A·G3) instead of Σ_ab A · G3, draws its own noise and rejects σ = 0.


# --------------------------------------------------------------------------- Score-CAM

def hand_scorecam(model: AffineNet, x, target, keep=None):
    """w_k = ⟨∇_x y^c, x ⊙ H^k⟩ for the affine model (its bias cancels against the black baseline)."""
    probe = torch.zeros_like(x, requires_grad=True)
    (gradient,) = torch.autograd.grad(model(probe).gather(1, target[:, None]).sum(), probe)
    with torch.no_grad():
        a = model.features(x)
        up = F.interpolate(a, size=x.shape[-2:], mode="bilinear", align_corners=False)
        low, high = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
        masks = (up - low) / (high - low)
        weights = torch.einsum("nchw,nkhw->nk", gradient * x, masks)
        if keep is not None:
            top = a.mean(dim=(2, 3)).topk(keep, dim=1).indices
            weights = torch.zeros_like(weights).scatter(1, top, weights.gather(1, top))
    return weights, torch.einsum("nk,nkhw->nhw", weights, a).relu()


@pytest.mark.parametrize("keep", [None, 2])
def test_scorecam_on_a_linear_score_matches_the_hand_computation(keep):
    model, x = AffineNet().eval(), images(2, size=8)
    target = torch.tensor([2, 0])
    cam = ScoreCAM(model, "features", score="logit", max_channels=keep)
    weights, maps = hand_scorecam(model, x, target, keep)
    assert torch.allclose(cam.score_weights(x, target), weights, rtol=1e-4, atol=1e-5)
    assert torch.allclose(raw(cam, x, target), maps, rtol=1e-4, atol=1e-5)
    if keep is not None:
        assert (cam.score_weights(x, target) != 0).sum(1).le(keep).all()


def test_scorecam_softmax_weights_are_probability_gains():
    model, x = ReluHead(6).eval(), images(2)
    cam = ScoreCAM(model, "features.4")
    weights = cam.score_weights(x, torch.tensor([1, 2]))
    assert weights.shape == (2, 8) and weights.abs().max() > 0
    assert weights.abs().max() <= 1  # differences of two probabilities


def test_scorecam_matches_torchcam_at_full_resolution():
    # torchcam (like pytorch-grad-cam) weights maps by softmax over channels of the masked logits,
    # softmax_k(y^c(x ⊙ H^k) − y^c(x_b)). Softmax ignores a shift common to all k, so it equals
    # softmax_k of our score="logit" weights. At the input resolution there is no upsampling, so
    # normalising before (torchcam) or after (camkit) upsampling agrees. Tolerance 1e-5.
    from torchcam.methods import ScoreCAM as TorchcamScoreCAM

    model, x = FullRes().eval(), images(2)
    target = [1, 3]
    with TorchcamScoreCAM(model, "features.1", batch_size=4, input_shape=(3, 16, 16)) as extractor:
        with torch.no_grad():
            scores = model(x)
        theirs = extractor(class_idx=target, scores=scores)[0]
    cam = ScoreCAM(model, "features.1", score="logit")
    weights = cam.score_weights(x, torch.tensor(target)).softmax(dim=1)
    with torch.no_grad():
        activation = model.features(x)
    ours = normalize_maps(torch.einsum("nk,nkhw->nhw", weights, activation).relu())
    assert theirs.shape == ours.shape == (2, 16, 16)
    assert torch.allclose(ours, theirs, atol=1e-5)


# --------------------------------------------------------------------------- settings and registry

def test_methods_are_registered():
    assert METHODS["integrated-gradcam"] is IntegratedGradCAM
    assert METHODS["expected-gradcam"] is ExpectedGradCAM
    assert METHODS["smooth-gradcam++"] is SmoothGradCAMPlusPlus
    assert METHODS["scorecam"] is ScoreCAM


@pytest.mark.parametrize("make, match", [
    (lambda m: IntegratedGradCAM(m, steps=0), "steps must be a positive integer"),
    (lambda m: IntegratedGradCAM(m, steps=2.5), "steps must be a positive integer"),
    (lambda m: ExpectedGradCAM(m, samples=0), "samples must be a positive integer"),
    (lambda m: SmoothGradCAMPlusPlus(m, samples=-1), "samples must be a positive integer"),
    (lambda m: ExpectedGradCAM(m, sigma=-0.1), "sigma must be a finite number >= 0"),
    (lambda m: SmoothGradCAMPlusPlus(m, sigma=float("nan")), "sigma must be a finite number >= 0"),
    (lambda m: IntegratedGradCAM(m, variant="paper-v2"),
     "unknown variant 'paper-v2'; allowed: 'paper', 'authors-code'"),
    (lambda m: ExpectedGradCAM(m, references="gaussian"),
     "unknown references 'gaussian'; allowed: 'black', 'blur', 'uniform-noise', 'shuffled-pixels', or a tensor"),
    (lambda m: IntegratedGradCAM(m, baseline="white"),
     "unknown baseline 'white'; allowed: 'black', 'blur', 'mean', or a tensor of images"),
    (lambda m: ExpectedGradCAM(m, references=torch.zeros(0, 3, 16, 16)), "empty set of images"),
    (lambda m: ExpectedGradCAM(m, references=torch.zeros(16, 16)), r"\(C, H, W\) or \(R, C, H, W\)"),
    (lambda m: ExpectedGradCAM(m, t_law="beta"), "unknown t_law 'beta'; allowed: 'uniform', 'stratified'"),
    (lambda m: ExpectedGradCAM(m, t_law=1.5), r"must lie in \[0, 1\]"),
    (lambda m: ExpectedGradCAM(m, seed=1, generator=torch.Generator()), "not both"),
    (lambda m: ScoreCAM(m, max_channels=0), "max_channels must be a positive integer or None"),
])
def test_bad_settings_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make(ReluHead())


def test_references_or_baselines_of_the_wrong_shape_raise_at_call_time():
    model, x = ReluHead().eval(), images(3)
    with pytest.raises(ValueError, match=r"references has images of shape \(1, 16, 16\)"):
        ExpectedGradCAM(model, "features.4", references=torch.rand(4, 1, 16, 16), samples=2)(x)
    with pytest.raises(ValueError, match=r"baseline must hold 1 or N = 3 images, got 2"):
        IntegratedGradCAM(model, "features.4", baseline=torch.rand(2, 3, 16, 16), steps=2)(x)
    with pytest.raises(ValueError, match=r"baseline has images of shape \(3, 8, 8\)"):
        ScoreCAM(model, "features.4", baseline=torch.rand(3, 8, 8))(x)
    with pytest.raises(ValueError, match=r"t_law must return a \(6,\) tensor of values in \[0, 1\]"):
        ExpectedGradCAM(model, "features.4", samples=2, t_law=lambda n, g: torch.full((n,), 2.0))(x)


def test_maps_stay_on_the_model_device(cuda_device):
    model, x = ReluHead().eval().to(cuda_device), images(2).to(cuda_device)
    for cam in (IntegratedGradCAM(model, "features.4", steps=4, baseline="blur"),
                ExpectedGradCAM(model, "features.4", samples=4, references="shuffled-pixels", seed=0),
                ExpectedGradCAM(model, "features.4", samples=4, references=images(3).to(cuda_device), seed=0),
                SmoothGradCAMPlusPlus(model, "features.4", samples=4, seed=0),
                ScoreCAM(model, "features.4", max_channels=4)):
        maps = cam(x)
        assert maps.device.type == "cuda" and maps.shape == (2, 16, 16) and torch.isfinite(maps).all()


def test_old_spellings_of_settings_warn_and_give_the_same_maps():
    """ScoreCAM(softmax=False) is score="logit"; baseline "zero" is "black" (one vocabulary)."""
    model, x = ReluHead().eval(), images(2)
    new = ScoreCAM(model, "features.4", score="logit")(x)
    with pytest.warns(DeprecationWarning, match="softmax"):
        old = ScoreCAM(model, "features.4", softmax=False)(x)
    assert torch.equal(new, old)
    with pytest.warns(DeprecationWarning, match="zero"):
        zero = IntegratedGradCAM(model, "features.4", steps=3, baseline="zero")
    assert torch.equal(zero(x), IntegratedGradCAM(model, "features.4", steps=3, baseline="black")(x))


def test_auto_internal_batch_size_is_16_on_cpu_and_gives_the_same_maps():
    model, x = ReluHead().eval(), images(3)
    auto = IntegratedGradCAM(model, "features.4", steps=20)
    assert auto.internal_batch_size == "auto" and auto.rows_per_pass(torch.device("cpu")) == 16
    assert auto.rows_per_pass(torch.device("cuda")) == 64
    whole = IntegratedGradCAM(model, "features.4", steps=20, internal_batch_size=None)
    assert torch.allclose(auto(x, normalize=False), whole(x, normalize=False), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="internal_batch_size"):
        IntegratedGradCAM(model, "features.4", internal_batch_size="fast")
