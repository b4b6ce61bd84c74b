"""camkit.report.stats: few-cluster intervals, Holm, TOST, the five verdicts, and the old API."""
import math

import numpy as np
import pytest
import torch

from camkit import stats


def t4_cdf(t):
    """CDF of Student's t with 4 degrees of freedom in closed form (for hand-worked checks)."""
    u = 1 + t * t / 4
    return 0.5 + 3 / 8 * (t / math.sqrt(u)) * (1 - t * t / (12 * u))


# --- the interval ---

def coverage(reps, clusters=10, seed=0, truth=0.3):
    """Share of 95 % intervals holding the truth, t on unit means vs percentile cluster bootstrap, on data
    with unequal cluster sizes and heterogeneous cluster effects."""
    rng = np.random.default_rng(seed)
    t_hits = boot_hits = 0
    for _ in range(reps):
        sizes = rng.integers(3, 40, clusters)
        effects = rng.normal(0.0, 1.0, clusters) * rng.choice([0.5, 1.5], clusters)
        units = np.repeat(np.arange(clusters), sizes)
        d = truth + effects[units] + rng.normal(0.0, 1.0, units.size)
        test = stats.difference_test(d, units)
        t_hits += test.low < truth < test.high
        _, low, high = stats.bootstrap_mean(d, units, n_boot=1000, seed=int(rng.integers(1 << 31)))
        boot_hits += low < truth < high
    return t_hits / reps, boot_hits / reps


def test_t_interval_covers_95_percent_over_10_clusters_where_the_percentile_bootstrap_does_not():
    t_cover, boot_cover = coverage(1500)
    assert t_cover >= 0.93, t_cover          # measured 0.95-0.96 (seeds 0-2, 2000 replications)
    assert boot_cover < 0.92, boot_cover     # measured 0.87-0.88
    assert t_cover - boot_cover > 0.04


def test_hand_worked_t_interval_and_p_value():
    # unit means 1..5: mean 3, s = sqrt(2.5), SE = sqrt(0.5), t_{4, .975} = 2.7764
    values, units = [1.0, 2.0, 3.0, 4.0, 5.0], ["a", "b", "c", "d", "e"]
    test = stats.difference_test(values, units)
    assert test.estimate == pytest.approx(3.0) and test.se == pytest.approx(math.sqrt(0.5))
    assert (test.low, test.high) == pytest.approx((1.03676, 4.96324), abs=1e-5)
    assert test.p_diff == pytest.approx(2 * (1 - t4_cdf(3 / math.sqrt(0.5))), rel=1e-9)
    assert test.df == 4 and test.n_units == 5 and not test.too_few


def test_units_count_once_whatever_their_size():
    # unit x has four images at 1, unit y one image at 5: the estimate is (1 + 5) / 2, not the image mean 1.8
    means, counts = stats.unit_means([1.0, 1.0, 5.0, 1.0, 1.0], ["x", "x", "y", "x", "x"])
    assert means.tolist() == [1.0, 5.0] and counts.tolist() == [4.0, 1.0]
    assert stats.difference_test([1.0, 1.0, 5.0, 1.0, 1.0], ["x", "x", "y", "x", "x"]).estimate == pytest.approx(3.0)


def test_two_levels_seeds_are_the_units():
    rng = np.random.default_rng(3)
    seeds = np.repeat([f"seed{s}" for s in range(5)], 40)          # 40 images nested in each of 5 seeds
    seed_effect = np.repeat(rng.normal(0, 1, 5), 40)
    d = 0.5 + seed_effect + rng.normal(0, 0.1, 200)
    test = stats.difference_test(d, seeds)
    naive = stats.difference_test(d)
    assert test.n_units == 5 and test.n_images == 200 and test.df == 4
    assert test.estimate == pytest.approx(np.mean([d[seeds == s].mean() for s in np.unique(seeds)]))
    assert (test.high - test.low) > 5 * (naive.high - naive.low)   # 200 images are not 200 units


# --- Holm and TOST ---

def test_holm_hand_worked():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])     # capped at 1
    assert stats.holm([0.02]) == pytest.approx([0.02])
    assert stats.holm([]).size == 0
    assert stats.holm([0.01, 0.01, 0.2]) == pytest.approx([0.03, 0.03, 0.2])


def test_holm_agrees_with_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(4).uniform(0, 0.2, 17)
    assert stats.holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_holm_rejects_bad_p_values():
    for bad in ([0.1, float("nan")], [0.1, 1.5], [-0.01]):
        with pytest.raises(ValueError, match="p-values must be finite and in"):
            stats.holm(bad)


