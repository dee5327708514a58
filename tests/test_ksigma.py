"""k-sigma arithmetic against hand computation: clamping, MAD mode, never loosening, rounding."""

import math
import statistics

import pytest

from juicebox.dj import op_signature
from juicebox.ksigma import KSigmaSettings, drop_fraction, refine_recipe, summarize

LENGTHS = [10, 12, 14, 16, 18, 20, 22, 24, 200]          # one long outlier
RATIOS = [0.90, 0.92, 0.94, 0.96, 0.98, 0.99, 0.97, 0.95, 0.93]


def columns(**stats):
    return {stat: [[v] for v in values] for stat, values in stats.items()}


def change(changes, op, arg):
    return next(c for c in changes if c["op"] == op and c["arg"] == arg)


def test_summary_matches_statistics_module():
    s = summarize(LENGTHS)
    assert s["mean"] == pytest.approx(statistics.fmean(LENGTHS))
    assert s["std"] == pytest.approx(statistics.stdev(LENGTHS))
    assert (s["min"], s["max"], s["median"], s["count"]) == (10, 200, 18, 9)
    assert s["mad"] == statistics.median(abs(v - 18) for v in LENGTHS)
    assert s["quantiles"]["0.25"] == 14 and s["quantiles"]["0.5"] == 18


def test_sigma_bounds_rounded_inwards_for_integer_args():
    recipe = {"process": [{"text_length_filter": {"max_len": 100000}}]}
    refined, changes = refine_recipe(recipe, columns(text_len=LENGTHS), KSigmaSettings(k=1.0), op_signature)
    mean, std = statistics.fmean(LENGTHS), statistics.stdev(LENGTHS)
    lower, upper = change(changes, "text_length_filter", "min_len"), change(changes, "text_length_filter", "max_len")
    assert upper["computed"] == pytest.approx(mean + std)
    assert upper["after"] == math.floor(mean + std) == refined["process"][0]["text_length_filter"]["max_len"]
    # min_len was not written in the recipe: Data-Juicer's default (10) is replaced, here by the clamp at 0.
    assert lower["computed"] == pytest.approx(mean - std) and lower["computed"] < 0
    assert lower["clamped"] and lower["after"] == 0 and lower["before"] == 10 and not lower["user_set"]
    assert upper["drop_fraction"] == pytest.approx(1 / 9)
    assert isinstance(upper["after"], int)


def test_ratio_clamped_to_one_and_user_bound_never_loosened():
    recipe = {"process": [{"alphanumeric_filter": {"min_ratio": 0.95}}]}
    refined, changes = refine_recipe(recipe, columns(alnum_ratio=RATIOS), KSigmaSettings(k=3.0), op_signature)
    mean, std = statistics.fmean(RATIOS), statistics.stdev(RATIOS)
    lower = change(changes, "alphanumeric_filter", "min_ratio")
    upper = change(changes, "alphanumeric_filter", "max_ratio")
    assert lower["computed"] == pytest.approx(mean - 3 * std) and lower["computed"] < 0.95
    assert lower["after"] == 0.95  # the user's tighter bound stays
    assert upper["computed"] == pytest.approx(mean + 3 * std) and upper["computed"] > 1
    assert upper["after"] == 1.0 and upper["clamped"]
    loosened, changes = refine_recipe(recipe, columns(alnum_ratio=RATIOS), KSigmaSettings(k=3.0, allow_loosen=True),
                                      op_signature)
    assert change(changes, "alphanumeric_filter", "min_ratio")["after"] == pytest.approx(mean - 3 * std)


