"""camkit.metrics: analytic cases, cross-checks against captum / pytorch-grad-cam / scipy / skimage, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import camkit
import camkit.metrics as M

# --------------------------------------------------------------------------- tiny models and data


class MeanNet(nn.Module):
    """Softmax probability of class 0 equals the mean pixel value m: logits (log m, log(1 − m))."""

    def __init__(self):
        super().__init__()
        self.eval()

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3)).clamp(1e-6, 1 - 1e-6)
        return torch.stack([m.log(), (1 - m).log()], 1)


class TinyCNN(nn.Module):
    """conv -> ReLU -> conv (``features``, the target layer) -> ReLU -> GAP -> linear."""

    def __init__(self, bias: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=bias), nn.ReLU(),
                                      nn.Conv2d(6, 8, 3, padding=1, bias=bias))
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        return self.head(self.features(x))


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def cnn():
    return TinyCNN().eval()


@pytest.fixture(scope="module")
def batch(cnn):
    x = rand(4, 3, 16, 16, seed=1)
    maps = camkit.GradCAM(cnn, "features")(x)
    return x, maps


def trapezoid(values):
    n = len(values) - 1
    return sum((a + b) / 2 for a, b in zip(values[:-1], values[1:])) / n


# --------------------------------------------------------------------------- localization


def box_map(box, size=(12, 16)):
    m = torch.zeros(size)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 1
    return m


def test_box_indicator_gives_ebpg_bbox_and_pointing_of_one():
    boxes = [[2, 3, 7, 9], [[0, 0, 4, 4], [10, 6, 16, 12]]]  # one box, then two boxes (united)
    maps = torch.stack([box_map(boxes[0]), box_map(boxes[1][0]) + box_map(boxes[1][1])])
    assert M.energy_pointing_game(maps, boxes).tolist() == [1.0, 1.0]
    assert M.bbox_score(maps, boxes).tolist() == [1.0, 1.0]
    assert M.pointing_game(maps, boxes).tolist() == [True, True]
    masks = M.region_masks(boxes, 2, (12, 16))
    assert torch.equal(masks, maps.bool())  # integer boxes cover mask[y0:y1, x0:x1]
    assert M.energy_pointing_game(maps, masks).tolist() == [1.0, 1.0]  # masks give the same scores
    # a (N, 4) tensor of boxes, and a map half inside: EBPG = 1/2, bbox = 1/2
    half = box_map([2, 3, 7, 9]) + box_map([9, 3, 14, 9])
    assert M.energy_pointing_game(half[None], torch.tensor([[2, 3, 7, 9]])).item() == pytest.approx(0.5)
    assert M.bbox_score(half[None], torch.tensor([[2., 3., 7., 9.]])).item() == pytest.approx(0.5)
    graded = 0.5 * box_map([2, 3, 7, 9]) + box_map([9, 3, 14, 9])  # energy is Σ E, not Σ E²: 1/3, not 1/5
    assert M.energy_pointing_game(graded[None], [[2, 3, 7, 9]]).item() == pytest.approx(1 / 3)
    assert M.bbox_score(graded[None], [[2, 3, 7, 9]]).item() == 0.0  # the top-30 pixels are all outside


def test_pointing_game_misses_a_peak_outside_and_tolerance_is_euclidean():
    maps = torch.zeros(1, 12, 16)
    maps[0, 5, 12] = 1.0  # peak 3 px right of the box's last column (x = 9)
    box = [[2, 3, 10, 9]]
    maps += 0.1 * box_map(box[0])  # energy inside the box does not matter for pointing
    assert not M.pointing_game(maps, box).item()
    assert not M.pointing_game(maps, box, tolerance=2).item()
    assert M.pointing_game(maps, box, tolerance=3).item()
    maps2 = torch.zeros(1, 12, 16)
    maps2[0, 10, 12] = 1.0  # offset (2 rows, 3 columns) from the corner (row 8, column 9): distance √13 ≈ 3.6
    assert not M.pointing_game(maps2, box, tolerance=3).item()
    assert M.pointing_game(maps2, box, tolerance=4).item()


def test_constant_and_zero_maps_have_defined_localization_scores():
    box = [[4, 4, 8, 8]]
    for value in (0.0, 0.7):
        maps = torch.full((1, 12, 16), value)
        ebpg, bb = M.energy_pointing_game(maps, box), M.bbox_score(maps, box)
        assert torch.isfinite(ebpg).all() and torch.isfinite(bb).all()
        assert ebpg.item() == pytest.approx(0.0 if value == 0 else 16 / 192)
        assert bb.item() == 0.0  # top-16 in raster order = first row, outside the box
        assert not M.pointing_game(maps, box).item()  # the first maximum is pixel (0, 0)
    assert M.pointing_game(torch.zeros(1, 12, 16), [[0, 0, 1, 1]]).item()


# --------------------------------------------------------------------------- insertion / deletion


def mean_net_case(seed=0, size=4):
    """1-channel size x size image of distinct values and an unrelated map of distinct values."""
    values = torch.randperm(size * size, generator=torch.Generator().manual_seed(seed)).float()
    x = ((values + 1) / (size * size + 1)).reshape(1, 1, size, size)
    order = torch.randperm(size * size, generator=torch.Generator().manual_seed(seed + 1)).float()
    maps = (order / order.max()).reshape(1, size, size)
    return x, maps


def by_map(x, maps):
    """Pixel values (python floats) in decreasing map order."""
    pairs = sorted(zip(maps.flatten().tolist(), x.flatten().tolist()), key=lambda t: -t[0])
    return [v for _, v in pairs]


@pytest.mark.parametrize("n_steps", [16, 4])
def test_deletion_auc_equals_hand_computed(n_steps):
    x, maps = mean_net_case()
    v, hw = by_map(x, maps), 16
    hand = [sum(v[k * hw // n_steps:]) / hw for k in range(n_steps + 1)]  # deleted pixels -> black
    curve = M.deletion(MeanNet(), x, maps, target=0, steps=n_steps, progress=False)
    assert curve.x.tolist() == pytest.approx([k / n_steps for k in range(n_steps + 1)])
    assert curve.y[0].tolist() == pytest.approx(hand, abs=1e-6)
    assert curve.auc.item() == pytest.approx(trapezoid(hand), abs=1e-6)


def test_insertion_auc_equals_hand_computed_on_a_given_canvas():
    x, maps = mean_net_case(seed=3)
    v, hw, n_steps, c = by_map(x, maps), 16, 8, 0.25
    hand = [(sum(v[:k * hw // n_steps]) + c * (hw - k * hw // n_steps)) / hw for k in range(n_steps + 1)]
    curve = M.insertion(MeanNet(), x, maps, target=0, steps=n_steps, canvas=c, progress=False)
    assert curve.y[0].tolist() == pytest.approx(hand, abs=1e-6)
    assert curve.auc.item() == pytest.approx(trapezoid(hand), abs=1e-6)
    # the default canvas is the blurred image: the curve starts at the blurred image's mean
    blurred = M.insertion(MeanNet(), x, maps, target=0, steps=n_steps, progress=False)
    assert blurred.y[0, 0].item() == pytest.approx(M.blur(x).mean().item(), abs=1e-6)
    assert blurred.y[0, -1].item() == pytest.approx(x.mean().item(), abs=1e-6)


def test_ties_are_broken_in_raster_order_so_a_constant_map_is_defined():
    x, _ = mean_net_case(seed=5)
    raster = x.flatten().tolist()
    hand = [sum(raster[k * 4:]) / 16 for k in range(5)]
    for value in (0.0, 0.5):
        curve = M.deletion(MeanNet(), x, torch.full((1, 4, 4), value), target=0, steps=4, progress=False)
        assert curve.y[0].tolist() == pytest.approx(hand, abs=1e-6)


def test_blur_is_a_gaussian_of_radius_3_sigma_away_from_the_border():
    """The metrics' "blur" is camkit's one blur (σ = 5 px, radius ⌈3σ⌉ = 15): torchvision's 31-tap kernel."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    x = rand(2, 3, 40, 40, seed=2)
    ours, theirs = M.blur(x), tvf.gaussian_blur(x, [31, 31], [5.0, 5.0])
    assert torch.allclose(ours[..., 15:-15, 15:-15], theirs[..., 15:-15, 15:-15], atol=1e-6)
    assert torch.equal(M.blur(x, 2.0), camkit.transforms.gaussian_blur(x, 2.0))
    assert torch.allclose(M.blur(torch.full((1, 1, 8, 8), 0.3)), torch.tensor(0.3))  # no dark border


