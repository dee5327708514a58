"""Running the real Data-Juicer (py-data-juicer) the way Juicebox promises.

Two Data-Juicer defaults are turned off here, always:

* ``skip_op_error: true`` skips an op that raises, which silently applies a different recipe than
  the one written. Juicebox runs with ``skip_op_error: false`` and fails naming the op.
* Its lazy loader installs missing packages at run time (with uv, then pip). That breaks offline
  cluster nodes and reproducibility, so installing is replaced by an ImportError that names the
  package to pin in ``requirements.txt`` / ``envs/``.

Processing runs on Data-Juicer's ``DefaultExecutor`` or, with ``dj.executor: ray``, on its
``RayExecutor`` (ops one at a time, each op's output materialized in Ray's object store to count
it). The Analyzer (probe) always runs on the default executor.

Data-Juicer sees a narrow view of each canonical record: ``id``, the text (under the recipe's
first ``text_keys``, ``text`` by default) and ``images`` (absolute paths: the pool holds image
files only, inline images having been written to the pool's image store). The full records are
joined back by id after processing, so arbitrary ``meta`` never reaches Arrow's schema inference.

A recipe may hold Juicebox's ``model_stat_filter`` entries (bounds on model stats, see
:mod:`juicebox.ksigma`); Data-Juicer gets the recipe without them (:func:`dj_recipe`), written
to the job's scratch folder, and the Analyzer and executor never see them.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import read_yaml, write_jsonl, write_yaml
from .ksigma import split_recipe
from .ledger import stage
from .records import prompt_text, record_images
from .registry import Registry
from .spec import Options, option

log = logging.getLogger("juicebox")

# Keys of a recipe that Juicebox sets itself for every run (the rest of the recipe is untouched).
MANAGED_KEYS = ("dataset_path", "export_path", "work_dir", "np", "skip_op_error", "use_cache",
                "open_monitor", "open_tracer", "auto_op_parallelism", "use_checkpoint", "executor_type",
                "ray_address", "min_common_dep_num_to_combine")

# Data-Juicer executors Juicebox runs a recipe with (the experiment's ``dj.executor``).


class RuntimeInstallRefused(ImportError):
    """Raised instead of Data-Juicer installing a package while a job runs."""


INSTALL_REFUSED = ("Data-Juicer wanted to install {!r} at run time; Juicebox does not allow that. "
                   "Pin the package in requirements.txt (and envs/datajuicer.yaml) and reinstall the environment.")


def _refuse_install(cls, package_spec, pip_args=None):
    raise RuntimeInstallRefused(INSTALL_REFUSED.format(package_spec))


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


def dj_recipe(recipe_path: str, work: str) -> str:
    """The recipe file Data-Juicer runs: ``recipe_path`` itself, or, when it holds
    ``model_stat_filter`` entries, a copy without them in ``work``."""
    recipe = read_yaml(recipe_path) or {}
    dj_only, filters = split_recipe(recipe)
    if not filters:
        return recipe_path
    path = os.path.join(work, "recipe.dj.yaml")
    write_yaml(path, dj_only)
    return path


def dj_view(records: list[dict], text_key: str) -> list[dict]:
    """The narrow records handed to Data-Juicer. Image paths are made absolute: Data-Juicer joins a
    relative one to the dataset file's folder (the scratch work dir), and Ray workers run elsewhere."""
    return [{"id": r["id"], text_key: prompt_text(r["prompt"]),
             "images": [os.path.abspath(image) for image in record_images(r)]} for r in records]


def load_config(recipe_path: str, dataset_path: str, work_dir: str, np: int, executor: str = "default",
                ray_address: str = "auto"):
    """Data-Juicer's config for a recipe, with the managed keys set for a Juicebox job."""
    init_configs, *_ = import_data_juicer()
    export_path = os.path.join(work_dir, "export", "data.jsonl")
    args = ["--config", recipe_path, "--dataset_path", dataset_path, "--export_path", export_path,
            "--work_dir", work_dir, "--np", str(np), "--skip_op_error", "false", "--use_cache", "false",
            "--open_monitor", "false", "--open_tracer", "false", "--auto_op_parallelism", "false",
            "--use_checkpoint", "false", "--executor_type", executor, "--ray_address", ray_address,
            "--min_common_dep_num_to_combine", "-1"]
    cfg = init_configs(args=args)
    if cfg.skip_op_error:
        raise RuntimeError("Data-Juicer kept skip_op_error on; refusing to run a recipe that may skip ops")
    return cfg


