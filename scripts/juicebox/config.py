"""Config validation and experiment resolution, before any job runs.

Three layers, each naming a bad key by its dotted path:

1. **Files.** Every config file is read with a loader that refuses a key given twice in one
   mapping (naming the file and line). A user's ``--configfile`` that defines ``experiments``
   replaces the demo's experiments instead of being merged into them (``compose``).
2. **Layout.** The plain keys are checked against ``config/config.schema.yaml`` (types, bounds,
   unknown keys); a number written as a string (YAML 1.1 reads ``5e-4`` as a string) is
   accepted where the schema wants a number.
3. **Parts.** Every block chosen by ``type:`` (engines, rewards, pairing, benchmarks; ``op:`` for
   pool steps; ``executor:`` for Data-Juicer) is checked against its registered class's typed
   ``Options`` and spelled out with every default (:mod:`juicebox.spec`, :mod:`juicebox.registry`).

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
from typing import Any, Callable, Iterable

import jsonschema

from .io import read_yaml
from .spec import NUMBER, ConfigError, closest

EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The keys that name a block's type in the registries.
TYPE_KEYS = ("type", "executor", "op")

__all__ = ["ConfigError", "compose", "deep_merge", "resolve"]


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = closest(str(extra[0]), allowed) if extra else ""
        return f"{where}: unknown key(s) {extra}{hint}; allowed keys: {allowed}"
    if error.validator == "type":
        return (f"{where}: expected {error.validator_value}, found {error.instance!r} "
                f"({type(error.instance).__name__})")
    if error.validator == "enum":
        return f"{where}: expected one of {error.validator_value}, found {error.instance!r}"
    return f"{where}: {error.message}"


def _resolve_ref(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _walk(instance: Any, schema: dict, root: dict, visit: Callable[[Any, dict], Any]) -> Any:
    """``visit(value, schema)`` applied bottom-up to every value the schema describes."""
    schema = _resolve_ref(schema, root)
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(instance):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = _walk(instance[key], sub, root, visit)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        instance = [_walk(item, schema["items"], root, visit) for item in instance]
    return visit(instance, schema)


def _number_from_string(value: Any, schema: dict) -> Any:
    """A numeric string where the schema wants a number (and not a string) becomes that number, and
    "true"/"false" where it wants a boolean a boolean (``--config key=false`` gives strings)."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    if isinstance(value, str) and "string" not in kinds and "boolean" in kinds and value.strip() in ("true", "false"):
        return value.strip() == "true"
    if isinstance(value, str) and "string" not in kinds and NUMBER.match(value.strip()):
        if "integer" in kinds and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if "number" in kinds:
            return float(value)
    return value


def fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Fill in the schema's ``default`` for every missing key, recursively (after validation)."""
    def fill(value: Any, sub: dict) -> Any:
        if isinstance(value, dict):
            for key, prop in sub.get("properties", {}).items():
                prop = _resolve_ref(prop, root)
                if key not in value and "default" in prop:
                    value[key] = _walk(copy.deepcopy(prop["default"]), prop, root, fill)
        return value

    return _walk(instance, schema, root, fill)


def coerce_numbers(instance: Any, schema: dict, root: dict) -> Any:
    """``instance`` with numeric strings turned into numbers wherever the schema wants a number."""
    return _walk(instance, schema, root, _number_from_string)


