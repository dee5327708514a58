"""Config validation and experiment resolution, before any job runs.

Four layers, each naming a bad key by its dotted path:

1. **Files.** Every config file is read with a loader that refuses a key given twice in one
   mapping (naming the file and line). A user's ``--configfile`` that defines ``experiments``
   replaces the demo's experiments instead of being merged into them (``compose``).
2. **Layout.** The plain keys are checked against ``config/config.schema.yaml`` (types, bounds,
   unknown keys; :mod:`juicebox.schema`), which is generated from their typed options
   (:mod:`juicebox.options`); a string that spells a number (YAML 1.1 reads ``5e-4`` as a
   string) or a boolean is read as one where the schema wants one (:func:`juicebox.spec.from_string`).
3. **Parts.** Every block chosen by ``type:`` (engines, rewards, pairing, benchmarks; ``op:`` for
   pool steps; ``executor:`` for Data-Juicer) is checked against its registered class's typed
   ``Options`` and spelled out with every default (:mod:`juicebox.spec`, :mod:`juicebox.registry`).
4. **Rules across keys.** Each resolved experiment is read as its typed options
   (:class:`juicebox.options.ExperimentOptions`), whose blocks check the rules across their keys
   (a launcher for several GPUs, sampling an engine can honour, feedback filters, ...); then the
   rules across experiments (feedback ``from``, the ranked benchmark).

Each experiment is the config's ``defaults`` with the experiment's own keys laid over them
(mappings merge key by key, lists are replaced; a block naming another ``type:`` replaces the
default's), then checked, then its inputs are checked to exist (or to be made by the workflow)
and its tasks to be known to some part of it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Callable, Iterable

from .benchmarks import BENCHMARKS
from .dj import DJ_EXECUTORS
from .engines import ENGINES
from .io import read_yaml
from .options import ExperimentOptions, RankingOptions, check_feedback
from .pairs import STRATEGIES
from .pool import POOL_STEPS
from .rewards import REWARDS, check_names
from .schema import coerce_numbers, fill_defaults, validate
from .spec import ConfigError
from .sweeps import add_base_points, expand

EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The keys that name a block's type in the registries.
TYPE_KEYS = ("type", "executor", "op")

__all__ = ["ConfigError", "compose", "deep_merge", "resolve"]


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` laid over ``base``: mappings merge key by key, everything else is replaced.

    A mapping that names a different type (``type:``, ``executor:`` or ``op:``: an engine, a
    pairing strategy, a Data-Juicer executor) replaces the base mapping instead: the keys of one
    type mean nothing to another.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and \
                all(value.get(k, out[key].get(k)) == out[key].get(k) for k in TYPE_KEYS):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def compose(workflow_files: Iterable[str | Path], user_files: Iterable[str | Path], overrides: dict) -> dict:
    """The config a run means: the workflow's config files, each ``--configfile`` laid over them,
    then the ``--config`` values.

    Laid over with :func:`deep_merge` (a block naming another type replaces the one below instead
    of inheriting its keys), except ``experiments``: a user file that defines it replaces the
    experiments below (the demo's), so only the experiments it names run. Every file is read
    strictly (a key given twice is an error naming the file and line).
    """
    config: dict = {}
    for path in [*workflow_files, *user_files]:
        data = load_config_file(path)
        if "experiments" in data and not isinstance(data["experiments"], dict):
            raise ConfigError(f"{path}: experiments: expected a mapping of name -> settings, found "
                              f"{data['experiments']!r}")
        config = deep_merge({k: v for k, v in config.items() if k != "experiments" or "experiments" not in data},
                            data)
    return deep_merge(config, dict(overrides))


def load_config_file(path: str | Path) -> dict:
    """One config file, read strictly (a key given twice names the file and line)."""
    try:
        data = read_yaml(path)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping, found {type(data).__name__}")
    return data


# --- parts ---------------------------------------------------------------------------------

def check_experiment(exp: dict, where: str) -> tuple[dict, ExperimentOptions]:
    """The experiment with every part's block checked against its options and spelled out, and its
    typed options (whose rules across keys, :mod:`juicebox.options`, are checked on the way)."""
    exp = copy.deepcopy(exp)
    for stage in ("rollouts", "eval"):
        exp[stage]["engine"] = ENGINES.normalise(exp[stage]["engine"], f"{where}.{stage}.engine")
    functions = exp["rewards"]["functions"]
    exp["rewards"]["functions"] = [REWARDS.normalise(spec, f"{where}.rewards.functions[{i}]")
                                   for i, spec in enumerate(functions)]
    check_names(functions, f"{where}.rewards.functions")
    exp["pairing"] = STRATEGIES.normalise(exp["pairing"], f"{where}.pairing")
    exp["eval"]["benchmarks"] = {name: BENCHMARKS.normalise(block, f"{where}.eval.benchmarks.{name}")
                                 for name, block in exp["eval"]["benchmarks"].items()}
    exp["pool"]["steps"] = [POOL_STEPS.normalise(step, f"{where}.pool.steps[{i}]")
                            for i, step in enumerate(exp["pool"]["steps"])]
    exp["dj"] = DJ_EXECUTORS.normalise(exp["dj"], f"{where}.dj")
    return exp, ExperimentOptions.parse(exp, where)


def check_paths(exp: dict, where: str, produced: Callable[[str], bool]) -> None:
    """Every input file the experiment names exists, or a rule of the workflow makes it.

    Checked whatever outputs exist: Snakemake only asks for a missing input when the job that
    reads it has to run, so without this a renamed source with old outputs present would go
    unnoticed.
    """
    paths = [(f"{where}.sources[{i}].path", s["path"]) for i, s in enumerate(exp["sources"])]
    paths.append((f"{where}.recipe", exp["recipe"]))
    paths += [(f"{where}.pool.steps[{i}].paths", p) for i, step in enumerate(exp["pool"]["steps"])
              if step["op"] == "merge" for p in step["paths"]]
    paths += [(f"{where}.eval.benchmarks.{name}.path", b["path"]) for name, b in exp["eval"]["benchmarks"].items()]
    for key, path in paths:
        if not Path(path).exists() and not produced(path):
            raise ConfigError(f"{key}: {path} does not exist (and no rule of the workflow makes it)")
    if Path(exp["recipe"]).is_file():  # a recipe that holds a key twice: before any job, too
        try:
            read_yaml(exp["recipe"])
        except ValueError as err:
            raise ConfigError(f"{where}.recipe: {err}") from err


# --- the whole config ----------------------------------------------------------------------

REPLICATE = "{name}-rep{k}"


def with_replicates(experiments: dict, options: dict) -> tuple[dict, dict, dict[str, list[str]]]:
    """Each experiment with ``replicates: R`` > 1 followed by its replicates 2..R (``<name>-rep<k>``:
    the same settings with ``replicate: k``), and the groups of replicates (name → its members in
    replicate order; an experiment without replicates is a group of one)."""
    out, typed, groups = {}, {}, {}
    for name, exp in experiments.items():
        members = [name] + [REPLICATE.format(name=name, k=k) for k in range(2, exp["replicates"] + 1)]
        for k, member in enumerate(members, start=1):
            if member != name and member in experiments:
                raise ConfigError(f"experiments.{member}: the name is taken by replicate {k} of experiment {name!r} "
                                  f"(replicates: {exp['replicates']}); rename the experiment")
            out[member] = {**exp, "replicate": exp["replicate"] + k - 1}
            typed[member] = options[name] if k == 1 else ExperimentOptions.parse(out[member], f"experiments.{member}")
        groups[name] = members
    return out, typed, groups


def resolve(config: dict, schema_path: str, produced: Callable[[str], bool] = lambda path: False) -> dict:
    """Validate the whole config and return it with ``experiments`` fully resolved.

    Each resolved experiment is ``defaults`` + its overrides + the schema's defaults, with every
    part's block spelled out. ``produced(path)`` says whether a rule of the workflow makes a file
    (so it need not exist yet).
    """
    schema = read_yaml(schema_path)
    config = {**config, "experiments": {name: override or {} for name, override in
                                        (config.get("experiments") or {}).items()}}
    config = coerce_numbers(copy.deepcopy(config), schema, schema)
    validate(config, schema)
    experiment_schema = {**schema["$defs"]["experiment"], "$defs": schema["$defs"]}
    # Sweeps become ordinary experiments here, so each is checked below like a written one.
    config["experiments"], sweep_points = expand(config, experiment_schema)
    resolved = fill_defaults(copy.deepcopy(config), schema, schema)
    if config.get("defaults"):
        defaults = fill_defaults(copy.deepcopy(config["defaults"]), experiment_schema, experiment_schema)
        check_experiment(defaults, "defaults")
    experiments, options = {}, {}
    for name, override in (config.get("experiments") or {}).items():
        where = f"experiments.{name}"
        if not EXPERIMENT_NAME.match(name):
            raise ConfigError(f"{where}: an experiment name may hold letters, digits, '-', '_' and '.' "
                              "and starts with a letter or digit (it becomes a folder name)")
        merged = deep_merge(config.get("defaults") or {}, override)
        validate(merged, experiment_schema, prefix=("experiments", name))
        merged = fill_defaults(merged, experiment_schema, experiment_schema)
        merged, typed = check_experiment(merged, where)
        typed.check_complete(where)
        check_paths(merged, where, produced)
        experiments[name], options[name] = merged, typed
    if not experiments:
        raise ConfigError("experiments: define at least one experiment")
    experiments, options, groups = with_replicates(experiments, options)
    check_feedback(options)
    resolved["experiments"] = experiments
    resolved["replicate_groups"] = groups
    resolved["sweep_points"] = add_base_points(sweep_points, experiments)
    RankingOptions.parse(resolved["ranking"], "ranking").check_benchmark(options)
    # Key order carries no meaning: sort it, so that rewriting the config file in another order
    # does not look like changed rule params to Snakemake (which would rerun everything).
    return json.loads(json.dumps(resolved, sort_keys=True))