@contextlib.contextmanager
def _scratch(parent: str):
    """A temporary Data-Juicer work dir, removed afterwards together with the log files that
    Data-Juicer's loguru setup writes there (their sinks are closed first; loguru would otherwise
    try to compress the deleted files at exit). Data-Juicer's messages keep going to stderr,
    which is the rule's log. The default executor's setup also points sys.stdout/sys.stderr at
    loguru; they are put back, else a later loguru message (a second run in the same process)
    would write to loguru through its own sink and recurse."""
    from loguru import logger

    Path(parent).mkdir(parents=True, exist_ok=True)
    stdout, stderr = sys.stdout, sys.stderr
    # Absolute, so that Ray workers (another working directory, maybe another node) find the files.
    with tempfile.TemporaryDirectory(prefix=".dj-", dir=os.path.abspath(parent)) as work:
        try:
            yield work
        finally:
            logger.remove()
            sys.stdout, sys.stderr = stdout, stderr
            logger.add(sys.stderr, level="INFO")


def analyze(records: list[dict], recipe_path: str, scratch_parent: str, np: int) -> list[dict]:
    """Run the Data-Juicer Analyzer: per-record stats ``[{"id", "stats"}]`` in pool order.

    The Analyzer runs on the default executor, also for experiments processed on Ray; ops that
    only run on Ray (the ``ray_*`` deduplicators, which compute no stats to bound) are left out."""
    _, Analyzer, *_, operators = import_data_juicer()
    text_key = recipe_text_key(recipe_path)
    with _scratch(scratch_parent) as work:
        data = os.path.join(work, "input.jsonl")
        write_jsonl(data, dj_view(records, text_key))
        cfg = load_config(dj_recipe(recipe_path, work), data, work, np)
        cfg.process = [op for op in cfg.process
                       if all("default" in operators.modules[name]._supported_exec_modes for name in op)]
        analyzer = Analyzer(cfg)
        dataset = analyzer.run(skip_export=True)
        if "__dj__stats__" not in dataset.column_names:
            raise ValueError(f"{recipe_path}: the recipe has no filter op, so the Analyzer computed no stats")
        rows = dataset.select_columns(["id", "__dj__stats__"]).to_list()
    if [row["id"] for row in rows] != [r["id"] for r in records]:
        raise RuntimeError("Data-Juicer Analyzer changed the records' order or count")
    return [{"id": row["id"], "stats": row["__dj__stats__"]} for row in rows]


class OpFailed(RuntimeError):
    """A Data-Juicer op raised; the message names the op and its position in the recipe."""


def _counted(dataset, operators, counts: list[dict], run_op, size):
    """Run ``operators`` one at a time with ``run_op(dataset, op)``, appending each op's in/kept
    counts (``size(dataset)`` before and after) to ``counts``; an op that raises fails naming it."""
    for index, op in enumerate(operators if isinstance(operators, list) else [operators]):
        try:
            before = size(dataset)
            dataset = run_op(dataset, op)
            after = size(dataset)
        except Exception as err:
            raise OpFailed(f"Data-Juicer op #{index} {op._name!r} failed: {type(err).__name__}: {err}") from err
        counts.append({"op": op._name, "in": before, "kept": after})
        log.info("op %d %s: %d -> %d", index, op._name, before, after)
    return dataset


def _processing_config(recipe_path: str, data: str, work: str, np: int, executor: str, ray_address: str):
    cfg = load_config(recipe_path, data, work, np, executor, ray_address)
    if cfg.op_fusion:
        raise ValueError(f"{recipe_path}: op_fusion merges ops, so per-op counts cannot be kept; turn it off")
    return cfg


