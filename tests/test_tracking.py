"""Experiment tracking (`tracking:`): the SFT and DPO curves reach TensorBoard (and W&B offline)
through TRL's report_to, a resumed training keeps writing to the same event folder and run,
track_eval logs every benchmark metric and the curve over DPO rounds, nothing needs network, and
the API keys never reach a file or a log. Event files are read back with TensorBoard's own reader,
W&B's offline runs record by record from their .wandb file."""

import csv
import hashlib
import http.server
import importlib.util
import json
import os
import re
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import key_prefixes_in, run_snakemake
from juicebox import layout
from juicebox.tracking import (TensorBoardSink, active, log_eval, mark_restart, round_curves, run_settings, stage_name,
                                trainer_reporting)
from test_train import DPO, TRAIN, kill_at_checkpoint, model_dir, train_cmd, write_pairs  # noqa: F401 (fixture)

WANDB = importlib.util.find_spec("wandb") is not None
SWANLAB = importlib.util.find_spec("swanlab") is not None
WANDB_KEY = "wbk-" + hashlib.sha256(b"juicebox-test-wandb").hexdigest()[:36]
SWANLAB_KEY = "slk-" + hashlib.sha256(b"juicebox-test-swanlab").hexdigest()[:28]
TRACKER_ENV = ("TENSORBOARD_LOGGING_DIR", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_ID", "WANDB_RESUME",
               "WANDB_ENTITY", "SWANLAB_MODE", "SWANLAB_LOG_DIR", "SWANLAB_PROJECT", "SWANLAB_RUN_ID", "SWANLAB_RESUME")


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the event files in ``folder``, read with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def same_points(got: list[tuple[int, float]], expected: list[tuple[int, float]], **tolerance) -> bool:
    """The same steps, and values equal within ``tolerance`` (pytest.approx's)."""
    return [s for s, _ in got] == [s for s, _ in expected] and \
        [v for _, v in got] == pytest.approx([v for _, v in expected], **tolerance)


def csv_column(path: Path, column: str) -> list[tuple[int, float]]:
    with open(path, encoding="utf-8") as handle:
        return [(int(row["step"]), float(row[column])) for row in csv.DictReader(handle) if row[column]]


def math_records(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"m{i}", "task": "math", "prompt": f"What is {i} plus 3?",
                                        "answer": str(i + 3)}) + "\n" for i in range(n)))
    return path


def tracking_arg(tmp_path: Path, stage: str, tracking: dict) -> list[str]:
    return ["--tracking", json.dumps(run_settings(tracking, "mine", stage, root=str(tmp_path / "results")))]


# --- trainings ----------------------------------------------------------------------------------

@pytest.mark.train
def test_sft_and_dpo_curves_reach_tensorboard(model_dir, tmp_path):
    data = math_records(tmp_path / "data.jsonl", 8)  # 4 steps of 2
    sft = tmp_path / "sft"
    subprocess.run(train_cmd("sft", data, model_dir, sft, TRAIN) + tracking_arg(tmp_path, "sft", {"tensorboard": True}),
                   check=True, capture_output=True)
    curves = scalars(tmp_path / "results/mine/tb/sft")
    assert [step for step, _ in curves["train/loss"]] == [1, 2, 3, 4]
    assert {"train/loss", "train/learning_rate", "train/mean_token_accuracy", "train/train_loss"} <= set(curves)
    # the same numbers as metrics.csv (TensorBoard keeps float32)
    assert same_points(curves["train/loss"], csv_column(tmp_path / "sft.csv", "loss"), rel=1e-6)

    pairs = tmp_path / "pairs.parquet"
    write_pairs(pairs, 6)  # 3 steps of 2
    adapter = tmp_path / "adapter"
    subprocess.run(train_cmd("dpo", pairs, model_dir, adapter, DPO)
                   + tracking_arg(tmp_path, stage_name("dpo", 2), {"tensorboard": True}),
                   check=True, capture_output=True)
    curves = scalars(tmp_path / "results/mine/tb/dpo_round2")
    for tag in ("train/loss", "train/rewards/margins", "train/rewards/accuracies"):
        assert [step for step, _ in curves[tag]] == [1, 2, 3], tag
    assert same_points(curves["train/rewards/margins"], csv_column(tmp_path / "dpo.csv", "rewards/margins"),
                       rel=1e-5, abs=1e-7)
    assert len(scalars(tmp_path / "results/mine/tb/sft")["train/loss"]) == 4  # each stage has its own folder
    assert not (tmp_path / "adapter.checkpoints").exists()


