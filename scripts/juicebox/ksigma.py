"""k-sigma recipe refinement from probe statistics, done more carefully than upstream.

For each filter argument that bounds a statistic, the refined bound is
``mean - k*std`` (lower) or ``mean + k*std`` (upper); in robust mode ``median -/+ k*1.4826*MAD``.
Unlike Data-Juicer's ``modify_recipe_k_sigma``:

* which stat an argument bounds, and whether it is a lower or an upper bound, comes from an
  explicit map (built in for Data-Juicer's filters, extendable in the config), never from a
  substring of the argument's name; ops with two stats map each argument to its own stat;
* ``k`` and the mode are set per experiment and can be overridden per op;
* bounds are clamped to the stat's valid range (ratios in [0, 1], counts >= 0);
* a bound the user wrote in the recipe is never loosened unless ``allow_loosen`` is set;
* integer arguments are rounded inwards (ceil for a lower bound, floor for an upper one), which
  keeps exactly the same records when the stat itself is an integer;
* a bound Data-Juicer takes as text is a size (``image_size_filter``'s ``"10KB"``): it is read in
  bytes with Data-Juicer's own parser, and the refined bound is written as a whole number of bytes.

Image stats hold one value per image (a list per record); every image counts once in the
summaries, and a bound's drop fraction follows the op's ``any_or_all``.

Model stats (:mod:`juicebox.model_probe`: ``model_loss``, ``reward_mean``, ...) are bounded by
the Juicebox pseudo-op ``model_stat_filter: {stat, min_value, max_value}`` in a recipe (written
by hand, or appended from an experiment's ``feedback.filters``). Its bounds go through the same
refinement as Data-Juicer's: only the sides an entry names (``max_value: null`` asks k-sigma for
the upper bound; a side left out stays unbounded), integer stats rounded inwards. Data-Juicer
never sees these entries (:func:`split_recipe`); processing applies them after its ops.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable

from .io import write_json, write_jsonl

MAD_SCALE = 1.4826  # makes the MAD a consistent estimator of the standard deviation for normal data
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

# op name -> {argument: (stat key, "lower" | "upper")}. Stat keys are Data-Juicer's StatsKeys.
BUILTIN_STAT_MAP: dict[str, dict[str, tuple[str, str]]] = {
    "text_length_filter": {"min_len": ("text_len", "lower"), "max_len": ("text_len", "upper")},
    "alphanumeric_filter": {"min_ratio": ("alnum_ratio", "lower"), "max_ratio": ("alnum_ratio", "upper")},
    "special_characters_filter": {"min_ratio": ("special_char_ratio", "lower"),
                                  "max_ratio": ("special_char_ratio", "upper")},
    "character_repetition_filter": {"min_ratio": ("char_rep_ratio", "lower"),
                                    "max_ratio": ("char_rep_ratio", "upper")},
    "word_repetition_filter": {"min_ratio": ("word_rep_ratio", "lower"), "max_ratio": ("word_rep_ratio", "upper")},
    "words_num_filter": {"min_num": ("num_words", "lower"), "max_num": ("num_words", "upper")},
    "average_line_length_filter": {"min_len": ("avg_line_length", "lower"),
                                   "max_len": ("avg_line_length", "upper")},
    "maximum_line_length_filter": {"min_len": ("max_line_length", "lower"),
                                   "max_len": ("max_line_length", "upper")},
    "token_num_filter": {"min_num": ("num_token", "lower"), "max_num": ("num_token", "upper")},
    "perplexity_filter": {"max_ppl": ("perplexity", "upper")},
    "stopwords_filter": {"min_ratio": ("stopwords_ratio", "lower")},
    "flagged_words_filter": {"max_ratio": ("flagged_words_ratio", "upper")},
    "language_id_score_filter": {"min_score": ("lang_score", "lower")},
    "image_shape_filter": {"min_width": ("image_width", "lower"), "max_width": ("image_width", "upper"),
                           "min_height": ("image_height", "lower"), "max_height": ("image_height", "upper")},
    "image_aspect_ratio_filter": {"min_ratio": ("aspect_ratios", "lower"), "max_ratio": ("aspect_ratios", "upper")},
    "image_size_filter": {"min_size": ("image_sizes", "lower"), "max_size": ("image_sizes", "upper")},
}
# alphanumeric_filter bounds a different stat when it counts tokens instead of characters.
TOKENIZED_STAT = {"alphanumeric_filter": "alpha_token_ratio"}

# The Juicebox pseudo-op that bounds a model stat; its arguments and the stats it may bound.
MODEL_STAT_FILTER = "model_stat_filter"
MODEL_FILTER_BOUNDS = {"min_value": "lower", "max_value": "upper"}
LOSS_STATS = ("model_loss", "model_tokens")  # the probe model's loss of the record's SFT target
REWARD_STATS = ("reward_mean", "reward_std", "pass_rate")  # the record's scored rollouts
MODEL_STATS = LOSS_STATS + REWARD_STATS
INTEGER_MODEL_STATS = ("model_tokens",)

# Valid range of each stat: (low, high); None means unbounded.
STAT_RANGES: dict[str, tuple[float | None, float | None]] = {
    **{s: (0.0, 1.0) for s in ("alnum_ratio", "alpha_token_ratio", "special_char_ratio", "char_rep_ratio",
                                "word_rep_ratio", "stopwords_ratio", "flagged_words_ratio", "lang_score",
                                "pass_rate")},
    **{s: (0.0, None) for s in ("text_len", "num_words", "avg_line_length", "max_line_length", "num_token",
                                "perplexity", "image_width", "image_height", "aspect_ratios",
                                "image_sizes", "model_loss", "model_tokens", "reward_std")},
}


def check_model_filter(args: Any, where: str) -> dict:
    """A ``model_stat_filter`` entry's arguments, checked: a known ``stat``, numeric or null
    ``min_value`` / ``max_value`` (at least one named), no other key. ValueError naming ``where``."""
    if not isinstance(args, dict):
        raise ValueError(f"{where}: {MODEL_STAT_FILTER} takes {{stat, min_value, max_value}}, found {args!r}")
    unknown = sorted(set(args) - {"stat", *MODEL_FILTER_BOUNDS})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; {MODEL_STAT_FILTER} takes stat, min_value, max_value")
    if args.get("stat") not in MODEL_STATS:
        raise ValueError(f"{where}.stat: {args.get('stat')!r} is no model stat; known: {', '.join(MODEL_STATS)}")
    for arg in MODEL_FILTER_BOUNDS:
        value = args.get(arg)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}.{arg}: expected a number or null, found {value!r}")
    if not set(MODEL_FILTER_BOUNDS) & set(args):
        raise ValueError(f"{where}: names no bound; give min_value and/or max_value (null: k-sigma computes it)")
    return args


def split_recipe(recipe: dict) -> tuple[dict, list[dict]]:
    """(the recipe Data-Juicer runs: without ``model_stat_filter`` entries, the model filters'
    checked arguments in recipe order)."""
    dj_ops, filters = [], []
    for index, entry in enumerate(recipe.get("process") or []):
        (op, args), = entry.items()
        if op == MODEL_STAT_FILTER:
            filters.append(check_model_filter(args, f"process[{index}].{op}"))
        else:
            dj_ops.append(entry)
    return {**recipe, "process": dj_ops}, filters


def with_feedback_filters(recipe: dict, feedback: dict | None) -> dict:
    """The recipe with an experiment's ``feedback.filters`` appended as ``model_stat_filter``
    entries (when feedback is enabled; else the recipe itself)."""
    if not feedback or not feedback.get("enabled"):
        return recipe
    extra = [{MODEL_STAT_FILTER: dict(f)} for f in feedback.get("filters") or []]
    return {**recipe, "process": list(recipe.get("process") or []) + extra}


def _model_filter_signature(args: dict) -> dict[str, tuple[Any, Any]]:
    """``model_stat_filter``'s arguments as :func:`recipe_bounds` reads an op's signature: no
    default bound; integer stats take integer bounds (rounded inwards)."""
    kind = int if args.get("stat") in INTEGER_MODEL_STATS else float
    return {"stat": (None, str), "min_value": (None, kind), "max_value": (None, kind)}


@dataclass(frozen=True)
class KSigmaSettings:
    """k-sigma settings of one experiment (``ksigma:`` in the config), resolved per op."""

    k: float = 3.0
    mode: str = "sigma"
    allow_loosen: bool = False
    per_op: dict | None = None
    stat_map: dict | None = None
    stat_ranges: dict | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> "KSigmaSettings":
        """Build from the validated ``ksigma:`` block."""
        return cls(k=float(cfg.get("k", 3.0)), mode=cfg.get("mode", "sigma"),
                   allow_loosen=bool(cfg.get("allow_loosen", False)), per_op=cfg.get("per_op") or {},
                   stat_map=cfg.get("stat_map") or {}, stat_ranges=cfg.get("stat_ranges") or {})

    def for_op(self, op: str) -> tuple[float, str, bool]:
        """(k, mode, skip) for one op, after its per-op override."""
        override = (self.per_op or {}).get(op, {})
        mode = override.get("mode", self.mode)
        if mode not in ("sigma", "mad"):
            raise ValueError(f"ksigma: mode for {op} must be 'sigma' or 'mad', got {mode!r}")
        return float(override.get("k", self.k)), mode, bool(override.get("skip", False))

    def bounds_of(self, op: str, args: dict) -> dict[str, tuple[str, str]]:
        """The arguments of ``op`` that bound a stat: the config's map first, then the built-in one."""
        if op == MODEL_STAT_FILTER:
            return {arg: (args.get("stat"), side) for arg, side in MODEL_FILTER_BOUNDS.items() if arg in args}
        if op in (self.stat_map or {}):
            return {arg: (spec["stat"], spec["bound"]) for arg, spec in self.stat_map[op].items()}
        mapping = dict(BUILTIN_STAT_MAP.get(op, {}))
        if op in TOKENIZED_STAT and args.get("tokenization"):
            mapping = {arg: (TOKENIZED_STAT[op], side) for arg, (_, side) in mapping.items()}
        return mapping

    def range_of(self, stat: str) -> tuple[float | None, float | None]:
        """Valid range of a stat, from the config's ``stat_ranges`` or the built-in table."""
        if stat in (self.stat_ranges or {}):
            low, high = self.stat_ranges[stat]
            return low, high
        return STAT_RANGES.get(stat, (None, None))


