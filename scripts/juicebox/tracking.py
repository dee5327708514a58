"""Experiment tracking: TensorBoard event files, Weights & Biases and SwanLab runs.

The top-level ``tracking:`` block of the config says which trackers are on. Two things log to them:

- the SFT and DPO trainings, through TRL's (the Trainer's) ``report_to``: :func:`run_settings` is
  what a training rule passes to ``scripts/train.py --tracking`` (where each tracker writes, the
  run name ``<exp>/<stage>``), and :func:`trainer_reporting` turns it into the Trainer's
  ``report_to`` and ``run_name`` and the environment its callbacks read (TENSORBOARD_LOGGING_DIR,
  WANDB_*, SWANLAB_*). A fresh training starts its event folder and runs anew; one resumed from
  its checkpoint goes on writing to the same folder and the same run ids (kept in the checkpoint
  folder, which lives exactly as long as a resume is possible). The steps a killed run logged
  after its last checkpoint are logged again on resume: a SessionLog START event at the first
  resumed step (TensorFlow's restart marker) makes TensorBoard's reader drop the stale ones.
- rule track_eval, after results/eval.json: :func:`eval_scalars` flattens an experiment's entry
  (every numeric benchmark metric of every variant, with its 95 % interval, and the curve over
  DPO rounds with step = round) and :func:`log_eval` writes it to every tracker on, returning
  what it logged (results/{exp}/tb/eval/done.json).

Nothing here needs network unless a mode says so (wandb ``online``, swanlab ``cloud``). The API
keys are read by the libraries themselves from the environment (WANDB_API_KEY, SWANLAB_API_KEY);
Juicebox never reads, passes or writes them, and the config schema has no key for them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import secrets
import shutil
from pathlib import Path

from .io import read_json, write_json
from .spec import ConfigError

log = logging.getLogger("juicebox")

TRACKERS = ("tensorboard", "wandb", "swanlab")
# Packages each tracker needs where the jobs run; a hint for installing each.
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "swanlab": "swanlab"}
INSTALL_HINTS = {
    "tensorboard": "pip install tensorboard (pinned in requirements.txt)",
    "wandb": "pip install wandb (pinned in requirements.txt)",
    "swanlab": "pip install swanlab, in an environment of its own: swanlab 0.10 needs protobuf < 7, "
               "which the pins of requirements.txt/constraints.txt exclude",
}
# The mode names of the config as each library's init() takes them.
SWANLAB_MODES = {"offline": "offline", "local": "local", "cloud": "online", "online": "online", "disabled": "disabled"}
RUN_IDS = "tracking_runs.json"


# --- which trackers, and where they write -------------------------------------------------------

def active(tracking: dict | None) -> list[str]:
    """The trackers that log, in the order of TRACKERS: ``tensorboard`` when true; ``wandb`` and
    ``swanlab`` when enabled with a mode other than ``disabled`` (which logs nothing)."""
    tracking = tracking or {}
    on = ["tensorboard"] if tracking.get("tensorboard") else []
    for name in ("wandb", "swanlab"):
        block = tracking.get(name) or {}
        if block.get("enabled") and block.get("mode") != "disabled":
            on.append(name)
    return on


def missing_packages(tracking: dict | None) -> list[str]:
    """The packages of the active trackers that cannot be imported here (``swanlab`` in ``local``
    mode also needs ``swanboard``, SwanLab's dashboard)."""
    needed = [PACKAGES[name] for name in active(tracking)]
    if "swanlab" in needed and (tracking or {}).get("swanlab", {}).get("mode") == "local":
        needed.append("swanboard")
    return [package for package in needed if importlib.util.find_spec(package) is None]


def check_installed(tracking: dict | None, where: str = "tracking") -> None:
    """Raise ``ConfigError`` naming the key that turned a tracker on whose package is missing."""
    for package in missing_packages(tracking):
        if package == "swanboard":
            raise ConfigError(f"{where}.swanlab.mode: 'local' needs SwanLab's dashboard, which is not installed "
                              "(pip install 'swanlab[dashboard]'); mode 'offline' writes the same runs without it")
        key = "tensorboard" if package == "tensorboard" else f"{package}.enabled"
        raise ConfigError(f"{where}.{key}: {package} is not installed where this runs ({INSTALL_HINTS[package]}); "
                          f"install it or turn {where}.{key} off")


def require(run: dict) -> None:
    """:func:`check_installed` for the trackers of ``run`` (:func:`run_settings`), where a job runs."""
    trackers = run.get("trackers") or []
    check_installed({"tensorboard": "tensorboard" in trackers,
                     **{name: {**run[name], "enabled": name in trackers} for name in ("wandb", "swanlab")}},
                    where="tracking")


def stage_name(stage: str, round_: int | str = 1) -> str:
    """The tracking name of a training stage: ``sft``, ``dpo`` (round 1) or ``dpo_round<r>``."""
    return stage if stage != "dpo" or int(round_) == 1 else f"dpo_round{int(round_)}"


def run_settings(tracking: dict | None, exp: str, stage: str, root: str = "results") -> dict:
    """Where one stage of an experiment logs (``stage``: sft, dpo, dpo_round<r>, eval): the active
    ``trackers``, the run ``name`` (``<exp>/<stage>``), the TensorBoard folder
    ``<root>/<exp>/tb/<stage>``, and the wandb and swanlab settings with their folders
    (``<root>/<exp>``, under which wandb makes ``wandb/``; ``<root>/<exp>/swanlab``).
    JSON-ready: the training rules pass it to ``scripts/train.py --tracking``."""
    tracking = tracking or {}
    folder = f"{root}/{exp}"
    return {
        "trackers": active(tracking), "experiment": exp, "stage": stage, "name": f"{exp}/{stage}",
        "tensorboard_dir": f"{folder}/tb/{stage}",
        "wandb": {**(tracking.get("wandb") or {}), "dir": folder},
        "swanlab": {**(tracking.get("swanlab") or {}), "dir": f"{folder}/swanlab"},
    }


def _is_main_process() -> bool:
    """Whether this is the process of rank 0 (or the only one): the one that writes the logs."""
    return int(os.environ.get("RANK", "0")) == 0


def mark_restart(folder: str | Path, step: int) -> None:
    """Write a SessionLog START event at ``step`` to a new event file in ``folder``: TensorBoard's
    reader then drops the events of earlier files at ``step`` and later (what a killed run logged
    after the checkpoint the training resumes from, which the resumed run logs again)."""
    import time

    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                     session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
    writer.close()


def _run_ids(run: dict, state_dir: Path, resume: bool) -> dict:
    """The wandb and swanlab run ids of a training: those kept in ``state_dir`` when it resumes,
    else new ones (kept there for a later resume)."""
    path = state_dir / RUN_IDS
    if resume and path.is_file():
        return read_json(path)
    token = secrets.token_hex(4)
    ids = {name: f"{run['experiment']}-{run['stage']}-{token}" for name in ("wandb", "swanlab")}
    if _is_main_process():
        write_json(path, ids)
    return ids


def trainer_reporting(run: dict | None, state_dir: str | Path, resumed_at: int | None) -> dict:
    """The Trainer's ``report_to`` and ``run_name`` for ``run`` (:func:`run_settings`), with the
    environment its tracker callbacks read set in this process.

    A fresh training (``resumed_at`` None) clears its TensorBoard folder and takes new run ids; one
    resuming from the checkpoint of step ``resumed_at`` keeps both, and marks its restart in the
    event folder (:func:`mark_restart`). ``state_dir`` is the training's checkpoint folder.
    """
    trackers = (run or {}).get("trackers") or []
    if not trackers:
        return {"report_to": []}
    require(run)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    resume = resumed_at is not None
    ids = _run_ids(run, state_dir, resume)
    if "tensorboard" in trackers and _is_main_process():
        if resume:
            mark_restart(run["tensorboard_dir"], resumed_at + 1)
        else:
            shutil.rmtree(run["tensorboard_dir"], ignore_errors=True)
    if "tensorboard" in trackers:
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(run["tensorboard_dir"]).absolute())
    if "wandb" in trackers:
        wandb = run["wandb"]
        Path(wandb["dir"]).mkdir(parents=True, exist_ok=True)
        os.environ.update({"WANDB_MODE": wandb["mode"], "WANDB_DIR": str(Path(wandb["dir"]).absolute()),
                           "WANDB_PROJECT": wandb["project"], "WANDB_RUN_ID": ids["wandb"], "WANDB_RESUME": "allow"})
        if wandb.get("entity"):
            os.environ["WANDB_ENTITY"] = wandb["entity"]
    if "swanlab" in trackers:
        swanlab = run["swanlab"]
        os.environ.update({"SWANLAB_MODE": SWANLAB_MODES[swanlab["mode"]],
                           "SWANLAB_LOG_DIR": str(Path(swanlab["dir"]).absolute()),
                           "SWANLAB_PROJECT": swanlab["project"], "SWANLAB_RUN_ID": ids["swanlab"],
                           "SWANLAB_RESUME": "allow"})
    log.info("tracking %s to %s (run %s%s)", run["name"], ", ".join(trackers), ids["wandb"].rsplit("-", 1)[1],
             f", resumed after step {resumed_at}" if resume else "")
    return {"report_to": list(trackers), "run_name": run["name"]}


