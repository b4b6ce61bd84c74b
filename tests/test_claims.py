"""camkit.report.claims: the registered protocol, per-unit records, and the table recomputed from them."""
import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from camkit import stats
from camkit.report import claims

ROOT = Path(__file__).resolve().parents[1]
MECHANISM, CONTROL = "efficientnet_lite0 @ blocks.6", "efficientnet_lite0 @ bn2"


@pytest.fixture(scope="module")
def protocol():
    return claims.load_protocol(ROOT / "notebooks" / "protocol.yaml")


def test_protocol_is_complete_and_cites_real_sources(protocol):
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "references.bib").read_text(), flags=re.M))
    assert {c["source"] for c in protocol["claims"]} <= keys
    for c in protocol["claims"]:
        assert c["chapter"] is None or (ROOT / "notebooks" / f"{c['chapter']}.ipynb").exists(), c["id"]
    ids = {c["id"] for c in protocol["claims"]}
    assert {"igcam_drop", "igcam_increase", "igcam_ebpg", "igcam_bbox", "igcam_timing", "egcam_insertion",
            "egcam_deletion", "egcam_infidelity", "gcpp_multi_found", "gcpp_single_keep", "gcpp_win",
            "gradcam_equals_cam", "gcpp_closed_form", "sanity_guided_backprop"} <= ids
    # Adebayo et al. report Guided Backprop as insensitive: the protocol tests "no change", not "changes"
    gb = next(c for c in protocol["claims"] if c["id"] == "sanity_guided_backprop")
    assert gb["test"] == "equivalence"
    assert protocol["min_units"] == stats.MIN_GROUPS
    # every change after registration says when, what and why (git history shows the diff)
    assert all({"date", "what", "why"} <= set(change) and len(change["why"]) > 40 for change in protocol["changes"])


def test_protocol_md_is_generated_from_the_yaml(protocol):
    assert (ROOT / "notebooks" / "protocol.md").read_text() == claims.render_protocol(protocol), \
        "notebooks/protocol.md is stale: run .venv/bin/python -m camkit.report.claims"


@pytest.mark.parametrize("edit, match", [
    (lambda p: p["claims"][0].update(metric="accuracy"), "unknown metric 'accuracy'"),
    (lambda p: p["claims"][0].update(setups=["resnet @ fc"]), "unknown setup"),
    (lambda p: p["claims"][0].update(kind="evidence"), "kind"),
    (lambda p: p["claims"][0].pop("family"), "needs a Holm family"),
    (lambda p: p["claims"].append(copy.deepcopy(p["claims"][0])), "appears twice"),
    (lambda p: p["metrics"]["ebpg"].update(margin=0), "margin must be a positive"),
    (lambda p: p.update(min_units=3), "MIN_GROUPS"),
    (lambda p: p.pop("changes"), "no 'changes'"),
])
def test_protocol_errors_are_named(protocol, edit, match):
    broken = copy.deepcopy(protocol)
    edit(broken)
    with pytest.raises(ValueError, match=match):
        claims.validate_protocol(broken)


