"""The page docs/results/demo-seeds.md: the demo's tables for several seeds, with where they were made.

    python scripts/demo_seeds.py --out docs/results/demo-seeds.md \\
        --command "make demo-seeds SEEDS='42 43 44'" results/seeds/eval-42.json results/seeds/eval-43.json ...

Each argument is the ``results/eval.json`` of one full run of the workflow (the seed makes the
data, the models and the samples); ``make demo-seeds`` makes them and calls this. The page holds a
header (the git commit of this tree and whether it is dirty, the machine, the date, this command
and ``--command``: how the runs were made), each run's own provenance (its commit, CPU and code-path
settings, from its eval.json) and the tables of :mod:`juicebox.seeds`. Without ``--out`` the page
goes to standard output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

from juicebox import cpu
from juicebox.io import atomic_open, read_json
from juicebox.seeds import tables

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str | None:
    """The output of a git command in the repository, or None where git cannot answer."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def tree() -> str:
    """This tree's commit, and whether it has changes not committed."""
    commit = git("rev-parse", "--short", "HEAD")
    if commit is None:
        return "unknown (not a git checkout)"
    status = git("status", "--porcelain")
    return f"`{commit}`" + (", with changes not committed (dirty)" if status else ", clean")


def machine() -> str:
    """The CPU model, its architecture and core count (juicebox.cpu.describe)."""
    described = cpu.describe()
    return f"{described['model']} ({described['machine']}, {described['cpus']} cores)"


def run_rows(evals: dict[str, dict]) -> list[str]:
    """One table row per run: its seed and the provenance its eval.json records."""
    rows = ["| seed | git commit | dirty | CPU | cores | CPU code paths | config sha256 |",
            "|---|---|---|---|---|---|---|"]
    for seed, doc in evals.items():
        prov = doc.get("provenance", {})
        commit = prov.get("git_commit")
        described = prov.get("cpu") or {}
        settings = described.get("settings") or {}
        if not settings:
            pinned = "?"
        elif settings == cpu.SETTINGS:
            pinned = "pinned (`cpu_reproducible`)"
        elif all(value is None for value in settings.values()):
            pinned = "not pinned"
        else:
            pinned = ", ".join(f"{key}={value}" for key, value in settings.items())
        dirty = {True: "yes", False: "no"}.get(prov.get("git_dirty"), "?")
        sha = prov.get("config_sha256")
        rows.append(f"| {seed} | {f'`{commit[:7]}`' if commit else '?'} | {dirty} "
                    f"| {described.get('model', '?')} | {described.get('cpus', '?')} | {pinned} "
                    f"| {f'`{sha[:12]}`' if sha else '?'} |")
    return rows


def page(paths: list[str], command: str | None, argv: list[str]) -> str:
    """The whole page: header, the runs' provenance, the tables."""
    evals = {}
    for path in paths:
        doc = read_json(path)
        evals[str(doc["provenance"]["seed"])] = doc
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# The demo over several seeds",
        "",
        "<!-- Written by scripts/demo_seeds.py (make demo-seeds); rerun it rather than editing this page. -->",
        "",
        f"- Written: {now}",
        f"- Tree it was written from: {tree()}",
        f"- Machine it was written on: {machine()} (each run's own commit and CPU: \"The runs\" below)",
        f"- Seeds: {', '.join(evals)}; each a full run of the workflow, nothing averaged over seeds",
        "",
        "The runs were made by" if command else "The runs were made one per seed (not recorded how); this page by",
        "",
        "```bash",
        *([command, "```", "", "and this page by", "", "```bash"] if command else []),
        shlex.join(["python", *argv]),
        "```",
        "",
        "Intervals are paired bootstrap 95 % intervals over the benchmark's items, of the figure itself: they",
        "cover the items' noise, not the training's (each row is one trained model). How to read these",
        "tables, and what they showed when last read: [What the demo shows](demo-findings.md).",
        "",
        "## The runs",
        "",
        *run_rows(evals),
        "",
        tables(evals).replace("### ", "## "),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evals", nargs="+", help="results/eval.json of each seed's run")
    parser.add_argument("--out", help="where to write the page (e.g. docs/results/demo-seeds.md); default stdout")
    parser.add_argument("--command", help="the command that made the runs, recorded on the page")
    args = parser.parse_args(argv)
    shown = ["scripts/demo_seeds.py", *(["--out", args.out] if args.out else []), *args.evals]
    text = page(args.evals, args.command, shown)
    if args.out:
        with atomic_open(args.out) as handle:
            handle.write(text)
        os.chmod(args.out, 0o644)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
