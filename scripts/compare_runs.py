"""Compare the outputs of two runs of the workflow byte for byte: are they the same results?

    python scripts/compare_runs.py RUN_A RUN_B

RUN_A and RUN_B are working directories the workflow ran in (each with its results/ and
resources/models/). Every file under them is compared by SHA-256, except what records how or
when a run went rather than what it computed: logs, Snakemake's benchmark files, training
checkpoints' timing and tracker event files, and ``provenance`` in ``results/eval.json`` (git
state, CPU). Prints one line per stage folder (``results/<exp>/<stage>``): identical, or how
many files differ and which; exits 1 if any output differs or exists on one side only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOTS = ("results", "resources/models")
# Path parts of files that record the run, not its results.
SKIPPED_PARTS = {"logs", "benchmarks", "tb", ".snakemake", "__pycache__"}
# File names that record the run, not its results (wall times, trainer state with timings, tracker runs).
SKIPPED_NAMES = {"trainer_state.json", "training_args.bin", "done.json", "report.html"}


def digest(path: Path) -> str:
    """SHA-256 of a file; of ``results/eval.json`` without its ``provenance``."""
    if path.name == "eval.json" and path.parent.name == "results":
        document = json.loads(path.read_text())
        document.pop("provenance", None)
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def outputs(run: Path) -> dict[str, str]:
    """Relative path → digest of every compared file of a run."""
    found = {}
    for root in ROOTS:
        for path in sorted((run / root).rglob("*")):
            relative = path.relative_to(run)
            if path.is_file() and not SKIPPED_PARTS & set(relative.parts) and path.name not in SKIPPED_NAMES:
                found[str(relative)] = digest(path)
    return found


def stage(relative: str) -> str:
    """The stage folder a file belongs to: results/<exp>/<stage>, or its first two parts."""
    parts = Path(relative).parts
    return "/".join(parts[:3] if parts[0] == "results" and len(parts) > 3 else parts[:2])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args()
    a, b = outputs(args.run_a), outputs(args.run_b)
    if not a or not b:
        print(f"no outputs under {args.run_a if not a else args.run_b}", file=sys.stderr)
        return 2
    by_stage: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for relative in sorted(set(a) | set(b)):
        kind = ("same" if a.get(relative) == b.get(relative) else
                "only in A" if relative not in b else "only in B" if relative not in a else "different")
        by_stage[stage(relative)][kind].append(relative)
    differ = False
    for name, kinds in sorted(by_stage.items()):
        bad = {kind: files for kind, files in kinds.items() if kind != "same"}
        differ = differ or bool(bad)
        summary = "; ".join(f"{len(files)} {kind}: {', '.join(Path(f).name for f in files[:4])}"
                            f"{' ...' if len(files) > 4 else ''}" for kind, files in bad.items())
        print(f"{name}: {len(kinds['same'])} identical" + (f"; {summary}" if summary else ""))
    total = len(set(a) | set(b))
    print(f"{total} files: {'outputs differ' if differ else 'every output identical'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