def _numbers(value: Any) -> list[float]:
    """A record's stat as a list of numbers (image stats hold one value per image)."""
    items = value if isinstance(value, list) else [value]
    return [float(v) for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


def stat_columns(stats_records: list[dict]) -> dict[str, list[list[float]]]:
    """Per stat, the list of each record's values (records without the stat are left out)."""
    columns: dict[str, list[list[float]]] = {}
    for record in stats_records:
        for stat, value in record["stats"].items():
            values = _numbers(value)
            if values:
                columns.setdefault(stat, []).append(values)
    return columns


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), on already sorted values."""
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: list[float]) -> dict[str, Any]:
    """count, mean, std (sample, ddof=1), min, max, median, MAD and quantiles of one stat."""
    ordered = sorted(values)
    median = statistics.median(ordered)
    return {
        "count": len(ordered),
        "mean": statistics.fmean(ordered),
        "std": statistics.stdev(ordered) if len(ordered) > 1 else 0.0,
        "min": ordered[0],
        "max": ordered[-1],
        "median": median,
        "mad": statistics.median(abs(v - median) for v in ordered),
        "quantiles": {str(q): _quantile(ordered, q) for q in QUANTILES},
    }


def summarize_columns(columns: dict[str, list[list[float]]]) -> dict[str, dict]:
    """``summary.json``: one summary per stat, every value of every record counted once."""
    return {stat: summarize([v for rec in recs for v in rec]) for stat, recs in sorted(columns.items())}


def write_probe(stats: list[dict], stats_path: str, summary_path: str, log) -> dict:
    """A probe's outputs (the Data-Juicer probe's and the model probe's): the per-record stats as
    JSONL, their summary (:func:`summarize_columns`) as JSON, one log line per stat."""
    summary = summarize_columns(stat_columns(stats))
    write_jsonl(stats_path, stats)
    write_json(summary_path, summary)
    for stat, s in summary.items():
        log.info("%s: mean %.4g std %.4g min %.4g max %.4g (n=%d)", stat, s["mean"], s["std"], s["min"], s["max"],
                 s["count"])
    return summary


def ksigma_bound(summary: dict, side: str, k: float, mode: str) -> float:
    """The unclamped k-sigma (or robust MAD) bound for one side."""
    if mode == "sigma":
        center, spread = summary["mean"], summary["std"]
    else:
        center, spread = summary["median"], MAD_SCALE * summary["mad"]
    return center - k * spread if side == "lower" else center + k * spread


def _drops(values: list[float], low: float | None, high: float | None, all_must_pass: bool) -> bool:
    inside = [(low is None or v >= low) and (high is None or v <= high) for v in values]
    return not all(inside) if all_must_pass else not any(inside)


def drop_fraction(records: list[list[float]], side: str, bound: float, all_must_pass: bool = False) -> float:
    """Fraction of records one bound drops. A multi-valued stat (one per image) follows
    Data-Juicer's ``any_or_all``: by default a record stays if any value passes."""
    if not records:
        return 0.0
    low, high = (bound, None) if side == "lower" else (None, bound)
    return sum(_drops(values, low, high, all_must_pass) for values in records) / len(records)