@pytest.mark.train
def test_no_tracking_reports_nowhere(model_dir, tmp_path):
    data = math_records(tmp_path / "data.jsonl", 4)
    off = {"tensorboard": False, "wandb": {"enabled": True, "mode": "disabled", "project": "p", "entity": None}}
    assert active(off) == []
    subprocess.run(train_cmd("sft", data, model_dir, tmp_path / "sft", TRAIN) + tracking_arg(tmp_path, "sft", off),
                   check=True, capture_output=True)
    assert not (tmp_path / "results").exists()
    assert not list(tmp_path.rglob("events.out.tfevents.*")) and not list(tmp_path.rglob("wandb"))


@pytest.mark.train
def test_killed_training_resumes_writing_to_the_same_event_folder_and_run(model_dir, tmp_path):
    pairs = tmp_path / "pairs.parquet"
    write_pairs(pairs, 240)  # 120 steps: long enough to be killed after a checkpoint
    out, ckpts = tmp_path / "adapter", tmp_path / "adapter.checkpoints"
    tb = tmp_path / "results/mine/tb/dpo"
    stale = tb / "events.out.tfevents.0000000001.old"  # a finished earlier run's: a fresh start clears it
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    cmd = train_cmd("dpo", pairs, model_dir, out, DPO) + tracking_arg(tmp_path, "dpo", {"tensorboard": True})
    first_log = tmp_path / "first.log"
    killed_at = kill_at_checkpoint(cmd, ckpts, "checkpoint-[1-9][0-9]", first_log)
    assert not stale.exists()
    logged_before = max(step for step, _ in scalars(tb)["train/loss"])
    assert logged_before >= killed_at

    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = re.search(r"tracking mine/dpo to tensorboard \(run (\w+)\)", first_log.read_text()).group(1)
    assert f"tracking mine/dpo to tensorboard (run {run}, resumed after step {killed_at})" in done.stderr, \
        done.stderr[-2000:]
    # the killed run's file, the restart marker, the resumed run's
    assert len(list(tb.glob("events.out.tfevents.*"))) == 3
    loss = scalars(tb)["train/loss"]
    # TensorBoard's reader drops what the killed run logged after its checkpoint, logged again on resume
    assert [step for step, _ in loss] == list(range(1, 121))
    assert same_points(loss, csv_column(tmp_path / "dpo.csv", "loss"), rel=1e-6)


def test_a_restart_marker_drops_what_the_killed_run_logged_after_its_checkpoint(tmp_path):
    def event_file(name: str, write) -> None:
        """What ``write(folder)`` writes, as the event file ``name`` of tmp_path/tb (names set the order)."""
        folder = tmp_path / name
        write(folder)
        (tmp_path / "tb").mkdir(exist_ok=True)
        next(folder.glob("events.out.tfevents.*")).rename(tmp_path / "tb" / f"events.out.tfevents.000000000{name}")

    def steps(values: dict[int, float]):
        def write(folder):
            sink = TensorBoardSink(folder)
            for step, value in values.items():
                sink.log({"train/loss": value}, step)
            sink.close()
        return write

    event_file("1", steps({step: 1.0 for step in range(1, 9)}))  # killed at step 8, its checkpoint at 5
    event_file("2", lambda folder: mark_restart(folder, 6))
    event_file("3", steps({step: 2.0 for step in range(6, 11)}))
    assert scalars(tmp_path / "tb")["train/loss"] == [(s, 1.0) for s in range(1, 6)] + [(s, 2.0) for s in range(6, 11)]