def test_curves_do_not_depend_on_batch_size(cnn, batch):
    x, maps = batch
    a = M.insertion(cnn, x, maps, steps=10, internal_batch_size=7, progress=False)
    b = M.insertion(cnn, x, maps, steps=10, internal_batch_size=None, progress=False)
    assert torch.allclose(a.y, b.y, atol=1e-6) and torch.allclose(a.auc, b.auc, atol=1e-6)
    assert (a.y[:, -1] - torch.softmax(cnn(x), 1).amax(1)).abs().max() < 1e-6  # ends at the clean image
    d = M.deletion(cnn, x, maps, steps=10, internal_batch_size=5, progress=False)
    assert torch.isfinite(d.auc).all() and ((d.auc >= 0) & (d.auc <= 1)).all()


# --------------------------------------------------------------------------- confidence change


def test_average_drop_of_the_all_ones_map_is_zero(cnn, batch):
    x, _ = batch
    conf = M.keep_confidence(cnn, x, torch.ones(4, 16, 16), progress=False)
    assert torch.equal(conf.before, conf.after)
    assert M.average_drop(conf).item() == 0.0 and M.increase_in_confidence(conf).item() == 0.0


def test_constant_and_zero_maps_give_defined_faithfulness_scores(cnn, batch):
    x, _ = batch
    for value in (0.0, 0.5):
        maps = torch.full((4, 16, 16), value)
        conf = M.keep_confidence(cnn, x, maps, progress=False)
        results = [M.average_drop(conf), M.increase_in_confidence(conf),
                   M.remove_confidence(cnn, x, maps, progress=False).after,
                   M.insertion(cnn, x, maps, steps=4, progress=False).auc,
                   M.deletion(cnn, x, maps, steps=4, progress=False).auc,
                   M.infidelity(cnn, x, maps, samples=4, progress=False),
                   M.spearman(maps, maps), M.ssim(maps, maps)]
        assert all(torch.isfinite(r).all() for r in results)
    assert M.spearman(torch.zeros(4, 16, 16), batch[1]).abs().max() == 0
    assert M.ssim(torch.full((4, 16, 16), 0.5), torch.full((4, 16, 16), 0.5)).tolist() == pytest.approx([1.0] * 4)