# --- the evaluation: results/eval.json to the trackers ----------------------------------------

def _number(value) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _with_ci(tag: str, value, ci) -> dict[str, float]:
    """``{tag: value}`` and, when the interval is there, ``{tag}/ci95_low`` and ``{tag}/ci95_high``."""
    out = {tag: _number(value)}
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(v) is not None for v in ci):
        out[f"{tag}/ci95_low"], out[f"{tag}/ci95_high"] = float(ci[0]), float(ci[1])
    return out


def round_curves(entry: dict) -> dict:
    """Per benchmark and metric, the curve over DPO rounds of an experiment's eval.json entry: its
    ``rounds`` section when it has one; else round 0 = the policy before DPO (``sft``, else
    ``base``) and round 1 = ``dpo``, from its ``benchmarks``."""
    if entry.get("rounds"):
        return entry["rounds"]
    curves: dict = {}
    for bench, variants in (entry.get("benchmarks") or {}).items():
        before = "sft" if "sft" in variants else "base"
        if before not in variants or "dpo" not in variants:
            continue
        for metric in variants["dpo"].get("metrics", {}):
            curves.setdefault(bench, {})[metric] = [
                {"round": r, "variant": v, "value": variants[v]["metrics"].get(metric),
                 "ci95": (variants[v].get("ci95") or {}).get(metric)}
                for r, v in ((0, before), (1, "dpo"))]
    return curves