def test_a_fresh_training_starts_anew_and_a_resumed_one_keeps_its_place(tmp_path, monkeypatch):
    for var in TRACKER_ENV:
        monkeypatch.setenv(var, "")  # restored after the test
    monkeypatch.chdir(tmp_path)
    run = run_settings({"tensorboard": True, "wandb": {"enabled": WANDB, "mode": "offline", "project": "p"},
                        "swanlab": {"enabled": False, "mode": "offline", "project": "p"}}, "mine", "dpo")
    state = tmp_path / "adapter.checkpoints"
    Path(run["tensorboard_dir"]).mkdir(parents=True)
    (Path(run["tensorboard_dir"]) / "events.out.tfevents.1.old").write_bytes(b"")
    fresh = trainer_reporting(run, state, None)
    assert fresh == {"report_to": ["tensorboard", "wandb"] if WANDB else ["tensorboard"], "run_name": "mine/dpo"}
    assert not Path(run["tensorboard_dir"]).exists()
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "results/mine/tb/dpo")
    ids = json.loads((state / "tracking_runs.json").read_text())
    assert ids["wandb"].startswith("mine-dpo-")
    Path(run["tensorboard_dir"]).mkdir(parents=True)
    (Path(run["tensorboard_dir"]) / "events.out.tfevents.2.killed").write_bytes(b"")
    trainer_reporting(run, state, 10)
    assert (Path(run["tensorboard_dir"]) / "events.out.tfevents.2.killed").exists()
    assert json.loads((state / "tracking_runs.json").read_text()) == ids
    if WANDB:
        assert (os.environ["WANDB_RUN_ID"], os.environ["WANDB_RESUME"], os.environ["WANDB_MODE"]) == \
            (ids["wandb"], "allow", "offline")
        assert os.environ["WANDB_DIR"] == str(tmp_path / "results/mine")
    trainer_reporting(run, state, None)
    assert json.loads((state / "tracking_runs.json").read_text()) != ids  # a fresh start is a new run


# --- the evaluation -----------------------------------------------------------------------------

def variant(value: float, ci: list[float], extra: dict | None = None) -> dict:
    return {"n": 10, "metrics": {"pass@1": value, **(extra or {})}, "ci95": {"pass@1": ci}, "lower_is_better": []}


EVAL = {"experiments": {
    "mine": {"benchmarks": {"demo_math": {"base": variant(0.1, [0.0, 0.2]), "sft": variant(0.4, [0.2, 0.6]),
                                          "dpo": variant(0.5, [0.3, 0.7], {"per_task": {"math": 0.5}})}}},
    "rounds3": {"benchmarks": {"demo_math": {"base": variant(0.1, [0.0, 0.2]), "dpo": variant(0.3, [0.1, 0.5])}},
                "rounds": {"demo_math": {"pass@1": [
                    {"round": 0, "variant": "base", "value": 0.1, "ci95": [0.0, 0.2]},
                    {"round": 1, "variant": "dpo", "value": 0.3, "ci95": [0.1, 0.5],
                     "delta_vs_previous": 0.2, "delta_vs_previous_ci95": [0.1, 0.3]},
                    {"round": 2, "variant": "dpo", "value": 0.35, "ci95": [0.15, 0.55]},
                    {"round": 3, "variant": "dpo", "value": 0.45, "ci95": None}]}}},
}}


def test_round_curve_without_rounds_is_sft_then_dpo():
    assert round_curves(EVAL["experiments"]["mine"]) == {"demo_math": {
        "pass@1": [{"round": 0, "variant": "sft", "value": 0.4, "ci95": [0.2, 0.6]},
                   {"round": 1, "variant": "dpo", "value": 0.5, "ci95": [0.3, 0.7]}],
        "per_task": [{"round": 0, "variant": "sft", "value": None, "ci95": None},
                     {"round": 1, "variant": "dpo", "value": {"math": 0.5}, "ci95": None}]}}


