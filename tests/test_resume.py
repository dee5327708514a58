"""Exact resumes through Snakemake: a rollout shard and a reward shard killed between two appends of
one batch/chunk, and DPO killed after a checkpoint, each rerun through Snakemake (after
`snakemake --unlock`: the killed Snakemake leaves its lock) and compared byte for byte with the
outputs of an uninterrupted run.

One uninterrupted run of a small config (24 prompts, 2 shards, batches and reward chunks of 4,
DPO with a checkpoint every 5 steps) is the reference. Each test copies its working directory,
deletes the outputs of one job, starts Snakemake for them, kills Snakemake's whole process group
with SIGKILL at the chosen point, and reruns. `JUICEBOX_DEBUG_APPEND_DELAY` (a documented
debugging knob of `juicebox.shards`, no effect on outputs) makes each append wait, so the kill
reliably lands between two appends of one batch.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import ROOT, SNAKEMAKE, run_snakemake
from juicebox import layout

pytestmark = pytest.mark.workflow
CONFIG = "resume.yaml"
CORES = "2"
BATCH = 4  # rollout batch size and reward chunk: each shard holds several of each
EXP = Path(layout.folder("ledger", exp="raw"))
ROLLOUT_SHARD = Path(layout.path("rollouts", "shard", exp="raw", round=1, shard="1-of-2"))
REWARD_SHARD = Path(layout.path("rewards", "shard", exp="raw", round=1, shard="1-of-2"))
TRAIN = Path(layout.folder("train", exp="raw", round=1))
TRAIN_LOG = Path(layout.log("train", "train_dpo").format(exp="raw", round=1))


def small_config(work: Path) -> None:
    """The CI config's VLM experiment made smaller (its CIDEr and graded short-answer rewards make
    pairs; the tiny text model's math answers are nearly all wrong): 24 prompts, several batches,
    chunks and checkpoints."""
    cfg = yaml.safe_load((work / ".test/config_ci/config.yaml").read_text())
    d = {**cfg["defaults"], **{k: v for k, v in cfg["experiments"]["vlm"].items() if k != "eval"}}
    cfg["defaults"] = d
    d["sft"] = {**d["sft"], "epochs": 1}
    # captions only: every reward chunk then holds several captions (see the reward test)
    d["rollouts"] = {**d["rollouts"], "limit": 24, "shards": 2, "engine": {"type": "hf", "batch_size": BATCH},
                     "tasks": ["caption"]}
    d["rewards"] = {**d["rewards"], "shards": 2, "chunk": BATCH}
    # Few pairs (the tiny model's answers mostly tie), so several epochs of batch 1 make the steps.
    # 5 is not a multiple of 2: a checkpoint falls between two logs (they must still resume exactly).
    d["train"] = {**d["train"], "epochs": 10, "batch_size": 1, "logging_steps": 2, "save_steps": 5}
    cfg["experiments"] = {"raw": {}}
    (work / CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A working directory where everything up to the DPO adapter ran once, uninterrupted."""
    work = tmp_path_factory.mktemp("reference")
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / ".test", work / ".test")
    small_config(work)
    run_snakemake(work, "--configfile", CONFIG, "--cores", CORES, str(ROLLOUT_SHARD), str(REWARD_SHARD),
                  str(TRAIN / "summary.json"))
    return work


def copy_without(reference: Path, dest: Path, *outputs: Path) -> Path:
    """A copy of the reference working directory (times kept) without ``outputs``."""
    shutil.copytree(reference, dest, symlinks=True)
    for rel in outputs:
        path = dest / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return dest


def snakemake_cmd(work: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", CONFIG,
            "--cores", CORES, *args]


def env(**extra: str) -> dict:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **extra}