def validate(instance: Any, schema: dict, prefix: tuple = ()) -> None:
    """Raise ``ConfigError`` listing every schema violation, each with its dotted key."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for err in errors:
            err.path.extendleft(reversed(prefix))
            lines.append(_describe(err))
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))


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

def _normalise_engine(stage: dict, where: str) -> None:
    from .engines import ENGINES

    stage["engine"] = ENGINES.normalise(stage["engine"], f"{where}.engine")
    _check_sampling(stage["engine"], stage["sampling"], f"{where}.engine", f"{where}.sampling")


def _check_sampling(engine: dict, sampling: dict, engine_where: str, where: str) -> None:
    """The sampling block is valid and the engine can honour it; ConfigError at ``where`` if not."""
    from .engines import ENGINES, Sampling

    try:
        ENGINES.parse(engine, engine_where).check_sampling(Sampling.from_config(sampling, seed=0))
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: {err}") from err


def _check_benchmarks(settings: dict, where: str) -> None:
    """Every benchmark of ``eval`` can be built (its ``fields`` are ones its type reads), and the
    sampling it is evaluated with (``Benchmark.effective_sampling``: its type's default and its
    own ``sampling`` keys, or ``eval.sampling``) is one the eval engine can honour."""
    from .benchmarks import BENCHMARKS

    for name, block in settings["benchmarks"].items():
        at = f"{where}.benchmarks.{name}"
        try:
            benchmark = BENCHMARKS.build(block, at, name=name)
        except ValueError as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"{at}: {err}") from err
        _check_sampling(settings["engine"], benchmark.effective_sampling(settings["sampling"]), f"{where}.engine",
                        f"{at}.sampling")


def check_parts(exp: dict, where: str) -> dict:
    """The experiment with every part's block checked against its options and spelled out."""
    from .benchmarks import BENCHMARKS
    from .dj import DJ_EXECUTORS
    from .pairs import STRATEGIES
    from .pool import POOL_STEPS
    from .rewards import REWARDS, check_names

    exp = copy.deepcopy(exp)
    for stage in ("rollouts", "eval"):
        _normalise_engine(exp[stage], f"{where}.{stage}")
    functions = exp["rewards"]["functions"]
    exp["rewards"]["functions"] = [REWARDS.normalise(spec, f"{where}.rewards.functions[{i}]")
                                   for i, spec in enumerate(functions)]
    check_names(functions, f"{where}.rewards.functions")
    exp["pairing"] = STRATEGIES.normalise(exp["pairing"], f"{where}.pairing")
    exp["eval"]["benchmarks"] = {name: BENCHMARKS.normalise(block, f"{where}.eval.benchmarks.{name}")
                                 for name, block in exp["eval"]["benchmarks"].items()}
    _check_benchmarks(exp["eval"], f"{where}.eval")
    blank = exp["eval"]["blank_images"]
    if isinstance(blank, list) and "sft" in blank and not exp["sft"]["enabled"]:
        raise ConfigError(f"{where}.eval.blank_images: sft is not evaluated (sft.enabled is false); "
                          "leave it out or enable sft")
    exp["pool"]["steps"] = [POOL_STEPS.normalise(step, f"{where}.pool.steps[{i}]")
                            for i, step in enumerate(exp["pool"]["steps"])]
    exp["dj"] = DJ_EXECUTORS.normalise(exp["dj"], f"{where}.dj")
    for stage in ("sft", "train"):
        settings = exp[stage]
        if settings["launcher"] == "python" and (settings["gpus"] > 1 or settings["nodes"] > 1):
            raise ConfigError(f"{where}.{stage}.launcher: training on {settings['gpus']} GPU(s) x "
                              f"{settings['nodes']} node(s) needs launcher: accelerate")
    return exp


def known_tasks(exp: dict) -> set[str] | None:
    """Tasks some part of the experiment names: rewards (their ``tasks`` or the type's default),
    benchmark types, ``rollouts.tasks`` and ``sft.tasks`` when they are lists. None when a reward
    applies to every task (then every task is known)."""
    from .benchmarks import BENCHMARKS
    from .rewards import REWARDS

    tasks: set[str] = set()
    for spec in exp["rewards"]["functions"]:
        own = spec.get("tasks")
        own = own if own is not None else REWARDS[spec["type"]].default_tasks
        if own is None:
            return None
        tasks.update(own)
    tasks.update(BENCHMARKS[b["type"]].task for b in exp["eval"]["benchmarks"].values())
    for stage in ("rollouts", "sft"):
        tasks.update(exp[stage].get("tasks") or [])
    return tasks


def check_tasks(exp: dict, where: str) -> None:
    """Refuse a source task that no part of the experiment knows (a misspelt task matches nothing)."""
    known = known_tasks(exp)
    if known is None:
        return
    for i, source in enumerate(exp["sources"]):
        task = source.get("task")
        if task is not None and task not in known:
            raise ConfigError(f"{where}.sources[{i}].task: task {task!r} is known to no reward, benchmark, "
                              f"sft.tasks or rollouts.tasks of the experiment{closest(task, sorted(known))}; "
                              f"known tasks: {', '.join(sorted(known))}")


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


def _feedback_source(name: str, exp: dict) -> str:
    """The experiment whose model probes ``name``'s pool (``feedback.from``, null: itself)."""
    return exp["feedback"]["from"] or name


