"""Rollout engines on the embedded tiny model: sampling presets, the in-process ``hf`` engine, and
the ``openai`` engine against real ``transformers serve`` processes on localhost, including a
server killed mid-run (its prompts are retried on the other one) and every server dead (the run
fails naming how many prompts, and none of them is reported as done)."""

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

from juicebox.engines import PRESETS, Prompt, Sampling, make_engine, to_messages
from juicebox.engines import servers
from juicebox.engines.hf import HFEngine
from juicebox.engines.openai import OpenAIEngine, RequestFailed
from juicebox.models import TinySpec, build_tiny_model

SPEC = TinySpec(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=300)
TRANSFORMERS = str(Path(sys.executable).parent / "transformers")
STARTUP_TIMEOUT = 120


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
    build_tiny_model(path, math_texts(), seed=0, spec=SPEC)
    return str(path)


def prompts(count: int, system: str | None = None) -> list[Prompt]:
    """``count`` math prompts of different lengths (so batches need left padding)."""
    return [Prompt(f"q{i:03d}", to_messages(f"What is {i} plus {i * 7 % 10}?" + " Think." * (i % 4), system))
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

def test_sampling_from_config_presets_and_overrides():
    s = Sampling.from_config({"preset": "qwen_ins", "n": 8, "temperature": 1.0, "max_tokens": 32}, seed=3)
    assert (s.preset, s.n, s.seed, s.max_tokens) == ("qwen_ins", 8, 3, 32)
    # the preset's values, but the temperature given
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty) == (1.0, 0.8, 20, 1.05)
    assert not s.greedy

    think = Sampling.from_config({"preset": "qwen_think"}, seed=0)
    assert (think.temperature, think.top_p, think.top_k, think.n, think.max_tokens) == (0.6, 0.95, 20, 1, 64)

    greedy = Sampling.from_config({"preset": "greedy", "n": 4}, seed=1)
    assert greedy.greedy and greedy.temperature == 0.0 and greedy.n == 4

    custom = Sampling.from_config({"n": 2, "temperature": 0.7}, seed=5)
    assert custom == Sampling(n=2, temperature=0.7, seed=5, preset="custom")
    assert custom.with_n(6) == Sampling(n=6, temperature=0.7, seed=5, preset="custom")
    assert custom.to_dict() == {"n": 2, "temperature": 0.7, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0,
                                "max_tokens": 64, "seed": 5, "preset": "custom"}
    assert set(PRESETS) == {"greedy", "qwen_ins", "qwen_think", "mimo"}


def test_sampling_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown sampling preset 'qwen_fast'; known: greedy, qwen_ins"):
        Sampling.from_config({"preset": "qwen_fast"}, seed=0)


def test_make_engine_unknown_type():
    with pytest.raises(ValueError, match=r"unknown engine type 'sglang'; known types: hf, openai"):
        make_engine({"type": "sglang"}, "model", None, Sampling())


def test_to_messages_text_chat_and_system_prompt():
    assert to_messages("What is 3 plus 4?") == [{"role": "user", "content": "What is 3 plus 4?"}]
    assert to_messages("What is 3 plus 4?", "Answer with a number.") == [
        {"role": "system", "content": "Answer with a number."}, {"role": "user", "content": "What is 3 plus 4?"}]

    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "What is 3 plus 4?"}]
    messages = to_messages(chat, "Be brief.")
    assert messages == [{"role": "system", "content": "Be brief."}, *chat]
    messages[1]["content"] = "changed"
    assert chat[0]["content"] == "Hi"  # the caller's messages are copied, not edited

    own_system = [{"role": "system", "content": "You are a tutor."}, {"role": "user", "content": "7?"}]
    assert to_messages(own_system, "Be brief.") == own_system  # a chat's own system turn wins
    assert to_messages(chat, None) == chat and to_messages(chat, "") == chat


# --- hf engine --------------------------------------------------------------------------------------

def test_hf_engine_answers_every_prompt_n_times(model_dir):
    sampling = Sampling(n=3, temperature=1.0, max_tokens=12, seed=7)
    engine = HFEngine(model_dir, None, sampling, batch_size=4)
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


def test_hf_engine_same_seed_same_answers_in_any_prompt_order(model_dir):
    sampling = Sampling(n=3, temperature=1.0, max_tokens=12, seed=7)
    items = prompts(10)
    first, _ = collect(HFEngine(model_dir, None, sampling, batch_size=4), items)
    again, _ = collect(HFEngine(model_dir, None, sampling, batch_size=4), items[::-1])
    assert again == first  # batches are formed by length and id, so input order does not matter
    other_seed, _ = collect(HFEngine(model_dir, None, replace(sampling, seed=8), batch_size=4), items)
    assert other_seed != first