def test_record_checks_its_input():
    rec = claims.record("igcam_drop", MECHANISM, "average_drop", ["o1", "o1", "o2"], a="integrated-gradcam",
                        b="gradcam", values_a=[1.0, 2.0, 3.0], values_b=np.array([2.0, 2.0, 4.0]), images=[7, 8, 9])
    assert rec["schema"] == claims.SCHEMA and rec["units"] == ["o1", "o1", "o2"] and rec["images"] == ["7", "8", "9"]
    json.dumps(rec)
    with pytest.raises(ValueError, match="3 units but"):
        claims.record("c", MECHANISM, "ebpg", ["o1", "o2", "o3"], a="x", b="y", values_a=[1.0, 2.0], values_b=[1.0, 2.0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        claims.record("c", MECHANISM, "ebpg", ["o1"], a="x", b="y", values_a=[float("nan")], values_b=[1.0])
    with pytest.raises(ValueError, match="not both"):
        claims.record("c", MECHANISM, "ebpg", ["o1"], a="x", difference=[1.0], values_a=[1.0], values_b=[1.0])
    with pytest.raises(ValueError, match="give values_a and values_b"):
        claims.record("c", MECHANISM, "ebpg", ["o1"], a="x", values_a=[1.0])
    with pytest.raises(ValueError, match="empty"):
        claims.record("c", MECHANISM, "ebpg", [], a="x", difference=[])
    with pytest.raises(ValueError, match="non-negative"):
        claims.record_identity("gradcam_equals_cam", "shapes_resnet @ layer3", error=float("nan"))


def write(folder, records, device_type="cpu", name="14.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps({"environment": {"device_type": device_type}, "comparisons": records}))
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Records for a handful of registered rows, with a duplicate, a ceiling, too few units and a timing row."""
    rng = np.random.default_rng(0)
    units = np.repeat([f"obj{i}" for i in range(12)], 5)
    recs = []
    for setup in (MECHANISM, CONTROL):
        eg = rng.uniform(0.3, 0.6, units.size)
        gcpp = eg - 0.001 + rng.normal(0, 0.002, units.size)
        # at the control Smooth Grad-CAM++ equals Grad-CAM++ by construction, up to the 7 digits a file keeps
        sgcpp = (gcpp + rng.uniform(-3e-7, 3e-7, units.size) if setup == CONTROL
                 else gcpp - 0.05 + rng.normal(0, 0.01, units.size))
        for b, values in [("gradcam", eg - 0.05 + rng.normal(0, 0.01, units.size)), ("gradcam++", gcpp),
                          ("smooth-gradcam++", sgcpp), ("integrated-gradcam", eg + 0.05 + rng.normal(0, .01, units.size))]:
            recs.append(claims.record("egcam_insertion", setup, "insertion", units, a="expected-gradcam", b=b,
                                      values_a=eg, values_b=values, unit="source_object"))
    single = rng.normal(-99.6, 0.2, units.size)
    recs.append(claims.record("gcpp_single_remove", MECHANISM, "remove_change", units, a="gradcam++", b="gradcam",
                              values_a=single, values_b=single + rng.normal(0, 0.1, units.size)))
    drop = rng.normal(30, 5, 20)
    recs.append(claims.record("igcam_drop", MECHANISM, "average_drop", units[:20], a="integrated-gradcam",
                              b="gradcam", values_a=drop, values_b=drop + 3 + rng.normal(0, 0.5, 20)))
    keep = rng.normal(0, 10, units.size)
    recs.append(claims.record("gcpp_win", MECHANISM, "win", units, a="gradcam++", b="gradcam",
                              values_a=keep, values_b=keep - np.where(np.arange(units.size) % 4, 1.0, -1.0)))
    recs.append(claims.record_identity("gradcam_equals_cam", "shapes_resnet @ layer3", error=1e-7, n=64))
    recs.append(claims.record("igcam_timing", "bench", "time_ratio", range(6), a="integrated-gradcam", b="gradcam",
                              values_a=[6700.0] * 6, values_b=[116.0] * 6))
    recs.append(claims.record("made_up", MECHANISM, "insertion", units, a="x", b="y", values_a=eg, values_b=eg))
    folder = write(tmp_path_factory.mktemp("results") / "cpu", recs)
    return {r["id"]: r for r in claims.table(folder)}, recs, folder


def rid(claim, a, b, setup):
    return f"{claim}:{a}-vs-{b}@{setup}"


def test_table_recomputes_rows_from_per_unit_values(synthetic):
    rows, recs, _ = synthetic
    r = rows[rid("egcam_insertion", "expected-gradcam", "gradcam", MECHANISM)]
    source = recs[0]
    d = np.array(source["values_a"]) - np.array(source["values_b"])
    expected = stats.difference_test(d, source["units"], margin=0.02)
    assert r["estimate"] == pytest.approx(expected.estimate) and r["ci95"] == pytest.approx([expected.low, expected.high])
    assert (r["n_units"], r["n_images"], r["unit"]) == (12, 60, "source_object")
    assert r["verdict"] == "reproduced" and r["kind"] == "mechanism" and r["counted"]
    assert r["family"] == "egcam_insertion/mechanism" and r["p_adj"] >= r["p_diff"]
    worse = rows[rid("egcam_insertion", "expected-gradcam", "integrated-gradcam", MECHANISM)]
    assert worse["verdict"] == "contradicted" and worse["estimate"] < 0
    assert rows[rid("egcam_insertion", "expected-gradcam", "gradcam++", MECHANISM)]["verdict"] == "equivalent"
    control = rows[rid("egcam_insertion", "expected-gradcam", "gradcam", CONTROL)]
    assert control["kind"] == "control" and control["family"] == "egcam_insertion/control"


def test_lower_is_better_win_and_ratio_are_signed_by_the_protocol(synthetic):
    rows, _, _ = synthetic
    drop = rows[rid("igcam_drop", "integrated-gradcam", "gradcam", MECHANISM)]
    assert drop["estimate"] == pytest.approx(3.0, abs=0.5)        # Integrated Grad-CAM drops 3 points less
    win = rows[rid("gcpp_win", "gradcam++", "gradcam", MECHANISM)]
    assert win["estimate"] == pytest.approx(75 - 50, abs=3)        # A wins 3 of 4 images
    timing = rows[rid("igcam_timing", "integrated-gradcam", "gradcam", "bench")]
    assert timing["estimate"] == pytest.approx(np.log(6700 / 116 / 4.85))


def test_duplicates_ceilings_identities_and_untestable_rows_are_not_counted(synthetic):
    rows, _, _ = synthetic
    dup = rows[rid("egcam_insertion", "expected-gradcam", "smooth-gradcam++", CONTROL)]
    assert dup["kind"] == "duplicate" and not dup["counted"] and "same by construction" in dup["note"]
    assert dup["duplicate_of"] == rid("egcam_insertion", "expected-gradcam", "gradcam++", CONTROL)
    assert rows[rid("egcam_insertion", "expected-gradcam", "smooth-gradcam++", MECHANISM)]["kind"] == "mechanism"
    ceiling = rows[rid("gcpp_single_remove", "gradcam++", "gradcam", MECHANISM)]
    assert ceiling["kind"] == "ceiling" and not ceiling["counted"]
    timing = rows[rid("igcam_timing", "integrated-gradcam", "gradcam", "bench")]
    assert timing["verdict"] == "not testable here" and "GPU" in timing["note"] and not timing["counted"]
    few = rows[rid("igcam_drop", "integrated-gradcam", "gradcam", MECHANISM)]
    assert few["n_units"] == 4 and few["verdict"] == "inconclusive" and few["counted"]
    identity = rows["gradcam_equals_cam@shapes_resnet @ layer3"]
    assert identity["verdict"] == "reproduced" and identity["kind"] == "identity" and not identity["counted"]
    assert rows["gradcam_equals_cam@shapes_resnet @ layer2"]["verdict"] == "not testable here"
    extra = rows["made_up:x-vs-y@" + MECHANISM]
    assert extra["kind"] == "descriptive" and "not registered" in extra["note"] and not extra["counted"]
    assert extra["chapter"] == Path(extra["file"]).stem, extra     # chapters filter the table by it
    missing = rows[rid("igcam_bbox", "integrated-gradcam", "gradcam", MECHANISM)]
    assert missing["missing"] and missing["verdict"] == "inconclusive" and not missing["counted"]


def test_summary_counts_informative_rows_only(synthetic):
    rows, _, _ = synthetic
    counted = [r for r in rows.values() if r["kind"] in ("mechanism", "control") and not r.get("missing")
               and r["verdict"] != "not testable here"]
    s = claims.summary(list(rows.values()))
    assert s["informative"] == len(counted) == 9
    assert sum(s["by_verdict"].values()) == 9 and s["by_verdict"]["reproduced"] >= 2
    assert s["excluded"]["duplicate"] == 1 and s["excluded"]["ceiling"] == 1 and s["excluded"]["identity"] == 1
    # the timing row on a CPU, CAM at layer2 and at shapes_vgg_fc's non-linear head (2 rows)
    not_testable = [r["id"] for r in rows.values() if r["verdict"] == "not testable here"]
    assert len(not_testable) == 4 and s["excluded"]["not testable here"] == 4 and s["excluded"]["descriptive"] == 1
    assert any(i.startswith("igcam_timing") for i in not_testable)
    assert sum(i.startswith("sanity_") and ":cam" in i and "vgg_fc" in i for i in not_testable) == 2
    assert s["informative"] + sum(s["excluded"].values()) == len(rows)


def test_holm_runs_within_each_family(synthetic, protocol, tmp_path):
    rows, recs, _ = synthetic
    alone = claims.table(write(tmp_path / "cpu", [recs[0]]), protocol)
    single = next(r for r in alone if r["id"] == rid("egcam_insertion", "expected-gradcam", "gradcam", MECHANISM))
    crowded = rows[single["id"]]
    assert single["p_adj"] == pytest.approx(single["p_diff"])      # alone in its family
    assert crowded["p_adj"] >= single["p_adj"]                     # three more hypotheses in the family


def test_format_table_and_bad_files(synthetic, tmp_path):
    rows, _, _ = synthetic
    text = claims.format_table(list(rows.values()))
    assert text.count("\n") == len(rows) + 1 and "estimate [95 % interval]" in text
    write(tmp_path / "bad", [{"claim": "igcam_drop"}])
    with pytest.raises(ValueError, match="without schema"):
        claims.table(tmp_path / "bad")


def test_table_runs_on_the_committed_cpu_results():
    rows = claims.table(ROOT / "results" / "cpu")
    timing = [r for r in rows if r["claim"] == "igcam_timing"]
    assert timing and all(r["verdict"] == "not testable here" for r in timing)   # results/cpu ran on a CPU