def _bound_number(value: Any) -> Any:
    """A bound as a number: sizes given as text (``"10KB"``, ``"1TB"``) in bytes, as Data-Juicer
    reads them; any other value as it is."""
    if not isinstance(value, str):
        return value
    from data_juicer.utils.mm_utils import size_to_bytes

    return size_to_bytes(value)


@dataclass(frozen=True)
class Bound:
    """One recipe argument that bounds a stat, with the value in force (written or the op's default;
    a number, sizes in bytes)."""

    index: int
    op: str
    arg: str
    stat: str
    side: str
    value: Any
    annotation: Any
    user_set: bool


def recipe_bounds(recipe: dict, settings: KSigmaSettings,
                  signature_of: Callable[[str], dict[str, tuple[Any, Any]]]) -> list[Bound]:
    """Every stat bound of a recipe's filters, in recipe order.

    ``signature_of(op)`` gives ``{arg: (default, annotation)}`` of the op's constructor, so the
    bound in force when the recipe leaves an argument out is known (``model_stat_filter`` has its
    own). A bound is user-set when the recipe writes a value for it (null is no value).
    """
    bounds = []
    for index, entry in enumerate(recipe.get("process") or []):
        (op, args), = entry.items()
        if op == MODEL_STAT_FILTER:
            check_model_filter(args, f"process[{index}].{op}")
        args = args if isinstance(args, dict) else {}
        mapping = settings.bounds_of(op, args)
        if not mapping:
            continue
        signature = _model_filter_signature(args) if op == MODEL_STAT_FILTER else signature_of(op)
        for arg, (stat, side) in mapping.items():
            if arg not in signature:
                raise ValueError(f"ksigma: {op} has no argument {arg!r} (it takes {sorted(signature)})")
            default, annotation = signature[arg]
            bounds.append(Bound(index, op, arg, stat, side, _bound_number(args.get(arg, default)), annotation,
                                args.get(arg) is not None))
    return bounds