def test_hf_engine_greedy_repeats_one_answer(model_dir):
    greedy = Sampling(n=3, temperature=0.0, max_tokens=10)
    engine = make_engine({"type": "hf", "batch_size": 3}, model_dir, None, greedy)
    samples, calls = collect(engine, prompts(5))
    assert sum(calls.values()) == 5
    for answers in samples.values():
        assert [a["index"] for a in answers] == [0, 1, 2]
        assert len({(a["text"], a["n_tokens"], a["finish_reason"]) for a in answers}) == 1


# --- openai engine on real servers -------------------------------------------------------------------

def test_openai_engine_on_launched_transformers_server(model_dir, tmp_path, monkeypatch, juicebox_log):
    secret = "sk-test-7f3a9c-never-logged"
    monkeypatch.setenv("JUICEBOX_TEST_API_KEY", secret)
    items = prompts(6, system="Answer with a number.")
    log_dir = tmp_path / "server-logs"
    with servers.launch("transformers", model_dir, None, log_dir, startup_timeout=STARTUP_TIMEOUT) as (urls, name):
        assert len(urls) == 1 and name == model_dir
        pids = server_pids(urls[0])
        assert pids, "the launched server is not a child of this process"
        engine = OpenAIEngine(model_dir, None, Sampling(n=2, temperature=1.0, max_tokens=8, seed=1), endpoints=urls,
                              served_model=name, concurrency=4, backoff=0.1, api_key_env="JUICEBOX_TEST_API_KEY")
        samples, calls = collect(engine, items)
        provenance = engine.provenance()
        engine.close()

        # a request the server refuses (422: transformers serve takes no top_k) fails at once, unretried
        refused = OpenAIEngine(model_dir, None, Sampling.from_config({"preset": "qwen_ins", "max_tokens": 4}, seed=0),
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


def test_openai_engine_launches_its_server_and_stops_it_on_close(model_dir, tmp_path):
    cfg = {"type": "openai", "launch": {"kind": "transformers", "startup_timeout": STARTUP_TIMEOUT},
           "log_dir": str(tmp_path / "logs"), "concurrency": 2}
    engine = make_engine(cfg, model_dir, None, Sampling(n=2, temperature=1.0, max_tokens=4))
    try:
        assert engine.served_model == model_dir and not engine.request_n  # transformers serve ignores n
        pids = server_pids(engine.endpoints[0].url)
        assert len(engine.endpoints) == 1 and pids
        samples, _ = collect(engine, prompts(3))
    finally:
        engine.close()
    assert sorted(samples) == ["q000", "q001", "q002"]
    assert all(len(answers) == 2 for answers in samples.values())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_openai_engine_needs_its_api_key_variable(monkeypatch):
    monkeypatch.delenv("JUICEBOX_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match="JUICEBOX_UNSET_KEY"):
        OpenAIEngine("m", None, Sampling(), endpoints=["http://127.0.0.1:1"], api_key_env="JUICEBOX_UNSET_KEY")
    with pytest.raises(ValueError, match="needs `endpoints:` or `launch:`"):
        OpenAIEngine("m", None, Sampling())


def test_openai_engine_survives_a_server_killed_mid_run(model_dir, tmp_path, juicebox_log):
    (proc1, url1), (proc2, url2) = (start_server(model_dir, tmp_path / f"server-{i}.log") for i in (1, 2))
    try:
        for proc, url, i in ((proc1, url1, 1), (proc2, url2, 2)):
            servers.wait_ready(url, proc, STARTUP_TIMEOUT, tmp_path / f"server-{i}.log")
        engine = OpenAIEngine(model_dir, None, Sampling(n=2, temperature=1.0, max_tokens=16, seed=2),
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
    engine = OpenAIEngine("m", None, Sampling(n=2, temperature=1.0, max_tokens=4), endpoints=dead,
                          retries=2, backoff=0.01)
    done = []
    with pytest.raises(RequestFailed, match=r"^5 prompt\(s\) failed after 2 retries \(first: q00\d: "
                                            r"ClientConnectorError.*rerun to ask again for them only"):
        engine.run(prompts(5), lambda prompt, answers: done.append(prompt.id))
    assert done == []
    assert sorted(engine.failed) == [f"q{i:03d}" for i in range(5)]
    assert sum(m.startswith("retry ") for m in juicebox_log.messages) == 5 * 2  # first request of each prompt
