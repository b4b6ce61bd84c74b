"""Paired comparisons over few independent units, Holm and TOST, and the report's five verdicts.

**The data.** Comparing methods A and B on a metric gives, per image i, the paired difference
d_i = s_A(i) − s_B(i), signed so that d > 0 favours A (s_B − s_A when lower is better). Images are
not independent: composites cut from one source object share it, and every image scored by a shapes
CNN shares that network's training seed. ``units[i]`` names the independent unit of image i.

**Estimator and interval** (:func:`difference_test`). Average within each unit, then over units:

    d̄_g = (1/n_g) Σ_{i∈g} d_i,     θ̂ = (1/G) Σ_g d̄_g,
    s² = Σ_g (d̄_g − θ̂)² / (G − 1),   SE = s / √G,   95 % interval θ̂ ± t_{G−1, 0.975} · SE.

Each unit counts once whatever its number of images n_g: the question is about objects (or trained
networks), and how many composites of an object the model happened to recognise says nothing about
the methods. Unequal n_g only make the variances of the d̄_g unequal (σ_b² + σ_w²/n_g), which s²
averages. This is inference on cluster means with G − 1 degrees of freedom, the choice Cameron &
Miller ("A Practitioner's Guide to Cluster-Robust Inference", 2015, §VI) recommend with few clusters
(and Donald & Lang, 2007); it is exact when the unit means are i.i.d. normal. Rejected:

* the *percentile bootstrap over units* (:func:`bootstrap_mean`, kept for old notebooks): its spread
  is the plug-in variance (÷G, not ÷(G − 1)) read with normal-like quantiles, so over 10 units its
  95 % interval covers only 87–90 % (``tests/test_stats.py`` simulates 10 units of unequal size with
  heterogeneous effects: t 0.95–0.96, percentile bootstrap 0.87–0.88);
* the *wild cluster bootstrap*: for a mean (an intercept-only model) it is a sign-flip test on the
  unit sums; with G = 10 Rademacher weights give only 2¹⁰ draws, Webb's six-point weights fix that,
  but either yields an interval only by test inversion, for no gain when unit means are symmetric.

**Two levels** (seeds × images). The seed is the unit: images are averaged within their seed first,
so the interval generalises over training runs on the images used (with the same test images for
every seed, image-sampling variance is not part of it; with hundreds of images it is small).

**Tests** at α = 0.05. *Difference*: p_diff = 2·P(T_{G−1} > ``|θ̂/SE|``). *Equivalence* against the
protocol's margin δ (two one-sided tests, TOST, Schuirmann 1987): p_equiv = max(P(T > (θ̂ + δ)/SE),
P(T < (θ̂ − δ)/SE)), each one-sided test at α/2, so that before correction "different" ⇔ the 95 %
interval excludes 0 and "equivalent" ⇔ it lies inside (−δ, δ). Within a claim family both kinds of
p-value are Holm-adjusted (:func:`holm`) before these rules apply (:func:`judge`).

**Verdicts** (:data:`VERDICTS`, :func:`decide`), the same margin δ serving both kinds of claim:

| claim | equivalent | different, favours A, not equivalent | different, favours B, not equivalent | neither |
| --- | --- | --- | --- | --- |
| "A beats B" | equivalent | reproduced | contradicted | inconclusive |
| "A and B do not differ" | reproduced | contradicted | contradicted | inconclusive |

Fewer than :data:`MIN_GROUPS` = 5 units always give "inconclusive" with a note: with G ≤ 4 the
t quantile is ≥ 3.18 and s rests on ≤ 3 degrees of freedom, so the interval says little, and a
design with five training seeds is the smallest this report plans. "not testable here" comes from
the protocol, where theory says a setup cannot test a claim.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch

VERDICTS = ("reproduced", "contradicted", "equivalent", "inconclusive", "not testable here")
KINDS = ("mechanism", "control", "identity", "ceiling", "descriptive", "duplicate")
TESTS = ("superiority", "equivalence", "identity")
MIN_GROUPS = 5   # fewest independent units on which a comparison may give a verdict
ALPHA = 0.05     # two-sided level of the difference test; each one-sided TOST test runs at ALPHA / 2


def _values(values, name: str = "values") -> np.ndarray:
    """``values`` as a flat float64 array; empty or non-finite input is an error."""
    array = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty: a comparison needs at least one value")
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} NaN or Inf value(s); drop or fix those images first")
    return array


def _labels(units: Optional[Sequence], n: int, name: str = "units") -> np.ndarray:
    """Unit labels as strings (None: every image is its own unit)."""
    if units is None:
        return np.arange(n).astype(str)
    labels = np.asarray([str(u) for u in units])
    if labels.size != n:
        raise ValueError(f"{name} has {labels.size} entries for {n} values; give one unit per image")
    return labels


def unit_means(values, units: Optional[Sequence] = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit means d̄_g and sizes n_g, units in order of first appearance."""
    array = _values(values)
    labels = _labels(units, array.size)
    _, first, index = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)                       # np.unique sorts labels; keep first-appearance order
    sums = np.bincount(index, weights=array)[order]
    counts = np.bincount(index).astype(np.float64)[order]
    return sums / counts, counts