def eval_scalars(entry: dict) -> tuple[dict[int, dict[str, float]], list[str]]:
    """The scalars an experiment's eval.json entry logs, by step, and the metrics left out.

    Step 0: ``<bench>/<metric>/<variant>`` for every numeric metric of every variant (with
    ``/ci95_low`` and ``/ci95_high``). Step r: ``rounds/<bench>/<metric>``, the curve over DPO
    rounds (:func:`round_curves`), with its interval. Non-numeric metrics (and missing values)
    are listed as ``<bench>/<metric>/<variant>`` (or ``rounds/...@<round>``) in the second value.
    """
    steps: dict[int, dict[str, float]] = {}
    skipped = []
    for bench, variants in sorted((entry.get("benchmarks") or {}).items()):
        for variant, result in sorted(variants.items()):
            for metric, value in sorted((result.get("metrics") or {}).items()):
                tag = f"{bench}/{metric}/{variant}"
                scalars = _with_ci(tag, value, (result.get("ci95") or {}).get(metric))
                if scalars[tag] is None:
                    skipped.append(tag)
                    continue
                steps.setdefault(0, {}).update(scalars)
    for bench, metrics in sorted(round_curves(entry).items()):
        for metric, points in sorted(metrics.items()):
            for point in points:
                tag = f"rounds/{bench}/{metric}"
                scalars = _with_ci(tag, point.get("value"), point.get("ci95"))
                if scalars[tag] is None:
                    skipped.append(f"{tag}@{point['round']}")
                    continue
                steps.setdefault(int(point["round"]), {}).update(scalars)
    return dict(sorted(steps.items())), skipped