def test_mad_mode_is_robust_to_the_outlier():
    recipe = {"process": [{"text_length_filter": {}}]}
    settings = KSigmaSettings(k=2.0, mode="mad")
    _, changes = refine_recipe(recipe, columns(text_len=LENGTHS), settings, op_signature)
    median = 18
    mad = statistics.median(abs(v - median) for v in LENGTHS)  # = 4
    upper = change(changes, "text_length_filter", "max_len")
    assert upper["computed"] == pytest.approx(median + 2 * 1.4826 * mad)
    assert upper["after"] == math.floor(median + 2 * 1.4826 * mad) == 29
    assert upper["drop_fraction"] == pytest.approx(1 / 9) and upper["mode"] == "mad"


def test_per_op_k_and_skip():
    recipe = {"process": [{"text_length_filter": {}}, {"alphanumeric_filter": {}}]}
    settings = KSigmaSettings(k=3.0, per_op={"text_length_filter": {"k": 0.5}, "alphanumeric_filter": {"skip": True}})
    refined, changes = refine_recipe(recipe, columns(text_len=LENGTHS, alnum_ratio=RATIOS), settings, op_signature)
    assert {c["op"] for c in changes} == {"text_length_filter"} and all(c["k"] == 0.5 for c in changes)
    assert refined["process"][1] == {"alphanumeric_filter": {}}


def test_two_stat_op_maps_each_argument_to_its_own_stat():
    recipe = {"process": [{"image_shape_filter": {}}]}
    widths, heights = [100, 110, 120, 130], [10, 11, 12, 13]
    _, changes = refine_recipe(recipe, columns(image_width=widths, image_height=heights), KSigmaSettings(k=1.0),
                               op_signature)
    by_arg = {c["arg"]: c for c in changes}
    assert by_arg["max_width"]["stat"] == "image_width" and by_arg["max_height"]["stat"] == "image_height"
    assert by_arg["max_width"]["after"] == math.floor(statistics.fmean(widths) + statistics.stdev(widths))
    assert by_arg["max_height"]["after"] == math.floor(statistics.fmean(heights) + statistics.stdev(heights))


def test_stat_map_from_config_and_unknown_stat():
    recipe = {"process": [{"text_length_filter": {}}]}
    settings = KSigmaSettings(stat_map={"text_length_filter": {"max_len": {"stat": "num_words", "bound": "upper"}}})
    _, changes = refine_recipe(recipe, columns(num_words=[1, 2, 3]), settings, op_signature)
    assert [(c["arg"], c["stat"]) for c in changes] == [("max_len", "num_words")]
    with pytest.raises(ValueError, match="bounds stat 'text_len', but the probe has no such stat"):
        refine_recipe(recipe, columns(num_words=[1, 2, 3]), KSigmaSettings(), op_signature)


def test_multi_valued_stats_follow_any_or_all():
    records = [[1.0, 5.0], [5.0, 6.0], [0.5]]
    assert drop_fraction(records, "upper", 4.0) == pytest.approx(1 / 3)        # any: only [5, 6] fails
    assert drop_fraction(records, "upper", 4.0, all_must_pass=True) == pytest.approx(2 / 3)


def test_size_bounds_are_read_and_written_in_bytes():
    """image_size_filter takes sizes as text ("1KB"): k-sigma reads them in bytes as Data-Juicer does
    and writes whole bytes back as text; a record's sizes are one per image."""
    recipe = {"process": [{"image_size_filter": {"min_size": "1KB"}}]}
    sizes = [[2000], [2100, 2200], [2300], [90000]]
    refined, changes = refine_recipe(recipe, {"image_sizes": sizes}, KSigmaSettings(k=1.0), op_signature)
    values = [v for record in sizes for v in record]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    lower, upper = change(changes, "image_size_filter", "min_size"), change(changes, "image_size_filter", "max_size")
    assert lower["before"] == 1024 and lower["computed"] < 0 and lower["after"] == 1024  # written, never loosened
    assert upper["before"] == 1 << 40 and upper["after"] == math.floor(mean + std)  # the default, 1TB
    assert refined["process"][0]["image_size_filter"] == {"min_size": "1024", "max_size": str(upper["after"])}
    assert upper["drop_fraction"] == pytest.approx(1 / 4)