def _t_cdf(t: float, df: int) -> float:
    """P(T_df ≤ t) (scipy.special, which imports much faster than scipy.stats)."""
    from scipy.special import stdtr   # camkit[dev]
    return float(stdtr(df, t))


def _t_quantile(p: float, df: int) -> float:
    from scipy.special import stdtrit
    return float(stdtrit(df, p))


def t_pvalue(estimate: float, se: float, df: int) -> float:
    """Two-sided p-value of H0: θ = 0, ``2·P(T_df > |θ̂/SE|)``; SE = 0 gives 1 if θ̂ = 0 else 0."""
    if se == 0:
        return 1.0 if estimate == 0 else 0.0
    return 2 * _t_cdf(-abs(estimate) / se, df)


def tost(estimate: float, se: float, df: int, margin: float) -> float:
    """TOST p-value of H0: ``|θ| ≥ δ``: ``max(P(T_df > (θ̂ + δ)/SE), P(T_df < (θ̂ − δ)/SE))``.

    Equivalence at level α/2 per side (:data:`ALPHA`) ⇔ p < α/2 ⇔ the 95 % t interval lies inside (−δ, δ).
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    if se == 0:
        return 0.0 if abs(estimate) < margin else 1.0
    return max(_t_cdf(-(estimate + margin) / se, df), _t_cdf((estimate - margin) / se, df))


@dataclass(frozen=True)
class PairedTest:
    """A comparison over independent units: estimate, t interval, p-values (see the module docstring)."""
    estimate: float               # θ̂, mean over units of the per-unit mean difference
    low: float                    # t interval (NaN with fewer than 2 units)
    high: float
    se: float
    df: int                       # G − 1
    n_units: int                  # G
    n_images: int
    p_diff: float                 # two-sided, H0: θ = 0 (NaN with fewer than 2 units)
    p_equiv: Optional[float]      # TOST against ±margin (None without a margin)
    margin: Optional[float]
    level: float

    @property
    def too_few(self) -> bool:
        return self.n_units < MIN_GROUPS

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "too_few": self.too_few}


def difference_test(differences, units: Optional[Sequence] = None, *, margin: Optional[float] = None,
                    level: float = 0.95) -> PairedTest:
    """Test signed per-image differences d_i (d > 0 favours A) over the units they belong to."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if margin is not None and not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    means, _ = unit_means(differences, units)
    n_images, g = int(_values(differences).size), int(means.size)
    estimate = float(means.mean())
    if g < 2:
        nan = float("nan")
        return PairedTest(estimate, nan, nan, nan, 0, g, n_images, nan, None if margin is None else nan, margin, level)
    se = float(means.std(ddof=1) / np.sqrt(g))
    half = _t_quantile(0.5 + level / 2, g - 1) * se
    return PairedTest(estimate, estimate - half, estimate + half, se, g - 1, g, n_images,
                      t_pvalue(estimate, se, g - 1), None if margin is None else tost(estimate, se, g - 1, margin),
                      margin, level)


def paired_test(scores_a, scores_b, units: Optional[Sequence] = None, *, higher_is_better: bool = True,
                margin: Optional[float] = None, level: float = 0.95) -> PairedTest:
    """:func:`difference_test` of d = s_A − s_B (higher is better) or s_B − s_A (lower is better).

    >>> paired_test(drop_igcam, drop_gradcam, units=source_ids, higher_is_better=False, margin=2.0)
    """
    a, b = _values(scores_a, "scores_a"), _values(scores_b, "scores_b")
    if a.shape != b.shape:
        raise ValueError(f"paired scores need equal lengths, got {a.size} and {b.size}")
    return difference_test(a - b if higher_is_better else b - a, units, margin=margin, level=level)


