"""``results/eval.json``: every experiment's benchmark results side by side, deltas, ranking, provenance.

Deltas between variants (``dpo_vs_base``, ``dpo_vs_sft``, ``grpo_vs_sft``, and with the blank-image ablation
``base_vs_base_blank`` etc.: what each model takes from the images; intervals in ``deltas_ci95``) and
between experiments (``comparisons``: a − b for every pair, benchmark, metric and variant) are
differences of the reported metrics; their 95 % intervals come from a paired bootstrap over
the benchmark's items (the same items are resampled for both sides) of the same statistic: on
every resample, each side's figure is recomputed from the summed per-item statistics of its
predictions file (``stats``, with the benchmark type's ``figures``), corpus BLEU, METEOR, CHAIR
and POPE's ratios included, so each interval is of the reported difference.

The ``ranking`` (experiment × variant by the config's ``ranking`` metric), each sweep's points
(``sweeps``) and the data pools (``pool_ranking``: experiments grouped by the data they train on,
each pool ranked by its best DPO model, the Data-Juicer sandbox's ``DataPoolRanking``) give every
row its own 95 % interval (``ci95``, from its metrics file) and its difference to the top row
(``delta_vs_best`` = row − top, paired bootstrap interval ``delta_vs_best_ci95``, ``significant``
when that interval excludes 0; null when the two share no per-item scores).

Training replicates (``replicates: R``, :func:`juicebox.config.with_replicates`): the experiments
``<name>``, ``<name>-rep2``, ... form a group, and the group is what ``replicates``, ``ranking``,
``sweeps``, ``pool_ranking`` and ``comparisons`` speak of. Each figure there is the pooled figure of
the group's replicates (the mean over replicates, for a mean over items) with an interval from a
two-level bootstrap (:func:`juicebox.scoring.two_level_bootstrap`: replicates, then items), so it
covers the training seed's noise as well as the items'; its ``points`` are the replicates' own
figures. A difference (dpo − sft, group − group) is formed within a replicate (replicate k of one
side against replicate k of the other, on the same items) and bootstrapped the same way; ``mde`` is
the smallest difference such an interval detects (80 % power at the 5 % level, 2.8 standard errors).
Two groups with different numbers of replicates cannot be paired: their difference's interval is
the normal one from the two standard errors. With one replicate every interval is the item
bootstrap.

The document explains itself, as lm-evaluation-harness's results do: ``schema_version``
(:data:`SCHEMA_VERSION`, the JSON Schema in ``docs/eval.schema.json``), per experiment and
benchmark the resolved benchmark config (``configs``), and per variant the model, adapter, engine,
sampling and bootstrap that produced its figures.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from importlib import metadata
from pathlib import Path

from . import cpu, layout
from .benchmarks import BENCHMARKS, metric_rows
from .io import read_json, read_jsonl
from .scoring import TwoLevel, paired_bootstrap_figures, two_level_bootstrap

PACKAGES = ["snakemake", "py-data-juicer", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
            "math-verify", "pycocoevalcap", "vllm", "numpy"]


class EvalRows:
    """One evaluated variant: its per-item rows by id (``eval/{bench}/{variant}.jsonl``) and the
    figures of its benchmark type (named in the metrics file ``{variant}.json``)."""

    def __init__(self, metrics_path: str | Path):
        metrics_path = Path(metrics_path)
        self.rows = {str(row["id"]): row for row in read_jsonl(metrics_path.with_suffix(".jsonl"))}
        self.figures = BENCHMARKS.lookup(read_json(metrics_path)["benchmark"]["type"]).figures


def paired_delta_ci(a: EvalRows, b: EvalRows, metric: str, seed: int, n_resamples: int = 1000) -> list[float] | None:
    """95 % paired percentile bootstrap interval of ``metric``(a) − ``metric``(b) over the items
    both have (of its group, for ``<metric>[<field>=<value>]``), each side's figure recomputed from
    its summed statistics on every resample (None: no item in common)."""
    ids = sorted(set(a.rows) & set(b.rows))
    base, members = metric_rows([a.rows[i] for i in ids], metric)
    if not members:
        return None
    stats_a, stats_b = ([side.rows[ids[i]]["stats"] for i in members] for side in (a, b))
    return list(paired_bootstrap_figures(stats_a, stats_b, a.figures, seed, n_resamples)[base])


def provenance(config: dict, seed: int, repo: str | Path) -> dict:
    """Git commit (and whether the tree had changes), config hash, seed, package versions."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    blob = json.dumps(config, sort_keys=True).encode()
    return {"git_commit": git("rev-parse", "HEAD") or "unknown", "git_dirty": bool(git("status", "--porcelain")),
            "config_sha256": hashlib.sha256(blob).hexdigest(), "seed": seed, "packages": packages,
            "cpu": cpu.describe()}


