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
