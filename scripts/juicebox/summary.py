"""``results/eval.json``: every experiment's benchmark results side by side, deltas, ranking, provenance.

Deltas between variants (``dpo_vs_base``, ``dpo_vs_sft``, and with the blank-image ablation
``base_vs_base_blank`` etc.: what each model takes from the images; intervals in ``deltas_ci95``) and
between experiments (``comparisons``: a − b for every pair, benchmark, metric and variant) are
differences of the reported metrics; their 95 % intervals come from a paired bootstrap over
the benchmark's items (the same items are resampled for both sides), using each item's own
score from the per-item predictions file. For corpus-level caption metrics (BLEU, METEOR) the
per-item scores only approximate the corpus value, so those intervals are approximate too.
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


def paired_delta_ci(a: dict[str, float], b: dict[str, float], seed: int, n_resamples: int = 1000) -> list[float]:
    """95 % percentile bootstrap interval of mean(a − b) over the items both have."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return [float("nan"), float("nan")]
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
          repo: str | Path, root: str | Path = "results") -> dict:
    """The eval.json document from the per-variant metrics files under ``root``.

    ``results`` maps experiment → benchmark → variants; ``ranking`` names the primary
    ``benchmark`` and ``metric``.
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
        out["experiments"][exp] = entry
    out["ranking"] = rank(out["experiments"], ranking)
    out["comparisons"] = compare(results, seed, root)
    out["provenance"] = provenance(config, seed, repo)
    return out


def delta_pairs(variants: list[str]) -> list[tuple[str, str]]:
    """The (a, b) variant pairs whose difference a − b is reported: dpo against base and sft, and
    each model against its blank-image ablation."""
    pairs = [("dpo", other) for other in ("base", "sft") if other in variants]
    return pairs + [(v, f"{v}_blank") for v in variants if f"{v}_blank" in variants]


def rank(experiments: dict, ranking: dict) -> list[dict]:
    """Experiment × variant ordered by the primary metric, best first: highest first, lowest for a
    metric its benchmark marks ``lower_is_better`` (CHAIR); ties by name. The blank-image
    ablations are not models and are not ranked."""
    bench, metric = ranking["benchmark"], ranking["metric"]
    rows, lower = [], False
    for exp, entry in experiments.items():
        for variant, result in entry["benchmarks"].get(bench, {}).items():
            if metric in result["metrics"] and not variant.endswith("_blank"):
                lower = lower or metric in result.get("lower_is_better", [])
                rows.append({"experiment": exp, "variant": variant, "benchmark": bench, "metric": metric,
                             "value": result["metrics"][metric]})
    sign = 1 if lower else -1
    return sorted(rows, key=lambda r: (sign * r["value"], r["experiment"], r["variant"]))


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
