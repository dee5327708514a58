"""Rollout engines on the embedded tiny model: sampling presets, the in-process ``hf`` engine, and
the ``openai`` engine against real ``transformers serve`` processes on localhost, including a
server killed mid-run (its prompts are retried on the other one) and every server dead (the run
fails naming how many prompts, and none of them is reported as done)."""

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from aiohttp import web

from conftest import TINY_SPEC, juicebox_log_file, key_prefixes_in, serve_chat_completions
from juicebox import engines
from juicebox.engines import PRESETS, Prompt, Sampling, make_engine, servers
from juicebox.engines.hf import PresenceFrequencyPenalty
from juicebox.engines.openai import RequestFailed, check_supported, scrub
from juicebox.models import build_tiny_model
from juicebox.records import prompt_messages

TRANSFORMERS = str(Path(sys.executable).parent / "transformers")
ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT = 120



def hf_engine(model, sampling, **options):
    """The hf engine with these options, built as a rule builds it."""
    return make_engine({"type": "hf", **options}, model, None, sampling)


def openai_engine(model, sampling, **options):
    """The openai engine with these options, built as a rule builds it."""
    return make_engine({"type": "openai", **options}, model, None, sampling)

def math_texts() -> list[str]:
    """Short questions and their answers: the tokenizer corpus of the tiny model."""
    texts = []
    for a in range(20):
        for b in range(10):
            texts += [f"What is {a} plus {b}?", str(a + b)]
    return texts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The tiny Qwen2 model, built once for this module."""
    path = tmp_path_factory.mktemp("engines") / "model"
    build_tiny_model(path, math_texts(), seed=0, spec=TINY_SPEC)
    return str(path)


def prompts(count: int, system: str | None = None) -> list[Prompt]:
    """``count`` math prompts of different lengths (so batches need left padding)."""
    return [Prompt(f"q{i:03d}", prompt_messages(f"What is {i} plus {i * 7 % 10}?" + " Think." * (i % 4), system))
            for i in range(count)]


def collect(engine, items: list[Prompt]) -> tuple[dict[str, list[dict]], Counter]:
    """Run ``engine`` and return its samples by prompt id and how often ``on_done`` saw each id."""
    samples, calls = {}, Counter()

    def on_done(prompt: Prompt, answers: list[dict]) -> None:
        calls[prompt.id] += 1
        samples[prompt.id] = answers

    engine.run(items, on_done)
    return samples, calls


def server_pids(url: str) -> list[int]:
    """Processes this test process started that serve on ``url``'s port (read from /proc)."""
    port = url.rsplit(":", 1)[1]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s*(\d+)", status, re.M).group(1))
        if ppid == os.getpid() and "serve" in cmdline and f"--port {port} " in cmdline + " ":
            found.append(int(entry.name))
    return found