def _run_default(recipe_path: str, data: str, work: str, np: int, counts: list[dict], text_key: str) -> list[dict]:
    """The recipe on Data-Juicer's DefaultExecutor; the kept rows' ids and texts, in order."""
    _, _, DefaultExecutor, NestedDataset, _ = import_data_juicer()

    class CountingDataset(NestedDataset):
        def process(self, operators, **kwargs):
            return _counted(self, operators, counts, lambda d, op: NestedDataset.process(d, [op], **kwargs), len)

    executor = DefaultExecutor(_processing_config(recipe_path, data, work, np, "default", "auto"))
    result = executor.run(dataset=CountingDataset(executor.dataset_builder.load_dataset()), skip_export=True)
    return result.select_columns(["id", text_key]).to_list()


def _run_ray(recipe_path: str, data: str, work: str, np: int, ray_address: str, counts: list[dict],
             text_key: str) -> list[dict]:
    """The recipe on Data-Juicer's RayExecutor, connected to the Ray cluster at ``ray_address``
    (``local``: a private Ray with ``np`` CPUs, started for this run and stopped after it); the
    kept rows' ids and texts, in order (Ray Data's block order is preserved)."""
    *_, operators = import_data_juicer()
    recipe = read_yaml(recipe_path) or {}
    ops = [(name, args or {}) for op in recipe.get("process") or [] for name, args in op.items()]
    # (ops from the recipe's custom_operator_paths are registered later, by the config step)
    not_on_ray = [name for name, _ in ops
                  if name in operators.modules and "ray" not in operators.modules[name]._supported_exec_modes]
    if not_on_ray:
        raise ValueError(f"{recipe_path}: op(s) {not_on_ray} do not run on Data-Juicer's Ray executor; use their "
                         f"ray_* counterparts (e.g. ray_document_deduplicator, ray_bts_minhash_deduplicator) "
                         f"or dj.executor: default")
    installing = [name for name, args in ops if {"pip", "uv", "conda"} & set(args.get("runtime_env") or {})]
    if installing:
        raise ValueError(f"{recipe_path}: op(s) {installing} have a runtime_env that installs packages on the Ray "
                         f"workers at run time; Juicebox does not allow that (pin them in the environment instead)")
    import ray
    from data_juicer.core.data.dataset_builder import DatasetBuilder
    from data_juicer.core.data.ray_dataset import RayDataset
    from data_juicer.core.executor.ray_executor import RayExecutor
    from data_juicer.utils.constant import RAY_JOB_ENV_VAR
    from data_juicer.utils.mm_utils import SPECIAL_TOKEN_ENV_PREFIX

    def refuse_installs():
        """Every Ray worker's setup hook. Nested, so that Ray ships it by value (juicebox is not
        importable on the workers)."""
        from data_juicer.utils.lazy_loader import LazyLoader

        def refuse(cls, package_spec, pip_args=None):
            raise ImportError(INSTALL_REFUSED.format(package_spec))

        LazyLoader._install_package = classmethod(refuse)

    class CountingRayDataset(RayDataset):
        def process(self, operators, **kwargs):
            def run_op(dataset, op):
                RayDataset.process(dataset, [op], **kwargs)
                dataset.data = dataset.data.materialize()  # Ray Data is lazy: run the op to count it
                return dataset

            return _counted(self, operators, counts, run_op, lambda d: d.data.count())

    class CountingDatasetBuilder(DatasetBuilder):
        def load_dataset(self, **kwargs):
            return CountingRayDataset(super().load_dataset(**kwargs).data, cfg=self.cfg)

    # Juicebox connects to Ray itself, before Data-Juicer's config step would (Data-Juicer's own
    # ray.init then finds Ray connected), to give every worker the install refusal. The runtime env
    # is otherwise Data-Juicer's: RAY_JOB=1 (which ops read; the config step also sets it in this
    # process, restored below), its special-token variables and the recipe's custom_operator_paths.
    runtime_env = {"env_vars": {RAY_JOB_ENV_VAR: "1", **{k: v for k, v in os.environ.items()
                                                         if k.startswith(SPECIAL_TOKEN_ENV_PREFIX)}},
                   "py_modules": recipe.get("custom_operator_paths") or None,
                   "worker_process_setup_hook": refuse_installs}
    ray_job = os.environ.get(RAY_JOB_ENV_VAR)
    local = {"num_cpus": np, "include_dashboard": False} if ray_address == "local" else {}
    ray.init(address=ray_address, runtime_env=runtime_env, **local)
    try:
        cfg = _processing_config(recipe_path, data, work, np, "ray", ray_address)
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        executor = RayExecutor(cfg)
        executor.datasetbuilder = CountingDatasetBuilder(cfg, executor_type="ray")
        result = executor.run(skip_export=True)
        return result.data.select_columns(["id", text_key]).take_all()
    finally:
        ray.shutdown()  # stops a local Ray; only disconnects from a cluster
        if ray_job is None:
            os.environ.pop(RAY_JOB_ENV_VAR, None)
        else:
            os.environ[RAY_JOB_ENV_VAR] = ray_job


