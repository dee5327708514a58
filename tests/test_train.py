"""SFT and LoRA DPO through scripts/train.py: a killed DPO run resumes from its checkpoint; the adapter is PEFT's."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TINY_SPEC
from juicebox.models import build_tiny_model

pytestmark = pytest.mark.train

TRAIN = {"epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 0.001,
         "lr_scheduler": "constant", "warmup_ratio": 0.0, "max_length": 64, "logging_steps": 1, "save_steps": 5,
         "threads": 1, "launcher": "python", "accelerate_config": None, "bf16": False,
         "gpus": 0, "nodes": 1, "gradient_checkpointing": False}
SFT = {**TRAIN, "tasks": None}
DPO = {**TRAIN, "beta": 0.1, "loss_type": "sigmoid", "sft_weight": 0.0,
       "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny") / "model"
    texts = [f"What is {a} plus {b}? {a + b}" for a in range(2, 20) for b in range(2, 12)]
    build_tiny_model(path, texts, seed=0, spec=TINY_SPEC)
    return str(path)


def write_pairs(path: Path, n: int) -> None:
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} plus 2?"}],
             "chosen": [{"role": "assistant", "content": str(i + 2)}],
             "rejected": [{"role": "assistant", "content": str(i + 7)}]} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path)


def train_cmd(stage: str, data: Path, model: str, out: Path, settings: dict) -> list[str]:
    return [sys.executable, str(ROOT / "scripts/train.py"), stage, "--data", str(data), "--model", model,
            "--out", str(out), "--metrics", str(out.parent / f"{stage}.csv"),
            "--summary", str(out.parent / f"{stage}.json"), "--seed", "0", "--threads", "1",
            "--settings", json.dumps(settings)]


def test_sft_trains_on_answers_and_references(model_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    records = [{"id": f"m{i}", "task": "math", "prompt": f"What is {i} plus 3?", "answer": str(i + 3)}
               for i in range(8)]
    records.append({"id": "c0", "task": "caption", "prompt": "Objects: a red circle.", "references": ["A red circle."]})
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "sft"
    subprocess.run(train_cmd("sft", data, model_dir, out, SFT), check=True, capture_output=True)
    summary = json.loads((tmp_path / "sft.json").read_text())
    assert summary["examples"] == 9 and summary["steps"] == 5  # 9 rows, batch 2
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (tmp_path / "sft.checkpoints").exists()


def kill_at_checkpoint(cmd: list[str], ckpts: Path, pattern: str, log: Path | None = None) -> int:
    """Run a training command; SIGKILL its process group once a checkpoint folder matching
    ``pattern`` appears; return the newest complete checkpoint's step (a kill while saving leaves
    one without trainer_state.json, which is not resumed from)."""
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not list(ckpts.glob(pattern)) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "training finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*") if (p / "trainer_state.json").exists())


def test_killed_dpo_resumes_from_its_checkpoint_and_writes_a_peft_adapter(model_dir, tmp_path):
    pairs = tmp_path / "pairs.parquet"
    write_pairs(pairs, 400)  # 200 steps: long enough to be killed after the first checkpoints
    out = tmp_path / "adapter"
    ckpts = tmp_path / "adapter.checkpoints"
    killed_at = kill_at_checkpoint(train_cmd("dpo", pairs, model_dir, out, DPO), ckpts, "checkpoint-1[0-9]")
    assert not out.exists()
    assert not (tmp_path / "dpo.csv").exists()  # written at the end, from the log history the checkpoints keep

    done = subprocess.run(train_cmd("dpo", pairs, model_dir, out, DPO), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "dpo.json").read_text())
    assert f"resuming from {ckpts / f'checkpoint-{killed_at}'}" in done.stderr, done.stderr[-2000:]
    assert set(summary) == {"steps", "pairs", "train_loss"}  # where it resumed is in the log, not the summary
    assert summary["steps"] == 200 and summary["pairs"] == 400
    rows = (tmp_path / "dpo.csv").read_text().splitlines()
    steps = [int(line.split(",")[0]) for line in rows[1:]]
    assert steps == list(range(1, 201)), "every step logged once"  # steps after the checkpoint are redone
    # train_loss is the mean over all 200 steps (logged one by one here), not over the resumed ones only
    total = 0.0
    for line in rows[1:]:
        total += float(line.split(",")[2])
    assert summary["train_loss"] == total / 200
    assert not ckpts.exists()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), out)
    assert model.peft_config["default"].r == 4
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    # all-linear resolves to a set, written as a sorted list so that every run writes the same bytes
    config = json.loads((out / "adapter_config.json").read_text())
    assert len(config["target_modules"]) == 7 and config["target_modules"] == sorted(config["target_modules"])
    assert list(config) == sorted(config)