def test_eval_metrics_and_round_curve_reach_tensorboard(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("results").mkdir()
    Path("results/eval.json").write_text(json.dumps(EVAL))
    tracking = {"tensorboard": True}
    done = log_eval("results/eval.json", "mine", run_settings(tracking, "mine", "eval"))
    curves = scalars(tmp_path / "results/mine/tb/eval")
    expected = {f"demo_math/pass@1/{v}": [(0, x)] for v, x in (("base", 0.1), ("sft", 0.4), ("dpo", 0.5))}
    expected.update({"demo_math/pass@1/sft/ci95_low": [(0, 0.2)], "demo_math/pass@1/sft/ci95_high": [(0, 0.6)],
                     "rounds/demo_math/pass@1": [(0, 0.4), (1, 0.5)],
                     "rounds/demo_math/pass@1/ci95_high": [(0, 0.6), (1, 0.7)]})
    for tag, points in expected.items():
        assert same_points(curves[tag], points), tag
    assert len(curves) == 12  # 3 variants x (value, low, high) + the curve x (value, low, high), nothing else
    assert done["skipped"] == ["demo_math/per_task/dpo", "rounds/demo_math/per_task@0", "rounds/demo_math/per_task@1"]
    assert done["trackers"] == ["tensorboard"] and done["run"] == "mine/eval"
    assert sum(len(s) for s in done["steps"].values()) == sum(len(p) for p in curves.values())

    log_eval("results/eval.json", "rounds3", run_settings(tracking, "rounds3", "eval"))
    curves = scalars(tmp_path / "results/rounds3/tb/eval")
    assert same_points(curves["rounds/demo_math/pass@1"], [(0, 0.1), (1, 0.3), (2, 0.35), (3, 0.45)])
    assert [step for step, _ in curves["rounds/demo_math/pass@1/ci95_low"]] == [0, 1, 2]  # round 3 has no interval
    # written anew: a rerun replaces the event file rather than adding to it
    log_eval("results/eval.json", "rounds3", run_settings(tracking, "rounds3", "eval"))
    assert len(list((tmp_path / "results/rounds3/tb/eval").glob("events.out.tfevents.*"))) == 1


# --- W&B offline, no network, no key in any file ------------------------------------------------

def wandb_records(run_file: Path) -> list:
    """The records of a W&B offline run file (a LevelDB-style log of wandb_internal_pb2.Record:
    a 7-byte header, then 32 KiB blocks of chunks with a 7-byte header: crc, length, type)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, chunk, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        chunk += data[pos:pos + length]
        pos += length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def wandb_history(run_file: Path) -> tuple[str, list[dict]]:
    """The display name of an offline run and its logged rows."""
    name, rows = None, []
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.display_name
        elif kind == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return name, rows


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request: a stand-in W&B server that no offline run may reach."""
    seen: list = []

    def _answer(self):
        Recorder.seen.append((self.command, self.path))
        self.send_response(503)
        self.end_headers()

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args):
        pass