# The version of eval.json's layout (docs/eval.schema.json); raise it when a field changes meaning
# or goes away.
SCHEMA_VERSION = "1.0"
# What each variant's entry repeats from its metrics file (rule evaluate) besides its figures.
RUN_FIELDS = ("model", "adapter", "blank_images", "engine", "sampling", "samples_per_item", "bootstrap", "rejudge")


def build(results: dict[str, dict[str, list[str]]], ranking: dict, config: dict, seed: int,
          repo: str | Path, root: str | Path = "results", rounds: dict[str, list[int]] | None = None,
          sweeps: dict | None = None, pools: dict[str, str] | None = None,
          groups: dict[str, list[str]] | None = None) -> dict:
    """The eval.json document from the per-variant metrics files under ``root``.

    ``results`` maps experiment → benchmark → variants; ``ranking`` names the primary
    ``benchmark`` and ``metric``; ``rounds`` maps an experiment to its later DPO rounds (2, 3, ...),
    whose curve goes to the experiment's ``rounds`` entry; ``sweeps`` is the resolved config's
    ``sweep_points`` (sweep → ``{"base", "keys", "points": {experiment: {key: value}}}``),
    ``pools`` maps experiment → its data key (the ``data`` keys of :func:`juicebox.sharing.stage_keys`)
    and ``groups`` each experiment with replicates → its replicates in order (the resolved config's
    ``replicate_groups``; default: every experiment a group of one).
    """
    root = Path(root)
    groups = groups or {exp: [exp] for exp in results}
    out: dict = {"schema_version": SCHEMA_VERSION, "experiments": {}}
    for exp, benches in results.items():
        entry = {"benchmarks": {}, "configs": {}, "deltas": {}, "deltas_ci95": {}}
        for bench, variants in benches.items():
            metrics = {v: read_json(metrics_file(root, exp, bench, v)) for v in variants}
            entry["benchmarks"][bench] = {v: {"n": m["n"], "metrics": m["metrics"], "ci95": m["ci95"],
                                              "lower_is_better": m.get("lower_is_better", []),
                                              **{k: m[k] for k in RUN_FIELDS if k in m}}
                                          for v, m in metrics.items()}
            entry["configs"][bench] = metrics["dpo"].get("benchmark")
            entry["deltas"][bench], entry["deltas_ci95"][bench] = {}, {}
            rows = {v: EvalRows(metrics_file(root, exp, bench, v)) for v in variants}
            for metric in metrics["dpo"]["metrics"]:
                for a, b in delta_pairs(variants):
                    key = f"{a}_vs_{b}"
                    delta = metrics[a]["metrics"][metric] - metrics[b]["metrics"][metric]
                    entry["deltas"][bench].setdefault(metric, {})[key] = delta
                    entry["deltas_ci95"][bench].setdefault(metric, {})[key] = paired_delta_ci(
                        rows[a], rows[b], metric, seed)
        if (rounds or {}).get(exp):
            entry["rounds"] = round_curves(root, exp, benches, rounds[exp], seed)
        out["experiments"][exp] = entry
    scores = GroupScores(root, groups)
    out["replicates"] = {group: replicate_entry(scores, group, out["experiments"], results[group], seed)
                         for group in groups}
    out["ranking"] = against_best(rank(out["replicates"], ranking), scores, ranking["metric"], seed)
    out["sweeps"] = rank_sweeps(out["ranking"], sweeps or {}, scores, ranking["metric"], seed)
    out["pool_ranking"] = rank_pools(out["ranking"], pools or {}, scores, ranking["metric"], seed)
    out["comparisons"] = compare(results, groups, scores, seed)
    out["provenance"] = provenance(config, seed, repo)
    return out


class GroupScores:
    """The evaluated rows of a group of replicates (one :class:`EvalRows` per replicate, in order),
    read once per group, benchmark and variant."""

    def __init__(self, root: str | Path, groups: dict[str, list[str]]):
        self.root, self.groups = Path(root), groups
        self.cache: dict[tuple[str, str, str], list[EvalRows]] = {}

    def __call__(self, group: str, bench: str, variant: str) -> list[EvalRows]:
        key = (group, bench, variant)
        if key not in self.cache:
            self.cache[key] = [EvalRows(metrics_file(self.root, member, bench, variant))
                               for member in self.groups[group]]
        return self.cache[key]