def test_keep_confidence_matches_pytorch_grad_cam(cnn, batch):
    """pytorch_grad_cam.metrics.cam_mult_image: O − Y, max(0, Y − O) and [O > Y] on the same maps."""
    cmi = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    x, maps = batch
    conf = M.keep_confidence(cnn, x, maps, progress=False)
    targets = [ClassifierOutputSoftmaxTarget(c) for c in conf.classes.tolist()]
    diff = cmi.CamMultImageConfidenceChange()(x, maps.numpy(), targets, cnn)
    drop = cmi.DropInConfidence()(x, maps.numpy(), targets, cnn)
    increase = cmi.IncreaseInConfidence()(x, maps.numpy(), targets, cnn)
    np.testing.assert_allclose((conf.after - conf.before).numpy(), diff, atol=1e-6)
    np.testing.assert_allclose(M.average_drop(conf).item(),
                               100 * np.mean(drop / conf.before.numpy()), rtol=1e-5)
    assert M.increase_in_confidence(conf).item() == pytest.approx(100 * increase.mean())


def test_remove_top_p_matches_pytorch_grad_cam_remove_most_relevant_first(cnn, batch):
    """p = 25 % of 256 pixels: grad-cam keeps the pixels below the 75th percentile (position 191.25), i.e.
    192. Maps with distinct values: on ties grad-cam's ``mask < percentile`` keeps fewer pixels (for a
    Grad-CAM map that is 0 on over 75 % of the pixels, none), while camkit removes exactly round(p·HW/100)."""
    pc = pytest.importorskip("pytorch_grad_cam.metrics.perturbation_confidence")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    x, maps = batch[0], rand(4, 16, 16, seed=8)
    conf = M.remove_confidence(cnn, x, maps, p=25, baseline="black", progress=False)
    metric = pc.PerturbationConfidenceMetric(pc.RemoveMostRelevantFirst(75, lambda img, keep: img * keep))
    targets = [ClassifierOutputSoftmaxTarget(c) for c in conf.classes.tolist()]
    theirs = metric(x, maps.numpy(), targets, cnn, return_diff=False)
    np.testing.assert_allclose(conf.after.numpy(), theirs, atol=1e-6)


