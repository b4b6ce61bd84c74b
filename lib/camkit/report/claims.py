"""Per-unit comparison records, the registered protocol, and the verdict table recomputed from both.

Chapters save, under ``"comparisons"`` in their results JSON, one record per claim, rival and setup
(:func:`record`, :func:`record_identity`); :func:`table` rebuilds every row of the reproduction table
from those records and ``notebooks/protocol.yaml`` in one call, and :func:`summary` counts only the
informative rows. The record schema (``camkit.comparison/1``)::

    {"schema": "camkit.comparison/1", "claim": "igcam_drop", "setup": "efficientnet_lite0 @ blocks.6",
     "metric": "average_drop", "subset": "all", "a": "integrated-gradcam", "b": "gradcam",
     "unit": "source_object",
     "units":  ["obj-03", "obj-03", "obj-11", ...],   # per image: its independent unit (object or seed)
     "images": ["c0007", "c0012", "c0031", ...],      # per image: an id (optional)
     "values_a": [...], "values_b": [...]}            # per image: the raw metric of A and of B
    # or "difference": [...] instead of values_a/values_b for a metric defined per image only as a
    # difference (sanity checks: rho(self) - rho(randomised)); identities: "error", "tolerance", "n".

A chapter records, for example::

    from camkit.report import claims
    comparisons = [claims.record("igcam_drop", "efficientnet_lite0 @ blocks.6", "average_drop", units,
                                 a="integrated-gradcam", b="gradcam", values_a=drop["integrated-gradcam"],
                                 values_b=drop["gradcam"], images=ids, unit="source_object")]
    camkit.report.save_results("11_faithfulness", profile, {..., "comparisons": comparisons})
    rows = claims.table(camkit.report.results_dir() / "cpu")          # chapter 29: every verdict

**Duplicates**: within one setup, metric and subset, rows whose per-image differences and units
are identical (up to float rounding) are one result; the first by kind (mechanism, control,
ceiling, descriptive) and protocol order stays, the others become kind "duplicate" with
``duplicate_of`` (the protocol's ``same_by_construction`` names the expected cases). **Ceilings**:
a row whose two methods' unit means both lie within the margin of the same end of the metric's
range becomes kind "ceiling". Neither is counted by :func:`summary`.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from . import SIGNIFICANT_DIGITS, repo_root
from . import stats

SCHEMA = "camkit.comparison/1"
PRETTY = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
          "layercam": "Layer-CAM", "hirescam": "HiResCAM", "scorecam": "Score-CAM",
          "integrated-gradcam": "Integrated Grad-CAM", "expected-gradcam": "Expected Grad-CAM",
          "smooth-gradcam++": "Smooth Grad-CAM++", "guided-backprop": "Guided Backprop",
          "guided-gradcam": "Guided Grad-CAM"}
_PRIORITY = {"mechanism": 0, "control": 0, "ceiling": 1, "descriptive": 2, "identity": 3, "duplicate": 4}
_CLAIM_KEYS = {"id", "source", "text", "reports", "chapter", "test", "metric", "setups", "kind"}


# --- the protocol ---

def protocol_path() -> Path:
    return repo_root() / "notebooks" / "protocol.yaml"


def load_protocol(path: Optional[Path] = None) -> dict[str, Any]:
    """Read and check ``notebooks/protocol.yaml`` (or ``path``)."""
    import yaml   # camkit[dev]

    protocol = yaml.safe_load(Path(path or protocol_path()).read_text())
    validate_protocol(protocol)
    return protocol


def validate_protocol(protocol: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first inconsistency (unknown metric, setup, kind, test ...)."""
    for key in ("alpha", "level", "min_units", "metrics", "setups", "claims", "changes"):
        if key not in protocol:
            raise ValueError(f"protocol has no {key!r}")
    if protocol["min_units"] != stats.MIN_GROUPS:
        raise ValueError(f"protocol min_units={protocol['min_units']} but stats.MIN_GROUPS={stats.MIN_GROUPS}")
    metrics, setups = protocol["metrics"], protocol["setups"]
    for name, m in metrics.items():
        if m.get("direction") not in ("higher", "lower", "none"):
            raise ValueError(f"metric {name}: direction must be higher, lower or none")
        if name != "rel_error" and not (isinstance(m.get("margin"), (int, float)) and m["margin"] > 0):
            raise ValueError(f"metric {name}: margin must be a positive number in the metric's units")
    seen = set()
    for claim in protocol["claims"]:
        cid = claim.get("id", "?")
        missing = _CLAIM_KEYS - set(claim)
        if missing:
            raise ValueError(f"claim {cid}: missing {sorted(missing)}")
        if cid in seen:
            raise ValueError(f"claim {cid} appears twice")
        seen.add(cid)
        if claim["test"] not in stats.TESTS:
            raise ValueError(f"claim {cid}: test must be one of {stats.TESTS}")
        if claim["metric"] not in metrics:
            raise ValueError(f"claim {cid}: unknown metric {claim['metric']!r}")
        kinds = claim["kind"].values() if isinstance(claim["kind"], Mapping) else [claim["kind"]]
        bad = [k for k in kinds if k not in ("mechanism", "control", "identity", "descriptive")]
        if bad:
            raise ValueError(f"claim {cid}: kind {bad} (declare mechanism, control, identity or descriptive)")
        if any(k in ("mechanism", "control") for k in kinds) and not claim.get("family"):
            raise ValueError(f"claim {cid}: a tested claim needs a Holm family")
        for setup in _setups(protocol, claim):
            if setup not in setups:
                raise ValueError(f"claim {cid}: unknown setup {setup!r}")
        if claim["test"] != "identity" and not claim.get("a"):
            raise ValueError(f"claim {cid}: name method a")


