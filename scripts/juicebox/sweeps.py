"""Sweeps: a grid of settings expanded into ordinary experiments.

A ``sweeps:`` block of the config declares, per sweep, a ``base`` experiment and a ``grid`` of
dotted keys into the experiment, each with a list of values. :func:`expand` turns every point of
the grid's product into an experiment named by its values (``kgrid-k1.5-beta0.05``): the base's
own override with the point's keys set. It runs before the experiments are resolved, so each
generated experiment is validated and checked like a written one.

Experiments of a sweep that share their data half build it once: :func:`juicebox.sharing.stage_keys`
(its ``data`` keys also let ``results/eval.json`` rank data pools, the Data-Juicer sandbox's
``DataPoolRanking``).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from typing import Any

from .schema import coerce_numbers, resolve_ref
from .spec import ConfigError, closest

__all__ = ["data_settings", "expand", "get_dotted", "point_label"]

# Characters an experiment name may hold; any other character of a value becomes '_'.
UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
SWEEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# The experiment keys that decide its processed data (see data_settings).
DATA_KEYS = ("sources", "max_rejected_fraction", "pool", "recipe", "ksigma", "dj", "feedback")


# --- grid expansion ------------------------------------------------------------------------

def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def format_value(value: Any) -> str:
    """A scalar as it reads in a name: YAML's spelling of booleans and null, Python's of numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def point_label(key: str, value: Any, index: int) -> str:
    """The part of an experiment name one grid key contributes: its last dotted component and the
    value (``k1.5``), or the value's index in the grid list for a list or mapping (``sources0``);
    characters an experiment name cannot hold become '_'."""
    short = key.rsplit(".", 1)[-1]
    text = format_value(value) if is_scalar(value) else str(index)
    return UNSAFE.sub("_", f"{short}{text}")


def schema_at(key: str, schema: dict, where: str) -> dict | None:
    """The experiment schema's entry for a dotted ``key``; ConfigError at ``where`` when the schema
    knows no such key. None when the key lies inside a block checked by its type's own options
    (an engine, pairing, Data-Juicer executor, benchmark: checked after expansion instead)."""
    node, walked = schema, []
    for part in key.split("."):
        node = resolve_ref(node, schema)
        at = ".".join(walked) or "the experiment"
        if node.get("type") == "array" or "items" in node:
            raise ConfigError(f"{where}: {at} is a list, whose items a dotted key cannot reach; sweep the "
                              f"whole list instead (grid key {at!r}, each value a list)")
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        if part in props:
            node = props[part]
        elif isinstance(extra, dict):
            node = extra
        elif extra is False:
            allowed = sorted(props)
            raise ConfigError(f"{where}: unknown key {part!r} under {at}{closest(part, allowed)}; "
                              f"allowed keys: {allowed}")
        else:
            return None
        walked.append(part)
    return node


def set_dotted(settings: dict, key: str, value: Any, where: str) -> None:
    """Set the dotted ``key`` of ``settings`` to ``value``, creating mappings on the way."""
    node = settings
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[:i + 1])} of the base experiment is "
                              f"{type(child).__name__}, not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(settings: dict, key: str, default: Any = None) -> Any:
    """The value at a dotted ``key`` of ``settings`` (``default`` when a part is missing)."""
    node: Any = settings
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _grid_values(sweep: str, grid: dict, experiment_schema: dict) -> dict[str, list]:
    """Each grid key checked against the experiment schema, its values coerced where it wants numbers."""
    out = {}
    for key, values in grid.items():
        where = f"sweeps.{sweep}.grid.{key}"
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"{where}: a grid key is a dotted path into the experiment, like ksigma.k")
        sub = schema_at(key, experiment_schema, where)
        out[key] = [coerce_numbers(copy.deepcopy(v), sub, experiment_schema) if sub else copy.deepcopy(v)
                    for v in values]
    return out