def start_server(model: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """A ``transformers serve`` process of our own, in its own process group, on a free port."""
    port = servers.free_port()
    with open(log_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([TRANSFORMERS, "serve", model, "--port", str(port), "--host", "127.0.0.1"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def juicebox_log(caplog, monkeypatch):
    """caplog at INFO on the ``juicebox`` logger (which ``setup_logging`` stops from propagating)."""
    monkeypatch.setattr(logging.getLogger("juicebox"), "propagate", True)
    caplog.set_level(logging.INFO, logger="juicebox")
    return caplog


# --- Sampling and messages ------------------------------------------------------------------------

# The DeepVision-103k toolkit's table (eval_scripts, --hyperparam), as published; "-" is absent.
TOOLKIT_TABLE = {
    "qwen_ins": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0, "presence_penalty": 1.5},
    "qwen_think": {"temperature": 1.0, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.0},
    "mimo": {"temperature": 0.3, "top_p": 0.95},
    "greedy": {"temperature": 0.01},
}
NEUTRAL = {"top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty", "frequency_penalty")


def test_presets_are_the_toolkits_table():
    for name, published in TOOLKIT_TABLE.items():
        s = Sampling.from_config({"preset": name}, seed=0)
        # every published value exactly, every unspecified one neutral (the custom default)
        assert {f: getattr(s, f) for f in FIELDS} == {**NEUTRAL, **published}, name
        assert not s.greedy, name  # all four sample: greedy is temperature 0.01, not argmax
    # our earlier values, kept under names that say where they come from
    earlier = {"argmax": {"temperature": 0.0},
               "qwen2.5_generation_config": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05},
               "qwen3_thinking_card": {"temperature": 0.6, "top_p": 0.95, "top_k": 20}}
    for name, values in earlier.items():
        s = Sampling.from_config({"preset": name}, seed=0)
        assert {f: getattr(s, f) for f in FIELDS} == {**NEUTRAL, **values}, name
    assert Sampling.from_config({"preset": "argmax"}, seed=0).greedy
    assert set(PRESETS) == {*TOOLKIT_TABLE, *earlier}
    assert {f: getattr(Sampling(), f) for f in NEUTRAL} == NEUTRAL == engines.NEUTRAL_SAMPLING


def test_schema_sampling_block_knows_every_preset_and_field():
    sampling = yaml.safe_load((ROOT / "config" / "config.schema.yaml").read_text())["$defs"]["sampling"]
    assert sampling["properties"]["preset"]["enum"] == ["custom", *PRESETS]
    fields = {f.name for f in dataclasses.fields(Sampling)} - {"seed", "preset"}
    assert set(sampling["properties"]) - {"preset"} == fields


def test_sampling_from_config_presets_and_overrides():
    s = Sampling.from_config({"preset": "qwen_ins", "n": 8, "temperature": 1.0, "max_tokens": 32}, seed=3)
    assert (s.preset, s.n, s.seed, s.max_tokens) == ("qwen_ins", 8, 3, 32)
    # the preset's values, but the temperature given
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.presence_penalty) == (1.0, 0.8, 20, 1.0, 1.5)
    assert not s.greedy
    assert Sampling.from_config({"preset": "qwen_ins", "presence_penalty": 0}, seed=0).presence_penalty == 0

    think = Sampling.from_config({"preset": "qwen_think"}, seed=0)
    assert (think.temperature, think.top_p, think.top_k, think.n, think.max_tokens) == (1.0, 0.95, 20, 1, 64)

    greedy = Sampling.from_config({"preset": "greedy", "n": 4}, seed=1)
    assert not greedy.greedy and greedy.temperature == 0.01 and greedy.n == 4  # sampled, at a low temperature
    argmax = Sampling.from_config({"preset": "argmax", "n": 4}, seed=1)
    assert argmax.greedy and argmax.temperature == 0.0 and argmax.n == 4

    custom = Sampling.from_config({"n": 2, "temperature": 0.7}, seed=5)
    assert custom == Sampling(n=2, temperature=0.7, seed=5, preset="custom")
    assert custom.with_n(6) == Sampling(n=6, temperature=0.7, seed=5, preset="custom")
    assert custom.to_dict() == {"n": 2, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0,
                                "presence_penalty": 0.0, "frequency_penalty": 0.0, "max_tokens": 64, "seed": 5,
                                "preset": "custom"}


def test_sampling_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown sampling preset 'qwen_fast'; known: greedy, qwen_ins"):
        Sampling.from_config({"preset": "qwen_fast"}, seed=0)


def test_make_engine_unknown_type():
    with pytest.raises(ValueError, match=r"engine\.type: unknown engine type 'sglang'; known: hf, openai"):
        make_engine({"type": "sglang"}, "model", None, Sampling())


def test_prompt_messages_text_chat_and_system_prompt():
    assert prompt_messages("What is 3 plus 4?") == [{"role": "user", "content": "What is 3 plus 4?"}]
    assert prompt_messages("What is 3 plus 4?", "Answer with a number.") == [
        {"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "What is 3 plus 4?"}]

    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "What is 3 plus 4?"}]
    messages = prompt_messages(chat, "Be brief.")
    assert messages == [{"role": "system", "content": "Be brief."}, *chat]
    messages[1]["content"] = "changed"
    assert chat[0]["content"] == "Hi"  # the caller's messages are copied, not edited

    own_system = [{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "7?"}]
    assert prompt_messages(own_system, "Be brief.") == own_system  # a chat's own system turn wins
    assert prompt_messages(chat, None) == chat and prompt_messages(chat, "") == chat


# --- hf engine --------------------------------------------------------------------------------------

@pytest.mark.train
def test_hf_engine_answers_every_prompt_n_times(model_dir):
    sampling = Sampling(n=3, temperature=1.0, max_tokens=12, seed=7)
    engine = hf_engine(model_dir, sampling, batch_size=4)
    items = prompts(10)
    samples, calls = collect(engine, items)

    assert calls == Counter({p.id: 1 for p in items})  # on_done once per prompt
    for pid, answers in samples.items():
        assert [a["index"] for a in answers] == [0, 1, 2], pid
        for a in answers:
            assert isinstance(a["text"], str)
            assert a["finish_reason"] in {"stop", "length"}
            # "length" means no end token: every one of max_tokens was generated
            assert (a["n_tokens"] == 12) if a["finish_reason"] == "length" else (a["n_tokens"] < 12)
    texts = [a["text"] for answers in samples.values() for a in answers]
    assert len(set(texts)) > len(texts) // 2  # sampling at temperature 1 draws different answers
    assert engine.provenance() == {"type": "hf", "model": model_dir, "adapter": None, "batch_size": 4}


@pytest.mark.train
def test_hf_engine_same_seed_same_answers_in_any_prompt_order(model_dir):
    sampling = Sampling(n=3, temperature=1.0, max_tokens=12, seed=7)
    items = prompts(10)
    first, _ = collect(hf_engine(model_dir, sampling, batch_size=4), items)
    again, _ = collect(hf_engine(model_dir, sampling, batch_size=4), items[::-1])
    assert again == first  # batches are formed by length and id, so input order does not matter
    other_seed, _ = collect(hf_engine(model_dir, replace(sampling, seed=8), batch_size=4), items)
    assert other_seed != first


@pytest.mark.train
def test_hf_engine_greedy_repeats_one_answer(model_dir):
    greedy = Sampling(n=3, temperature=0.0, max_tokens=10)
    engine = make_engine({"type": "hf", "batch_size": 3}, model_dir, None, greedy)
    samples, calls = collect(engine, prompts(5))
    assert sum(calls.values()) == 5
    for answers in samples.values():
        assert [a["index"] for a in answers] == [0, 1, 2]
        assert len({(a["text"], a["n_tokens"], a["finish_reason"]) for a in answers}) == 1


@pytest.mark.train
def test_hf_engine_greedy_preset_samples_its_n_answers(model_dir):
    """The toolkit's greedy is temperature 0.01: sampled n times, not one argmax answer repeated."""
    engine = make_engine({"type": "hf", "batch_size": 2}, model_dir, None,
                         Sampling.from_config({"preset": "greedy", "n": 3, "max_tokens": 4}, seed=0))
    seen = []
    generate = engine.model.generate
    engine.model.generate = lambda **kw: seen.append(kw) or generate(**kw)
    samples, _ = collect(engine, prompts(2))
    sampled = [kw for kw in seen if kw["do_sample"]]  # the other call is the shared prefill
    # one sampling call: 2 prompts x 3 answers (rows repeated after the prefill, or by num_return_sequences)
    assert [(kw["temperature"], len(kw["input_ids"]) * kw["num_return_sequences"]) for kw in sampled] == [(0.01, 6)]
    assert all([a["index"] for a in answers] == [0, 1, 2] for answers in samples.values())


def prefill_rows(engine) -> list[int]:
    """Rows of every forward call of the engine's model that reads more than one new token (a prefill)."""
    rows = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            rows.append(ids.shape[0])

    engine.model.register_forward_pre_hook(hook, with_kwargs=True)
    return rows


@pytest.mark.train
def test_hf_engine_prefills_each_prompt_once_with_the_same_answers(model_dir):
    sampling = Sampling(n=4, temperature=1.0, max_tokens=8, seed=3, presence_penalty=0.5)
    items = prompts(6)
    shared = hf_engine(model_dir, sampling, batch_size=3)
    rows = prefill_rows(shared)
    answers, _ = collect(shared, items)
    assert shared.shares_prefill and rows == [3, 3]  # two batches of 3 prompts, not of 3 x 4 rows
    plain = hf_engine(model_dir, sampling, batch_size=3)
    plain.shares_prefill = False  # num_return_sequences alone: every prompt prefilled n times
    rows = prefill_rows(plain)
    assert collect(plain, items)[0] == answers and rows == [12, 12]


@pytest.mark.train
def test_hf_engine_top_k_0_samples_from_the_whole_vocabulary(model_dir):
    """top_k 0 is off: transformers' default top_k (50) must not apply."""
    engine = hf_engine(model_dir, Sampling(n=300, temperature=1.0, max_tokens=1, seed=0))
    [[answers]] = [collect(engine, prompts(1))[0].values()]
    assert len({a["text"] for a in answers}) > 50


def test_presence_and_frequency_penalty_on_a_hand_made_score_tensor():
    # two rows: a prompt of 3 tokens (id 9: never penalised) then the answer generated so far
    input_ids = torch.tensor([[9, 9, 9, 1, 1, 2], [9, 9, 9, 3, 0, 0]])
    scores = torch.tensor([[0.0, 5.0, 4.0, 4.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                           [3.5, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.2]])
    assert scores.argmax(-1).tolist() == [1, 0]
    out = PresenceFrequencyPenalty(3, presence=1.5)(input_ids, scores.clone())
    expected = scores.clone()
    expected[0, [1, 2]] -= 1.5  # once per token in the answer, however often (token 1 is there twice)
    expected[1, [0, 3]] -= 1.5
    assert torch.equal(out, expected)
    # the choice flips: to a token not in the answer (row 0), to a token only in the prompt (row 1)
    assert out.argmax(-1).tolist() == [3, 9]

    freq = PresenceFrequencyPenalty(3, presence=0.5, frequency=1.0)(input_ids, scores.clone())
    assert freq[0, 1].item() == 5.0 - 0.5 - 2 * 1.0 and freq[0, 2].item() == 4.0 - 0.5 - 1.0
    assert freq[1, 0].item() == 3.5 - 0.5 - 2 * 1.0 and freq[1, 3].item() == 3.0 - 0.5 - 1.0
    untouched = torch.ones_like(scores, dtype=torch.bool)
    untouched[0, [1, 2]] = untouched[1, [0, 3]] = False
    assert torch.equal(freq[untouched], scores[untouched])  # the prompt's token 9 among them
    # nothing generated yet: nothing changes
    assert torch.equal(PresenceFrequencyPenalty(6, 1.5, 1.0)(input_ids, scores.clone()), scores)


def reference_argmax(engine, text: str, max_tokens: int, presence: float) -> list[int]:
    """Argmax decoding by hand, one full forward pass per token, the presence penalty applied to
    the tokens generated so far: what the hf engine must produce."""
    ids = engine.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(max_tokens):
            logits = engine.model(torch.cat([ids, torch.tensor([out], dtype=torch.long)], 1)).logits[0, -1].float()
            for token in set(out):
                logits[token] -= presence
            out.append(int(logits.argmax()))
            if out[-1] in engine.eos_ids:
                break
    return out


@pytest.mark.train
def test_presence_penalty_flips_the_hf_engines_choice(model_dir):
    max_tokens, presence = 10, 100.0
    plain = make_engine({"type": "hf", "batch_size": 1}, model_dir, None,
                        Sampling(temperature=0.0, max_tokens=max_tokens))
    penalised = make_engine({"type": "hf", "batch_size": 1}, model_dir, None,
                            Sampling(temperature=0.0, max_tokens=max_tokens, presence_penalty=presence))
    # a prompt whose argmax answer repeats a token, so the penalty has something to act on
    for prompt in prompts(12):
        text = plain.render(prompt)
        unpenalised = reference_argmax(plain, text, max_tokens, 0.0)
        if len(set(unpenalised)) < len(unpenalised):
            break
    else:
        pytest.fail("no prompt of the tiny model repeats a token under argmax decoding")
    expected = reference_argmax(plain, text, max_tokens, presence)
    assert expected != unpenalised  # the penalty flips at least one choice ...
    answer = [t for t in expected if t not in plain.eos_ids]
    assert len(set(answer)) == len(answer)  # ... and with 100 no token comes twice

    def decoded(tokens):
        kept = [t for t in tokens if t not in plain.eos_ids]
        return plain.tokenizer.decode(kept, skip_special_tokens=True).strip(), len(kept)

    [[got]] = penalised.generate([text], [prompt.id])
    [[base]] = plain.generate([text], [prompt.id])
    assert (got["text"], got["n_tokens"]) == decoded(expected)
    assert (base["text"], base["n_tokens"]) == decoded(unpenalised)
    assert got["text"] != base["text"]

    # and sampling with the penalty draws other answers than without it, from the same seed
    sampled = {p: make_engine({"type": "hf", "batch_size": 4}, model_dir, None,
                              Sampling(n=2, temperature=1.0, max_tokens=max_tokens, seed=3, presence_penalty=p))
               for p in (0.0, presence)}
    assert collect(sampled[0.0], prompts(4))[0] != collect(sampled[presence], prompts(4))[0]


# --- openai engine on real servers -------------------------------------------------------------------

@pytest.mark.server
def test_openai_engine_on_launched_transformers_server(model_dir, tmp_path, monkeypatch, juicebox_log):
    secret = "sk-test-7f3a9c-never-logged"
    monkeypatch.setenv("JUICEBOX_TEST_API_KEY", secret)
    items = prompts(6, system="Answer with a number.")
    log_dir = tmp_path / "server-logs"
    with servers.launch("transformers", model_dir, None, log_dir, startup_timeout=STARTUP_TIMEOUT) as (urls, name):
        assert len(urls) == 1 and name == model_dir
        pids = server_pids(urls[0])
        assert pids, "the launched server is not a child of this process"
        engine = openai_engine(model_dir, Sampling(n=2, temperature=1.0, max_tokens=8, seed=1), endpoints=urls,
                              served_model=name, concurrency=4, backoff=0.1, api_key_env="JUICEBOX_TEST_API_KEY")
        samples, calls = collect(engine, items)
        provenance = engine.provenance()
        engine.close()

        # a request the server refuses (422: transformers serve takes no top_k) fails at once, unretried
        refused = openai_engine(model_dir, Sampling.from_config({"preset": "qwen_ins", "max_tokens": 4}, seed=0),
                               endpoints=urls, served_model=name, backoff=0.1)
        with pytest.raises(RequestFailed, match=r"2 prompt\(s\) failed .*HTTP 422 .*top_k"):
            collect(refused, items[:2])
    assert not [m for m in juicebox_log.messages if m.startswith("retry ")]

    assert calls == Counter({p.id: 1 for p in items})
    for answers in samples.values():
        assert [a["index"] for a in answers] == [0, 1]
        assert all(isinstance(a["text"], str) and a["finish_reason"] in {"stop", "length"} for a in answers)
    assert provenance == {"type": "openai", "model": model_dir, "adapter": None, "served_model": model_dir,
                          "endpoints": urls}
    assert secret not in json.dumps(provenance) and secret not in juicebox_log.text
    assert (log_dir / "server-0.log").read_text()

    # the server's whole process group is gone, and nothing answers on its port
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{urls[0]}/health", timeout=2)


@pytest.mark.server
def test_openai_engine_launches_its_server_and_stops_it_on_close(model_dir, tmp_path):
    cfg = {"type": "openai", "launch": {"kind": "transformers", "startup_timeout": STARTUP_TIMEOUT}, "concurrency": 2}
    engine = make_engine(cfg, model_dir, None, Sampling(n=2, temperature=1.0, max_tokens=4),
                         log_dir=str(tmp_path / "logs"))
    try:
        assert engine.served_model == model_dir and not engine.request_n  # transformers serve ignores n
        pids = server_pids(engine.endpoints[0].url)
        assert len(engine.endpoints) == 1 and pids
        samples, _ = collect(engine, prompts(3))
    finally:
        engine.close()
    assert sorted(samples) == ["q000", "q001", "q002"]
    assert all(len(answers) == 2 for answers in samples.values())
    # sampled, not the argmax answer twice (the tiny model's generation_config does not turn sampling on)
    assert any(answers[0]["text"] != answers[1]["text"] for answers in samples.values())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


# A stand-in for a server that looks ready and dies on its first request (vLLM's CPU attention with
# an unsupported head size does): /health answers 200, the first completion gets HTTP 500 and the
# process exits after writing its traceback. With "exit" as argument it exits while starting.
DYING_SERVER = """
import http.server, sys, traceback
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "exit":
    print("INFO loading the model", flush=True)
    print("ValueError: There is no module or parameter named 'vision_tower.embeddings'", flush=True)
    sys.exit(3)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def do_POST(self):
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b'{"error": "EngineCore encountered an issue"}')
        self.wfile.flush()
        print("ERROR 12-07 10:00:00 [core.py:1] EngineCore failed", flush=True)
        print("RuntimeError: Unsupported CPU attention configuration: head_dim=16", flush=True)
        print("INFO shutting down", flush=True)
        sys.exit(1)

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def start_dying_server(tmp_path, mode: str) -> tuple[subprocess.Popen, str, Path]:
    script, log_path, port = tmp_path / "server.py", tmp_path / "server-0.log", servers.free_port()
    script.write_text(DYING_SERVER)
    with open(log_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, str(script), str(port), mode], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return proc, f"http://127.0.0.1:{port}", log_path


@pytest.mark.server
def test_a_server_healthy_but_dying_on_its_first_request_fails_the_launch_with_its_error(tmp_path):
    proc, url, log_path = start_dying_server(tmp_path, "serve")
    try:
        servers.wait_ready(url, proc, STARTUP_TIMEOUT, log_path)  # healthy: /health alone would pass it
        with pytest.raises(servers.ServerFailed) as failed:
            servers.first_answer(url, proc, "model", False, STARTUP_TIMEOUT, log_path)
    finally:
        servers.stop([proc], grace=5)
    message = str(failed.value)
    assert "HTTP 500" in message and "exited with code 1" in message
    assert "its error: RuntimeError: Unsupported CPU attention configuration: head_dim=16" in message


@pytest.mark.server
def test_a_server_exiting_while_starting_fails_the_launch_with_its_error(tmp_path):
    proc, url, log_path = start_dying_server(tmp_path, "exit")
    with pytest.raises(servers.ServerFailed, match=r"exited with code 3 while starting; its error: ValueError: "
                                                   r"There is no module or parameter named 'vision_tower\.embeddings'"):
        servers.wait_ready(url, proc, STARTUP_TIMEOUT, log_path)


def test_server_error_is_the_root_cause_then_the_last_exception_then_an_error_record(tmp_path):
    log = tmp_path / "server.log"
    # vLLM's order: the worker's traceback and error first, then the engine's and the API server's reports
    log.write_text("INFO up\nWARNING limits: errors like `OSError: too many files` may follow\n"
                   "(Worker) ERROR [x] Traceback (most recent call last):\n(Worker) ERROR [x]   File y\n"
                   "(Worker) ERROR [x] RuntimeError: Unsupported CPU attention configuration: head_dim=16\n"
                   "(APIServer) ERROR [z] vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue\n")
    assert servers.server_error(log) == \
        "(Worker) ERROR [x] RuntimeError: Unsupported CPU attention configuration: head_dim=16"
    log.write_text("INFO up\nValueError: bad model\nINFO bye\n")
    assert servers.server_error(log) == "ValueError: bad model"
    log.write_text("INFO up\nERROR 12-07 [api_server.py:9] port in use\nINFO bye\n")
    assert servers.server_error(log) == "ERROR 12-07 [api_server.py:9] port in use"
    log.write_text("INFO up\nINFO bye\n\n")
    assert servers.server_error(log) == "INFO bye"
    log.write_text("")
    assert servers.server_error(log) == "(the log is empty)"
    assert servers.server_error(tmp_path / "missing.log").startswith("(no log at ")


def test_openai_engine_needs_its_api_key_variable(monkeypatch):
    monkeypatch.delenv("JUICEBOX_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match="JUICEBOX_UNSET_KEY"):
        openai_engine("m", Sampling(), endpoints=["http://127.0.0.1:1"], api_key_env="JUICEBOX_UNSET_KEY")
    with pytest.raises(ValueError, match="needs exactly one of `endpoints:`"):
        openai_engine("m", Sampling())


@pytest.mark.server
def test_openai_engine_survives_a_server_killed_mid_run(model_dir, tmp_path, juicebox_log):
    (proc1, url1), (proc2, url2) = (start_server(model_dir, tmp_path / f"server-{i}.log") for i in (1, 2))
    try:
        for proc, url, i in ((proc1, url1, 1), (proc2, url2, 2)):
            servers.wait_ready(url, proc, STARTUP_TIMEOUT, tmp_path / f"server-{i}.log")
        engine = openai_engine(model_dir, Sampling(n=2, temperature=1.0, max_tokens=16, seed=2),
                              endpoints=[url1, url2], concurrency=4, retries=5, backoff=0.1)
        items = prompts(30)
        samples, calls, errors = {}, Counter(), []
        some_done = threading.Event()
        lock = threading.Lock()

        def on_done(prompt: Prompt, answers: list[dict]) -> None:
            with lock:
                calls[prompt.id] += 1
                samples[prompt.id] = answers
                if len(calls) >= 3:
                    some_done.set()

        def run() -> None:
            try:
                engine.run(items, on_done)
            except BaseException as err:  # noqa: BLE001  (re-raised in the test thread below)
                errors.append(err)

        worker = threading.Thread(target=run)
        worker.start()
        assert some_done.wait(STARTUP_TIMEOUT), "no prompt finished"
        os.killpg(proc1.pid, signal.SIGKILL)
        proc1.wait()
        with lock:
            done_before_kill = len(calls)
        worker.join(STARTUP_TIMEOUT)
        assert not worker.is_alive()
    finally:
        servers.stop([proc1, proc2], grace=5)

    assert not errors, errors
    assert done_before_kill < len(items)  # the kill happened mid-run
    assert calls == Counter({p.id: 1 for p in items})
    assert all([a["index"] for a in answers] == [0, 1] for answers in samples.values())
    retries = [r.getMessage() for r in juicebox_log.records if r.getMessage().startswith("retry ")]
    assert retries and any(url1 in m for m in retries), juicebox_log.text
    assert not any("failed" in r.getMessage() for r in juicebox_log.records if r.levelno >= logging.WARNING)


def test_openai_engine_with_every_server_dead_fails_and_reports_nothing(juicebox_log):
    dead = [f"http://127.0.0.1:{servers.free_port()}" for _ in range(2)]
    engine = openai_engine("m", Sampling(n=2, temperature=1.0, max_tokens=4), endpoints=dead,
                          retries=2, backoff=0.01)
    done = []
    with pytest.raises(RequestFailed, match=r"^5 prompt\(s\) failed after 2 retries \(first: q00\d: "
                                            r"ClientConnectorError.*rerun to ask again for them only"):
        engine.run(prompts(5), lambda prompt, answers: done.append(prompt.id))
    assert done == []
    assert sorted(engine.failed) == [f"q{i:03d}" for i in range(5)]
    assert sum(m.startswith("retry ") for m in juicebox_log.messages) == 5 * 2  # first request of each prompt


# --- openai engine on a fake server: penalties sent, key never leaked, refusals ----------------------

ENGINE_KEY = "sk-engine-test-8d2e4b"


class FakeOpenAI:
    """An OpenAI-compatible server on localhost that records request bodies. Model ``ok`` answers
    "7" n times; ``echo-<status>-<pad>`` answers that status with the caller's key (read from the
    Authorization header) after ``pad`` dots, to catch a key cut in two by the error-text limit."""

    def __init__(self):
        self.bodies = []

    async def handle(self, request):
        body = await request.json()
        self.bodies.append(body)
        if body["model"].startswith("echo-"):
            _, status, pad = body["model"].split("-")
            key = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return web.Response(status=int(status), text="." * int(pad) + key + " <- your key")
        choice = {"message": {"role": "assistant", "content": "7"}, "finish_reason": "stop"}
        return web.json_response({"choices": [choice] * body.get("n", 1)})


@pytest.fixture
def fake_openai(monkeypatch):
    """The fake server on a free localhost port, served from a thread; yields (url, state)."""
    monkeypatch.setenv("ENGINE_KEY", ENGINE_KEY)
    state = FakeOpenAI()
    with serve_chat_completions(state.handle) as url:
        yield url, state


def fake_engine(url: str, sampling: Sampling, served_model: str = "ok", **keys):
    cfg = {"type": "openai", "endpoints": [url], "served_model": served_model, "api_key_env": "ENGINE_KEY",
           "backoff": 0.01, **keys}
    return make_engine(cfg, "m", None, sampling)


def test_openai_engine_sends_presence_and_frequency_penalty_only_when_set(fake_openai):
    url, state = fake_openai
    collect(fake_engine(url, Sampling(n=1, temperature=1.0, max_tokens=4)), prompts(1))
    assert not {"presence_penalty", "frequency_penalty"} & set(state.bodies[-1])
    qwen_ins = Sampling.from_config({"preset": "qwen_ins", "n": 2, "max_tokens": 4}, seed=0)
    samples, _ = collect(fake_engine(url, qwen_ins, request_n=True), prompts(1))
    body = state.bodies[-1]
    assert (body["temperature"], body["top_p"], body["top_k"], body["presence_penalty"], body["n"]) == \
        (0.7, 0.8, 20, 1.5, 2)
    assert "frequency_penalty" not in body and "repetition_penalty" not in body  # 1.0: neutral, not sent
    collect(fake_engine(url, replace(qwen_ins, frequency_penalty=0.25)), prompts(1))
    assert state.bodies[-1]["frequency_penalty"] == 0.25
    # the toolkit's greedy (0.01) samples: n requests, not one answer repeated
    state.bodies.clear()
    collect(fake_engine(url, Sampling.from_config({"preset": "greedy", "n": 3}, seed=0)), prompts(1))
    assert [b["temperature"] for b in state.bodies] == [0.01] * 3


def test_openai_engine_never_leaks_part_of_a_key_cut_by_the_error_limit(fake_openai, juicebox_log, tmp_path):
    """Error bodies are kept to 300 characters: a key echoed across the cut must not leave its
    prefix in the log, the failures recorded or the exception (scrub first, then cut)."""
    url, _ = fake_openai
    log_file = tmp_path / "rollout.log"
    messages = []
    with juicebox_log_file(log_file):
        for status in (500, 400):  # retried, then not retryable
            for pad in range(300 - len(ENGINE_KEY) - 2, 300 + 3):
                engine = fake_engine(url, Sampling(n=1, temperature=1.0, max_tokens=4), f"echo-{status}-{pad}",
                                     retries=1)
                with pytest.raises(RequestFailed, match=f"HTTP {status}") as failure:
                    collect(engine, prompts(1))
                if pad + 3 <= 300:  # the scrubbed key ("***") is inside the 300 characters kept
                    assert "***" in str(failure.value), str(failure.value)
                messages += [str(failure.value), *engine.failed.values()]
    assert "retry 1/1" in juicebox_log.text and "prompt q000 failed" in juicebox_log.text
    for name, text in [("log file", log_file.read_text(encoding="utf-8")), ("caplog", juicebox_log.text),
                       ("failures and exceptions", "\n".join(messages))]:
        leaked = key_prefixes_in(text, ENGINE_KEY)
        assert not leaked, f"{name} holds a prefix of the key: {leaked[-1]!r}"


def test_scrub_before_cutting():
    key = "SECRET-XYZ-123"
    text = "." * 295 + key
    assert text[:300].replace(key, "***").endswith("SECRE")  # the old order leaked the prefix
    assert scrub(text, key, 300) == "." * 295 + "***"
    assert scrub("no key here", None, 4) == "no k" and scrub(text, key) == "." * 295 + "***"


def test_transformers_serve_refuses_penalties_by_name_before_launching():
    for name in ("qwen_ins", "qwen_think", "qwen2.5_generation_config", "qwen3_thinking_card"):
        with pytest.raises(ValueError, match=r"top_k=20.*`transformers serve` cannot honour"):
            check_supported(Sampling.from_config({"preset": name}, seed=0), "transformers")
    with pytest.raises(ValueError, match=r"sets top_k=20, presence_penalty=1.5, which"):
        check_supported(Sampling.from_config({"preset": "qwen_ins"}, seed=0), "transformers")
    with pytest.raises(ValueError, match=r"sets presence_penalty=0.5, frequency_penalty=0.2, which"):
        check_supported(Sampling(temperature=1.0, presence_penalty=0.5, frequency_penalty=0.2), "transformers")
    for name in ("greedy", "mimo", "argmax"):  # nothing transformers serve cannot honour
        check_supported(Sampling.from_config({"preset": name}, seed=0), "transformers")
    for name in PRESETS:  # vllm honours everything
        check_supported(Sampling.from_config({"preset": name}, seed=0), "vllm")
    # through the engine: refused before any server starts (the model path does not even exist)
    cfg = {"type": "openai", "launch": {"kind": "transformers"}}
    with pytest.raises(ValueError, match=r"presence_penalty=1.5"):
        make_engine(cfg, "no/such/model", None, Sampling.from_config({"preset": "qwen_ins"}, seed=0))


@pytest.mark.train
def test_launched_vllm_keeps_neutral_sampling_neutral(model_dir, monkeypatch):
    # The engine leaves neutral fields out of a request; a vLLM server would fill them from the
    # model's generation_config.json unless told to use its own neutral defaults.
    monkeypatch.setattr(servers, "visible_gpus", lambda: ["0", "1"])
    (cmd, env), = servers.server_commands("vllm", model_dir, None, 2, 1, [8000], [])
    assert cmd[cmd.index("--generation-config") + 1] == "vllm" and env == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert "--limit-mm-per-prompt" not in cmd  # a text model: vLLM refuses the flag for it
    (cmd, _), = servers.server_commands("vllm", model_dir, None, 1, 1, [8000], ["--generation-config=auto"])
    assert cmd.count("--generation-config") == 0 and cmd[-1] == "--generation-config=auto"
