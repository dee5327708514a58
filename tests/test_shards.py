"""Sharded, resumable work: shard names and selection, the partial file after a kill (torn last
line, other settings), gathering shards, and a real rollout shard process killed mid-run and
resumed (no prompt lost, none repeated, finished ones kept byte for byte)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_SPEC
from juicebox.engines import Sampling
from juicebox.io import read_jsonl, write_jsonl
from juicebox.models import build_tiny_model
from juicebox.rollouts import run_shard
from juicebox.shards import (ShardError, ShardFile, fingerprint, gather, parse_shard, pending_batches, select,
                              shard_names)

HEADER = {"ids": ["a", "b", "c", "d"], "model": "tiny", "sampling": {"n": 2}}


def rec(pid: str, text: str = "") -> dict:
    """A finished prompt as a shard writes it."""
    return {"id": pid, "samples": [{"index": 0, "text": text or f"answer to {pid}"}]}


def complete_lines(path: Path) -> list[str]:
    """The lines of a file being appended to that already have their newline (a torn tail is left out)."""
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, parsed (a bad line fails the test)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- names and selection ----------------------------------------------------------------------------

def test_parse_shard_and_names():
    assert parse_shard("1-of-1") == (0, 1)
    assert parse_shard("2-of-4") == (1, 4)
    assert parse_shard("4-of-4") == (3, 4)
    for bad in ("0-of-4", "5-of-4"):
        with pytest.raises(ShardError, match="index must be between 1 and 4"):
            parse_shard(bad)
    with pytest.raises(ValueError):
        parse_shard("two-of-4")
    assert shard_names(3) == ["1-of-3", "2-of-3", "3-of-3"]
    assert [parse_shard(name) for name in shard_names(3)] == [(0, 3), (1, 3), (2, 3)]


def test_select_deals_records_round_robin():
    records = [{"id": str(i)} for i in range(7)]
    shards = [select(records, i, 3) for i in range(3)]
    assert [[r["id"] for r in shard] for shard in shards] == [["0", "3", "6"], ["1", "4"], ["2", "5"]]
    assert select(records, 0, 1) == records


def test_fingerprint_is_stable_and_order_free():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint(HEADER)) == 16


def test_pending_batches_are_fixed_by_position_whatever_is_done():
    items = [{"id": str(i)} for i in range(10)]
    ids = lambda batches: [[r["id"] for r in batch] for batch in batches]  # noqa: E731
    assert ids(pending_batches(items, 4, set())) == [["0", "1", "2", "3"], ["4", "5", "6", "7"], ["8", "9"]]
    # a batch partly done is yielded whole; one wholly done is skipped; nothing is re-formed
    assert ids(pending_batches(items, 4, {"0", "1", "2", "3", "5", "9"})) == [["4", "5", "6", "7"], ["8", "9"]]
    assert ids(pending_batches(items, 4, {r["id"] for r in items})) == []
    assert ids(pending_batches(items, 3, {"1"})) == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"], ["9"]]
    with pytest.raises(ValueError, match="at least 1"):
        list(pending_batches(items, 0, set()))


# --- ShardFile --------------------------------------------------------------------------------------

def test_shard_file_resumes_after_a_torn_line(tmp_path):
    output = tmp_path / "rollouts" / "shard-1-of-2.jsonl"
    partial = output.with_name(output.name + ".partial")
    shard = ShardFile(output, HEADER)
    assert partial.exists() and shard.records == [] and shard.done == set()
    for pid in ("c", "a"):
        shard.append(rec(pid, "ü 7"))
    assert lines(partial) == [{"fingerprint": fingerprint(HEADER)}, rec("c", "ü 7"), rec("a", "ü 7")]

    # killed halfway through writing "b": a torn line without its newline
    good = partial.read_bytes()
    with open(partial, "ab") as handle:
        handle.write(b'{"id": "b", "samples": [{"index": 0, "te')
    del shard

    shard = ShardFile(output, HEADER)
    assert shard.records == [rec("c", "ü 7"), rec("a", "ü 7")]
    assert shard.done == {"a", "c"}
    assert partial.read_bytes() == good  # the torn tail is cut off
    shard.append(rec("b"))
    shard.append(rec("d"))
    assert [line.get("id") for line in lines(partial)] == [None, "c", "a", "b", "d"]

    assert not output.exists()
    assert shard.finish(["a", "b", "c", "d"]) == 4
    assert read_jsonl(output) == [rec("a", "ü 7"), rec("b"), rec("c", "ü 7"), rec("d")]
    assert not partial.exists()


def test_shard_file_keeps_what_precedes_a_corrupt_line(tmp_path):
    output = tmp_path / "shard.jsonl"
    partial = output.with_name(output.name + ".partial")
    shard = ShardFile(output, HEADER)
    shard.append(rec("a"))
    del shard
    header_and_a = partial.read_bytes()
    with open(partial, "ab") as handle:  # a garbled line (not even UTF-8), then a good one
        handle.write(b'{"id": "b", "sam\xff\xfe\n' + json.dumps(rec("c")).encode() + b"\n")

    shard = ShardFile(output, HEADER)
    assert shard.done == {"a"}  # nothing after the bad line is trusted
    assert partial.read_bytes() == header_and_a
    shard.append(rec("b"))
    del shard
    shard = ShardFile(output, HEADER)  # still resumable: the header survived
    assert shard.done == {"a", "b"}
    assert not partial.with_name(partial.name + ".stale").exists()


def test_shard_file_sets_aside_a_partial_from_other_settings(tmp_path):
    output = tmp_path / "shard.jsonl"
    partial = output.with_name(output.name + ".partial")
    stale = output.with_name(output.name + ".partial.stale")
    old = ShardFile(output, HEADER)
    old.append(rec("a"))
    old.append(rec("b"))
    del old
    old_bytes = partial.read_bytes()

    other = {**HEADER, "sampling": {"n": 4}}
    shard = ShardFile(output, other)
    assert shard.records == [] and shard.done == set()
    assert stale.read_bytes() == old_bytes
    assert lines(partial) == [{"fingerprint": fingerprint(other)}]
    shard.append(rec("c"))
    assert shard.finish(["a", "b", "c", "d"]) == 1  # only what was done under these settings
    assert read_jsonl(output) == [rec("c")]


def test_shard_file_finish_writes_in_the_order_given(tmp_path):
    output = tmp_path / "shard.jsonl"
    shard = ShardFile(output, HEADER)
    for pid in ("d", "b", "a"):
        shard.append(rec(pid))
    assert shard.finish(["a", "b", "c", "d"]) == 3
    assert [r["id"] for r in read_jsonl(output)] == ["a", "b", "d"]


# --- gather -----------------------------------------------------------------------------------------

def test_gather_restores_input_order_and_checks_ids(tmp_path):
    expected = ["p0", "p1", "p2", "p3", "p4"]
    one, two = tmp_path / "1-of-2.jsonl", tmp_path / "2-of-2.jsonl"
    write_jsonl(one, [rec("p0"), rec("p2"), rec("p4")])
    write_jsonl(two, [rec("p3"), rec("p1")])
    assert [r["id"] for r in gather([str(one), str(two)], expected)] == expected
    assert [r["id"] for r in gather([str(two)], expected)] == ["p1", "p3"]  # missing ones are left out

    write_jsonl(two, [rec("p1"), rec("p2")])
    with pytest.raises(ShardError, match=r"2-of-2.jsonl: prompt 'p2' appears in more than one shard record"):
        gather([str(one), str(two)], expected)

    write_jsonl(two, [rec("p1"), rec("zz"), rec("p3")])
    with pytest.raises(ShardError, match=r"1 prompt\(s\) not in the input, e.g. \['zz'\]"):
        gather([str(one), str(two)], expected)


# --- a rollout shard killed mid-run -----------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The tiny Qwen2 model, built once for this module."""
    texts = []
    for a in range(20):
        for b in range(10):
            texts += [f"What is {a} plus {b}?", str(a + b)]
    path = tmp_path_factory.mktemp("shards") / "model"
    build_tiny_model(path, texts, seed=0, spec=TINY_SPEC)
    return str(path)