DJ_EXECUTORS = Registry("Data-Juicer executor", key="executor", default="default")


@dataclass(frozen=True)
class DefaultExecutorOptions(Options):
    """default keys."""

    np: int = option(2, "Data-Juicer worker processes (also the rule's threads).", minimum=1)


@DJ_EXECUTORS.register("default")
class DefaultExecutorRun:
    """Data-Juicer's DefaultExecutor: ``np`` processes inside the job."""

    Options = DefaultExecutorOptions

    def __init__(self, options: DefaultExecutorOptions) -> None:
        self.options = options

    def rows(self, recipe_path: str, data: str, work: str, counts: list[dict], text_key: str) -> list[dict]:
        """The kept rows' ids and texts, in order; ``counts`` gets each op's in/kept."""
        return _run_default(recipe_path, data, work, self.options.np, counts, text_key)


@DJ_EXECUTORS.register("ray")
class RayExecutorRun(DefaultExecutorRun):
    """Data-Juicer's RayExecutor on the Ray cluster at ``ray_address`` (every op must support Ray)."""

    @dataclass(frozen=True)
    class Options(DefaultExecutorOptions):
        """ray keys."""

        ray_address: str = option("auto", "auto (the running cluster: RAY_ADDRESS, else the one `ray start` began "
                                  "on this node), local (a private Ray with np CPUs, started and stopped inside "
                                  "the job) or a head's address host:port.")

    def rows(self, recipe_path: str, data: str, work: str, counts: list[dict], text_key: str) -> list[dict]:
        """The kept rows' ids and texts, in order (Ray Data's block order is preserved)."""
        return _run_ray(recipe_path, data, work, self.options.np, self.options.ray_address, counts, text_key)


def process_stage(n_in: int, n_kept: int, counts: list[dict]) -> dict:
    """The ledger's process stage from per-op counts (``{"op", "in", "kept"}`` in order): each op
    named by itself, or ``<op>#<position>`` when the recipe runs it twice; an op that splits
    records counts under ``added``, any other under ``dropped``."""
    names = [c["op"] for c in counts]
    dropped, added = {}, {}
    for index, c in enumerate(counts):
        name = c["op"] if names.count(c["op"]) == 1 else f"{c['op']}#{index}"
        if c["kept"] > c["in"]:
            added[name] = c["kept"] - c["in"]
        else:
            dropped[name] = c["in"] - c["kept"]
    return stage(n_in, n_kept, dropped, added=added)


def process(records: list[dict], recipe_path: str, scratch_parent: str,
            executor: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Run the recipe on the Data-Juicer executor the ``dj:`` block ``executor`` names (default:
    DefaultExecutor with np 2); return (kept records, per-op counts in recipe order).

    Mappers' edits to the text are carried back into string prompts; chat prompts keep their
    messages (Data-Juicer then only decides whether they stay).
    """
    run = DJ_EXECUTORS.build(executor or {}, "dj")
    text_key = recipe_text_key(recipe_path)
    counts: list[dict] = []
    with _scratch(scratch_parent) as work:
        data = os.path.join(work, "input.jsonl")
        write_jsonl(data, dj_view(records, text_key))
        rows = run.rows(dj_recipe(recipe_path, work), data, work, counts, text_key)
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