@pytest.mark.skipif(not WANDB, reason="wandb is not installed")
@pytest.mark.train
def test_wandb_offline_needs_no_network_and_no_key_is_written(model_dir, workdir, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen = []
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    monkeypatch.setenv("SWANLAB_API_KEY", SWANLAB_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(workdir / "home" / name.lower()))  # grepped below, like the results
    tracking = {"tensorboard": True, "wandb": {"enabled": True, "mode": "offline", "project": "jb", "entity": None},
                "swanlab": {"enabled": False, "mode": "offline", "project": "jb"}}
    outputs = []
    try:
        # SFT, logging to TensorBoard and W&B
        data = math_records(workdir / "data.jsonl", 8)
        run = run_settings(tracking, "mine", "sft", root=str(workdir / "results"))
        sft = subprocess.run(train_cmd("sft", data, model_dir, workdir / "sft", TRAIN)
                             + ["--tracking", json.dumps(run)], capture_output=True, text=True, cwd=workdir)
        assert sft.returncode == 0, sft.stderr[-3000:]
        outputs += [sft.stdout, sft.stderr]
        # track_eval, run by Snakemake from a hand-built results/eval.json
        (workdir / "results/eval.json").write_text(json.dumps({"experiments": {"mine": EVAL["experiments"]["mine"]}}))
        (workdir / "user.yaml").write_text("tracking:\n  wandb: {enabled: true, project: jb}\n"
                                           "experiments:\n  mine: {}\n")
        proc = run_snakemake(workdir, "--configfile", "user.yaml", "--cores", "1", "--allowed-rules", "track_eval",
                             "--", layout.path("tracking", "done", exp="mine"))
        outputs += [proc.stdout, proc.stderr]
    finally:
        server.shutdown()
    assert Recorder.seen == [], "an offline run reached the network"

    sft_runs = list((workdir / "results/mine/wandb").glob("offline-run-*-mine-sft-*/*.wandb"))
    assert len(sft_runs) == 1
    name, rows = wandb_history(sft_runs[0])
    assert name == "mine/sft"
    assert [row["train/global_step"] for row in rows if "train/loss" in row] == [1, 2, 3, 4]
    done = json.loads((workdir / layout.path("tracking", "done", exp="mine")).read_text())
    assert done["trackers"] == ["tensorboard", "wandb"] and done["wandb"]["mode"] == "offline"
    eval_run = next((workdir / "results/mine/wandb").glob(f"offline-run-*-{done['wandb']['run_id']}/*.wandb"))
    name, rows = wandb_history(eval_run)
    assert name == "mine/eval"
    logged = {key: value for row in rows for key, value in row.items() if not key.startswith("_")}
    assert logged["demo_math/pass@1/dpo"] == 0.5 and logged["rounds/demo_math/pass@1/ci95_low"] == 0.3
    assert [row["_step"] for row in rows] == [0, 1]
    assert same_points(scalars(workdir / "results/mine/tb/eval")["demo_math/pass@1/sft"], [(0, 0.4)])

    # Neither key is in any file the runs wrote (results, logs, W&B's own folders) or in their output.
    files = [path for path in workdir.rglob("*") if path.is_file()]
    assert len(files) > 20
    for key in (WANDB_KEY, SWANLAB_KEY):
        for path in files:
            assert not key_prefixes_in(path.read_bytes().decode("latin-1"), key, shortest=12), path
        for text in outputs:
            assert not key_prefixes_in(text, key, shortest=12)


# --- config -------------------------------------------------------------------------------------

CONFIG_CASES = {
    "misspelt tracker": ("tracking:\n  tensorbord: true\n",
                         r"tracking: unknown key\(s\) \['tensorbord'\] \(did you mean 'tensorboard'\?\)"),
    "misspelt wandb key": ("tracking:\n  wandb: {enabeld: true}\n",
                           r"tracking\.wandb: unknown key\(s\) \['enabeld'\] \(did you mean 'enabled'\?\)"),
    "unknown swanlab mode": ("tracking:\n  swanlab: {enabled: true, mode: lokal}\n",
                             r"tracking\.swanlab\.mode: expected one of \['offline', 'local', 'cloud', 'online', "
                             r"'disabled'\], found 'lokal'"),
    "an api key in the config": ("tracking:\n  wandb: {enabled: true, api_key: abc}\n",
                                 r"tracking\.wandb: unknown key\(s\) \['api_key'\]"),
}
if not SWANLAB:
    CONFIG_CASES["swanlab not installed"] = (
        "tracking:\n  swanlab: {enabled: true}\n",
        r"tracking\.swanlab\.enabled: swanlab is not installed where this runs \(.*protobuf < 7.*\); install it or "
        r"turn tracking\.swanlab\.enabled off")


@pytest.mark.parametrize("name", list(CONFIG_CASES))
@pytest.mark.workflow
def test_tracking_mistake_stops_the_dry_run_naming_the_key(workdir, name):
    text, expected = CONFIG_CASES[name]
    (workdir / "user.yaml").write_text(text + "experiments:\n  mine: {}\n")
    proc = run_snakemake(workdir, "--configfile", "user.yaml", "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert re.search(expected, out), out[-3000:]
    assert "Job stats" not in out


@pytest.mark.workflow
def test_track_eval_is_a_default_target_only_with_a_tracker_on(workdir):
    (workdir / "user.yaml").write_text("tracking: {tensorboard: false}\nexperiments:\n  mine: {}\n")
    off = run_snakemake(workdir, "--configfile", "user.yaml", "-n")
    assert "tb/eval/done.json" not in off.stdout and layout.path("train", "adapter", exp="mine", round=1) in off.stdout
    (workdir / "user.yaml").write_text("experiments:\n  mine: {}\n")  # tensorboard is on by default
    on = run_snakemake(workdir, "--configfile", "user.yaml", "-n", "--printshellcmds")
    assert layout.path("tracking", "done", exp="mine") in on.stdout
    assert '"tensorboard_dir": "results/mine/tb/dpo"' in on.stdout and '"name": "mine/sft"' in on.stdout