def kill_snakemake_when(work: Path, targets: list[str], ready, extra_env: dict, timeout: float = 300) -> None:
    """Start Snakemake for ``targets`` in its own process group; SIGKILL the whole group as soon as
    ``ready()`` is true, and wait until every process of it is gone."""
    log = open(work / "killed_run.log", "w")
    proc = subprocess.Popen(snakemake_cmd(work, *targets), cwd=work, env=env(**extra_env), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, "Snakemake ended before it could be killed:\n" + \
                (work / "killed_run.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.02)
        family = [proc, *psutil.Process(proc.pid).children(recursive=True)]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    psutil.wait_procs([p for p in family if isinstance(p, psutil.Process)], timeout=30)
    assert not [p.pid for p in family if isinstance(p, psutil.Process) and p.is_running()
                and p.status() != psutil.STATUS_ZOMBIE]


def rerun_after_unlock(work: Path, targets: list[str]) -> str:
    """The rerun a user makes: refused while the killed Snakemake's lock is there, then --unlock, rerun."""
    refused = subprocess.run(snakemake_cmd(work, *targets), cwd=work, env=env(), capture_output=True, text=True)
    assert refused.returncode != 0 and "LockException" in refused.stdout + refused.stderr, \
        (refused.stdout + refused.stderr)[-3000:]
    subprocess.run(snakemake_cmd(work, "--unlock"), cwd=work, env=env(), check=True, capture_output=True)
    done = subprocess.run(snakemake_cmd(work, *targets), cwd=work, env=env(), capture_output=True, text=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def partial_records(path: Path) -> list[dict]:
    """The complete records of a shard's partial file (its header and a torn tail left out)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n")[:-1]][1:]


def assert_same_bytes(reference: Path, work: Path, *files: Path) -> None:
    for rel in files:
        assert (work / rel).read_bytes() == (reference / rel).read_bytes(), f"{rel} differs from the uninterrupted run"


def kill_inside_a_batch_and_rerun(work: Path, shard: Path, kill_after: int) -> list[dict]:
    """Kill the job writing ``shard`` once ``kill_after`` records are appended (not a batch boundary:
    appends wait 1 s each meanwhile, so no other lands before the kill); rerun; the partial at the kill."""
    assert kill_after % BATCH != 0
    partial = work / shard.with_name(shard.name + ".partial")
    kill_snakemake_when(work, [str(shard)], lambda: len(partial_records(partial)) >= kill_after,
                        {"JUICEBOX_DEBUG_APPEND_DELAY": "1.0"})
    at_kill = partial_records(partial)
    assert not (work / shard).exists()
    assert len(at_kill) == kill_after, len(at_kill)  # inside a batch: some of its records written, not all
    rerun_after_unlock(work, [str(shard)])
    assert not partial.exists()
    return at_kill


def test_rollout_shard_killed_inside_a_batch_resumes_byte_identical(reference, tmp_path):
    work = copy_without(reference, tmp_path / "work", ROLLOUT_SHARD)
    # the first batch's first prompt (no prompt is too long here, so none is written before the batches)
    at_kill = kill_inside_a_batch_and_rerun(work, ROLLOUT_SHARD, 1)
    assert all(r["samples"] for r in at_kill)
    assert_same_bytes(reference, work, ROLLOUT_SHARD)
    lines = (work / ROLLOUT_SHARD).read_text().splitlines()
    assert len(lines) > BATCH, "the shard must span several batches"
    assert len({json.loads(line)["id"] for line in lines}) == len(lines)


def test_reward_shard_killed_inside_a_chunk_resumes_byte_identical(reference, tmp_path):
    # Kill inside a chunk holding several caption prompts, after its first caption: CIDEr's IDF
    # comes from the captions scored together, so only a chunk re-formed with the same members
    # gives the same rewards (math-only chunks would not show a wrong chunk).
    tasks = [json.loads(line)["task"] for line in (reference / REWARD_SHARD).read_text().splitlines()]
    chunks = [tasks[i:i + BATCH] for i in range(0, len(tasks), BATCH)]
    index = next((i for i, chunk in enumerate(chunks) if chunk.count("caption") >= 2), None)
    assert index is not None, f"no chunk with two caption prompts to kill inside: {chunks}"
    kill_after = index * BATCH + chunks[index].index("caption") + 1
    work = copy_without(reference, tmp_path / "work", REWARD_SHARD)
    at_kill = kill_inside_a_batch_and_rerun(work, REWARD_SHARD, kill_after)
    assert at_kill[-1]["task"] == "caption"
    assert_same_bytes(reference, work, REWARD_SHARD)


def test_dpo_killed_after_a_checkpoint_resumes_byte_identical_through_snakemake(reference, tmp_path):
    outputs = (TRAIN / "adapter", TRAIN / "metrics.csv", TRAIN / "summary.json")
    work = copy_without(reference, tmp_path / "work", *outputs)
    checkpoints = work / TRAIN / "adapter.checkpoints"

    def complete() -> list[Path]:
        return [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]

    kill_snakemake_when(work, [str(TRAIN / "summary.json")], lambda: bool(complete()), {})
    assert complete() and not (work / TRAIN / "adapter").exists() and not (work / TRAIN / "summary.json").exists()
    steps = json.loads((reference / TRAIN / "summary.json").read_text())["steps"]
    killed_at = max(int(p.name.split("-")[1]) for p in complete())
    assert killed_at < steps, "training ended before it could be killed"
    rerun_after_unlock(work, [str(TRAIN / "summary.json")])
    assert f"resuming from {checkpoints / f'checkpoint-{killed_at}'}".replace(str(work) + "/", "") \
        in (work / TRAIN_LOG).read_text()
    adapter_files = sorted(p.relative_to(reference) for p in (reference / TRAIN / "adapter").rglob("*") if p.is_file())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter_files}
    assert sorted(p.relative_to(work) for p in (work / TRAIN / "adapter").rglob("*") if p.is_file()) == adapter_files
    assert_same_bytes(reference, work, *adapter_files, TRAIN / "metrics.csv", TRAIN / "summary.json")
    assert not checkpoints.exists()

    # The metrics cover every step once, and train_loss is what the Trainer reports for the uninterrupted run.
    rows = (reference / TRAIN / "metrics.csv").read_text().splitlines()[1:]
    logged = [int(row.split(",")[0]) for row in rows]
    assert logged == sorted(set(logged)) and logged[-1] == steps and killed_at in logged
    train_loss = json.loads((reference / TRAIN / "summary.json").read_text())["train_loss"]
    reference_log = (reference / TRAIN_LOG).read_text()
    assert f"train_loss {train_loss!r} over {steps} step(s); the Trainer reports {train_loss!r}" in reference_log


def test_adapter_config_keys_are_sorted(reference):
    # (The lists PEFT makes from sets, all-linear's target_modules, are sorted too: tests/test_train.py.)
    config = json.loads((reference / TRAIN / "adapter/adapter_config.json").read_text())
    assert list(config) == sorted(config)