def two_level(a: list[EvalRows], metric: str, seed: int, b: list[EvalRows] | None = None) -> TwoLevel | None:
    """``metric`` of replicates ``a`` (minus that of ``b``) over the items every replicate has, with its
    two-level bootstrap interval (:func:`juicebox.scoring.two_level_bootstrap`); ``b`` with as many
    replicates is paired replicate by replicate, otherwise the two sides are bootstrapped apart and
    the interval is normal. None: no item in common."""
    sides = a + (b or [])
    ids = sorted(set.intersection(*(set(side.rows) for side in sides)))
    base, members = metric_rows([a[0].rows[i] for i in ids], metric)
    if not members:
        return None

    def stats(reps: list[EvalRows]) -> list[list[dict]]:
        return [[rep.rows[ids[i]]["stats"] for i in members] for rep in reps]

    if b is None or len(b) == len(a):
        return two_level_bootstrap(stats(a), a[0].figures, seed, minus=stats(b) if b else None)[base]
    left, right = (two_level_bootstrap(stats(side), side[0].figures, seed)[base] for side in (a, b))
    value, se = left.value - right.value, (left.se ** 2 + right.se ** 2) ** 0.5
    return TwoLevel(value, (value - 1.96 * se, value + 1.96 * se), se, 2.80 * se)


def figure_entry(result: TwoLevel | None, points: list[float]) -> dict:
    """A group's figure in eval.json: value, ci95, se, mde and the replicates' own figures."""
    if result is None:
        return {"value": None, "ci95": None, "se": None, "mde": None, "points": points}
    return {"value": result.value, "ci95": list(result.ci95), "se": result.se, "mde": result.mde, "points": points}


def replicate_entry(scores: GroupScores, group: str, experiments: dict, benches: dict[str, list[str]],
                    seed: int) -> dict:
    """One group's ``replicates`` entry: its members, and per benchmark, variant and metric the pooled
    figure over replicates and items (with ``points``, each replicate's figure); per benchmark and
    metric the within-replicate variant differences (:func:`delta_pairs`)."""
    members = scores.groups[group]
    entry: dict = {"members": members, "benchmarks": {}, "deltas": {}, "lower_is_better": {}}
    for bench, variants in benches.items():
        entry["lower_is_better"][bench] = experiments[group]["benchmarks"][bench]["dpo"]["lower_is_better"]
        figures = {}
        for variant in variants:
            metrics = experiments[group]["benchmarks"][bench][variant]["metrics"]
            figures[variant] = {
                metric: figure_entry(two_level(scores(group, bench, variant), metric, seed),
                                     [experiments[m]["benchmarks"][bench][variant]["metrics"][metric] for m in members])
                for metric in metrics}
        entry["benchmarks"][bench] = figures
        deltas: dict = {}
        for metric in experiments[group]["benchmarks"][bench]["dpo"]["metrics"]:
            for a, b in delta_pairs(variants):
                points = [experiments[m]["deltas"][bench][metric][f"{a}_vs_{b}"] for m in members]
                result = two_level(scores(group, bench, a), metric, seed, scores(group, bench, b))
                deltas.setdefault(metric, {})[f"{a}_vs_{b}"] = figure_entry(result, points)
        entry["deltas"][bench] = deltas
    return entry


def check_schema(summary: dict, schema_path: str | Path) -> None:
    """Stop with the first place where an eval.json document breaks its JSON Schema (its dotted
    path, what was found and what the schema wants)."""
    import jsonschema

    schema = read_json(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(summary))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"eval.json breaks {schema_path} at {where}: {error.message}")


def delta_pairs(variants: list[str]) -> list[tuple[str, str]]:
    """The (a, b) variant pairs whose difference a − b is reported: each trained policy (dpo, grpo)
    against base and sft, and each model against its blank-image ablation."""
    pairs = [(trained, other) for trained in ("dpo", "grpo") if trained in variants
             for other in ("base", "sft") if other in variants]
    return pairs + [(v, f"{v}_blank") for v in variants if f"{v}_blank" in variants]