def mean_ci(values, units: Optional[Sequence] = None, *, level: float = 0.95) -> tuple[float, float, float]:
    """(mean over units of the unit means, t interval low, high): the descriptive interval to show per method."""
    test = difference_test(values, units, level=level)
    return test.estimate, test.low, test.high


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in input order.

    Sort p_(1) ≤ … ≤ p_(m); p̃_(k) = min(1, max_{j ≤ k} (m − j + 1) · p_(j)). Rejecting p̃ < α controls
    the family-wise error rate at α (Holm, 1979).
    """
    p = np.asarray(list(pvalues), dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("holm needs a flat sequence of p-values")
    if p.size and (not np.isfinite(p).all() or (p < 0).any() or (p > 1).any()):
        raise ValueError(f"p-values must be finite and in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty_like(p)
    adjusted[order] = stepped
    return adjusted


def decide(test: str, *, different: bool, equivalent: bool, favours_a: bool) -> str:
    """The verdict from the two (adjusted) decisions; the table in the module docstring."""
    if test not in ("superiority", "equivalence"):
        raise ValueError(f"test must be 'superiority' or 'equivalence', got {test!r}")
    if equivalent:
        return "equivalent" if test == "superiority" else "reproduced"
    if different:
        return "reproduced" if (test == "superiority" and favours_a) else "contradicted"
    return "inconclusive"


def judge(rows: Sequence[Mapping[str, Any]], protocol: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Holm-adjust within families and give every row its verdict; returns new dicts.

    A row needs ``test`` (:data:`TESTS`) and ``kind`` (:data:`KINDS`); tests also need ``estimate``,
    ``p_diff``, ``p_equiv``, ``n_units``; identities ``error`` and ``tolerance``. Optional:
    ``not_testable`` (the protocol's reason), ``missing`` (no data), ``family``. Rows of kind mechanism,
    control or ceiling form Holm families by ``family`` (``holm`` is then True); descriptive and duplicate
    rows are judged on their raw p-values.
    ``protocol["alpha"]`` overrides :data:`ALPHA`.
    """
    alpha = float((protocol or {}).get("alpha", ALPHA))
    out = [dict(row) for row in rows]
    for row in out:
        if row.get("test") not in TESTS:
            raise ValueError(f"row {row.get('id', '?')}: test must be one of {TESTS}, got {row.get('test')!r}")
        if row.get("kind") not in KINDS:
            raise ValueError(f"row {row.get('id', '?')}: kind must be one of {KINDS}, got {row.get('kind')!r}")
    testable = [r for r in out if r["test"] != "identity" and not r.get("not_testable") and not r.get("missing")
                and r.get("n_units", 0) >= MIN_GROUPS]
    for r in testable:   # outside a family (descriptive, duplicate) the raw p-values decide
        r["p_diff_adj"], r["p_equiv_adj"], r["holm"] = r["p_diff"], r.get("p_equiv"), False
    families: dict[str, list[dict]] = {}
    for r in testable:
        if r["kind"] in ("mechanism", "control", "ceiling") and r.get("family"):
            families.setdefault(str(r.get("family")), []).append(r)
    for members in families.values():
        for r in members:
            r["holm"] = True
        for r, p in zip(members, holm([r["p_diff"] for r in members])):
            r["p_diff_adj"] = float(p)
        with_margin = [r for r in members if r.get("p_equiv") is not None]
        for r, p in zip(with_margin, holm([r["p_equiv"] for r in with_margin])):
            r["p_equiv_adj"] = float(p)
    for r in out:
        if r.get("not_testable"):
            r["verdict"] = "not testable here"
            r.setdefault("note", r["not_testable"])
        elif r.get("missing"):
            r["verdict"], r["note"] = "inconclusive", r.get("note") or "no per-unit values in the results"
        elif r["test"] == "identity":
            r["verdict"] = "reproduced" if r["error"] <= r["tolerance"] else "contradicted"
        elif r.get("n_units", 0) < MIN_GROUPS:
            r["verdict"] = "inconclusive"
            r["note"] = f"only {r.get('n_units', 0)} independent unit(s); a verdict needs at least {MIN_GROUPS}"
        else:
            equivalent = r.get("p_equiv_adj") is not None and r["p_equiv_adj"] < alpha / 2
            r["verdict"] = decide(r["test"], different=r["p_diff_adj"] < alpha, equivalent=equivalent,
                                  favours_a=r["estimate"] > 0)
    return out


# --- the API of the first notebooks (kept; paired_claim and equivalence_claim now use the t interval) ---

