"""camkit.stats: cluster bootstrap intervals and the verdict rule."""
import numpy as np
import pytest
import torch

from camkit import stats


def test_verdict_rule():
    assert stats.verdict(0.1, 0.5) == "reproduced"
    assert stats.verdict(-0.1, 0.5) == "inconclusive"
    assert stats.verdict(-0.5, -0.1) == "contradicted"


def test_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = stats.bootstrap_mean(rng.normal(1.0, 1.0, 20))
    large = stats.bootstrap_mean(rng.normal(1.0, 1.0, 2000))
    assert small[1] < small[0] < small[2]
    assert (large[2] - large[1]) < (small[2] - small[1]) / 5
    assert large[1] < 1.0 < large[2]


def test_group_resampling_widens_interval_for_clustered_data():
    # 4 sources, 50 near-identical composites each: the effective sample size is 4, not 200
    values = np.repeat([1.0, -0.5, 2.0, 0.2], 50) + np.random.default_rng(1).normal(0, 0.01, 200)
    groups = np.repeat(["a", "b", "c", "d"], 50)
    naive = stats.bootstrap_mean(values)
    clustered = stats.bootstrap_mean(values, groups)
    assert (clustered[2] - clustered[1]) > 5 * (naive[2] - naive[1])
    assert clustered[1] < 0 < clustered[2] and naive[1] > 0


def test_paired_claim_signs_by_direction():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), torch.tensor([0.0, 1.0, 2.0, 3.5, 4.0, 5.5])
    record = stats.paired_claim("A beats B", "test", a, b)
    assert record["verdict"] == "reproduced" and record["difference"] > 0
    lower = stats.paired_claim("A has lower drop", "test", a, b, higher_is_better=False)
    assert lower["verdict"] == "contradicted"
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_claim("x", "y", a, b[:2])


def test_too_few_independent_units_give_no_verdict():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), torch.zeros(6)
    one_source = stats.paired_claim("A beats B", "test", a, b, groups=["x"] * 6)
    assert one_source["ci95"][0] > 0   # the bootstrap alone would call it reproduced (a zero-width interval)
    assert one_source["verdict"] == "inconclusive" and "1 independent" in one_source["note"]
    four = stats.paired_claim("A beats B", "test", a[:4], b[:4])
    assert four["verdict"] == "inconclusive" and four["n_groups"] == 4
    five = stats.paired_claim("A beats B", "test", a[:5], b[:5])
    assert five["verdict"] == "reproduced" and "note" not in five
    same = stats.equivalence_claim("=", "s", a, a + 1e-3, margin=0.05, groups=["x", "x", "y", "y", "z", "z"])
    assert same["verdict"] == "inconclusive"


def test_identity_claim_and_bad_input():
    assert stats.identity_claim("CAM = Grad-CAM", "s", 1e-7, 1e-5)["verdict"] == "reproduced"
    assert stats.identity_claim("CAM = Grad-CAM", "s", 1e-3, 1e-5)["verdict"] == "contradicted"
    with pytest.raises(ValueError, match="NaN"):
        stats.bootstrap_mean([1.0, float("nan")])
    with pytest.raises(ValueError, match="groups"):
        stats.bootstrap_mean([1.0, 2.0], ["a"])


def test_equivalence_claim_needs_the_interval_inside_the_margin():
    rng = np.random.default_rng(2)
    same = rng.normal(0, 0.1, 400)
    assert stats.equivalence_claim("=", "s", same, np.zeros(400), margin=0.05)["verdict"] == "reproduced"
    noisy = rng.normal(0, 3.0, 20)
    assert stats.equivalence_claim("=", "s", noisy, np.zeros(20), margin=0.05)["verdict"] == "inconclusive"
    far = rng.normal(1.0, 0.1, 400)
    record = stats.equivalence_claim("=", "s", far, np.zeros(400), margin=0.05)
    assert record["verdict"] == "contradicted" and record["margin"] == 0.05
    with pytest.raises(ValueError, match="margin"):
        stats.equivalence_claim("=", "s", far, far, margin=0)