# A script file in tmp_path run by this interpreter: it imports juicebox as installed (pip install -e .).
RUN_SHARD = """
import json, sys
from juicebox.engines import Sampling
from juicebox.io import read_jsonl
from juicebox.rollouts import run_shard

args = json.loads(sys.argv[1])
run_shard(read_jsonl(args["data"]), args["output"], args["engine"], args["model"], None, Sampling(**args["sampling"]),
          args["system_prompt"], args["max_prompt_tokens"], threads=1)
"""


@pytest.mark.train
def test_rollout_shard_killed_and_resumed_loses_and_repeats_nothing(model_dir, tmp_path):
    records = [{"id": f"math-{i:03d}", "task": "math", "prompt": f"What is {i % 20} plus {i % 7}?",
                "answer": str(i % 20 + i % 7), "references": [], "images": []} for i in range(60)]
    records[5]["prompt"] = "What is 1 plus 2? " * 40  # over max_prompt_tokens: written unanswered
    data = tmp_path / "data.jsonl"
    write_jsonl(data, records)
    output = tmp_path / "rollouts" / "1-of-1.jsonl"
    partial = output.with_name(output.name + ".partial")
    # long answers (the random model seldom ends a turn) so that the shard takes several seconds
    args = {"data": str(data), "output": str(output), "engine": {"type": "hf", "batch_size": 4},
            "model": model_dir, "sampling": {"n": 2, "temperature": 1.0, "max_tokens": 400, "seed": 3},
            "system_prompt": "Answer with a number.", "max_prompt_tokens": 64}
    script = tmp_path / "run_shard.py"
    script.write_text(textwrap.dedent(RUN_SHARD))

    proc = subprocess.Popen([sys.executable, str(script), json.dumps(args)], stderr=subprocess.PIPE, text=True)
    try:
        answered = 0
        deadline = time.monotonic() + 120
        while answered < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if partial.exists():
                answered = sum(1 for line in complete_lines(partial)[1:] if json.loads(line)["samples"])
        assert proc.poll() is None, f"the shard ended before it could be killed:\n{proc.stderr.read()[-3000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not output.exists()
    kept = {json.loads(line)["id"]: line for line in complete_lines(partial)[1:]}
    assert 2 <= sum(1 for line in kept.values() if json.loads(line)["samples"]) < len(records) - 1

    threads = torch.get_num_threads()
    try:
        n = run_shard(records, str(output), args["engine"], model_dir, None, Sampling(**args["sampling"]),
                      args["system_prompt"], args["max_prompt_tokens"], threads=1)
    finally:
        torch.set_num_threads(threads)  # the hf engine sets it for the whole process

    assert n == len(records) and not partial.exists()
    final_lines = output.read_text(encoding="utf-8").splitlines()
    final = [json.loads(line) for line in final_lines]
    assert [r["id"] for r in final] == [r["id"] for r in records]  # every id once, in input order
    by_id = dict(zip((r["id"] for r in final), final_lines))
    for pid, line in kept.items():
        assert by_id[pid] == line, pid  # finished before the kill: kept, not generated again
    for r in final:
        if r["id"] == "math-005":
            assert r["samples"] == [] and r["dropped"] == "prompt_too_long"
        else:
            assert [s["index"] for s in r["samples"]] == [0, 1], r["id"]
            assert r["prompt"] == records[int(r["id"][5:])]["prompt"] and r["seed"] == 3