def test_remove_top_p_equals_hand_computed_for_each_baseline():
    x, maps = mean_net_case(seed=7)
    v = by_map(x, maps)
    mean = x.mean().item()
    for baseline, fill in (("black", 0.0), ("mean", mean), (0.9, 0.9)):
        conf = M.remove_confidence(MeanNet(), x, maps, target=0, p=25, baseline=baseline, progress=False)
        assert conf.before.item() == pytest.approx(mean, abs=1e-6)
        assert conf.after.item() == pytest.approx((sum(v[4:]) + 4 * fill) / 16, abs=1e-6)


def test_win_splits_ties_and_is_complementary(cnn, batch):
    x, maps = batch
    a = M.keep_confidence(cnn, x, maps, progress=False)
    b = M.keep_confidence(cnn, x, maps.flip(-1), progress=False)
    assert M.win(a, a).item() == 50.0
    assert (M.win(a, b) + M.win(b, a)).item() == pytest.approx(100.0)
    expected = 100 * ((a.after > b.after).float() + 0.5 * (a.after == b.after).float()).mean()
    assert M.win(a, b).item() == pytest.approx(expected.item())


# --------------------------------------------------------------------------- infidelity


@pytest.mark.parametrize("kind,score", [("gaussian", "logit"), ("square", "logit"), ("gaussian", "prob")])
def test_infidelity_matches_captum_normalized(cnn, batch, kind, score):
    """Same perturbations, captum.metrics.infidelity(normalize=True): agreement within rtol 1e-4."""
    captum_metrics = pytest.importorskip("captum.metrics")
    x, maps = batch
    n_perturb, side = 12, 5
    ours = M.infidelity(cnn, x, maps, perturbation=kind, samples=n_perturb, square_size=side,
                        score=score, seed=3, internal_batch_size=10, progress=False)
    classes = cnn(x).argmax(1)
    seeds = camkit.common.draw_seeds(camkit.common.make_generator(3), len(x) * n_perturb)
    noise = M._perturbations(x.repeat_interleave(n_perturb, 0), seeds, kind, 0.1, side)

    def perturb(inputs):  # captum expands x with repeat_interleave: same order as our sample ids
        return noise, inputs - noise

    forward = cnn if score == "logit" else (lambda inp: torch.softmax(cnn(inp), 1))
    theirs = captum_metrics.infidelity(forward, perturb, x, maps[:, None].expand_as(x), target=classes,
                                       n_perturb_samples=n_perturb, normalize=True)
    assert torch.allclose(ours, theirs.float(), rtol=1e-4, atol=1e-9), (ours, theirs)


def test_infidelity_is_seeded_batch_size_free_and_scale_invariant(cnn, batch):
    x, maps = batch
    run = lambda m, **kw: M.infidelity(cnn, x, m, samples=8, progress=False, **kw)
    base = run(maps, internal_batch_size=5)
    assert torch.equal(base, run(maps, internal_batch_size=None))
    assert not torch.equal(base, run(maps, seed=1))
    assert torch.allclose(base, run(0.25 * maps), rtol=1e-5)  # β absorbs the scale of the map
    assert not torch.allclose(run(maps, normalize=False), run(0.25 * maps, normalize=False), rtol=1e-3)


