"""The "What the demo shows" tables from the ``results/eval.json`` of several seeds.

For each experiment and benchmark, one headline metric (the first of ``HEADLINE`` the benchmark
reports): base / sft / dpo per seed, dpo − sft with its paired 95 % interval per seed, and in how
many seeds that interval lies above 0 (below 0 for a lower-is-better metric: an improvement);
each model against its blank-image ablation; and every experiment comparison (a − b) per variant.
Nothing is averaged over seeds: each seed's figures stand as measured.
"""

from __future__ import annotations

from typing import Iterable

from .io import read_json

HEADLINE = ("pass@1", "accuracy", "CIDEr", "CHAIR_s")


def headline(metrics: Iterable[str]) -> str:
    """The metric a benchmark's tables show: the first of ``HEADLINE`` it reports."""
    names = list(metrics)
    for name in HEADLINE:
        if name in names:
            return name
    return names[0]


def _ci(values: list[float] | None) -> str:
    return f"[{values[0]:+.3f}, {values[1]:+.3f}]" if values else "(no paired interval)"


def improved(ci: list[float], lower_is_better: bool) -> bool:
    """Whether a paired interval of a − b says a is better: above 0, or below 0 when lower is better."""
    return ci[1] < 0 if lower_is_better else ci[0] > 0


def tables(evals: dict[str, dict]) -> str:
    """Markdown tables of the seeds' eval.json documents (seed → document)."""
    seeds = list(evals)
    first = evals[seeds[0]]["experiments"]
    lines = ["| exp | benchmark (metric) | seed | base / sft / dpo | dpo − sft [95 % CI] |", "|---|---|---|---|---|"]
    blank_lines = ["| exp | benchmark (metric) | seed | sft / sft with blank images | sft − blank [95 % CI] |",
                   "|---|---|---|---|---|"]
    verdicts = []
    for exp, entry in first.items():
        for bench, variants in entry["benchmarks"].items():
            metric = headline(variants["dpo"]["metrics"])
            lower = metric in variants["dpo"].get("lower_is_better", [])
            wins = 0
            for seed in seeds:
                result = evals[seed]["experiments"][exp]
                values = result["benchmarks"][bench]
                shown = " / ".join(f"{values[v]['metrics'][metric]:.3f}" for v in ("base", "sft", "dpo") if v in values)
                delta = result["deltas"][bench][metric].get("dpo_vs_sft")
                ci = result["deltas_ci95"][bench].get(metric, {}).get("dpo_vs_sft")
                if delta is not None and ci:
                    wins += improved(ci, lower)
                    lines.append(f"| {exp} | {bench} ({metric}) | {seed} | {shown} | {delta:+.3f} {_ci(ci)} |")
                else:
                    lines.append(f"| {exp} | {bench} ({metric}) | {seed} | {shown} | — |")
                if "sft_blank" in values:
                    blank_ci = result["deltas_ci95"][bench].get(metric, {}).get("sft_vs_sft_blank")
                    blank_delta = result["deltas"][bench][metric]["sft_vs_sft_blank"]
                    blank_lines.append(f"| {exp} | {bench} ({metric}) | {seed} | "
                                       f"{values['sft']['metrics'][metric]:.3f} / "
                                       f"{values['sft_blank']['metrics'][metric]:.3f} | {blank_delta:+.3f} "
                                       f"{_ci(blank_ci) if blank_ci else ''} |")
            verdicts.append(f"- {exp} / {bench} ({metric}{', lower is better' if lower else ''}): dpo better than "
                            f"sft with the interval clear of 0 in {wins} of {len(seeds)} seeds")
    comparisons = ["| a − b | benchmark (metric) | variant | seed | a − b [95 % CI] |", "|---|---|---|---|---|"]
    for seed in seeds:
        for row in evals[seed].get("comparisons", []):
            bench_metrics = first[row["a"]]["benchmarks"][row["benchmark"]]["dpo"]["metrics"]
            if row["metric"] != headline(bench_metrics) or row["variant"].endswith("_blank"):
                continue
            comparisons.append(f"| {row['a']} − {row['b']} | {row['benchmark']} ({row['metric']}) | {row['variant']} "
                               f"| {seed} | {row['delta']:+.3f} {_ci(row['ci95'])} |")
    out = ["### dpo against sft", "", *lines, "", *verdicts]
    if len(blank_lines) > 2:
        out += ["", "### The images: sft against sft shown blank images", "", *blank_lines]
    if len(comparisons) > 2:
        out += ["", "### Experiments against each other", "", *comparisons]
    return "\n".join(out) + "\n"


def main(paths: list[str]) -> str:
    """Tables of ``eval.json`` files, each labelled by the seed in its provenance."""
    evals = {}
    for path in paths:
        doc = read_json(path)
        evals[str(doc["provenance"]["seed"])] = doc
    return tables(evals)