def check_feedback(experiments: dict[str, dict]) -> None:
    """Every enabled ``feedback`` block can run: ``from`` names an experiment; the probe model is
    not trained on the data it filters (sft of the same experiment, or a chain of experiments
    back to it); an sft probe has an SFT model; reward stats come from another experiment's
    rollouts; the filters name known stats and a bound. A recipe with ``model_stat_filter``
    entries needs feedback on (the model stats they bound come from it)."""
    from .ksigma import LOSS_STATS, MODEL_STATS, REWARD_STATS, split_recipe

    for name, exp in experiments.items():
        where = f"experiments.{name}.feedback"
        fb = exp["feedback"]
        filters = []
        if Path(exp["recipe"]).is_file():
            try:
                filters = split_recipe(read_yaml(exp["recipe"]) or {})[1]
            except ValueError as err:
                raise ConfigError(f"experiments.{name}.recipe: {exp['recipe']}: {err}") from err
        if not fb["enabled"]:
            if filters:
                raise ConfigError(f"experiments.{name}.recipe: {exp['recipe']} has model_stat_filter entries, which "
                                  f"need the model probe: set {where}.enabled: true")
            continue
        source = _feedback_source(name, exp)
        if source not in experiments:
            raise ConfigError(f"{where}.from: no experiment named {source!r}{closest(source, sorted(experiments))}; "
                              f"experiments: {', '.join(sorted(experiments))}")
        if fb["model"] == "sft" and source == name:
            raise ConfigError(f"{where}.model: sft of this experiment would probe the data its own SFT trains on "
                              f"after the feedback filters (a cycle); use model: base, or `from:` another experiment")
        if fb["model"] == "sft" and not experiments[source]["sft"]["enabled"]:
            raise ConfigError(f"{where}.model: experiment {source!r} has sft.enabled: false, so it has no sft model; "
                              "use model: base or enable its sft")
        if not fb["filters"] and not filters:
            raise ConfigError(f"{where}.filters: feedback is enabled but no filter bounds a model stat; add "
                              "{stat: model_loss, max_value: null} or the like (or disable feedback)")
        for i, f in enumerate(fb["filters"]):
            at = f"{where}.filters[{i}]"
            if f["stat"] not in MODEL_STATS:
                hint = closest(f["stat"], list(MODEL_STATS))
                raise ConfigError(f"{at}.stat: unknown model stat {f['stat']!r}{hint}; known: {', '.join(MODEL_STATS)}")
            if f["stat"] in REWARD_STATS and source == name:
                raise ConfigError(f"{at}.stat: {f['stat']} comes from the rollouts of the `from` experiment, and "
                                  f"this experiment's own rollouts come after its filters; set {where}.from to "
                                  f"another experiment (model stats of this one: {', '.join(LOSS_STATS)})")
            bounds = [key for key in ("min_value", "max_value") if key in f]
            if not bounds:
                raise ConfigError(f"{at}: names no bound; give min_value and/or max_value (null: k-sigma computes it)")
            if not fb["refine"] and all(f[key] is None for key in bounds):
                raise ConfigError(f"{at}: {where}.refine is false, so a null bound stays unbounded; give a number")
        own = [f["stat"] for f in filters if f["stat"] in REWARD_STATS]
        if own and source == name:
            raise ConfigError(f"experiments.{name}.recipe: {exp['recipe']} bounds {own[0]}, which comes from the "
                              f"rollouts of another experiment: set {where}.from to one")
    _check_feedback_cycles(experiments)


def _check_feedback_cycles(experiments: dict[str, dict]) -> None:
    """Refuse experiments whose feedback models depend on each other in a ring (A filters with B's
    SFT model or rollouts, B with A's): each would wait for the other's processed data."""
    edges = {name: _feedback_source(name, exp) for name, exp in experiments.items()
             if exp["feedback"]["enabled"] and _feedback_source(name, exp) != name}
    for start in edges:
        seen, node = [start], edges[start]
        while node in edges and node not in seen:
            seen.append(node)
            node = edges[node]
        if node == start:
            ring = " -> ".join(seen + [start])
            raise ConfigError(f"experiments.{start}.feedback.from: the feedback experiments form a cycle ({ring}): "
                              "each needs the other's processed data first")


# --- the whole config ----------------------------------------------------------------------

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
    from .sweeps import add_base_points, expand

    config["experiments"], sweep_points = expand(config, experiment_schema)
    resolved = fill_defaults(copy.deepcopy(config), schema, schema)
    if config.get("defaults"):
        defaults = fill_defaults(copy.deepcopy(config["defaults"]), experiment_schema, experiment_schema)
        check_parts(defaults, "defaults")
    experiments = {}
    for name, override in (config.get("experiments") or {}).items():
        where = f"experiments.{name}"
        if not EXPERIMENT_NAME.match(name):
            raise ConfigError(f"{where}: an experiment name may hold letters, digits, '-', '_' and '.' "
                              "and starts with a letter or digit (it becomes a folder name)")
        merged = deep_merge(config.get("defaults") or {}, override)
        validate(merged, experiment_schema, prefix=("experiments", name))
        merged = fill_defaults(merged, experiment_schema, experiment_schema)
        for key in ("sources", "recipe"):
            if not merged.get(key):
                raise ConfigError(f"{where}: no {key!r}: set it under defaults or in the experiment")
        names = [s.get("name") for s in merged["sources"]]
        dupes = sorted({n for n in names if n and names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}.sources: source names must be unique, repeated: {dupes}")
        merged = check_parts(merged, where)
        check_tasks(merged, where)
        check_paths(merged, where, produced)
        experiments[name] = merged
    if not experiments:
        raise ConfigError("experiments: define at least one experiment")
    check_feedback(experiments)
    resolved["experiments"] = experiments
    resolved["sweep_points"] = add_base_points(sweep_points, experiments)
    ranked = resolved["ranking"]["benchmark"]
    if not any(ranked in exp["eval"]["benchmarks"] for exp in experiments.values()):
        known = sorted({b for exp in experiments.values() for b in exp["eval"]["benchmarks"]})
        raise ConfigError(f"ranking.benchmark: {ranked!r} is a benchmark of no experiment{closest(ranked, known)}; "
                          f"benchmarks: {', '.join(known)}")
    # Key order carries no meaning: sort it, so that rewriting the config file in another order
    # does not look like changed rule params to Snakemake (which would rerun everything).
    return json.loads(json.dumps(resolved, sort_keys=True))
