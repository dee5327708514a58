"""``results/eval.json``: every experiment's benchmark results side by side, deltas, ranking, provenance.

Deltas between variants (``dpo_vs_base``, ``dpo_vs_sft``, and with the blank-image ablation
``base_vs_base_blank`` etc.: what each model takes from the images; intervals in ``deltas_ci95``) and
between experiments (``comparisons``: a − b for every pair, benchmark, metric and variant) are
differences of the reported metrics; their 95 % intervals come from a paired bootstrap over
the benchmark's items (the same items are resampled for both sides), using each item's own
score from the per-item predictions file. For corpus-level caption metrics (BLEU, METEOR) the
per-item scores only approximate the corpus value, so those intervals are approximate too.

The ``ranking`` (experiment × variant by the config's ``ranking`` metric), each sweep's points
(``sweeps``) and the data pools (``pool_ranking``: experiments grouped by the data they train on,
each pool ranked by its best DPO model, the Data-Juicer sandbox's ``DataPoolRanking``) give every
row its own 95 % interval (``ci95``, from its metrics file) and its difference to the top row
(``delta_vs_best`` = row − top, paired bootstrap interval ``delta_vs_best_ci95``, ``significant``
when that interval excludes 0; null when the two share no per-item scores).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np

from .io import read_json, read_jsonl

PACKAGES = ["snakemake", "py-data-juicer", "torch", "transformers", "trl", "peft", "accelerate", "datasets",
            "math-verify", "pycocoevalcap", "vllm", "numpy"]


def per_item(rows_path: str | Path, metric: str) -> dict[str, float]:
    """Each item's value of ``metric`` from an ``eval/{bench}/{variant}.jsonl`` file."""
    return {row["id"]: float(row["score"][metric]) for row in read_jsonl(rows_path)
            if isinstance(row["score"].get(metric), (int, float))}


