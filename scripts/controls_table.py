"""The tables of the controls run (config/controls.yaml, `make demo-controls`): docs/results/controls.md.

For each control, each benchmark (the rollouts' temperature and greedy) and metric, the effect
pooled over the training replicates with its interval over replicates and items (results/eval.json:
``comparisons`` between experiments, ``replicates.<exp>.deltas`` within one), the smallest effect
that interval detects, and each seed's own effect with its interval over items alone (that seed's
two models, paired on the items), counted "clear of 0" when that interval excludes 0.

    python scripts/controls_table.py --eval results/eval.json --out docs/results/controls.md \
        --command "make demo-controls" --wall "31 min 2 s"
"""

import argparse
import datetime
from pathlib import Path

from juicebox.io import read_json
from juicebox.summary import EvalRows, metrics_file, paired_delta_ci

BENCHES = ("demo_math", "demo_math_greedy")
METRICS = ("pass@1", "steps_right")
# (title, what it must show, kind, sides): kind "between" compares two experiments variant by
# variant; "within" compares two variants of one experiment.
CONTROLS = [
    ("Data, positive: clean − noisy (a third of the final answers wrong)",
     "clean above noisy, clear of 0 in 3 of 3 seeds", "between", ("clean", "noisy"), ("sft", "dpo")),
    ("Null: clean − clean_seeds (only the training seeds differ)",
     "never significant (pooled)", "between", ("clean", "clean_seeds"), ("sft", "dpo")),
    ("Learning, positive: clean (math_steps against the gold steps)",
     "above sft, clear of 0 in at least 2 of 3 seeds", "within", ("clean",), (("grpo", "sft"), ("dpo", "sft"))),
    ("Learning, positive, larger step: clean_lr (clean's GSPO at lr 5e-4)",
     "above sft, clear of 0 in at least 2 of 3 seeds", "within", ("clean_lr",), (("grpo", "sft"),)),
    ("Learning, harmful: final_answer (verifier_math, the final answer alone)",
     "steps_right below sft, with its interval", "within", ("final_answer",), (("grpo", "sft"), ("dpo", "sft"))),
]


def fmt(value, ci=None) -> str:
    if value is None:
        return "–"
    text = f"{value:+.3f}"
    return f"{text} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else text


def clear(ci) -> str:
    """Where an interval lies: above 0, below 0, or across it."""
    if ci is None:
        return "?"
    return "> 0" if ci[0] > 0 else "< 0" if ci[1] < 0 else "∋ 0"


def per_seed(root: Path, pairs: list[tuple[str, str, str, str]], bench: str, metric: str, seed: int) -> list:
    """Each seed's a − b (experiment, variant each) with its item-level paired interval."""
    out = []
    for exp_a, var_a, exp_b, var_b in pairs:
        a, b = (EvalRows(metrics_file(root, e, bench, v)) for e, v in ((exp_a, var_a), (exp_b, var_b)))
        value = (read_json(metrics_file(root, exp_a, bench, var_a))["metrics"][metric]
                 - read_json(metrics_file(root, exp_b, bench, var_b))["metrics"][metric])
        out.append((value, paired_delta_ci(a, b, metric, seed)))
    return out


def control_rows(summary: dict, root: Path, kind: str, sides: tuple, variants: tuple, seed: int) -> list[str]:
    groups = summary["replicates"]
    lines = []
    for bench in BENCHES:
        for metric in METRICS:
            for variant in variants:
                if kind == "between":
                    a, b = sides
                    pooled = next((c for c in summary["comparisons"] if (c["a"], c["b"]) == (a, b)
                                   and c["benchmark"] == bench and c["metric"] == metric
                                   and c["variant"] == variant), None)
                    if pooled is None:
                        continue
                    label = variant
                    value, ci, mde = pooled["delta"], pooled["ci95"], pooled["mde"]
                    pairs = [(ma, variant, mb, variant) for ma, mb in zip(groups[a]["members"], groups[b]["members"])]
                else:
                    (group,), (top, under) = sides, variant
                    figure = groups[group]["deltas"].get(bench, {}).get(metric, {}).get(f"{top}_vs_{under}")
                    if figure is None:
                        continue
                    label = f"{top} − {under}"
                    value, ci, mde = figure["value"], figure["ci95"], figure["mde"]
                    pairs = [(m, top, m, under) for m in groups[group]["members"]]
                seeds = per_seed(root, pairs, bench, metric, seed)
                counts = {side: sum(clear(c) == side for _, c in seeds) for side in ("> 0", "< 0")}
                lines.append(f"| {bench} | {metric} | {label} | {fmt(value, ci)} | {clear(ci)} | {mde:.3f} | "
                             + " | ".join(fmt(v, c) for v, c in seeds)
                             + f" | {counts['> 0']} / {counts['< 0']} of {len(seeds)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", default="results/eval.json")
    parser.add_argument("--root", default="results")
    parser.add_argument("--out", required=True)
    parser.add_argument("--command", required=True, help="the command that made the run (written in the header)")
    parser.add_argument("--wall", default=None, help="its wall time (written in the header)")
    args = parser.parse_args()
    summary = read_json(args.eval)
    prov = summary["provenance"]
    seed = prov["seed"]
    replicates = {g: len(e["members"]) for g, e in summary["replicates"].items()}
    out = [
        "# The controls run",
        "",
        f"Written by `scripts/controls_table.py` after `{args.command}`"
        + (f" (wall time {args.wall})" if args.wall else "") + ".",
        f"Commit {prov['git_commit'][:10]}{' (with uncommitted changes)' if prov['git_dirty'] else ''}, "
        f"{prov['cpu']['model']} ({prov['cpu']['cpus']} CPUs, {prov['cpu']['machine']}), "
        f"{datetime.date.today().isoformat()}, seed {seed}; replicates per experiment: "
        + ", ".join(f"{g} {n}" for g, n in replicates.items()) + ".",
        "",
        "Pooled: the effect over every training replicate, its 95 % interval over replicates and items "
        "(two-level bootstrap, paired replicate by replicate; results/eval.json) and where it lies, and the "
        "smallest effect that interval detects (mde, 2.8 standard errors). Seeds: each replicate's own "
        "effect, its interval over the items alone. Last column: seeds clear of 0 above / below.",
        "",
    ]
    for title, expected, kind, sides, variants in CONTROLS:
        if any(side not in summary["replicates"] for side in sides):
            continue
        n = max(replicates[s] for s in sides)
        out += [f"## {title}", "", f"Must show: {expected}.", "",
                "| benchmark | metric | variant | pooled [95 %] | | mde | "
                + " | ".join(f"seed {k}" for k in range(1, n + 1)) + " | clear of 0 |",
                "|---|---|---|---|---|---|" + "---|" * n + "---|"]
        out += control_rows(summary, Path(args.root), kind, sides, variants, seed)
        out.append("")
    Path(args.out).write_text("\n".join(out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
