"""Config validation and experiment resolution.

The config is checked against ``config/config.schema.yaml`` before any job runs. Errors name
the key (as a dotted path) and what was expected. Each experiment is the config's ``defaults``
with the experiment's own keys laid over them (mappings merge key by key, lists are replaced),
then checked again, with the schema's defaults filled in.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema

from .io import read_yaml

EXPERIMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ConfigError(ValueError):
    """The config does not match the schema; the message names the key."""


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown key(s) {extra}; allowed keys: {allowed}"
    if error.validator == "type":
        return (f"{where}: expected {error.validator_value}, found {error.instance!r} "
                f"({type(error.instance).__name__})")
    if error.validator == "enum":
        return f"{where}: expected one of {error.validator_value}, found {error.instance!r}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def _fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Fill in the schema's ``default`` for every missing key, recursively (after validation)."""
    if "$ref" in schema:
        schema = _resolve_ref(schema["$ref"], root)
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            sub_resolved = _resolve_ref(sub["$ref"], root) if "$ref" in sub else sub
            if key not in instance and "default" in sub_resolved:
                instance[key] = copy.deepcopy(sub_resolved["default"])
            if key in instance:
                instance[key] = _fill_defaults(instance[key], sub_resolved, root)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in instance:
                if key not in props:
                    instance[key] = _fill_defaults(instance[key], extra, root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [_fill_defaults(item, schema["items"], root) for item in instance]
    return instance


def _resolve_ref(ref: str, root: dict) -> dict:
    node = root
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


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

    A mapping that names a different ``type:`` (an engine, a pairing strategy) replaces the base
    mapping instead: the keys of one type mean nothing to another.
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and \
                value.get("type", out[key].get("type")) == out[key].get("type"):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(config: dict, schema_path: str) -> dict:
    """Validate the whole config and return it with ``experiments`` fully resolved.

    Each resolved experiment is ``defaults`` + its overrides + the schema's defaults.
    """
    schema = read_yaml(schema_path)
    config = {**config, "experiments": {name: override or {} for name, override in
                                        (config.get("experiments") or {}).items()}}
    validate(config, schema)
    resolved = _fill_defaults(copy.deepcopy(config), schema, schema)
    experiment_schema = {**schema["$defs"]["experiment"], "$defs": schema["$defs"]}
    experiments = {}
    for name, override in (config.get("experiments") or {}).items():
        if not EXPERIMENT_NAME.match(name):
            raise ConfigError(f"experiments.{name}: an experiment name may hold letters, digits, '-' and '_' "
                              "and starts with a letter or digit (it becomes a folder name)")
        merged = deep_merge(config.get("defaults") or {}, override)
        validate(merged, experiment_schema, prefix=("experiments", name))
        merged = _fill_defaults(merged, experiment_schema, experiment_schema)
        for key in ("sources", "recipe"):
            if not merged.get(key):
                raise ConfigError(f"experiments.{name}: no {key!r}: set it under defaults or in the experiment")
        names = [s.get("name") for s in merged["sources"]]
        dupes = sorted({n for n in names if n and names.count(n) > 1})
        if dupes:
            raise ConfigError(f"experiments.{name}.sources: source names must be unique, repeated: {dupes}")
        experiments[name] = merged
    if not experiments:
        raise ConfigError("experiments: define at least one experiment")
    resolved["experiments"] = experiments
    # Key order carries no meaning: sort it, so that rewriting the config file in another order
    # does not look like changed rule params to Snakemake (which would rerun everything).
    return json.loads(json.dumps(resolved, sort_keys=True))
