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
from .scoring import paired_bootstrap_figures

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
          sweeps: dict | None = None, pools: dict[str, str] | None = None) -> dict:
    """The eval.json document from the per-variant metrics files under ``root``.

    ``results`` maps experiment → benchmark → variants; ``ranking`` names the primary
    ``benchmark`` and ``metric``; ``rounds`` maps an experiment to its later DPO rounds (2, 3, ...),
    whose curve goes to the experiment's ``rounds`` entry; ``sweeps`` is the resolved config's
    ``sweep_points`` (sweep → ``{"base", "keys", "points": {experiment: {key: value}}}``) and
    ``pools`` maps experiment → its data key (the ``data`` keys of :func:`juicebox.sharing.stage_keys`).
    """
    root = Path(root)
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
    items = ItemScores(root, ranking)
    out["ranking"] = against_best(rank(out["experiments"], ranking), items, seed)
    out["sweeps"] = rank_sweeps(out["ranking"], sweeps or {}, items, seed)
    out["pool_ranking"] = rank_pools(out["ranking"], pools or {}, items, seed)
    out["comparisons"] = compare(results, seed, root)
    out["provenance"] = provenance(config, seed, repo)
    return out


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


def rank(experiments: dict, ranking: dict) -> list[dict]:
    """Experiment × variant (each with the metric's 95 % interval from its metrics file, ``ci95``)
    ordered by the primary metric, best first: highest first, lowest for a
    metric its benchmark marks ``lower_is_better`` (CHAIR); ties by name. The blank-image
    ablations are not models and are not ranked."""
    bench, metric = ranking["benchmark"], ranking["metric"]
    rows, lower = [], False
    for exp, entry in experiments.items():
        for variant, result in entry["benchmarks"].get(bench, {}).items():
            if metric in result["metrics"] and not variant.endswith("_blank"):
                lower = lower or metric in result.get("lower_is_better", [])
                rows.append({"experiment": exp, "variant": variant, "benchmark": bench, "metric": metric,
                             "value": result["metrics"][metric], "ci95": result.get("ci95", {}).get(metric)})
    sign = 1 if lower else -1
    return sorted(rows, key=lambda r: (sign * r["value"], r["experiment"], r["variant"]))


class ItemScores:
    """The evaluated rows of the ranking benchmark, read once per experiment × variant."""

    def __init__(self, root: str | Path, ranking: dict):
        self.root, self.bench, self.metric = Path(root), ranking["benchmark"], ranking["metric"]
        self.cache: dict[tuple[str, str], EvalRows] = {}

    def __call__(self, experiment: str, variant: str) -> EvalRows:
        key = (experiment, variant)
        if key not in self.cache:
            self.cache[key] = EvalRows(metrics_file(self.root, experiment, self.bench, variant))
        return self.cache[key]


def against_best(rows: list[dict], items: ItemScores, seed: int) -> list[dict]:
    """Ranked rows (best first), each with ``delta_vs_best`` (its value − the top row's), the paired
    bootstrap interval of that difference over the items both have (``delta_vs_best_ci95``) and
    ``significant`` (the interval excludes 0). ``items(experiment, variant)`` gives the evaluated
    rows; with none shared the interval and the flag are None."""
    if not rows:
        return []
    best = rows[0]
    out = []
    for row in rows:
        a, b = items(row["experiment"], row["variant"]), items(best["experiment"], best["variant"])
        ci = paired_delta_ci(a, b, items.metric, seed)
        out.append({**row, "delta_vs_best": row["value"] - best["value"], "delta_vs_best_ci95": ci,
                    "significant": None if ci is None else bool(ci[0] > 0 or ci[1] < 0)})
    return out


def rank_sweeps(ranking: list[dict], sweeps: dict, items, seed: int, variant: str = "dpo") -> dict:
    """Per sweep, its evaluated points' ``variant`` rows in ranking order, each with its grid values
    (``point``) and whether it is the sweep's base, compared with the sweep's best point."""
    out = {}
    for sweep, entry in sweeps.items():
        points = entry["points"]
        rows = [{**_plain(row), "point": points[row["experiment"]], "base": row["experiment"] == entry["base"]}
                for row in ranking if row["experiment"] in points and row["variant"] == variant]
        out[sweep] = {"base": entry["base"], "keys": entry["keys"], "ranking": against_best(rows, items, seed)}
    return out


def rank_pools(ranking: list[dict], pools: dict[str, str], items, seed: int, variant: str = "dpo") -> list[dict]:
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
    return against_best(rows, items, seed)


def _plain(row: dict) -> dict:
    """A ranking row without its comparison with the overall best (its section compares anew)."""
    return {k: v for k, v in row.items() if k not in ("delta_vs_best", "delta_vs_best_ci95", "significant")}


def compare(results: dict, seed: int, root: Path) -> list[dict]:
    """Every pair of experiments on every benchmark metric, variant by variant, with paired bootstrap CIs."""
    out = []
    for a, b in itertools.combinations(sorted(results), 2):
        for bench in [x for x in results[a] if x in results[b]]:
            for variant in [v for v in results[a][bench] if v in results[b][bench]]:
                ma = read_json(metrics_file(root, a, bench, variant))["metrics"]
                mb = read_json(metrics_file(root, b, bench, variant))["metrics"]
                ra, rb = (EvalRows(metrics_file(root, exp, bench, variant)) for exp in (a, b))
                for metric in [m for m in ma if m in mb]:
                    out.append({"benchmark": bench, "metric": metric, "variant": variant, "a": a, "b": b,
                                "delta": ma[metric] - mb[metric], "ci95": paired_delta_ci(ra, rb, metric, seed)})
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