def _setups(protocol, claim) -> list[str]:
    chosen = claim["setups"]
    if isinstance(chosen, str):
        return [name for name, s in protocol["setups"].items() if s.get("group") == chosen]
    return list(chosen)


def _listed(value) -> list:
    return [None] if value is None else (list(value) if isinstance(value, (list, tuple)) else [value])


def planned_rows(protocol: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every row the protocol registers: claim × method a × rival b × setup, in protocol order."""
    rows = []
    for claim in protocol["claims"]:
        for setup in _setups(protocol, claim):
            props = protocol["setups"][setup]
            kind = claim["kind"][props["head"]] if isinstance(claim["kind"], Mapping) else claim["kind"]
            for a in _listed(claim.get("a")):
                for b in _listed(claim.get("b")):
                    text = claim["text"].format(a=PRETTY.get(a, a), b=PRETTY.get(b, b))
                    if a and "/" in a:  # a reading of the method, e.g. integrated-gradcam/authors-code
                        text += f" [{a.split('/', 1)[1]} reading]"
                    rid = f"{claim['id']}{':' + a if a else ''}{'-vs-' + b if b else ''}@{setup}"
                    rows.append({"id": rid, "claim": claim["id"], "text": text, "source": claim["source"],
                                 "chapter": claim.get("chapter"), "setup": setup, "head": props["head"],
                                 "unit": props["unit"], "metric": claim["metric"],
                                 "subset": claim.get("subset", "all"), "a": a, "b": b, "test": claim["test"],
                                 "kind": kind, "planned_kind": kind,
                                 "family": f"{claim['family']}/{kind}" if kind in ("mechanism", "control") else None,
                                 "margin": protocol["metrics"][claim["metric"]].get("margin"),
                                 "tolerance": claim.get("tolerance"), "not_testable_if": claim.get("not_testable", [])})
    return rows


# --- records ---

def _floats(values, name: str) -> list[float]:
    array = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} has {int((~np.isfinite(array)).sum())} NaN or Inf value(s)")
    return array.tolist()


def record(claim: str, setup: str, metric: str, units: Sequence, *, a: str, b: Optional[str] = None,
           values_a=None, values_b=None, difference=None, images: Optional[Sequence] = None,
           subset: str = "all", unit: str = "", device_type: Optional[str] = None) -> dict[str, Any]:
    """One comparison in the ``camkit.comparison/1`` schema: per image its unit and A's and B's values
    (or the per-image ``difference`` for metrics defined only as one). ``device_type`` overrides the
    results file's (the timing row records the benchmark machine's)."""
    n = len(units)
    rec: dict[str, Any] = {"schema": SCHEMA, "claim": claim, "setup": setup, "metric": metric, "subset": subset,
                           "a": a, "b": b, "unit": unit, "units": [str(u) for u in units]}
    if difference is not None:
        if values_a is not None or values_b is not None:
            raise ValueError("give either difference or values_a and values_b, not both")
        rec["difference"] = _floats(difference, "difference")
        lengths = {"difference": len(rec["difference"])}
    else:
        if values_a is None or values_b is None:
            raise ValueError("give values_a and values_b (or difference)")
        rec["values_a"], rec["values_b"] = _floats(values_a, "values_a"), _floats(values_b, "values_b")
        lengths = {"values_a": len(rec["values_a"]), "values_b": len(rec["values_b"])}
    if images is not None:
        rec["images"] = [str(i) for i in images]
        lengths["images"] = len(rec["images"])
    wrong = {k: v for k, v in lengths.items() if v != n}
    if wrong:
        raise ValueError(f"{claim} @ {setup}: {n} units but {wrong}; give one entry per image")
    if device_type is not None:
        rec["device_type"] = device_type
    return rec


def record_identity(claim: str, setup: str, *, error: float, tolerance: Optional[float] = None,
                    n: int = 1) -> dict[str, Any]:
    """An identity checked numerically: its largest relative error over ``n`` checks (and, where the
    protocol leaves it open, the tolerance)."""
    if not np.isfinite(error) or error < 0:
        raise ValueError(f"error must be a finite non-negative number, got {error}")
    rec = {"schema": SCHEMA, "claim": claim, "setup": setup, "metric": "rel_error", "error": float(error), "n": int(n)}
    if tolerance is not None:
        rec["tolerance"] = float(tolerance)
    return rec


def load_records(results_dir: Path) -> tuple[list[dict[str, Any]], set]:
    """All comparison records of ``results_dir/*.json`` (each with its file's device type), and the set
    of device types the files were written on."""
    records, devices = [], set()
    for path in sorted(Path(results_dir).glob("*.json")):
        data = json.loads(path.read_text())
        env = data.get("environment") or {}
        device = env.get("device_type") or ("cpu" if data.get("device") == "cpu" else None)
        devices.add(device)
        for rec in data.get("comparisons", []):
            if rec.get("schema") != SCHEMA:
                raise ValueError(f"{path.name}: a comparison without schema {SCHEMA!r}: {str(rec)[:80]}")
            records.append({**rec, "file": path.name, "device_type": rec.get("device_type", device)})
    return records, devices - {None}


# --- the table ---

def _differences(rec: Mapping[str, Any], metric: Mapping[str, Any]) -> np.ndarray:
    """Per-image differences signed so that > 0 favours A (see the metric's direction, pairwise, transform)."""
    if "difference" in rec:
        return np.asarray(rec["difference"], dtype=np.float64)
    a, b = np.asarray(rec["values_a"], dtype=np.float64), np.asarray(rec["values_b"], dtype=np.float64)
    if metric.get("pairwise") == "win":
        return 100.0 * (a > b) + 50.0 * (a == b) - 50.0
    if metric.get("transform") == "log_ratio":
        return np.log(a / b) - np.log(metric["target"])
    return b - a if metric["direction"] == "lower" else a - b


def _at_ceiling(rec, metric, units) -> bool:
    if "values_a" not in rec:
        return False
    low, high = (metric.get("range") or [None, None])
    margin = metric["margin"]
    means = [stats.unit_means(rec[k], units)[0].mean() for k in ("values_a", "values_b")]
    return bool((low is not None and all(m <= low + margin for m in means))
                or (high is not None and all(m >= high - margin for m in means)))


def _fill(row: dict, rec: Mapping[str, Any], protocol: Mapping[str, Any]) -> None:
    """Compute a planned row's numbers from its record."""
    row["file"] = rec.get("file")
    if row["test"] == "identity":
        tolerance = row["tolerance"] if row["tolerance"] is not None else rec.get("tolerance")
        if tolerance is None:
            raise ValueError(f"{row['id']}: neither the protocol nor the record gives a tolerance")
        row.update(error=rec["error"], tolerance=tolerance, n_units=rec.get("n", 1), n_images=rec.get("n", 1))
        return
    metric = protocol["metrics"][row["metric"]]
    d = _differences(rec, metric)
    test = stats.difference_test(d, rec["units"], margin=row["margin"], level=protocol["level"])
    scale = max(float(np.abs(np.asarray(rec[k], dtype=np.float64)).max(initial=0.0))
                for k in ("values_a", "values_b", "difference") if k in rec)
    row.update(estimate=test.estimate, ci95=[test.low, test.high], n_units=test.n_units, n_images=test.n_images,
               p_diff=test.p_diff, p_equiv=test.p_equiv, _d=d, _units=list(rec["units"]), _scale=scale)
    if "values_a" in rec:
        row["mean_a"] = float(stats.unit_means(rec["values_a"], rec["units"])[0].mean())
        row["mean_b"] = float(stats.unit_means(rec["values_b"], rec["units"])[0].mean())
    if row["kind"] in ("mechanism", "control", "descriptive") and _at_ceiling(rec, metric, rec["units"]):
        row["kind"], row["note"] = "ceiling", "both methods within the margin of the metric's bound"


# Results files keep SIGNIFICANT_DIGITS digits (camkit.report.results_json): each stored value is within
# 0.5e(1 - digits) of itself relatively, so a difference b - a of two is exact to twice that of the values' scale
# (1e-6 for 7 digits), and rows equal by construction agree to it.
_STORED_PRECISION = 10.0 ** (1 - SIGNIFICANT_DIGITS)


def _mark_duplicates(rows: list[dict], protocol: Mapping[str, Any]) -> None:
    expected = protocol.get("same_by_construction", {})
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if "_d" in row:
            groups.setdefault((row["setup"], row["metric"], row["subset"]), []).append(row)
    for members in groups.values():
        members.sort(key=lambda r: _PRIORITY[r["kind"]])   # stable: protocol order within a priority
        kept: list[dict] = []
        for row in members:
            twin = next((k for k in kept if k["_units"] == row["_units"] and k["_d"].shape == row["_d"].shape
                         and np.allclose(k["_d"], row["_d"], rtol=1e-5, atol=_STORED_PRECISION * max(
                             1e-12, np.abs(k["_d"]).max(), k["_scale"], row["_scale"]))), None)
            if twin is None:
                kept.append(row)
                continue
            partners = expected.get(row["head"], {})
            why = " (same by construction at this head)" if {row["a"], row["b"]} & set(partners) else ""
            row.update(kind="duplicate", duplicate_of=twin["id"], note=f"identical per-unit values to {twin['id']}{why}")


def _not_testable(row: Mapping[str, Any], props: Mapping[str, Any]) -> Optional[str]:
    for rule in row["not_testable_if"]:
        if all(props.get(k) == v for k, v in rule["if"].items()):
            return " ".join(str(rule["why"]).split())
    return None


def table(results_dir: Path, protocol: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
    """Every row of the reproduction table, recomputed from the per-unit records in ``results_dir``
    (e.g. ``results/cpu``) and the protocol (default: ``notebooks/protocol.yaml``).

    A row: ``id, claim, text, source, setup, metric, subset, a, b, test, estimate, ci95, n_units,
    n_images, unit, verdict, kind, family, p_diff(_adj), p_equiv(_adj), p_adj, margin, note, counted``.
    Records the protocol does not register come last, as descriptive rows.
    """
    protocol = protocol or load_protocol()
    records, devices = load_records(Path(results_dir))
    index = {(r["claim"], r.get("a"), r.get("b"), r["setup"]): r for r in records}
    rows = planned_rows(protocol)
    used = set()
    for row in rows:
        key = (row["claim"], row["a"], row["b"], row["setup"])
        rec = index.get(key)
        device = rec["device_type"] if rec else (next(iter(devices)) if len(devices) == 1 else None)
        reason = _not_testable(row, {**protocol["setups"][row["setup"]], "device_type": device, "a": row["a"]})
        if reason:
            row["not_testable"] = reason
        if rec is None:
            row["missing"] = True
            continue
        used.add(key)
        _fill(row, rec, protocol)
    for key, rec in index.items():   # recorded but not registered: shown, never counted
        if key in used:
            continue
        metric = protocol["metrics"].get(rec["metric"])
        row = {"id": f"{rec['claim']}:{rec.get('a') or ''}-vs-{rec.get('b') or ''}@{rec['setup']}",
               "claim": rec["claim"], "text": rec["claim"], "source": "", "setup": rec["setup"],
               "chapter": Path(rec["file"]).stem if rec.get("file") else None,
               "metric": rec["metric"], "subset": rec.get("subset", "all"), "a": rec.get("a"), "b": rec.get("b"),
               "head": protocol["setups"].get(rec["setup"], {}).get("head"), "unit": rec.get("unit", ""),
               "test": "identity" if "error" in rec else "superiority", "kind": "descriptive",
               "planned_kind": None, "family": None, "margin": (metric or {}).get("margin"),
               "tolerance": rec.get("tolerance"), "not_testable_if": [], "note": "not registered in the protocol"}
        if metric is None and "error" not in rec:
            row.update(missing=True, note=f"unknown metric {rec['metric']!r}")
        else:
            _fill(row, rec, protocol)
        rows.append(row)
    _mark_duplicates(rows, protocol)
    judged = stats.judge(rows, protocol)
    for row in judged:
        for private in ("_d", "_units", "not_testable_if"):
            row.pop(private, None)
        for key in ("estimate", "p_diff", "p_equiv", "p_diff_adj", "p_equiv_adj"):   # JSON has no NaN
            if isinstance(row.get(key), float) and not np.isfinite(row[key]):
                row[key] = None
        if "ci95" in row:
            row["ci95"] = [v if np.isfinite(v) else None for v in row["ci95"]]
        by_equivalence = row["verdict"] == "equivalent" or (row["test"] == "equivalence" and row["verdict"] in
                                                            ("reproduced", "inconclusive"))
        row["p_adj"] = (row.get("p_equiv_adj") if by_equivalence else row.get("p_diff_adj")) if row.get("holm") else None
        row["counted"] = (row["kind"] in ("mechanism", "control") and not row.get("missing")
                          and row["verdict"] != "not testable here")
    return judged


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Verdict counts over the informative rows only (mechanism and control tests with data), per
    source and per kind, and how many rows were left out and why."""
    counted = [r for r in rows if r.get("counted")]
    by_source: dict[str, Counter] = {}
    by_kind: dict[str, Counter] = {}
    for r in counted:
        by_source.setdefault(r["source"], Counter())[r["verdict"]] += 1
        by_kind.setdefault(r["kind"], Counter())[r["verdict"]] += 1
    excluded = Counter("missing" if r.get("missing") and r["verdict"] != "not testable here" else
                       "not testable here" if r["verdict"] == "not testable here" else r["kind"]
                       for r in rows if not r.get("counted"))
    return {"informative": len(counted), "by_verdict": dict(Counter(r["verdict"] for r in counted)),
            "by_source": {k: dict(v) for k, v in by_source.items()},
            "by_kind": {k: dict(v) for k, v in by_kind.items()}, "excluded": dict(excluded)}


def _number(x: Optional[float]) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:+.3g}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table (estimate [95 % interval], units/images, verdict, kind, Holm p)."""
    lines = ["| claim | source | setup | metric | estimate [95 % interval] | units / images | verdict | kind | "
             "family | p (Holm) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["test"] == "identity" and "error" in r:
            measured = f"error {r['error']:.1e} (tolerance {r['tolerance']:.0e})"
        elif "estimate" in r:
            measured = f"{_number(r['estimate'])} [{_number(r['ci95'][0])}, {_number(r['ci95'][1])}]"
        else:
            measured = "–"
        if "n_units" not in r:
            units = "–"
        elif r["test"] == "identity":
            units = f"{r['n_units']} checks"
        else:
            units = f"{r['n_units']} {r.get('unit') or 'units'} / {r['n_images']} images"
        verdict = r["verdict"] + (f" ({r['note']})" if r.get("note") else "")
        cells = [r["text"], f"`{r['source']}`" if r["source"] else "", r["setup"], r["metric"] +
                 ("" if r.get("subset", "all") == "all" else f" ({r['subset']})"), measured, units, verdict,
                 r["kind"], r.get("family") or "", "–" if r.get("p_adj") is None else f"{r['p_adj']:.2g}"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# --- the human-readable protocol ---

def render_protocol(protocol: Mapping[str, Any]) -> str:
    """``notebooks/protocol.md``: the protocol as Markdown (generated; do not edit by hand)."""
    p = protocol
    out = [f"# Analysis protocol: {p['protocol']} (version {p['version']}, registered {p['registered']})", "",
           "Generated from `notebooks/protocol.yaml` by `python -m camkit.report.claims`; edit the YAML, "
           "never this file.", "",
           f"α = {p['alpha']} (family-wise, two-sided), intervals at {p['level']:.0%}, at least {p['min_units']} "
           "independent units per verdict.", "",
           "## Inference", "", " ".join(p["inference"].split()), "",
           "## Verdicts", "", " ".join(p["verdict_rules"].split()), "",
           "## Margins (smallest effects of interest)", "", " ".join(p["margin_rule"].split()), "",
           "| metric | units | better | range | margin |", "|---|---|---|---|---|"]
    for name, m in p["metrics"].items():
        rng = m.get("range") or [None, None]
        shown = f"[{'−∞' if rng[0] is None else format(rng[0], 'g')}, {'∞' if rng[1] is None else format(rng[1], 'g')}]"
        out.append(f"| `{name}`: {m['label']} | {m['units']} | {m['direction']} | {shown} | "
                   f"{'–' if m.get('margin') is None else format(m['margin'], 'g')} |")
    out += ["", "## Row kinds", ""] + [f"- **{k}**: {' '.join(str(v).split())}" for k, v in p["row_kinds"].items()]
    out += ["", "## Units of independence", ""] + [f"- **{k}**: {' '.join(str(v).split())}" for k, v in p["units"].items()]
    out += ["", "## Setups", "", "| setup | model | layer | head | unit |", "|---|---|---|---|---|"]
    for name, s in p["setups"].items():
        out.append(f"| {name} | {s['model']} | `{s['layer']}` | {s['head']} | {s['unit']} |")
    out += ["", "Same by construction (rows against these methods duplicate their partner's): " +
            "; ".join(f"{head}: " + ", ".join(f"{k} = {v}" for k, v in pairs.items())
                      for head, pairs in p.get("same_by_construction", {}).items()), ""]
    for name, text in p.get("predictions", {}).items():
        out += [f"Prediction `{name}`: {' '.join(text.split())}", ""]
    out += ["## Claims", "", "| id | source | claim | paper reports | metric (subset) | test | A / B | kind | "
            "family | setups | not testable |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in p["claims"]:
        kind = c["kind"] if isinstance(c["kind"], str) else ", ".join(f"{h}: {k}" for h, k in c["kind"].items())
        setups = c["setups"] if isinstance(c["setups"], str) else ", ".join(c["setups"])
        never = "; ".join(f"{', '.join(f'{k} = {v}' for k, v in r['if'].items())}: {' '.join(r['why'].split())}"
                          for r in c.get("not_testable", []))
        methods = " / ".join(", ".join(_listed(c.get(k))) for k in ("a", "b") if c.get(k))
        metric = c["metric"] + ("" if c.get("subset", "all") == "all" else f" ({c['subset']})")
        text = c["text"].replace("{a}", "A").replace("{b}", "B")
        cells = [f"`{c['id']}`", f"`{c['source']}`", text, c["reports"], metric, c["test"], methods or "–", kind,
                 c.get("family") or "–", setups, never or "–"]
        out.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")
    out += ["", "## Supersedes", "", " ".join(p.get("supersedes", "").split()), "", "## Changes since registration", ""]
    out += [f"- {c['date']}: {c['what']} ({c['why']})" for c in p["changes"]] or ["None."]
    return "\n".join(out) + "\n"


def write_protocol_md(path: Optional[Path] = None) -> Path:
    """Regenerate ``notebooks/protocol.md`` from the YAML."""
    target = Path(path or protocol_path().with_suffix(".md"))
    target.write_text(render_protocol(load_protocol()))
    return target


if __name__ == "__main__":   # python -m camkit.report.claims [results_dir]
    if len(sys.argv) > 1:
        rows = table(Path(sys.argv[1]))
        print(format_table(rows))
        print(json.dumps(summary(rows), indent=1))
    else:
        print("wrote", write_protocol_md())