def refine_recipe(recipe: dict, columns: dict[str, list[list[float]]], settings: KSigmaSettings,
                  signature_of: Callable[[str], dict[str, tuple[Any, Any]]],
                  select: Callable[[str], bool] = lambda op: True) -> tuple[dict, list[dict]]:
    """Return (refined recipe, changes) for a Data-Juicer recipe and the probe's stat columns
    (Data-Juicer's and the model probe's alike).

    Integer arguments (by the op's annotation) stay integers; size arguments (text) get a whole
    number of bytes, as text. ``changes`` gives every bound as a number (sizes in bytes). Only
    the ops ``select(op)`` accepts are refined; the others stay as written.
    """
    refined = copy.deepcopy(recipe)
    summaries = {stat: summarize([v for rec in recs for v in rec]) for stat, recs in columns.items()}
    changes = []
    for b in recipe_bounds(recipe, settings, signature_of):
        k, mode, skip = settings.for_op(b.op)
        if skip or not select(b.op):
            continue
        if b.stat not in summaries:
            raise ValueError(f"ksigma: {b.op}.{b.arg} bounds stat {b.stat!r}, but the probe has no such stat "
                             f"(found: {sorted(summaries)})")
        args = refined["process"][b.index][b.op]
        if not isinstance(args, dict):
            args = refined["process"][b.index][b.op] = {}
        computed = ksigma_bound(summaries[b.stat], b.side, k, mode)
        low, high = settings.range_of(b.stat)
        after = computed
        if low is not None:
            after = max(after, low)
        if high is not None:
            after = min(after, high)
        clamped = after != computed
        if b.annotation in (int, str):
            after = math.ceil(after) if b.side == "lower" else math.floor(after)
        if b.user_set and not settings.allow_loosen and b.value is not None:
            after = max(after, b.value) if b.side == "lower" else min(after, b.value)
        args[b.arg] = str(after) if b.annotation is str else after
        all_must_pass = args.get("any_or_all", "any") == "all"
        changes.append({
            "op": b.op, "op_index": b.index, "arg": b.arg, "stat": b.stat, "k": k, "mode": mode,
            "before": b.value, "after": after, "computed": computed, "clamped": clamped,
            "user_set": b.user_set,
            "drop_fraction": drop_fraction(columns[b.stat], b.side, after, all_must_pass),
            "drop_fraction_before": drop_fraction(columns[b.stat], b.side, b.value, all_must_pass)
            if b.value is not None else 0.0,
        })
    return refined, changes
