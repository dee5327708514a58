"""A user's own preference data trains DPO with no rollouts: an experiment whose source carries
ReaL's rw_pair fields (pos_answers, neg_answers) and whose pairing is ``given`` runs pool, probe,
processing, SFT, pairs and DPO, and no rollout or reward job; its ledger accounts for every record
through the pairs."""

import json

import pytest
import yaml

from conftest import run_snakemake
from juicebox import layout
from juicebox.io import read_json, read_jsonl

pytestmark = pytest.mark.workflow

NAMES = ["Ana", "Ben", "Kofi", "Dara", "Mia", "Leo"]


def preference_file(path):
    """Math questions in the demo's style, each with a right and a wrong worked answer."""
    rows = []
    for i in range(36):
        a, b, name = 1 + i % 6, 2 + i % 5, NAMES[i % len(NAMES)]
        right, wrong = f"{a} + {b} = {a + b}.\n#### {a + b}", f"{a} + {b} = {a + b + 1}.\n#### {a + b + 1}"
        rows.append({"uid": f"pref{i:03d}", "question": f"{name} has {a} apples and gets {b} more. How many apples "
                     f"does {name} have?", "pos_answers": [right], "neg_answers": [wrong]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def test_given_pairs_train_dpo_without_rollouts(workdir):
    n = preference_file(workdir / "prefs.jsonl")
    ci = yaml.safe_load((workdir / ".test/config_ci/config.yaml").read_text())
    prefs = {"name": "prefs", "path": "prefs.jsonl", "task": "math", "kind": "rw_pair",
             "fields": {"id": "uid", "prompt": "question"}}
    experiment = {"sources": ci["defaults"]["sources"] + [prefs], "pairing": {"type": "given"}}
    (workdir / "given.yaml").write_text(yaml.safe_dump({"experiments": {"prefs": experiment}}))
    ledger = layout.path("ledger", "ledger", exp="prefs")
    dry = run_snakemake(workdir, "-n", ledger, "--configfile", ".test/config_ci/config.yaml", "given.yaml").stdout
    assert "make_pairs" in dry and "train_dpo" in dry
    assert "rollout_shard" not in dry and "reward_shard" not in dry
    run_snakemake(workdir, ledger, "--cores", "2", "--configfile", ".test/config_ci/config.yaml", "given.yaml")
    pairs = list(read_jsonl(workdir / layout.path("pairs", "jsonl", exp="prefs", round=1)))
    processed = {r["id"] for r in read_jsonl(workdir / layout.path("processed", "data", exp="prefs"))}
    given = {r["prompt_id"] for r in pairs}
    assert given and given <= {pid for pid in processed if "pref" in pid}
    assert all(r["chosen"][0]["content"].startswith(r["rejected"][0]["content"][:6]) for r in pairs)
    entry = read_json(workdir / ledger)
    assert list(entry["stages"]) == ["pool", "process", "pairs"]
    assert entry["stages"]["pairs"]["in"] == entry["stages"]["process"]["kept"]
    assert entry["stages"]["pairs"]["kept"] == len(given) <= n
    assert entry["training"]["dpo"]["in"] == len(pairs)
    rw = list(read_jsonl(workdir / layout.path("pairs", "rw_pair", exp="prefs", round=1)))
    assert {r["id"] for r in rw} == given and all(len(r["pos_answers"]) == len(r["neg_answers"]) for r in rw)