class Killed(BaseException):
    """Stands for SIGKILL: raised by an append, it stops the shard with its partial file as it is."""


@pytest.mark.train
def test_rollout_shard_resumed_inside_a_batch_gives_the_uninterrupted_bytes(model_dir, tmp_path, monkeypatch):
    records = [{"id": f"p{i:02d}", "task": "math", "prompt": f"What is {i % 20} plus {i % 7}?" + " more" * (i % 5),
                "answer": str(i % 20 + i % 7), "references": [], "images": []} for i in range(14)]
    records[3]["prompt"] = "What is 1 plus 2? " * 40  # over max_prompt_tokens: written first, never batched
    sampling = Sampling(n=2, temperature=1.0, max_tokens=8, seed=5)

    def shard(output: Path) -> int:
        return run_shard(records, str(output), {"type": "hf", "batch_size": 4}, model_dir, None, sampling,
                         None, 64, threads=1)

    threads = torch.get_num_threads()
    try:
        reference = tmp_path / "reference.jsonl"
        assert shard(reference) == len(records)
        original_append = ShardFile.append
        for kill_after in (2, 6, 11):  # inside the 1st, 2nd and 3rd batch (the too-long prompt comes first)
            output = tmp_path / f"killed-{kill_after}.jsonl"
            appended = []

            def append(self, record, _limit=kill_after):
                if len(appended) == _limit:
                    raise Killed
                original_append(self, record)
                appended.append(record["id"])

            monkeypatch.setattr(ShardFile, "append", append)
            with pytest.raises(Killed):
                shard(output)
            monkeypatch.setattr(ShardFile, "append", original_append)
            partial = output.with_name(output.name + ".partial")
            assert len(lines(partial)) == kill_after + 1 and appended[0] == "p03"
            assert shard(output) == len(records)
            assert output.read_bytes() == reference.read_bytes(), f"killed after {kill_after} appends"
    finally:
        torch.set_num_threads(threads)