def test_tost_hand_worked():
    # unit means 0.1, 0.3, -0.1, 0.2, 0.0: mean 0.1, SE = sqrt(0.025 / 5) = 0.070711, df 4
    d = [0.1, 0.3, -0.1, 0.2, 0.0]
    se = math.sqrt(0.025 / 5)
    assert stats.difference_test(d).se == pytest.approx(se)
    # margin 0.5: t = (0.1 + 0.5)/SE = 8.49 and (0.1 - 0.5)/SE = -5.66; p = max(P(T > 8.49), P(T < -5.66))
    expected = max(1 - t4_cdf(0.6 / se), t4_cdf(-0.4 / se))
    assert stats.tost(0.1, se, 4, 0.5) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.0024063, abs=1e-7)
    # each side at alpha/2 = 0.025 <=> the 95 % interval [-0.0963, 0.2963] lies inside (-margin, margin)
    inside = stats.difference_test(d, margin=0.3)
    outside = stats.difference_test(d, margin=0.29)
    assert inside.p_equiv == pytest.approx(t4_cdf(-0.2 / se)) and inside.p_equiv < 0.025 < outside.p_equiv
    assert -0.3 < inside.low and inside.high < 0.3 and outside.high > 0.29
    with pytest.raises(ValueError, match="margin must be positive"):
        stats.tost(0.1, se, 4, 0.0)


# --- the verdicts ---

@pytest.mark.parametrize("test, different, equivalent, favours_a, expected", [
    ("superiority", True, False, True, "reproduced"),
    ("superiority", True, False, False, "contradicted"),
    ("superiority", False, True, True, "equivalent"),
    ("superiority", True, True, True, "equivalent"),       # significant but smaller than the margin
    ("superiority", False, False, True, "inconclusive"),
    ("equivalence", False, True, False, "reproduced"),
    ("equivalence", True, False, True, "contradicted"),
    ("equivalence", True, False, False, "contradicted"),
    ("equivalence", False, False, True, "inconclusive"),
])
def test_decide(test, different, equivalent, favours_a, expected):
    assert stats.decide(test, different=different, equivalent=equivalent, favours_a=favours_a) == expected


def row(rid, d, units=None, test="superiority", margin=1.0, kind="mechanism", family="f", **extra):
    t = stats.difference_test(d, units, margin=margin)
    return {"id": rid, "test": test, "kind": kind, "family": family, "estimate": t.estimate,
            "p_diff": t.p_diff, "p_equiv": t.p_equiv, "n_units": t.n_units, **extra}


def test_judge_reaches_every_verdict():
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.1, 30)
    rows = [row("beats", 3 + noise), row("loses", -3 + noise), row("tiny", 0.01 + noise),
            row("noisy", rng.normal(0, 10, 30)), row("timing", 3 + noise, not_testable="a CPU cannot test it"),
            row("few", 3 + noise[:4], family="g"), row("missing", [0.0], missing=True),
            row("same", 0.01 + noise, test="equivalence", family="h"),
            {"id": "identity", "test": "identity", "kind": "identity", "error": 1e-7, "tolerance": 1e-5},
            {"id": "broken", "test": "identity", "kind": "identity", "error": 1e-3, "tolerance": 1e-5}]
    verdicts = {r["id"]: r["verdict"] for r in stats.judge(rows)}
    assert verdicts == {"beats": "reproduced", "loses": "contradicted", "tiny": "equivalent", "noisy": "inconclusive",
                        "timing": "not testable here", "few": "inconclusive", "missing": "inconclusive",
                        "same": "reproduced", "identity": "reproduced", "broken": "contradicted"}
    assert set(verdicts.values()) == set(stats.VERDICTS)


def test_judge_applies_holm_within_a_family_only():
    rng = np.random.default_rng(6)
    d = rng.normal(0, 1, 12)
    d = d - d.mean() + 0.7 * d.std(ddof=1)                     # p about 0.03 on its own (t = 0.7 sqrt(12))
    alone = stats.judge([row("x", d, margin=0.01)])[0]
    assert alone["p_diff_adj"] == pytest.approx(alone["p_diff"]) and 0.01 < alone["p_diff"] < 0.05
    assert alone["verdict"] == "reproduced"
    others = [row(f"null{i}", rng.normal(0, 1, 12), margin=0.01) for i in range(3)]
    crowd = stats.judge([row("x", d, margin=0.01)] + others)
    assert crowd[0]["p_diff_adj"] > 0.05 and crowd[0]["verdict"] == "inconclusive"
    apart = stats.judge([row("x", d, margin=0.01)] + [dict(r, family="other") for r in others])
    assert apart[0]["verdict"] == "reproduced"                 # another family does not dilute this one
    descriptive = stats.judge([row("x", d, margin=0.01)] + [dict(r, kind="descriptive") for r in others])
    assert descriptive[0]["verdict"] == "reproduced" and not descriptive[1]["holm"]