def rank(replicates: dict, ranking: dict) -> list[dict]:
    """Group × variant (each with its pooled figure over replicates and items, its 95 % interval
    ``ci95`` and its replicates' ``points``) ordered by the primary metric, best first: highest first,
    lowest for a metric its benchmark marks ``lower_is_better`` (CHAIR); ties by name. The
    blank-image ablations are not models and are not ranked."""
    bench, metric = ranking["benchmark"], ranking["metric"]
    rows, lower = [], False
    for group, entry in replicates.items():
        for variant, figures in entry["benchmarks"].get(bench, {}).items():
            if metric in figures and figures[metric]["value"] is not None and not variant.endswith(layout.BLANK):
                lower = lower or metric in entry["lower_is_better"][bench]
                figure = figures[metric]
                rows.append({"experiment": group, "variant": variant, "benchmark": bench, "metric": metric,
                             "value": figure["value"], "ci95": figure["ci95"], "replicates": len(entry["members"]),
                             "points": figure["points"]})
    sign = 1 if lower else -1
    return sorted(rows, key=lambda r: (sign * r["value"], r["experiment"], r["variant"]))


def against_best(rows: list[dict], scores: GroupScores, metric: str, seed: int) -> list[dict]:
    """Ranked rows (best first), each with ``delta_vs_best`` (its value − the top row's), the interval
    of that difference over replicates and items (:func:`two_level`, ``delta_vs_best_ci95``), the
    smallest difference that interval detects (``mde``) and ``significant`` (the interval excludes
    0). With no item shared the interval and the flag are None."""
    if not rows:
        return []
    best = rows[0]
    out = []
    for row in rows:
        result = two_level(scores(row["experiment"], row["benchmark"], row["variant"]), metric, seed,
                           scores(best["experiment"], best["benchmark"], best["variant"]))
        ci = None if result is None else list(result.ci95)
        out.append({**row, "delta_vs_best": row["value"] - best["value"], "delta_vs_best_ci95": ci,
                    "mde": None if result is None else result.mde,
                    "significant": None if ci is None else bool(ci[0] > 0 or ci[1] < 0)})
    return out


def rank_sweeps(ranking: list[dict], sweeps: dict, scores: GroupScores, metric: str, seed: int,
                variant: str = "dpo") -> dict:
    """Per sweep, its evaluated points' ``variant`` rows in ranking order, each with its grid values
    (``point``) and whether it is the sweep's base, compared with the sweep's best point."""
    out = {}
    for sweep, entry in sweeps.items():
        points = entry["points"]
        rows = [{**_plain(row), "point": points[row["experiment"]], "base": row["experiment"] == entry["base"]}
                for row in ranking if row["experiment"] in points and row["variant"] == variant]
        out[sweep] = {"base": entry["base"], "keys": entry["keys"],
                      "ranking": against_best(rows, scores, metric, seed)}
    return out


def rank_pools(ranking: list[dict], pools: dict[str, str], scores: GroupScores, metric: str, seed: int,
               variant: str = "dpo") -> list[dict]:
    """Data pools (experiments with the same data key) ranked by the best ``variant`` model trained
    on each: a row per pool naming its experiments and its best one (whose value and interval it
    takes), compared with the top pool's best experiment."""
    members: dict[str, list[str]] = {}
    for exp, key in pools.items():
        members.setdefault(key, []).append(exp)
    rows, seen = [], set()
    for row in ranking:  # best first, so a pool's first row is its best experiment
        key = pools.get(row["experiment"])
        if row["variant"] == variant and key is not None and key not in seen:
            seen.add(key)
            rows.append({"pool": key, "experiments": sorted(members[key]), **_plain(row)})
    return against_best(rows, scores, metric, seed)


def _plain(row: dict) -> dict:
    """A ranking row without its comparison with the overall best (its section compares anew)."""
    return {k: v for k, v in row.items() if k not in ("delta_vs_best", "delta_vs_best_ci95", "mde", "significant")}


def compare(results: dict, groups: dict[str, list[str]], scores: GroupScores, seed: int) -> list[dict]:
    """Every pair of groups on every benchmark metric, variant by variant: the difference of their
    pooled figures, its interval over replicates and items (:func:`two_level`), ``mde`` and
    ``significant``."""
    out = []
    for a, b in itertools.combinations(sorted(groups), 2):
        for bench in [x for x in results[a] if x in results[b]]:
            for variant in [v for v in results[a][bench] if v in results[b][bench]]:
                left, right = scores(a, bench, variant), scores(b, bench, variant)
                ma, mb = (read_json(metrics_file(scores.root, g, bench, variant))["metrics"] for g in (a, b))
                for metric in [m for m in ma if m in mb]:
                    result = two_level(left, metric, seed, right)
                    if result is None:
                        continue
                    out.append({"benchmark": bench, "metric": metric, "variant": variant, "a": a, "b": b,
                                "delta": result.value, "ci95": list(result.ci95), "mde": result.mde,
                                "replicates": [len(left), len(right)],
                                "significant": bool(result.ci95[0] > 0 or result.ci95[1] < 0)})
    return out


