import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from juicebox.config import resolve  # noqa: E402

# Validate the whole config (and each resolved experiment) before any job is scheduled.
CONFIG = resolve(config, str(Path(workflow.basedir) / "config" / "config.schema.yaml"))
EXPERIMENTS = CONFIG["experiments"]
DEMO = CONFIG["demo_data"]["outdir"]


wildcard_constraints:
    exp="|".join(EXPERIMENTS),


def experiment(wildcards):
    """The resolved settings of the experiment named by the {exp} wildcard."""
    return EXPERIMENTS[wildcards.exp]


def pool_inputs(wildcards):
    """Source files of an experiment's pool, and pools it merges in."""
    exp = experiment(wildcards)
    merged = [
        p
        for step in exp["pool"]["steps"]
        if step["op"] == "merge"
        for p in step["paths"]
    ]
    return [source["path"] for source in exp["sources"]] + merged


def data_outputs():
    """Every experiment's data-half targets: processed data, ledger, recipe changes, histograms."""
    return [
        path
        for exp in EXPERIMENTS
        for path in (
            f"results/{exp}/processed/data.jsonl",
            f"results/{exp}/ledger.json",
            f"results/{exp}/recipe/changes.json",
            f"results/{exp}/probe/histograms",
        )
    ]
