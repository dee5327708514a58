"""Running the real Data-Juicer (py-data-juicer) the way Juicebox promises.

Two Data-Juicer defaults are turned off here, always:

* ``skip_op_error: true`` skips an op that raises, which silently applies a different recipe than
  the one written. Juicebox runs with ``skip_op_error: false`` and fails naming the op.
* Its lazy loader installs missing packages at run time (with uv, then pip). That breaks offline
  cluster nodes and reproducibility, so installing is replaced by an ImportError that names the
  package to pin in ``requirements.txt`` / ``envs/``.

Data-Juicer sees a narrow view of each canonical record: ``id``, the text (under the recipe's
first ``text_keys``, ``text`` by default) and ``images``. The full records are joined back by id
after processing, so arbitrary ``meta`` never reaches Arrow's schema inference.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .io import read_yaml, write_jsonl

log = logging.getLogger("juicebox")

# Keys of a recipe that Juicebox sets itself for every run (the rest of the recipe is untouched).
MANAGED_KEYS = ("dataset_path", "export_path", "work_dir", "np", "skip_op_error", "use_cache",
                "open_monitor", "open_tracer", "auto_op_parallelism", "use_checkpoint", "executor_type")


class RuntimeInstallRefused(ImportError):
    """Raised instead of Data-Juicer installing a package while a job runs."""


def _refuse_install(cls, package_spec, pip_args=None):
    raise RuntimeInstallRefused(
        f"Data-Juicer wanted to install {package_spec!r} at run time; Juicebox does not allow that. "
        f"Pin the package in requirements.txt (and envs/datajuicer.yaml) and reinstall the environment.")


def import_data_juicer():
    """Import Data-Juicer with runtime package installation disabled; return the modules used."""
    from data_juicer.utils.lazy_loader import LazyLoader

    LazyLoader._install_package = classmethod(_refuse_install)
    from data_juicer.config import init_configs
    from data_juicer.core import Analyzer, DefaultExecutor
    from data_juicer.core.data.dj_dataset import NestedDataset
    from data_juicer.ops.base_op import OPERATORS

    return init_configs, Analyzer, DefaultExecutor, NestedDataset, OPERATORS


def op_signature(op: str) -> dict[str, tuple[Any, Any]]:
    """``{argument: (default, annotation)}`` of a Data-Juicer op's constructor."""
    *_, operators = import_data_juicer()
    if op not in operators.modules:
        raise ValueError(f"Data-Juicer has no op named {op!r}")
    params = inspect.signature(operators.modules[op].__init__).parameters
    return {name: (p.default if p.default is not inspect.Parameter.empty else None, p.annotation)
            for name, p in params.items() if name not in ("self", "args", "kwargs")}


def recipe_text_key(recipe_path: str) -> str:
    """The field Data-Juicer's text ops read: the recipe's first ``text_keys`` (default ``text``)."""
    keys = (read_yaml(recipe_path) or {}).get("text_keys", "text")
    return keys[0] if isinstance(keys, list) else keys


def prompt_text(record: dict) -> str:
    """The text Data-Juicer sees for a record: the prompt, or the chat messages' contents."""
    prompt = record["prompt"]
    return prompt if isinstance(prompt, str) else "\n".join(turn["content"] for turn in prompt)


def dj_view(records: list[dict], text_key: str) -> list[dict]:
    """The narrow records handed to Data-Juicer."""
    return [{"id": r["id"], text_key: prompt_text(r), "images": r.get("images") or []} for r in records]


def load_config(recipe_path: str, dataset_path: str, work_dir: str, np: int):
    """Data-Juicer's config for a recipe, with the managed keys set for a Juicebox job."""
    init_configs, *_ = import_data_juicer()
    export_path = os.path.join(work_dir, "export", "data.jsonl")
    args = ["--config", recipe_path, "--dataset_path", dataset_path, "--export_path", export_path,
            "--work_dir", work_dir, "--np", str(np), "--skip_op_error", "false", "--use_cache", "false",
            "--open_monitor", "false", "--open_tracer", "false", "--auto_op_parallelism", "false",
            "--use_checkpoint", "false", "--executor_type", "default"]
    cfg = init_configs(args=args)
    if cfg.skip_op_error:
        raise RuntimeError("Data-Juicer kept skip_op_error on; refusing to run a recipe that may skip ops")
    return cfg


