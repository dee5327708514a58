"""Figures: histograms of probe stats with the recipe's and the refined recipe's thresholds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from .io import atomic_path
from .ksigma import KSigmaSettings, recipe_bounds


def thresholds(recipe: dict, settings: KSigmaSettings, signature_of: Callable) -> dict[str, list[tuple]]:
    """Per stat, the finite bounds a recipe puts on it: ``[(op, arg, side, value)]`` (op defaults included)."""
    out: dict[str, list[tuple]] = {}
    for b in recipe_bounds(recipe, settings, signature_of):
        if isinstance(b.value, (int, float)) and math.isfinite(b.value) and abs(b.value) < 1e15:
            out.setdefault(b.stat, []).append((b.op, b.arg, b.side, b.value))
    return out


def plot_histograms(columns: dict[str, list[list[float]]], current: dict, refined: dict, outdir: str) -> list[str]:
    """One PNG per stat: the distribution, current bounds dashed, refined bounds solid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
