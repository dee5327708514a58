"""Report figures: records per Data-Juicer op, reward distributions, pair margins, benchmark results."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .io import atomic_path

# the models, then their blank-image ablations (eval.blank_images)
VARIANTS = ("base", "sft", "dpo", "base_blank", "sft_blank", "dpo_blank")


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
    """One panel per metric of a benchmark (results/eval.json): a bar per experiment and variant,
    the black line its bootstrap 95 % CI."""
    plt = _pyplot()
    results = {exp: entry["benchmarks"][bench] for exp, entry in summary["experiments"].items()
               if bench in entry["benchmarks"]}
    variants = [v for v in VARIANTS if any(v in by_variant for by_variant in results.values())]
    metrics = list(dict.fromkeys(m for by_variant in results.values() for r in by_variant.values()
                                 for m in r["metrics"]))
    width = 0.8 / len(results)
    fig, axes = _panels(plt, len(metrics))
    for ax, metric in zip(axes, metrics):
        for i, (exp, by_variant) in enumerate(results.items()):
            shown = [(j, by_variant[v]) for j, v in enumerate(variants)
                     if v in by_variant and metric in by_variant[v]["metrics"]]
            xs = [j - 0.4 + width * (i + 0.5) for j, _ in shown]
            ax.bar(xs, [r["metrics"][metric] for _, r in shown], width, color=f"C{i}", label=exp)
            ax.vlines(xs, [r["ci95"][metric][0] for _, r in shown], [r["ci95"][metric][1] for _, r in shown],
                      color="black", linewidth=1.2)
        ax.set_xticks(range(len(variants)), [v.replace("_", "\n") for v in variants])
        ax.set_title(metric)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncols=len(results), fontsize=8)
    items = sorted({r["n"] for by_variant in results.values() for r in by_variant.values()})
    fig.suptitle(f"{bench} ({'/'.join(map(str, items))} items)")
    _save(plt, fig, path)