def test_infidelity_of_several_maps_shares_the_passes_and_equals_one_call_each(cnn, batch):
    """A mapping of maps gives, per name, exactly the one-map result (same perturbations), with the
    model's passes made once: a counting model sees N x samples perturbed rows, not K times that."""
    x, maps = batch
    several = {"a": maps, "b": maps.flip(-1), "flat": torch.ones_like(maps)}
    calls = []

    class Counting(torch.nn.Module):
        def forward(self, inp):
            calls.append(inp.shape[0])
            return cnn(inp)

    counting = Counting().eval()
    for kind in ("gaussian", "square"):
        calls.clear()
        joint = M.infidelity(counting, x, several, perturbation=kind, samples=4, progress=False)
        assert sum(calls) == x.shape[0] * (1 + 4), calls   # the clean pass + N x samples perturbed rows
        assert list(joint) == list(several)
        for name, e in several.items():
            assert torch.equal(joint[name], M.infidelity(cnn, x, e, perturbation=kind, samples=4, progress=False)), name
    with pytest.raises(ValueError, match="empty mapping"):
        M.infidelity(cnn, x, {}, samples=2, progress=False)
    with pytest.raises(ValueError, match="shape"):
        M.infidelity(cnn, x, {"a": maps, "bad": maps[:1]}, samples=2, progress=False)


# --------------------------------------------------------------------------- sanity and saturation


def test_spearman_and_ssim_match_scipy_and_skimage():
    stats = pytest.importorskip("scipy.stats")
    skm = pytest.importorskip("skimage.metrics")
    a = rand(3, 20, 24, seed=4)
    b = 0.5 * a + 0.5 * rand(3, 20, 24, seed=5)
    a[0, :10] = 0.25  # ties
    b[1] = (b[1] * 4).round() / 4  # heavy ties
    rho, sim = M.spearman(a, b), M.ssim(a, b)
    for i in range(3):
        assert rho[i].item() == pytest.approx(stats.spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-6)
        ref = skm.structural_similarity(a[i].numpy(), b[i].numpy(), gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0)
        assert sim[i].item() == pytest.approx(ref, abs=1e-5)
    assert M.spearman(a, a).tolist() == pytest.approx([1.0] * 3)
    assert M.spearman(a, 1 - a).tolist() == pytest.approx([-1.0] * 3)


def test_model_randomization_top_down_and_model_untouched(cnn, batch):
    x, _ = batch
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    gradcam = lambda m, xs, c: camkit.GradCAM(m, "features")(xs, c)
    result = M.model_randomization(cnn, x, gradcam, progress=False)
    assert result.layers == ["head.3", "features.2", "features.0"]  # top first
    assert result.spearman.shape == result.ssim.shape == (3, 4)
    assert torch.isfinite(result.spearman).all() and torch.isfinite(result.ssim).all()
    assert result.ssim[-1].mean() < 0.9  # fully randomised: maps differ
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())
    # a "method" that ignores the model passes none of its randomisations: similarity stays 1
    fixed = M.model_randomization(cnn, x, lambda m, xs, c: batch[1], progress=False, cascading=False)
    assert torch.allclose(fixed.spearman, torch.ones(3, 4)) and torch.allclose(fixed.ssim, torch.ones(3, 4))


