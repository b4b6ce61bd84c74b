"""Paired comparisons with bootstrap intervals, and the report's verdict rule.

A claim "A beats B" is judged on the paired per-image difference d_i = s_A(i) − s_B(i) (signed so
that positive favours A). Its 95 % interval comes from a bootstrap that resamples *groups* (the
source object of a composite image, or the image itself) with replacement, because composites cut
from one source are not independent. The verdict:

- **reproduced**: the interval lies on the claimed side of 0;
- **inconclusive**: it contains 0;
- **contradicted**: it lies on the other side.

A bootstrap over a handful of units cannot estimate the spread (with one unit every replicate is
the same number and the interval has width 0), so a comparison resting on fewer than
``MIN_GROUPS`` independent units is **inconclusive** whatever its interval.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

VERDICTS = ("reproduced", "inconclusive", "contradicted")
MIN_GROUPS = 5   # fewest independent units (groups) on which a paired comparison may give a verdict


def bootstrap_mean(values, groups: Optional[Sequence] = None, *, n_boot: int = 2000, level: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval, resampling ``groups`` (cluster bootstrap).

    ``groups[i]`` names the independent unit image i belongs to (None: every image is its own unit).
    Each replicate draws as many groups as there are, with replacement, and averages all images of
    the drawn groups. Returns (mean, low, high).
    """
    values = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_mean got NaN or Inf values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    labels = np.arange(values.size) if groups is None else np.asarray([str(g) for g in groups])
    if labels.size != values.size:
        raise ValueError(f"groups has {labels.size} entries for {values.size} values")
    _, group_index = np.unique(labels, return_inverse=True)
    n_groups = group_index.max() + 1
    sums = np.bincount(group_index, weights=values, minlength=n_groups)
    counts = np.bincount(group_index, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    replicate_means = sums[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - level) / 2
    low, high = np.quantile(replicate_means, [tail, 1 - tail])
    return float(values.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """The verdict for an interval of a difference signed so that the claim predicts > 0."""
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def paired_claim(claim: str, source: str, scores_a, scores_b, *, higher_is_better: bool = True,
                 groups: Optional[Sequence] = None, metric: str = "", model: str = "", profile: str = "",
                 n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Judge "A beats B" from paired per-image scores; returns a JSON-ready record for the report.

    The difference is s_A − s_B when higher is better and s_B − s_A otherwise, so a positive
    difference always favours A, and :func:`verdict` applies as is, except that fewer than
    ``MIN_GROUPS`` independent units give "inconclusive" (the record then carries a ``note``).
    """
    a = torch.as_tensor(scores_a, dtype=torch.float64).cpu().ravel()
    b = torch.as_tensor(scores_b, dtype=torch.float64).cpu().ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need equal lengths, got {a.numel()} and {b.numel()}")
    diff = (a - b) if higher_is_better else (b - a)
    mean, low, high = bootstrap_mean(diff, groups, n_boot=n_boot, seed=seed)
    n_groups = len({str(g) for g in groups}) if groups is not None else int(diff.numel())
    record = {"claim": claim, "source": source, "metric": metric, "model": model, "profile": profile,
              "n": int(diff.numel()), "n_groups": n_groups, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
              "difference": mean, "ci95": [low, high], "verdict": verdict(low, high)}
    if n_groups < MIN_GROUPS:
        record["verdict"] = "inconclusive"
        record["note"] = f"only {n_groups} independent unit(s); a verdict needs at least {MIN_GROUPS}"
    return record


def identity_claim(claim: str, source: str, error: float, tolerance: float, *, model: str = "",
                   profile: str = "", n: int = 1) -> dict[str, Any]:
    """An exact identity checked numerically: reproduced when ``error <= tolerance``, else contradicted."""
    return {"claim": claim, "source": source, "metric": "max relative error", "model": model, "profile": profile,
            "n": n, "n_groups": n, "difference": float(error), "ci95": None, "tolerance": float(tolerance),
            "verdict": "reproduced" if error <= tolerance else "contradicted"}


def equivalence_claim(claim: str, source: str, scores_a, scores_b, *, margin: float, **kwargs) -> dict[str, Any]:
    """Judge "A and B do not differ" with an equivalence margin (a TOST-style reading of the interval).

    An interval that merely contains 0 proves no equivalence, so the verdict asks more:
    **reproduced** when the 95 % interval of the paired difference lies inside (−margin, margin),
    **contradicted** when it lies entirely outside, **inconclusive** otherwise. ``kwargs`` go to
    :func:`paired_claim`; the record gains ``margin`` and ``rule``.
    """
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin}")
    record = paired_claim(claim, source, scores_a, scores_b, **kwargs)
    low, high = record["ci95"]
    if "note" in record:   # too few independent units: paired_claim already said inconclusive
        return {**record, "margin": float(margin), "rule": "equivalence (not applied: too few units)"}
    record["verdict"] = ("reproduced" if -margin < low and high < margin else
                         "contradicted" if low >= margin or high <= -margin else "inconclusive")
    record["margin"] = float(margin)
    record["rule"] = "equivalence: reproduced inside (-margin, margin), contradicted entirely outside, else inconclusive"
    return record
