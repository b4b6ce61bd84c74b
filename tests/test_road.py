"""ROAD (Rong et al., ICML 2022): the noisy linear imputation and the MoRF / LeRF / combined scores,
against the maths and against pytorch-grad-cam's ``pytorch_grad_cam.metrics.road``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camkit import metrics
from camkit.metrics.debiased_removal import NEIGHBOUR_WEIGHTS, linear_imputation
from nets import hook_count

pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # numpy 2 vs scipy in the peer


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_thread):
    """Tiny models and small convolutions: extra intra-op threads only spin on a shared CPU."""


class SmallNet(nn.Module):
    """conv, ReLU, pool, conv, ReLU, then a linear layer on the flat 20 × 20 maps (no global pooling),
    scaled so that removing pixels moves the logits by O(1)."""

    def __init__(self, seed: int = 0, classes: int = 5):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 10 * 10, classes))
        with torch.no_grad():
            self.head[1].weight.mul_(20)

    def forward(self, x):
        return self.head(self.features(x))


def data(n: int = 2, size: int = 20, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator), torch.rand(n, size, size, generator=generator)


# --------------------------------------------------------------------------- the imputation

def test_imputed_pixels_are_the_weighted_mean_of_their_neighbours():
    x, _ = data(2, 12)
    removed = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(3)) < 0.6
    filled = linear_imputation(x.double(), removed, tolerance=1e-12)
    kernel = torch.tensor(NEIGHBOUR_WEIGHTS, dtype=torch.float64)
    padded = torch.nn.functional.pad(filled, (1, 1, 1, 1))
    weights = torch.nn.functional.pad(torch.ones(12, 12, dtype=torch.float64), (1, 1, 1, 1))
    total = sum(kernel[a, b] * padded[..., a:a + 12, b:b + 12] for a in range(3) for b in range(3))
    norm = sum(kernel[a, b] * weights[a:a + 12, b:b + 12] for a in range(3) for b in range(3))
    mean = total / norm  # the border renormalises the weights of the neighbours that exist
    assert torch.allclose(filled[removed.unsqueeze(1).expand_as(filled)], mean[removed.unsqueeze(1).expand_as(mean)],
                          atol=1e-10)
    assert torch.equal(filled[~removed.unsqueeze(1).expand_as(filled)], x.double()[~removed.unsqueeze(1).expand_as(x)])


def test_imputation_matches_pytorch_grad_cam_sparse_solve():
    # pytorch-grad-cam (the authors' code) solves the same system with scipy's spsolve; with its noise
    # set to 0 the imputed images agree to 1e-5 (measured 2e-6 at 32 px: float32 conjugate gradients).
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    x, _ = data(2, 32)
    removed = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(4)) < 0.7
    ours = linear_imputation(x, removed)
    theirs = torch.stack([NoisyLinearImputer(noise=0)(x[i], (~removed[i]).float()) for i in range(2)])
    assert (ours - theirs).abs().max() < 1e-5


def test_imputation_of_a_linear_ramp_with_its_border_kept_is_exact():
    # A linear function is its own neighbour mean (symmetric weights) away from the border, so with
    # the border known the imputation reproduces the ramp.
    ramp = torch.linspace(0, 1, 16).reshape(1, 1, 1, 16).expand(1, 3, 16, 16) * torch.tensor([1.0, 0.5, 0.2])[:, None, None]
    removed = torch.zeros(1, 16, 16, dtype=torch.bool)
    removed[:, 1:-1, 1:-1] = True
    assert torch.allclose(linear_imputation(ramp.double(), removed, tolerance=1e-12), ramp.double(), atol=1e-9)


# --------------------------------------------------------------------------- the metric

def pgc_changes(kind, model, x, maps, classes, kept):
    """pytorch-grad-cam's per-image score changes at 'percentile' ``kept`` (the % of pixels it keeps), no noise."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    remove = RemoveMostRelevantFirst if kind == "morf" else RemoveLeastRelevantFirst
    metric = PerturbationConfidenceMetric(remove(kept, NoisyLinearImputer(noise=0)))
    return metric(x, maps.numpy(), [ClassifierOutputTarget(int(c)) for c in classes], model)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_matches_pytorch_grad_cam_without_noise(order):
    # pytorch-grad-cam's ROAD...(percentile=q) keeps q % of the pixels: camkit's p = 100 − q removed.
    # 20 × 20 images: both then remove the same pixel count at every q (its np.percentile threshold
    # keeps q·HW/100 pixels exactly when HW is a multiple of 100). Scores are logits, changes of
    # 0.03-0.3; agreement 1e-4 (measured 3e-7).
    model, (x, maps) = SmallNet().eval(), data(2, 20)
    classes = torch.tensor([1, 3])
    ours = metrics.road(model, x, maps, classes, order=order, percentages=(20, 50, 90), noise=0.0, score="logit",
                        progress=False)
    for column, p in enumerate((20, 50, 90)):
        theirs = torch.from_numpy(pgc_changes(order, model, x, maps, classes, 100 - p))
        assert (ours.after[:, column] - ours.before - theirs).abs().max() < 1e-4
    assert ours.removed.tolist() == [20, 50, 90] and ours.after.shape == (2, 3)
    assert torch.allclose(ours.change, (ours.after - ours.before[:, None]).mean(1))