def expand(config: dict, experiment_schema: dict) -> tuple[dict, dict]:
    """The config's experiments with every sweep expanded, and the sweep points.

    Returns ``(experiments, sweep_points)``: ``experiments`` holds the declared experiments (less a
    sweep base that no sweep keeps, see ``keep_base``) followed by each sweep's points in product
    order (the first grid key varies slowest); ``sweep_points`` maps sweep → ``{"base", "keys",
    "points": {experiment: {key: value}}}``, where the points are the generated experiments (the
    base's values are added by :func:`add_base_points` once the base is resolved).
    """
    declared = {name: override or {} for name, override in (config.get("experiments") or {}).items()}
    experiments, points, owner = dict(declared), {}, {}
    kept_bases, dropped_bases = set(), set()
    for sweep, block in (config.get("sweeps") or {}).items():
        where = f"sweeps.{sweep}"
        if not SWEEP_NAME.match(sweep):
            raise ConfigError(f"{where}: a sweep name may hold letters, digits, '-' and '_' and starts with a "
                              "letter or digit (it begins its experiments' names)")
        base = block.get("base")
        if base is not None and base not in declared:
            raise ConfigError(f"{where}.base: {base!r} is no experiment{closest(base, sorted(declared))}; "
                              f"experiments: {', '.join(declared)}")
        if base is not None:
            (kept_bases if block.get("keep_base", True) else dropped_bases).add(base)
        grid = _grid_values(sweep, block["grid"], experiment_schema)
        start = declared[base] if base is not None else {}
        points[sweep] = {"base": base, "keys": list(grid), "points": {}}
        for combo in itertools.product(*(list(enumerate(values)) for values in grid.values())):
            point = {key: value for key, (_, value) in zip(grid, combo)}
            name = "-".join([sweep, *(point_label(key, value, i) for key, (i, value) in zip(grid, combo))])
            if name in declared:
                raise ConfigError(f"{where}: point {name!r} has the name of a declared experiment; rename the "
                                  "sweep or the experiment")
            if name in owner:
                raise ConfigError(f"{where}: two points are both named {name!r} (from sweep {owner[name]!r}); "
                                  "values that differ only in characters a name cannot hold collide")
            override = copy.deepcopy(start)
            for key, value in point.items():
                set_dotted(override, key, value, f"{where}.grid.{key}")
            override["description"] = describe_point(sweep, block, base, start, point)
            experiments[name] = override
            points[sweep]["points"][name] = point
            owner[name] = sweep
    for base in dropped_bases - kept_bases:
        del experiments[base]
    return experiments, points


def describe_point(sweep: str, block: dict, base: str | None, start: dict, point: dict) -> str:
    """The generated experiment's description: which sweep point it is, and what it starts from."""
    values = ", ".join(f"{key}={json.dumps(value) if not is_scalar(value) else format_value(value)}"
                       for key, value in point.items())
    text = f"sweep {sweep}: {values}"
    if block.get("description"):
        text += f" ({block['description']})"
    if base is not None:
        text += f"; from {base}" + (f": {start['description']}" if start.get("description") else "")
    return text


def add_base_points(sweep_points: dict, experiments: dict) -> dict:
    """``sweep_points`` with each kept base added as a point, its values read from its resolved settings."""
    out = copy.deepcopy(sweep_points)
    for entry in out.values():
        base = entry["base"]
        if base is not None and base in experiments:
            entry["points"][base] = {key: get_dotted(experiments[base], key) for key in entry["keys"]}
    return out


# --- the data half -------------------------------------------------------------------------

def feedback_on(settings: dict) -> bool:
    feedback = settings.get("feedback")
    return isinstance(feedback, dict) and bool(feedback.get("enabled"))


def data_settings(settings: dict) -> dict:
    """The settings of a resolved experiment that decide its processed data.

    Its sources, ``max_rejected_fraction``, ``pool``, ``recipe``, ``ksigma``, ``dj`` and ``feedback``
    (the keys it has of those). k-sigma's other keys mean nothing while it is off, unless model
    feedback refines its filters with them: then they count. Feedback probed by the experiment's
    own model (``feedback.from`` null) also depends on ``model``; one probed by another
    experiment's model is named by that experiment in ``feedback.from``.
    """
    data = {key: copy.deepcopy(settings[key]) for key in DATA_KEYS if key in settings}
    feedback = feedback_on(settings)
    ksigma = data.get("ksigma")
    if isinstance(ksigma, dict) and not ksigma.get("enabled") and not (feedback and settings["feedback"].get("refine")):
        data["ksigma"] = {"enabled": False}
    if not feedback and "feedback" in data:
        data["feedback"] = {"enabled": False}
    if feedback and settings["feedback"].get("from") is None:
        data["model"] = settings.get("model")
    return data
