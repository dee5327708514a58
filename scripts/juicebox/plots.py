"""Every figure of the workflow, drawn with matplotlib (Agg) and written atomically as PNG:

* probe stats: one histogram per stat with the recipe's and the refined recipe's thresholds
  (rules ``plot_thresholds``, ``plot_model_thresholds``);
* the report's figures: records per Data-Juicer op, reward distributions, pair margins, benchmark
  results (rules of ``rules/report.smk``);
* training curves: loss, and for DPO reward margin and accuracy, per step (rule ``plot_training``).
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Callable

from .io import atomic_open, atomic_path
from .ksigma import KSigmaSettings, recipe_bounds

# the models, then their blank-image ablations (eval.blank_images)
VARIANTS = ("base", "sft", "dpo", "grpo", "base_blank", "sft_blank", "dpo_blank", "grpo_blank")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, n: int, cols: int = 3, size: tuple[float, float] = (4.0, 3.0)):
    """A figure with ``n`` panels (at least one), ``cols`` to a row; unused grid cells hidden."""
    n = max(n, 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    axes = list(axes.ravel())
    for ax in axes[n:]:
        ax.axis("off")
    return fig, axes[:n]


def _save(plt, fig, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)



# --- probe stats ------------------------------------------------------------------------------

def thresholds(recipe: dict, settings: KSigmaSettings, signature_of: Callable) -> dict[str, list[tuple]]:
    """Per stat, the finite bounds a recipe puts on it: ``[(op, arg, side, value)]`` (op defaults included)."""
    out: dict[str, list[tuple]] = {}
    for b in recipe_bounds(recipe, settings, signature_of):
        if isinstance(b.value, (int, float)) and math.isfinite(b.value) and abs(b.value) < 1e15:
            out.setdefault(b.stat, []).append((b.op, b.arg, b.side, b.value))
    return out


def plot_histograms(columns: dict[str, list[list[float]]], current: dict, refined: dict, outdir: str) -> list[str]:
    """One PNG per stat: the distribution, current bounds dashed, refined bounds solid."""
    plt = _pyplot()
    Path(outdir).mkdir(parents=True, exist_ok=True)
    written = []
    for stat, records in sorted(columns.items()):
        values = [v for rec in records for v in rec]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(values, bins=50, color="#8aa6c1")
        for (op, arg, side, value) in current.get(stat, []):
            ax.axvline(value, color="#555555", linestyle="--", label=f"recipe {arg}={value:g}")
        unchanged = set(current.get(stat, []))
        for (op, arg, side, value) in refined.get(stat, []):
            if (op, arg, side, value) in unchanged:
                continue
            ax.axvline(value, color="#c0392b", linestyle="-", label=f"refined {arg}={value:g}")
        # Bounds far outside the data (Data-Juicer's 1 TB default max_size) stay in the legend only.
        lo, hi = min(values), max(values)
        span = (hi - lo) or max(abs(hi), 1.0)
        near = [v for (*_, v) in current.get(stat, []) + refined.get(stat, []) if lo - span <= v <= hi + span]
        ax.set_xlim(min([lo, *near]) - 0.05 * span, max([hi, *near]) + 0.05 * span)
        ax.set_title(f"{stat} (n={len(values)})")
        ax.set_xlabel(stat)
        ax.set_ylabel("records")
        if current.get(stat) or refined.get(stat):
            ax.legend(fontsize=7)
        fig.tight_layout()
        target = Path(outdir) / f"{stat}.png"
        with atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90, format="png")
        plt.close(fig)
        written.append(str(target))
    return written


# --- the report ---------------------------------------------------------------------------------

def plot_op_counts(ops: list[dict], title: str, path: str | Path) -> None:
    """One bar per op in recipe order: records the op kept (green) and dropped (red, count written)."""
    plt = _pyplot()
    names = [op["op"] for op in ops]
    kept = [op["kept"] for op in ops]
    dropped = [op["in"] - op["kept"] for op in ops]
    rows = range(len(ops))  # positions, not names: an op may appear twice in a recipe
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ops) + 1.5))
    ax.barh(rows, kept, color="#6aa96a", label="kept")
    ax.barh(rows, dropped, left=kept, color="#c0392b", label="dropped")
    for i, (k, d) in enumerate(zip(kept, dropped)):
        ax.text(k + d, i, f" {k} kept, {d} dropped", va="center", fontsize=7)
    ax.set_yticks(rows, names)
    ax.invert_yaxis()
    ax.set_xlim(0, max((k + d for k, d in zip(kept, dropped)), default=1) * 1.35)
    ax.set_xlabel("records")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _save(plt, fig, path)


def reward_values(records: list[dict]) -> dict[tuple[str, str], list[float | None]]:
    """Per (task, reward name), every sample's value (None where it failed); the weighted sum as
    ``reward`` too where a task has more than one reward value."""
    out: dict[tuple[str, str], list[float | None]] = {}
    for record in records:
        for sample in record["samples"]:
            values = dict(sample.get("rewards") or {})
            if len(values) > 1:
                values["reward"] = sample.get("reward")
            for name, value in values.items():
                out.setdefault((record["task"], name), []).append(value)
    return out


def plot_rewards(values: dict[tuple[str, str], list[float | None]], title: str, path: str | Path) -> None:
    """One histogram per (task, reward), titled with its sample count, mean and failed (null) count."""
    plt = _pyplot()
    fig, axes = _panels(plt, len(values))
    for ax, ((task, name), column) in zip(axes, sorted(values.items())):
        numbers = [v for v in column if v is not None]
        ax.hist(numbers, bins=30, color="#8aa6c1")
        mean = f"{statistics.fmean(numbers):.3g}" if numbers else "-"
        ax.set_title(f"{task}: {name}\nn={len(numbers)}, mean={mean}, null={len(column) - len(numbers)}", fontsize=9)
        ax.set_xlabel("reward")
        ax.set_ylabel("samples")
    fig.suptitle(title)
    _save(plt, fig, path)


def plot_margins(pairs: list[dict], title: str, path: str | Path) -> None:
    """One histogram per task of the pairs' margins (chosen_reward - rejected_reward)."""
    plt = _pyplot()
    by_task: dict[str, list[float]] = {}
    for pair in pairs:
        by_task.setdefault(pair["task"], []).append(pair["margin"])
    fig, axes = _panels(plt, len(by_task))
    for ax, (task, margins) in zip(axes, sorted(by_task.items())):
        ax.hist(margins, bins=30, color="#8aa6c1")
        ax.set_title(f"{task}: {len(margins)} pairs, mean margin {statistics.fmean(margins):.3g}", fontsize=9)
        ax.set_xlabel("chosen - rejected reward")
        ax.set_ylabel("pairs")
    if not by_task:
        axes[0].text(0.5, 0.5, "no pairs", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(title)
    _save(plt, fig, path)


def plot_benchmark(summary: dict, bench: str, path: str | Path) -> None:
    """One panel per metric of a benchmark (results/eval.json's ``replicates``): a bar per experiment
    and variant (its figure pooled over its training replicates), the black line its 95 % interval
    over replicates and items, and a dot per replicate's own figure."""
    plt = _pyplot()
    results = {group: entry["benchmarks"][bench] for group, entry in summary["replicates"].items()
               if bench in entry["benchmarks"]}
    variants = [v for v in VARIANTS if any(v in by_variant for by_variant in results.values())]
    metrics = list(dict.fromkeys(m for by_variant in results.values() for figures in by_variant.values()
                                 for m in figures))
    width = 0.8 / len(results)
    fig, axes = _panels(plt, len(metrics))
    for ax, metric in zip(axes, metrics):
        for i, (group, by_variant) in enumerate(results.items()):
            shown = [(j, by_variant[v][metric]) for j, v in enumerate(variants)
                     if v in by_variant and by_variant[v].get(metric, {}).get("value") is not None]
            xs = [j - 0.4 + width * (i + 0.5) for j, _ in shown]
            ax.bar(xs, [f["value"] for _, f in shown], width, color=f"C{i}", alpha=0.75, label=group)
            ax.vlines(xs, [f["ci95"][0] for _, f in shown], [f["ci95"][1] for _, f in shown],
                      color="black", linewidth=1.2)
            for x, (_, f) in zip(xs, shown):
                ax.plot([x] * len(f["points"]), f["points"], "o", color="black", markersize=2.5)
        ax.set_xticks(range(len(variants)), [v.replace("_", "\n") for v in variants])
        ax.set_title(metric)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncols=len(results), fontsize=8)
    items = sorted({summary["experiments"][group]["benchmarks"][bench][v]["n"]
                    for group in results for v in results[group]})
    replicates = sorted({len(summary["replicates"][group]["members"]) for group in results})
    fig.suptitle(f"{bench} ({'/'.join(map(str, items))} items, {'/'.join(map(str, replicates))} "
                 f"replicate(s); dots: each replicate)")
    _save(plt, fig, path)


# --- training curves ----------------------------------------------------------------------------

def plot_metrics(curves: list[tuple[str, str]], png_path: str) -> None:
    """One row of panels per (label, metrics CSV): loss, and for DPO reward margin and accuracy, per step."""
    plt = _pyplot()
    tables = []
    for label, csv_path in curves:
        with open(csv_path, encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        panels = [c for c in ("loss", "mean_token_accuracy", "rewards/margins", "rewards/accuracies")
                  if rows and c in rows[0] and any(r[c] for r in rows)]
        tables.append((label, rows, panels))
    width = max(len(panels) for _, _, panels in tables)
    fig, axes = plt.subplots(len(tables), width, figsize=(3.5 * width, 2.8 * len(tables)), squeeze=False)
    for row_axes, (label, rows, panels) in zip(axes, tables):
        for ax in row_axes[len(panels):]:
            ax.axis("off")
        for ax, column in zip(row_axes, panels):
            points = [(int(r["step"]), float(r[column])) for r in rows if r[column]]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
            ax.set_xlabel("step")
            ax.set_title(f"{label}: {column}")
    fig.tight_layout()
    with atomic_open(png_path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)