def test_judge_rejects_unknown_kinds_and_tests():
    with pytest.raises(ValueError, match="kind must be one of"):
        stats.judge([row("x", [1.0, 2.0, 3.0, 4.0, 5.0], kind="evidence")])
    with pytest.raises(ValueError, match="test must be one of"):
        stats.judge([row("x", [1.0, 2.0, 3.0, 4.0, 5.0], test="beats")])


def test_too_few_units_never_give_a_verdict():
    big = np.array([10.0, 11.0, 12.0, 10.5, 11.5, 10.2])
    one = stats.difference_test(big, ["x"] * 6)
    assert one.too_few and math.isnan(one.low) and math.isnan(one.p_diff)
    four = stats.difference_test(big[:4])
    assert four.too_few and four.low > 0                     # an interval above 0, and still no verdict
    assert stats.judge([row("four", big[:4])])[0]["verdict"] == "inconclusive"
    assert "4 independent" in stats.judge([row("four", big[:4])])[0]["note"]
    assert stats.judge([row("five", big[:5])])[0]["verdict"] == "reproduced"


@pytest.mark.parametrize("call, match", [
    (lambda: stats.difference_test([]), "empty"),
    (lambda: stats.difference_test([1.0, float("nan"), 2.0]), "1 NaN or Inf"),
    (lambda: stats.difference_test([1.0, float("inf")]), "NaN or Inf"),
    (lambda: stats.difference_test([1.0, 2.0], ["a"]), "units has 1 entries for 2 values"),
    (lambda: stats.paired_test([1.0, 2.0], [1.0]), "equal lengths"),
    (lambda: stats.difference_test([1.0, 2.0], margin=-1.0), "margin must be positive"),
    (lambda: stats.difference_test([1.0, 2.0], level=1.5), r"level must be in \(0, 1\)"),
    (lambda: stats.decide("beats", different=True, equivalent=False, favours_a=True), "superiority"),
])
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the old API (kept for the current notebooks) ---

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


def test_paired_claim_signs_by_direction_and_uses_unit_means():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), torch.tensor([0.0, 1.0, 2.0, 3.5, 4.0, 5.5])
    record = stats.paired_claim("A beats B", "test", a, b)
    assert record["verdict"] == "reproduced" and record["difference"] > 0 and record["interval"].startswith("t on G-1")
    lower = stats.paired_claim("A has lower drop", "test", a, b, higher_is_better=False)
    assert lower["verdict"] == "contradicted"
    with pytest.raises(ValueError, match="equal lengths"):
        stats.paired_claim("x", "y", a, b[:2])
    groups = ["p", "p", "p", "q", "r", "s"]                   # unit p has three images
    clustered = stats.paired_claim("A beats B", "test", a, b, groups=groups)
    d = (a - b).numpy()
    assert clustered["difference"] == pytest.approx(np.mean([d[:3].mean(), d[3], d[4], d[5]]))
    assert clustered["n_groups"] == 4 and clustered["verdict"] == "inconclusive" and "note" in clustered


def test_too_few_independent_units_give_no_verdict():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), torch.zeros(6)
    one_source = stats.paired_claim("A beats B", "test", a, b, groups=["x"] * 6)
    assert one_source["verdict"] == "inconclusive" and "1 independent" in one_source["note"]
    four = stats.paired_claim("A beats B", "test", a[:4], b[:4])
    assert four["verdict"] == "inconclusive" and four["n_groups"] == 4 and four["ci95"][0] > 0
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
    assert record["verdict"] == "contradicted" and record["margin"] == 0.05 and record["p_equiv"] > 0.5
    # new rule: an interval that excludes 0 but reaches into the margin contradicts "no difference"
    near = rng.normal(0.0, 0.1, 400)
    near = near - near.mean() + 0.06                           # interval about [0.050, 0.070]
    assert stats.equivalence_claim("=", "s", near, np.zeros(400), margin=0.065)["verdict"] == "contradicted"
    with pytest.raises(ValueError, match="margin"):
        stats.equivalence_claim("=", "s", far, far, margin=0)