def test_road_combined_matches_pytorch_grad_cam(monkeypatch):
    # ROADCombined builds NoisyLinearImputer() with noise 0.01 drawn from torch's global RNG; with
    # that default set to 0 it is deterministic and equals road_combined(noise=0) to 1e-4 (measured 6e-8).
    from pytorch_grad_cam.metrics import road as pgc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    monkeypatch.setattr(pgc_road.NoisyLinearImputer.__init__, "__defaults__", (0.0, pgc_road.neighbors_weights))
    model, (x, maps) = SmallNet(2).eval(), data(2, 20, seed=5)
    classes = torch.tensor([0, 4])
    theirs = pgc_road.ROADCombined(percentiles=[10, 40, 70])(x, maps.numpy(), [ClassifierOutputTarget(int(c))
                                                                              for c in classes], model)
    ours = metrics.road_combined(model, x, maps, classes, percentages=(30, 60, 90), noise=0.0, score="logit",
                                 progress=False)
    assert ours.shape == (2,)
    assert (ours - torch.from_numpy(theirs)).abs().max() < 1e-4


def test_removal_order_and_counts():
    # MoRF removes the best-ranked pixels, LeRF the worst; counts are round(p·HW/100); ties in raster order.
    model, (x, _) = SmallNet().eval(), data(1, 20)
    maps = torch.arange(400.0).reshape(1, 20, 20)  # best pixels at the bottom
    seen = []
    handle = model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].clone()))
    try:
        metrics.road(model, x, maps, 0, order="morf", percentages=(30,), noise=0.0, progress=False)
        metrics.road(model, x, maps, 0, order="lerf", percentages=(30,), noise=0.0, progress=False)
    finally:
        handle.remove()
    morf, lerf = seen[1][0], seen[3][0]  # [0] and [2] are the clean passes
    changed_morf = (morf != x[0]).any(0).flatten()
    changed_lerf = (lerf != x[0]).any(0).flatten()
    assert changed_morf[280:].all() and not changed_morf[:280].any()  # 30 % of 400 = 120 pixels
    assert changed_lerf[:120].all() and not changed_lerf[120:].any()


def test_noise_is_seeded_per_row_and_independent_of_internal_batch_size():
    model, (x, maps) = SmallNet().eval(), data(3, 20)

    def run(**kw):
        return metrics.road(model, x, maps, order="morf", percentages=(25, 75), progress=False, **kw).after

    base = run(seed=0, internal_batch_size=None)
    assert torch.allclose(run(seed=0, internal_batch_size=1), base, atol=1e-6)
    assert torch.equal(run(seed=0, internal_batch_size=4), run(seed=0, internal_batch_size=4))
    assert not torch.allclose(run(seed=1), base)
    assert not torch.allclose(run(seed=0, noise=0.0), base)
    generator = torch.Generator().manual_seed(0)
    assert torch.allclose(run(generator=generator), base, atol=1e-6)
    assert not torch.allclose(run(generator=generator), base)  # a generator is consumed


def test_a_faithful_map_beats_its_inverse():
    # On a model that only looks at the top-left quadrant, a map of that quadrant gives a larger
    # MoRF drop and a larger combined score than its inverse.
    class Quadrant(nn.Module):
        def forward(self, x):
            return torch.stack([x[:, :, :10, :10].mean(dim=(1, 2, 3)) * 10, torch.zeros(x.shape[0])], 1)

    model = Quadrant().eval()
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(2)) * 0.2 + 0.8
    x[:, :, 10:, 10:] = 0.0
    good = torch.zeros(2, 20, 20)
    good[:, :10, :10] = 1.0
    good = good + torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(3)) * 0.1
    bad = 1.1 - good
    options = dict(target=0, score="logit", seed=0, progress=False)
    assert (metrics.road(model, x, good, order="morf", **options).change
            < metrics.road(model, x, bad, order="morf", **options).change).all()
    assert (metrics.road_combined(model, x, good, **options) > metrics.road_combined(model, x, bad, **options)).all()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(order="most"), ValueError, "order must be 'morf'"),
    (dict(percentages=(0, 50)), ValueError, r"percentages must be numbers in \(0, 100\)"),
    (dict(percentages=()), ValueError, "percentages must be"),
    (dict(percentages=(100,)), ValueError, "percentages must be"),
    (dict(noise=-0.1), ValueError, "noise must be a finite number >= 0"),
    (dict(seed=1, generator=torch.Generator()), ValueError, "not both"),
    (dict(score="probability"), ValueError, "score must be 'prob'"),
    (dict(target=9), ValueError, "out of range"),
    (dict(target=torch.tensor([[0, 1], [1, 2]])), ValueError, "one class index per image"),
    (dict(internal_batch_size=0), ValueError, "internal_batch_size"),
])
def test_bad_settings_raise_clear_errors(kwargs, error, match):
    model, (x, maps) = SmallNet().eval(), data(2, 20)
    with pytest.raises(error, match=match):
        metrics.road(model, x, maps, progress=False, **kwargs)
    assert hook_count(model) == 0


def test_bad_maps_and_images_raise_clear_errors():
    model, (x, maps) = SmallNet().eval(), data(2, 20)
    with pytest.raises(ValueError, match=r"maps must have shape \(N, H, W\)"):
        metrics.road(model, x, maps[:, :10], progress=False)
    with pytest.raises(ValueError, match="non-negative"):
        metrics.road(model, x, maps - 1, progress=False)
    with pytest.raises(ValueError, match="bool mask"):
        linear_imputation(x, maps)  # a float map, not a bool mask
    with pytest.raises(ValueError, match="empty batch"):
        metrics.road(model, x[:0], maps[:0], progress=False)
    assert np.isfinite(metrics.road_combined(model, x, maps, seed=0, progress=False).numpy()).all()
