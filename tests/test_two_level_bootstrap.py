"""The two-level bootstrap (replicates, then items) against hand computation: an evaluation built
with a known replicate effect and a known item effect, whose bootstrap standard error is known in
closed form."""

import math

import numpy as np
import pytest

from juicebox.scoring import MDE_Z, bootstrap_figures, mean_figures, two_level_bootstrap

# value[r][i] = a_r + b_i: the mean of a resample is mean(a drawn) + mean(b drawn), whose bootstrap
# variance is pvar(a) / R + pvar(b) / I (pvar: the population variance, ddof 0).
A = [0.10, 0.30, 0.20, 0.40]  # replicate effects (training seeds)
B = list(np.linspace(0.0, 0.5, 40))  # item effects


def evaluation(a, b, shift=0.0):
    return [[{"items": 1.0, "score": ar + bi + shift} for bi in b] for ar in a]


def test_the_standard_error_is_the_closed_form_over_replicates_and_items():
    out = two_level_bootstrap(evaluation(A, B), mean_figures, seed=1, n_resamples=20000)["score"]
    expected = math.sqrt(np.var(A) / len(A) + np.var(B) / len(B))
    assert out.value == pytest.approx(np.mean(A) + np.mean(B))
    assert out.se == pytest.approx(expected, rel=0.03)
    assert out.ci95[0] < out.value < out.ci95[1]
    assert out.mde == pytest.approx(MDE_Z * out.se)
    # the replicate term dominates here: an item-only interval (one replicate) is far narrower
    items_only = math.sqrt(np.var(B) / len(B))
    assert out.se > 2 * items_only


def test_one_replicate_is_the_item_bootstrap():
    one = two_level_bootstrap(evaluation([0.2], B), mean_figures, seed=3, n_resamples=20000)["score"]
    assert one.se == pytest.approx(math.sqrt(np.var(B) / len(B)), rel=0.03)
    item = bootstrap_figures(evaluation([0.2], B)[0], mean_figures, seed=3, n_resamples=20000)["score"]
    assert one.ci95 == pytest.approx(item, abs=0.01)


def test_a_paired_difference_cancels_what_the_sides_share():
    # the same replicate and item effects on both sides, one side shifted by 0.05: every resample's
    # difference is exactly 0.05, so the interval is [0.05, 0.05]
    diff = two_level_bootstrap(evaluation(A, B, shift=0.05), mean_figures, seed=5, n_resamples=500,
                               minus=evaluation(A, B))["score"]
    assert diff.value == pytest.approx(0.05) and diff.ci95 == pytest.approx((0.05, 0.05)) and diff.se < 1e-12
    with pytest.raises(ValueError, match="different replicates or items"):
        two_level_bootstrap(evaluation(A, B), mean_figures, seed=5, minus=evaluation(A[:2], B))


# --- eval.json over replicates --------------------------------------------------------------

def test_eval_json_pools_replicates_and_pairs_experiments_replicate_by_replicate(tmp_path):
    """Two experiments of four replicates each (x, x-rep2, ...; y, y-rep2, ...) on 40 items, built
    as above: y's every score is x's + 0.05 (the same replicate and item effects), so their paired
    difference is exactly 0.05 while each one's own interval is wide (the replicate effects)."""
    from conftest import ROOT
    from juicebox.summary import build, check_schema
    from test_eval_schema import SCHEMA, write_variant

    groups = {"x": ["x", "x-rep2", "x-rep3", "x-rep4"], "y": ["y", "y-rep2", "y-rep3", "y-rep4"]}
    for group, shift in (("x", 0.0), ("y", 0.05)):
        for member, a in zip(groups[group], A):
            for variant, extra in (("base", 0.0), ("sft", 0.1), ("dpo", 0.1 + a)):
                write_variant(tmp_path, member, variant, [a + b + shift + extra for b in B])
    results = {m: {"bm": ["base", "sft", "dpo"]} for members in groups.values() for m in members}
    summary = build(results, {"benchmark": "bm", "metric": "acc"}, {"seed": 0}, 0, repo=ROOT, root=tmp_path,
                    groups=groups)
    check_schema(summary, SCHEMA)
    sft = summary["replicates"]["x"]["benchmarks"]["bm"]["sft"]["acc"]
    assert sft["points"] == pytest.approx([a + np.mean(B) + 0.1 for a in A])
    assert sft["value"] == pytest.approx(np.mean(A) + np.mean(B) + 0.1)
    assert sft["se"] == pytest.approx(math.sqrt(np.var(A) / len(A) + np.var(B) / len(B)), rel=0.05)
    # dpo - sft within each replicate is a_r: its interval has the replicate term alone
    within = summary["replicates"]["x"]["deltas"]["bm"]["acc"]["dpo_vs_sft"]
    assert within["points"] == pytest.approx(A) and within["se"] == pytest.approx(math.sqrt(np.var(A) / len(A)),
                                                                                   rel=0.05)
    pair = next(c for c in summary["comparisons"] if c["variant"] == "sft" and c["metric"] == "acc")
    assert (pair["a"], pair["b"], pair["replicates"]) == ("x", "y", [4, 4])
    assert pair["delta"] == pytest.approx(-0.05) and pair["ci95"] == pytest.approx([-0.05, -0.05])
    assert pair["significant"] and pair["mde"] == pytest.approx(0, abs=1e-9)
    # the ranking is of the groups, not of their members
    assert {(row["experiment"], row["variant"]) for row in summary["ranking"]} == {
        (g, v) for g in groups for v in ("base", "sft", "dpo")}
    assert summary["ranking"][0]["experiment"] == "y" and summary["ranking"][0]["replicates"] == 4