def test_saturation_curve_of_a_linear_layer_is_flat():
    """A bias-free conv is linear: A(αx) = αA(x), so cos = 1 for α > 0 and 0 (zero embedding) at α = 0."""
    model = TinyCNN(bias=False).eval()
    x = rand(2, 3, 12, 12, seed=6)
    curve = M.saturation_curve(model, "features.0", x, steps=5, internal_batch_size=3, progress=False)
    assert curve.x.tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert curve.y[:, 0].tolist() == [0.0, 0.0]
    assert torch.allclose(curve.y[:, 1:], torch.ones(2, 4), atol=1e-5)
    biased = M.saturation_curve(TinyCNN().eval(), "features", x, steps=5, progress=False)
    assert (biased.y[:, -1] - 1).abs().max() < 1e-5 and (biased.y[:, 0] < 1).all()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,match", [
    (lambda m, x, e: M.keep_confidence(m, x, e[:3]), "shape"),                      # mismatched batch
    (lambda m, x, e: M.keep_confidence(m, x, e[:, None]), "channel"),               # (N, 1, H, W)
    (lambda m, x, e: M.insertion(m, x, e[:, :8, :8]), "upsample"),                  # low-res maps
    (lambda m, x, e: M.keep_confidence(m, x, 2 * e + 0.1), r"\[0, 1\]"),            # not in [0, 1]
    (lambda m, x, e: M.deletion(m, x, e - 0.5), "non-negative"),
    (lambda m, x, e: M.remove_confidence(m, x, e, p=0), r"\(0, 100\)"),
    (lambda m, x, e: M.remove_confidence(m, x, e, p=100), r"\(0, 100\)"),
    (lambda m, x, e: M.remove_confidence(m, x, e, baseline="noise"), "baseline"),
    (lambda m, x, e: M.insertion(m, x, e, steps=0), "steps"),
    (lambda m, x, e: M.infidelity(m, x, e, perturbation="blur"), "perturbation"),
    (lambda m, x, e: M.infidelity(m, x, e, score="softmax"), "score"),
    (lambda m, x, e: M.keep_confidence(m, x, e, target=[0, 1]), "target"),
    (lambda m, x, e: M.keep_confidence(m, x, e, target=9), "out of range"),
    (lambda m, x, e: M.win(M.keep_confidence(m, x, e, progress=False),
                           M.keep_confidence(m, x[:2], e[:2], progress=False)), "same images"),
    (lambda m, x, e: M.pointing_game(e, [[0, 0, 4, 4]] * 3), "N = 4"),              # regions vs maps
    (lambda m, x, e: M.bbox_score(e, [[0, 0, 17, 4]] * 4), "outside"),
    (lambda m, x, e: M.bbox_score(e, [[-1, 0, 4, 4]] * 4), "outside"),
    (lambda m, x, e: M.energy_pointing_game(e, [[3, 0, 3, 4]] * 4), "empty"),
    (lambda m, x, e: M.energy_pointing_game(e, [[]] * 4), "no boxes"),
    (lambda m, x, e: M.energy_pointing_game(e, [[0.6, 0, 1.4, 4]] * 4), "cover no pixel"),
    (lambda m, x, e: M.pointing_game(e, torch.zeros(4, 8, 8, dtype=torch.bool)), "masks must have shape"),
    (lambda m, x, e: M.ssim(e, e[:2]), "same shape"),
    (lambda m, x, e: M.ssim(e[:, :8, :8], e[:, :8, :8]), "at least 11"),
])
def test_bad_input_raises_a_clear_error(cnn, batch, call, match):
    x, maps = batch
    with pytest.raises((ValueError, TypeError), match=match):
        call(cnn, x, maps)


# --------------------------------------------------------------------------- device


@pytest.mark.gpu
def test_metrics_run_on_the_model_device_and_match_cpu(cuda_device, cnn, batch):
    x, maps = batch
    gpu = TinyCNN().eval().to(cuda_device)
    xg, mg = x.to(cuda_device), maps.to(cuda_device)
    box = [[2, 2, 9, 9]] * 4
    pairs = [
        (M.keep_confidence(cnn, x, maps, progress=False).after, M.keep_confidence(gpu, xg, mg, progress=False).after),
        (M.remove_confidence(cnn, x, maps, baseline="blur", progress=False).after,
         M.remove_confidence(gpu, xg, mg, baseline="blur", progress=False).after),
        (M.insertion(cnn, x, maps, steps=8, progress=False).y, M.insertion(gpu, xg, mg, steps=8, progress=False).y),
        (M.deletion(cnn, x, maps, steps=8, progress=False).y, M.deletion(gpu, xg, mg, steps=8, progress=False).y),
        (M.saturation_curve(cnn, "features", x, steps=4, progress=False).y,
         M.saturation_curve(gpu, "features", xg, steps=4, progress=False).y),
        (M.energy_pointing_game(maps, box), M.energy_pointing_game(mg, box)),
        (M.bbox_score(maps, box), M.bbox_score(mg, box)),
        (M.spearman(maps, maps.flip(-1)), M.spearman(mg, mg.flip(-1))),
        (M.ssim(maps, maps.flip(-1)), M.ssim(mg, mg.flip(-1))),
    ]
    for cpu, dev in pairs:
        assert dev.device.type == "cuda"
        assert torch.allclose(cpu, dev.cpu(), atol=1e-4)
    square = M.infidelity(gpu, xg, mg, perturbation="square", samples=6, progress=False)
    gauss = M.infidelity(gpu, xg, mg, samples=6, progress=False)
    assert square.device.type == gauss.device.type == "cuda" and torch.isfinite(gauss).all()
    sanity = M.model_randomization(gpu, xg, lambda m, xs, c: camkit.GradCAM(m, "features")(xs, c), progress=False)
    assert sanity.ssim.device.type == "cuda"
    with pytest.raises(ValueError, match="move one"):
        M.keep_confidence(gpu, xg, maps)


