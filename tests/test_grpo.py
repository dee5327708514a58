"""Online RL (juicebox.grpo): GSPO / GRPO on TRL's GRPOTrainer with the experiment's rewards, for a text
model and a vision-language model; a killed run resumes to the bytes of an uninterrupted one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY_SPEC, quick_sft
from juicebox.grpo import GRPO_COLUMNS, grpo_rows, informative_rows, rows_of
from juicebox.options import GRPOOptions
from juicebox.spec import ConfigError

REWARDS = ROOT / ".test/config_ci/rewards.py"
SETTINGS = {"enabled": True, "num_generations": 4, "batch_size": 8, "max_completion_length": 8,
            "learning_rate": 0.002, "logging_steps": 1, "save_steps": 2, "gpus": 0, "gradient_checkpointing": False,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}}
# verifier_math and a graded reward, so that the answers of a group differ and the policy moves
TEXT_REWARDS = [{"type": "verifier_math"},
                {"type": "python", "name": "digit_overlap", "function": "digit_overlap", "path": str(REWARDS),
                 "weight": 0.5, "tasks": ["math"]}]


# --- the options and filter_groups ------------------------------------------------------------

def test_gspo_is_deepvisions_recipe_and_keys_given_override_it():
    gspo = GRPOOptions.parse({}, "grpo")
    assert gspo.algorithm_settings() == {"importance_sampling_level": "sequence", "loss_type": "grpo",
                                         "epsilon": 0.0003, "epsilon_high": 0.0004}
    assert (gspo.beta, gspo.temperature, gspo.scale_rewards, gspo.filter_groups) == (0.001, 1.0, "group", True)
    grpo = GRPOOptions.parse({"algorithm": "grpo", "epsilon_high": 0.28}, "grpo")
    assert grpo.algorithm_settings() == {"importance_sampling_level": "token", "loss_type": "grpo",
                                         "epsilon": 0.2, "epsilon_high": 0.28}


@pytest.mark.parametrize("block, key", [
    ({"batch_size": 6, "num_generations": 4}, "grpo.batch_size"),
    ({"batch_size": 8, "num_generations": 4, "steps_per_generation": 4, "save_steps": 3}, "grpo.save_steps"),
    ({"num_generations": 1}, "grpo.num_generations"),
])
def test_batches_of_whole_groups_and_checkpoints_between_generations(block, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        GRPOOptions.parse(block, "grpo")


def test_filter_groups_keeps_the_groups_whose_rewards_differ():
    # three groups of 2: the first and last all-equal (advantages 0), the middle one informative
    advantages = torch.tensor([0.0, 0.0, 0.7, -0.7, 0.0, 0.0])
    assert informative_rows(advantages, 2, 1) == [2, 3]
    # four chunks need at least four rows: the first left-out group comes back
    assert informative_rows(advantages, 2, 4) == [0, 1, 2, 3]
    assert informative_rows(torch.tensor([0.5, -0.5, 0.7, -0.7]), 2, 1) is None  # nothing to leave out
    assert informative_rows(torch.zeros(4), 2, 1) == [0, 1]  # never an empty batch
    output = {"advantages": advantages, "completion_mask": torch.tensor([[1, 1], [1, 0]] * 3),
              "prompt_ids": torch.arange(12).view(6, 2), "num_items_in_batch": torch.tensor(9), "num_images": [1] * 6}
    kept = rows_of(output, [2, 3])
    assert kept["prompt_ids"].tolist() == [[4, 5], [6, 7]] and kept["num_images"] == [1, 1]
    assert kept["num_items_in_batch"].item() == 3


def test_rows_carry_the_record_id_and_a_vlms_images(tmp_path):
    records = [{"id": "a", "task": "vqa", "prompt": "What colour?", "images": ["x.png"]}]
    row = grpo_rows(records, vision=True, system_prompt="Be brief.")[0]
    assert row["record_id"] == "a" and row["images"] == ["x.png"]
    assert row["prompt"][0]["role"] == "system"
    assert {"type": "image"} in row["prompt"][1]["content"]
    assert grpo_rows(records, vision=False, system_prompt=None)[0]["prompt"] == [
        {"role": "user", "content": "What colour?"}]


# --- training ---------------------------------------------------------------------------------

def math_records(n: int) -> list[dict]:
    return [{"id": f"m{i}", "task": "math", "prompt": f"What is {i} plus 3?", "answer": f"#### {i + 3}"}
            for i in range(n)]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> str:
    """The tiny text model after a few seconds of SFT on sums (its answers are numbers)."""
    from juicebox.models import build_tiny_model

    folder = tmp_path_factory.mktemp("grpo_policy")
    texts = [f"What is {i} plus 3? #### {i + 3}" for i in range(40)]
    build_tiny_model(folder / "base", texts, seed=0, spec=TINY_SPEC)
    records = [{**r, "answer": f"#### {i + 3}"} for i, r in enumerate(math_records(40))]
    return quick_sft(folder, records, epochs=8, batch_size=8, learning_rate=0.01, max_length=32)


def grpo_cmd(data: Path, model: str, out: Path, settings: dict, rewards: list[dict]) -> list[str]:
    return [sys.executable, str(ROOT / "scripts/train.py"), "grpo", "--data", str(data), "--model", model,
            "--out", str(out), "--metrics", str(out.parent / "grpo.csv"), "--summary", str(out.parent / "grpo.json"),
            "--seed", "0", "--threads", "1", "--settings", json.dumps(settings), "--rewards", json.dumps(rewards)]


def run_grpo(data: Path, model: str, out: Path, settings: dict, rewards: list[dict]) -> tuple[dict, str]:
    """scripts/train.py grpo run to its end: its summary and its log."""
    done = subprocess.run(grpo_cmd(data, model, out, settings, rewards), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out.parent / "grpo.json").read_text()), done.stderr


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


@pytest.mark.train
def test_gspo_trains_the_policy_with_the_experiments_rewards(policy, tmp_path):
    from juicebox.io import write_jsonl

    data = tmp_path / "data.jsonl"
    write_jsonl(data, math_records(16) + [{"id": "c0", "task": "caption", "prompt": "Describe.", "references": ["A."]}])
    out = tmp_path / "model"
    summary, log = run_grpo(data, policy, out, {**SETTINGS, "max_steps": 4}, TEXT_REWARDS)
    # the caption record is left out: no reward of the list applies to its task
    assert summary["prompts"] == 16 and summary["steps"] == 4
    assert (summary["algorithm"], summary["parameters"]) == ("gspo", "lora")
    rows = (tmp_path / "grpo.csv").read_text().splitlines()
    assert rows[0].split(",") == GRPO_COLUMNS and len(rows) == 5
    assert "reward verifier_math" in log and "reward digit_overlap" in log
    before, after = weights(Path(policy)), weights(out)
    assert set(before) == set(after), "the LoRA adapter is merged: the model has its own parameter names"
    assert any(not torch.equal(before[k], after[k]) for k in before), "GSPO left every weight as it was"
    assert not (tmp_path / "model.checkpoints").exists()


@pytest.mark.train
def test_killed_grpo_resumes_to_the_bytes_of_an_uninterrupted_run(policy, tmp_path):
    from juicebox.io import write_jsonl
    from test_train import kill_at_checkpoint

    data = tmp_path / "data.jsonl"
    write_jsonl(data, math_records(40))
    settings = {**SETTINGS, "algorithm": "grpo", "parameters": "full", "max_steps": 40, "save_steps": 4}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    for folder in (whole, resumed):
        folder.mkdir()
    subprocess.run(grpo_cmd(data, policy, whole / "model", settings, TEXT_REWARDS), check=True, capture_output=True)
    cmd = grpo_cmd(data, policy, resumed / "model", settings, TEXT_REWARDS)
    killed_at = kill_at_checkpoint(cmd, resumed / "model.checkpoints", "checkpoint-[1-3][0-9]")
    assert 0 < killed_at < 40 and not (resumed / "model").exists()
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {resumed / 'model.checkpoints' / f'checkpoint-{killed_at}'}" in done.stderr
    assert (resumed / "grpo.csv").read_bytes() == (whole / "grpo.csv").read_bytes()
    assert (resumed / "grpo.json").read_bytes() == (whole / "grpo.json").read_bytes()
    weights_file = Path("model", "model.safetensors")
    assert (resumed / weights_file).read_bytes() == (whole / weights_file).read_bytes()


@pytest.mark.train
def test_grpo_of_a_vlm_shows_it_the_images(tiny_vlm, shape_images, tmp_path):
    """The prompts carry image parts, so the LLaVA processor inserts image tokens: a generation batch
    without its images would fail on the count of image features."""
    from juicebox.io import write_jsonl

    data = tmp_path / "data.jsonl"
    colours = {"red_circle": "red", "blue_square": "blue", "green_triangle": "green"}
    write_jsonl(data, [{"id": f"v{i}{name}", "task": "vqa", "prompt": "What colour is the shape?",
                        "answer": colours[name], "images": [path]}
                       for i in range(3) for name, path in shape_images.items()])
    rewards = [{"type": "short_answer"},
               {"type": "python", "name": "answer_similarity", "function": "answer_similarity", "path": str(REWARDS),
                "tasks": ["vqa"]}]
    out = tmp_path / "model"
    summary, _ = run_grpo(data, tiny_vlm, out, {**SETTINGS, "max_steps": 2}, rewards)
    assert summary["prompts"] == 9 and summary["steps"] == 2
    from juicebox.models import is_vision_language

    assert is_vision_language(out) and (out / "processor_config.json").is_file()