def paired_delta_ci(a: dict[str, float], b: dict[str, float], seed: int,
                    n_resamples: int = 1000) -> list[float] | None:
    """95 % percentile bootstrap interval of mean(a − b) over the items both have (None: no item
    in common, e.g. a corpus-level metric without per-item scores)."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    diff = np.array([a[i] - b[i] for i in ids])
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


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
            "config_sha256": hashlib.sha256(blob).hexdigest(), "seed": seed, "packages": packages}


def build(results: dict[str, dict[str, list[str]]], ranking: dict, config: dict, seed: int,
          repo: str | Path, root: str | Path = "results", rounds: dict[str, list[int]] | None = None,
          sweeps: dict | None = None, pools: dict[str, str] | None = None) -> dict:
    """The eval.json document from the per-variant metrics files under ``root``.

    ``results`` maps experiment → benchmark → variants; ``ranking`` names the primary
    ``benchmark`` and ``metric``; ``rounds`` maps an experiment to its later DPO rounds (2, 3, ...),
    whose curve goes to the experiment's ``rounds`` entry; ``sweeps`` is the resolved config's
    ``sweep_points`` (sweep → ``{"base", "keys", "points": {experiment: {key: value}}}``) and
    ``pools`` maps experiment → its data key (:func:`juicebox.sweeps.data_key`).
    """
    root = Path(root)
    out: dict = {"experiments": {}}
    for exp, benches in results.items():
        entry = {"benchmarks": {}, "deltas": {}, "deltas_ci95": {}}
        for bench, variants in benches.items():
            metrics = {v: read_json(root / exp / "eval" / bench / f"{v}.json") for v in variants}
            entry["benchmarks"][bench] = {v: {"n": m["n"], "metrics": m["metrics"], "ci95": m["ci95"],
                                              "lower_is_better": m.get("lower_is_better", [])}
                                          for v, m in metrics.items()}
            entry["deltas"][bench], entry["deltas_ci95"][bench] = {}, {}
            for metric in metrics["dpo"]["metrics"]:
                items = {v: per_item(root / exp / "eval" / bench / f"{v}.jsonl", metric) for v in variants}
                for a, b in delta_pairs(variants):
                    key = f"{a}_vs_{b}"
                    delta = metrics[a]["metrics"][metric] - metrics[b]["metrics"][metric]
                    entry["deltas"][bench].setdefault(metric, {})[key] = delta
                    if items[a]:
                        entry["deltas_ci95"][bench].setdefault(metric, {})[key] = paired_delta_ci(
                            items[a], items[b], seed)
        if (rounds or {}).get(exp):
            entry["rounds"] = round_curves(root / exp, benches, rounds[exp], seed)
        out["experiments"][exp] = entry
    items = ItemScores(root, ranking)
    out["ranking"] = against_best(rank(out["experiments"], ranking), items, seed)
    out["sweeps"] = rank_sweeps(out["ranking"], sweeps or {}, items, seed)
    out["pool_ranking"] = rank_pools(out["ranking"], pools or {}, items, seed)
    out["comparisons"] = compare(results, seed, root)
    out["provenance"] = provenance(config, seed, repo)
    return out


def delta_pairs(variants: list[str]) -> list[tuple[str, str]]:
    """The (a, b) variant pairs whose difference a − b is reported: dpo against base and sft, and
    each model against its blank-image ablation."""
    pairs = [("dpo", other) for other in ("base", "sft") if other in variants]
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
    """Per-item scores of the ranking metric, read once per experiment × variant."""

    def __init__(self, root: str | Path, ranking: dict):
        self.root, self.bench, self.metric = Path(root), ranking["benchmark"], ranking["metric"]
        self.cache: dict[tuple[str, str], dict[str, float]] = {}

    def __call__(self, experiment: str, variant: str) -> dict[str, float]:
        key = (experiment, variant)
        if key not in self.cache:
            self.cache[key] = per_item(self.root / experiment / "eval" / self.bench / f"{variant}.jsonl", self.metric)
        return self.cache[key]


def against_best(rows: list[dict], items, seed: int) -> list[dict]:
    """Ranked rows (best first), each with ``delta_vs_best`` (its value − the top row's), the paired
    bootstrap interval of that difference over the items both have (``delta_vs_best_ci95``) and
    ``significant`` (the interval excludes 0). ``items(experiment, variant)`` gives per-item
    scores; with none shared the interval and the flag are None."""
    if not rows:
        return []
    best = rows[0]
    out = []
    for row in rows:
        a, b = items(row["experiment"], row["variant"]), items(best["experiment"], best["variant"])
        ci = paired_delta_ci(a, b, seed)
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
                ma = read_json(root / a / "eval" / bench / f"{variant}.json")["metrics"]
                mb = read_json(root / b / "eval" / bench / f"{variant}.json")["metrics"]
                for metric in [m for m in ma if m in mb]:
                    ia = per_item(root / a / "eval" / bench / f"{variant}.jsonl", metric)
                    ib = per_item(root / b / "eval" / bench / f"{variant}.jsonl", metric)
                    out.append({"benchmark": bench, "metric": metric, "variant": variant, "a": a, "b": b,
                                "delta": ma[metric] - mb[metric], "ci95": paired_delta_ci(ia, ib, seed)})
    return out


def round_curves(folder: Path, benches: dict[str, list[str]], later: list[int], seed: int) -> dict:
    """Per benchmark and metric, the curve over DPO rounds: round 0 is the policy before DPO (sft,
    else base), round 1 the first DPO adapter, round r >= 2 the adapter of round r (its metrics under
    ``round{r}/eval``). Each point has the metric, its 95 % interval and the paired difference from
    the previous point with its interval."""
    def files(r: int, bench: str) -> Path:
        if r == 0:
            return folder / "eval" / bench / ("sft" if "sft" in benches[bench] else "base")
        return (folder if r == 1 else folder / f"round{r}") / "eval" / bench / "dpo"

    curves: dict = {}
    for bench in benches:
        points = [0, 1, *later]
        metrics = {r: read_json(files(r, bench).with_suffix(".json")) for r in points}
        for metric in metrics[1]["metrics"]:
            items = {r: per_item(files(r, bench).with_suffix(".jsonl"), metric) for r in points}
            curve = []
            for i, r in enumerate(points):
                point = {"round": r, "variant": metrics[r]["variant"], "value": metrics[r]["metrics"][metric],
                         "ci95": metrics[r]["ci95"].get(metric)}
                if i:
                    prev = points[i - 1]
                    point["delta_vs_previous"] = point["value"] - metrics[prev]["metrics"][metric]
                    point["delta_vs_previous_ci95"] = paired_delta_ci(items[r], items[prev], seed)
                curve.append(point)
            curves.setdefault(bench, {})[metric] = curve
    return curves