def test_a_model_in_training_mode_is_announced(batch):
    x, maps = batch
    with pytest.warns(UserWarning, match="training mode"):
        M.keep_confidence(TinyCNN().train(), x, maps, progress=False)


def test_model_randomization_randomises_a_container_whole():
    """A container name (here a Sequential of conv + ReLU) must change the maps, not be silently skipped."""
    import camkit
    from nets import GapLinearNet, images

    model = GapLinearNet().eval()
    x = images(3, 16)
    explain = lambda m, xs, c: camkit.GradCAM(m, "features")(xs, c)  # noqa: E731
    result = M.model_randomization(model, x, explain, layers=["features"], seed=123, progress=False)
    assert (result.spearman < 0.99).all(), result.spearman
    with pytest.raises(ValueError, match="no parameters"):
        M.model_randomization(model, x, explain, layers=["pool"], progress=False)


def test_old_spellings_still_work_with_a_deprecation_warning(cnn, batch):
    """One vocabulary: n_steps/n_perturb/n_alphas/batch_size and baseline "zero" are old names for
    steps/samples/steps/internal_batch_size and "black"; they give the same numbers and warn."""
    x, maps = batch
    new = M.deletion(cnn, x, maps, steps=4, canvas="black", internal_batch_size=5, progress=False).auc
    with pytest.warns(DeprecationWarning) as caught:
        old = M.deletion(cnn, x, maps, n_steps=4, canvas="zero", batch_size=5, progress=False).auc
    assert torch.equal(new, old)
    assert {"n_steps", "batch_size", "zero"} <= {word for w in caught for word in ("n_steps", "batch_size", "zero")
                                                  if word in str(w.message)}
    with pytest.warns(DeprecationWarning, match="n_perturb"):
        assert torch.equal(M.infidelity(cnn, x, maps, n_perturb=3, progress=False),
                           M.infidelity(cnn, x, maps, samples=3, progress=False))
    with pytest.warns(DeprecationWarning, match="n_alphas"):
        assert torch.equal(M.saturation_curve(cnn, "features", x, n_alphas=3, progress=False).y,
                           M.saturation_curve(cnn, "features", x, steps=3, progress=False).y)
    with pytest.raises(TypeError, match="both"):
        M.deletion(cnn, x, maps, n_steps=4, steps=4)


def test_average_drop_and_increase_per_image_average_to_the_summaries(cnn, batch):
    x, maps = batch
    conf = M.keep_confidence(cnn, x, maps, progress=False)
    drops, increases = M.average_drop(conf, per_image=True), M.increase_in_confidence(conf, per_image=True)
    assert drops.shape == increases.shape == (x.shape[0],)
    assert drops.mean().item() == pytest.approx(M.average_drop(conf).item())
    assert increases.mean().item() == pytest.approx(M.increase_in_confidence(conf).item())
    assert set(increases.tolist()) <= {0.0, 100.0}


def test_path_gradient_change_is_zero_at_a_gap_linear_head_and_positive_above_a_relu_head():
    from nets import GapLinearNet, ReluHeadNet, images

    x = images(3)
    gap = M.path_gradient_change(GapLinearNet().eval(), "features", x, steps=6, progress=False)
    assert gap.shape == (3,) and gap.abs().max() < 1e-5
    relu = M.path_gradient_change(ReluHeadNet().eval(), "features", x, steps=6, progress=False)
    assert (relu > 1e-3).all()
    # one path point per image (m = 1) compares x with itself
    assert M.path_gradient_change(ReluHeadNet().eval(), "features", x, steps=1, progress=False).abs().max() == 0
    with pytest.raises(ValueError, match="one target per image"):
        M.path_gradient_change(ReluHeadNet().eval(), "features", x, torch.zeros(3, 2, dtype=torch.long))