def bootstrap_mean(values, groups: Optional[Sequence] = None, *, n_boot: int = 2000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """Image mean of ``values`` and its percentile cluster-bootstrap interval: (mean, low, high).

    Each replicate draws G groups with replacement and averages all their images. Kept for the
    notebooks' descriptive tables; it under-covers with few groups (87–90 % at G = 10), so
    verdicts use :func:`difference_test` and new tables :func:`mean_ci`.
    """
    values = _values(values)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    labels = _labels(groups, values.size, "groups")
    _, group_index = np.unique(labels, return_inverse=True)
    n_groups = group_index.max() + 1
    sums = np.bincount(group_index, weights=values, minlength=n_groups)
    counts = np.bincount(group_index, minlength=n_groups).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    replicate_means = sums[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - level) / 2
    low, high = np.quantile(replicate_means, [tail, 1 - tail])
    return float(values.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """The verdict for a 95 % interval of a difference signed so that the claim predicts > 0 (no margin)."""
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def _paired_record(claim, source, scores_a, scores_b, *, higher_is_better=True, groups=None, metric="", model="",
                   profile="", margin=None) -> tuple[dict[str, Any], PairedTest]:
    a, b = _values(scores_a, "scores_a"), _values(scores_b, "scores_b")
    test = paired_test(a, b, groups, higher_is_better=higher_is_better, margin=margin)
    record = {"claim": claim, "source": source, "metric": metric, "model": model, "profile": profile,
              "n": test.n_images, "n_groups": test.n_units, "mean_a": float(unit_means(a, groups)[0].mean()),
              "mean_b": float(unit_means(b, groups)[0].mean()), "difference": test.estimate,
              "ci95": [test.low, test.high], "p": test.p_diff, "df": test.df,
              "interval": "t on G-1 df over unit means", "verdict": "inconclusive"}
    if test.too_few:
        record["note"] = f"only {test.n_units} independent unit(s); a verdict needs at least {MIN_GROUPS}"
    return record, test


def paired_claim(claim: str, source: str, scores_a, scores_b, *, higher_is_better: bool = True,
                 groups: Optional[Sequence] = None, metric: str = "", model: str = "", profile: str = "",
                 n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Judge "A beats B" from paired per-image scores; a JSON-ready record (no margin, no correction).

    The difference is :func:`paired_test`'s (mean over ``groups`` of unit means, t interval on G − 1
    df; ``n_boot`` and ``seed`` are accepted and unused). Verdict by :func:`verdict`; fewer than
    ``MIN_GROUPS`` units give "inconclusive" with a ``note``. New chapters record per-unit values with
    ``camkit.report.claims.record`` instead, so the protocol's margins and Holm apply.
    """
    record, test = _paired_record(claim, source, scores_a, scores_b, higher_is_better=higher_is_better,
                                  groups=groups, metric=metric, model=model, profile=profile)
    if not test.too_few:
        record["verdict"] = verdict(test.low, test.high)
    return record


def equivalence_claim(claim: str, source: str, scores_a, scores_b, *, margin: float, higher_is_better: bool = True,
                      groups: Optional[Sequence] = None, metric: str = "", model: str = "", profile: str = "",
                      n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Judge "A and B do not differ" against ``margin`` (TOST; :func:`decide`'s equivalence row).

    **reproduced** when the 95 % interval lies inside (−margin, margin); **contradicted** when it
    excludes 0 and is not inside; **inconclusive** otherwise, and with fewer than ``MIN_GROUPS`` units.
    The record gains ``margin``, ``p_equiv`` and ``rule``.
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    record, test = _paired_record(claim, source, scores_a, scores_b, higher_is_better=higher_is_better,
                                  groups=groups, metric=metric, model=model, profile=profile, margin=margin)
    record.update(margin=float(margin), p_equiv=test.p_equiv)
    if test.too_few:
        return {**record, "rule": "equivalence (not applied: too few units)"}
    record["verdict"] = decide("equivalence", different=test.p_diff < ALPHA, equivalent=test.p_equiv < ALPHA / 2,
                               favours_a=test.estimate > 0)
    record["rule"] = ("equivalence (TOST): reproduced inside (-margin, margin), contradicted if the interval "
                      "excludes 0 and is not inside, else inconclusive")
    return record


def identity_claim(claim: str, source: str, error: float, tolerance: float, *, model: str = "",
                   profile: str = "", n: int = 1) -> dict[str, Any]:
    """An exact identity checked numerically: reproduced when ``error <= tolerance``, else contradicted."""
    return {"claim": claim, "source": source, "metric": "max relative error", "model": model, "profile": profile,
            "n": n, "n_groups": n, "difference": float(error), "ci95": None, "tolerance": float(tolerance),
            "kind": "identity", "verdict": "reproduced" if error <= tolerance else "contradicted"}