@contextlib.contextmanager
def _scratch(parent: str):
    """A temporary Data-Juicer work dir, removed afterwards together with the log files that
    Data-Juicer's loguru setup writes there (their sinks are closed first; loguru would otherwise
    try to compress the deleted files at exit). Data-Juicer's messages keep going to stderr,
    which is the rule's log."""
    from loguru import logger

    Path(parent).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".dj-", dir=parent) as work:
        try:
            yield work
        finally:
            logger.remove()
            logger.add(sys.stderr, level="INFO")


def analyze(records: list[dict], recipe_path: str, scratch_parent: str, np: int) -> list[dict]:
    """Run the Data-Juicer Analyzer: per-record stats ``[{"id", "stats"}]`` in pool order."""
    _, Analyzer, *_ = import_data_juicer()
    text_key = recipe_text_key(recipe_path)
    with _scratch(scratch_parent) as work:
        data = os.path.join(work, "input.jsonl")
        write_jsonl(data, dj_view(records, text_key))
        analyzer = Analyzer(load_config(recipe_path, data, work, np))
        dataset = analyzer.run(skip_export=True)
        if "__dj__stats__" not in dataset.column_names:
            raise ValueError(f"{recipe_path}: the recipe has no filter op, so the Analyzer computed no stats")
        rows = dataset.select_columns(["id", "__dj__stats__"]).to_list()
    if [row["id"] for row in rows] != [r["id"] for r in records]:
        raise RuntimeError("Data-Juicer Analyzer changed the records' order or count")
    return [{"id": row["id"], "stats": row["__dj__stats__"]} for row in rows]


class OpFailed(RuntimeError):
    """A Data-Juicer op raised; the message names the op and its position in the recipe."""


def process(records: list[dict], recipe_path: str, scratch_parent: str, np: int) -> tuple[list[dict], list[dict]]:
    """Run Data-Juicer's DefaultExecutor; return (kept records, per-op counts in recipe order).

    Mappers' edits to the text are carried back into string prompts; chat prompts keep their
    messages (Data-Juicer then only decides whether they stay).
    """
    _, _, DefaultExecutor, NestedDataset, _ = import_data_juicer()
    text_key = recipe_text_key(recipe_path)
    counts: list[dict] = []

    class CountingDataset(NestedDataset):
        """Runs the executor's ops one at a time to record how many records each one drops."""

        def process(self, operators, **kwargs):
            dataset = self
            for index, op in enumerate(operators if isinstance(operators, list) else [operators]):
                before = len(dataset)
                try:
                    dataset = NestedDataset.process(dataset, [op], **kwargs)
                except Exception as err:
                    raise OpFailed(f"Data-Juicer op #{index} {op._name!r} failed: {type(err).__name__}: {err}") \
                        from err
                counts.append({"op": op._name, "in": before, "kept": len(dataset)})
                log.info("op %d %s: %d -> %d", index, op._name, before, len(dataset))
            return dataset

    with _scratch(scratch_parent) as work:
        data = os.path.join(work, "input.jsonl")
        write_jsonl(data, dj_view(records, text_key))
        executor = DefaultExecutor(load_config(recipe_path, data, work, np))
        if executor.cfg.op_fusion:
            raise ValueError(f"{recipe_path}: op_fusion merges ops, so per-op counts cannot be kept; turn it off")
        dataset = CountingDataset(executor.dataset_builder.load_dataset())
        result = executor.run(dataset=dataset, skip_export=True)
        rows = result.select_columns(["id", text_key]).to_list()
    by_id = {r["id"]: r for r in records}
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        record = dict(by_id[row["id"]])
        if isinstance(record["prompt"], str):
            record["prompt"] = row[text_key]
        # A mapper that splits a record (e.g. into sentences) yields several rows with one id.
        seen[row["id"]] = seen.get(row["id"], 0) + 1
        if seen[row["id"]] > 1:
            record["id"] = f"{row['id']}#s{seen[row['id']] - 1}"
        kept.append(record)
    return kept, counts