def metrics_file(root: str | Path, exp: str, bench: str, variant: str, round_: int = 1) -> Path:
    """The metrics file of one evaluated variant (a trained one: of DPO round ``round_``)."""
    return Path(layout.eval_path("metrics", variant, root=root, exp=exp, bench=bench, round=round_))


def round_curves(root: str | Path, exp: str, benches: dict[str, list[str]], later: list[int], seed: int) -> dict:
    """Per benchmark and metric, the curve over DPO rounds of experiment ``exp``: round 0 is the
    policy before DPO (sft, else base), round r >= 1 the adapter of round r. Each point has the
    metric, its 95 % interval and the paired difference from the previous point with its interval."""
    def file(r: int, bench: str) -> Path:
        if r == 0:
            return metrics_file(root, exp, bench, "sft" if "sft" in benches[bench] else "base")
        return metrics_file(root, exp, bench, "dpo", r)

    curves: dict = {}
    for bench in benches:
        points = [0, 1, *later]
        metrics = {r: read_json(file(r, bench)) for r in points}
        rows = {r: EvalRows(file(r, bench)) for r in points}
        for metric in metrics[1]["metrics"]:
            curve = []
            for i, r in enumerate(points):
                point = {"round": r, "variant": metrics[r]["variant"], "value": metrics[r]["metrics"][metric],
                         "ci95": metrics[r]["ci95"].get(metric)}
                if i:
                    prev = points[i - 1]
                    point["delta_vs_previous"] = point["value"] - metrics[prev]["metrics"][metric]
                    point["delta_vs_previous_ci95"] = paired_delta_ci(rows[r], rows[prev], metric, seed)
                curve.append(point)
            curves.setdefault(bench, {})[metric] = curve
    return curves


def intervals_excluding_their_figure(summary: dict, tolerance: float = 1e-12) -> list[str]:
    """Every interval of an eval.json document that does not bracket its figure, as
    ``<where>: <figure> not in [lo, hi]`` (empty: each interval holds its figure; null intervals,
    where two sides share no item, are skipped)."""
    pairs: list[tuple[str, float, list[float] | None]] = []
    for exp, entry in summary["experiments"].items():
        for bench, variants in entry["benchmarks"].items():
            for variant, result in variants.items():
                pairs += [(f"{exp}/{bench}/{variant}/{metric}", value, result["ci95"].get(metric))
                          for metric, value in result["metrics"].items()]
        for bench, metrics in entry["deltas"].items():
            for metric, deltas in metrics.items():
                pairs += [(f"{exp}/{bench}/{metric}/{key}", value, entry["deltas_ci95"][bench][metric].get(key))
                          for key, value in deltas.items()]
        for bench, metrics in entry.get("rounds", {}).items():
            for metric, curve in metrics.items():
                for point in curve:
                    where = f"{exp}/rounds/{bench}/{metric}/{point['round']}"
                    pairs.append((where, point["value"], point["ci95"]))
                    if "delta_vs_previous" in point:
                        pairs.append((f"{where}/delta", point["delta_vs_previous"], point["delta_vs_previous_ci95"]))
    for group, entry in summary.get("replicates", {}).items():
        for bench, variants in entry["benchmarks"].items():
            for variant, figures in variants.items():
                pairs += [(f"replicates/{group}/{bench}/{variant}/{metric}", f["value"], f["ci95"])
                          for metric, f in figures.items() if f["value"] is not None]
        for bench, metrics in entry["deltas"].items():
            for metric, deltas in metrics.items():
                pairs += [(f"replicates/{group}/{bench}/{metric}/{key}", f["value"], f["ci95"])
                          for key, f in deltas.items() if f["value"] is not None]
    rankings = {"ranking": summary["ranking"], "pool_ranking": summary.get("pool_ranking", []),
                **{f"sweeps/{name}": sweep["ranking"] for name, sweep in summary.get("sweeps", {}).items()}}
    for name, rows in rankings.items():
        for row in rows:
            where = f"{name}/{row['experiment']}/{row['variant']}"
            pairs += [(where, row["value"], row["ci95"]), (f"{where}/delta_vs_best", row["delta_vs_best"],
                                                           row["delta_vs_best_ci95"])]
    pairs += [(f"comparisons/{c['a']}-{c['b']}/{c['benchmark']}/{c['variant']}/{c['metric']}", c["delta"], c["ci95"])
              for c in summary.get("comparisons", [])]
    return [f"{where}: {value} not in {ci}" for where, value, ci in pairs
            if ci is not None and not ci[0] - tolerance <= value <= ci[1] + tolerance]