class TensorBoardSink:
    """Scalars to a TensorBoard event file in ``folder`` (tensorboard's own writer; the scalars are
    the simple values TensorBoard's scalar dashboard and EventAccumulator read)."""

    def __init__(self, folder: str | Path):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._writer = EventFileWriter(str(folder))

    def log(self, scalars: dict[str, float], step: int) -> None:
        import time

        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)
                                             for tag, value in scalars.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """Scalars to a W&B run (mode, project, entity of the config; files under ``dir``/wandb)."""

    def __init__(self, settings: dict, name: str, run_id: str):
        import wandb

        Path(settings["dir"]).mkdir(parents=True, exist_ok=True)
        # The process-wide mode too: with only the run's, wandb 0.31 still posts its own telemetry
        # (OpenTelemetry metrics) to the W&B server from an offline run.
        wandb.setup(wandb.Settings(mode=settings["mode"]))
        self._run = wandb.init(mode=settings["mode"], dir=settings["dir"], project=settings["project"],
                               entity=settings.get("entity"), name=name, id=run_id, resume="allow", job_type="eval")

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


class SwanLabSink:
    """Scalars to a SwanLab run (mode and project of the config; files under ``dir``)."""

    def __init__(self, settings: dict, name: str, run_id: str):
        import swanlab

        self._swanlab = swanlab
        self._run = swanlab.init(mode=SWANLAB_MODES[settings["mode"]], log_dir=settings["dir"],
                                 project=settings["project"], name=name, id=run_id, resume="allow",
                                 job_type="eval", reinit=True)

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()


def log_eval(eval_json: str | Path, exp: str, run: dict) -> dict:
    """Log experiment ``exp``'s entry of ``eval_json`` to the trackers of ``run``
    (:func:`run_settings` with stage ``eval``); returns what was logged (done.json).

    The TensorBoard folder is written anew. The wandb and swanlab run ids are
    ``<exp>-eval-<digest of eval.json>``: the same results make the same run (which a rerun
    resumes rather than doubles), other results a new one.
    """
    trackers = run.get("trackers") or []
    require(run)
    document = read_json(eval_json)
    if exp not in document.get("experiments", {}):
        raise ValueError(f"{eval_json}: no experiment {exp!r} (it has: {', '.join(document.get('experiments', {}))})")
    steps, skipped = eval_scalars(document["experiments"][exp])
    digest = hashlib.sha256(Path(eval_json).read_bytes()).hexdigest()[:8]
    run_id = f"{exp}-eval-{digest}"
    sinks, where = [], {}
    try:
        if "tensorboard" in trackers:
            shutil.rmtree(run["tensorboard_dir"], ignore_errors=True)
            sinks.append(TensorBoardSink(run["tensorboard_dir"]))
            where["tensorboard"] = run["tensorboard_dir"]
        if "wandb" in trackers:
            sinks.append(WandbSink(run["wandb"], run["name"], run_id))
            where["wandb"] = {"dir": f"{run['wandb']['dir']}/wandb", "mode": run["wandb"]["mode"],
                              "project": run["wandb"]["project"], "run_id": run_id}
        if "swanlab" in trackers:
            sinks.append(SwanLabSink(run["swanlab"], run["name"], run_id))
            where["swanlab"] = {"dir": run["swanlab"]["dir"], "mode": run["swanlab"]["mode"],
                                "project": run["swanlab"]["project"], "run_id": run_id}
        for step, scalars in steps.items():
            for sink in sinks:
                sink.log(scalars, step)
    finally:
        for sink in sinks:
            sink.close()
    logged = sum(len(scalars) for scalars in steps.values())
    log.info("%s: %d scalar(s) over %d step(s) to %s%s", run["name"], logged, len(steps), ", ".join(trackers),
             f"; left out (not numbers): {', '.join(skipped)}" if skipped else "")
    return {"experiment": exp, "run": run["name"], "trackers": trackers, "eval_json_sha256": digest, **where,
            "steps": {str(step): scalars for step, scalars in steps.items()}, "skipped": skipped}
