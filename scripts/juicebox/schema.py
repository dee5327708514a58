"""Walking a config against its JSON schema (``config/config.schema.yaml``, generated from the typed
options of :mod:`juicebox.options`): ``$ref`` resolution, numbers written as strings, the schema's
defaults, and every violation named by its dotted key.

Shared by :mod:`juicebox.config` (the whole config) and :mod:`juicebox.sweeps` (a grid key's values).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import jsonschema

from .spec import ConfigError, closest, from_string

__all__ = ["coerce_numbers", "fill_defaults", "resolve_ref", "validate", "walk", "where"]


def where(path) -> str:
    """A path into the config as a dotted key (``(top level)`` for the root)."""
    return ".".join(str(p) for p in path) or "(top level)"


def describe(error: jsonschema.ValidationError) -> str:
    """One schema violation as a line naming its dotted key."""
    at = where(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = closest(str(extra[0]), allowed) if extra else ""
        return f"{at}: unknown key(s) {extra}{hint}; allowed keys: {allowed}"
    if error.validator == "type":
        return (f"{at}: expected {error.validator_value}, found {error.instance!r} "
                f"({type(error.instance).__name__})")
    if error.validator == "enum":
        return f"{at}: expected one of {error.validator_value}, found {error.instance!r}"
    return f"{at}: {error.message}"


def resolve_ref(schema: dict, root: dict) -> dict:
    """``schema`` with its ``$ref`` (a ``#/...`` pointer into ``root``) replaced by what it names,
    the schema's own keys laid over it."""
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def walk(instance: Any, schema: dict, root: dict, visit: Callable[[Any, dict], Any]) -> Any:
    """``visit(value, schema)`` applied bottom-up to every value the schema describes."""
    schema = resolve_ref(schema, root)
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key in list(instance):
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                instance[key] = walk(instance[key], sub, root, visit)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        instance = [walk(item, schema["items"], root, visit) for item in instance]
    return visit(instance, schema)


# The JSON schema's types as the Python types :func:`juicebox.spec.from_string` reads strings as.
JSON_TYPES = {"integer": int, "number": float, "boolean": bool, "string": str}


def number_from_string(value: Any, schema: dict) -> Any:
    """A string where the schema wants a number or a boolean (and not a string) read as one, by
    :func:`juicebox.spec.from_string` (the one place the config's strings become numbers):
    ``5e-4`` where it wants a number, "false" where it wants a boolean (``--config key=false``)."""
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    return from_string(value, {JSON_TYPES[kind] for kind in kinds if kind in JSON_TYPES})


def fill_defaults(instance: Any, schema: dict, root: dict) -> Any:
    """Fill in the schema's ``default`` for every missing key, recursively (after validation)."""
    def fill(value: Any, sub: dict) -> Any:
        if isinstance(value, dict):
            for key, prop in sub.get("properties", {}).items():
                prop = resolve_ref(prop, root)
                if key not in value and "default" in prop:
                    value[key] = walk(copy.deepcopy(prop["default"]), prop, root, fill)
        return value

    return walk(instance, schema, root, fill)


def coerce_numbers(instance: Any, schema: dict, root: dict) -> Any:
    """``instance`` with numeric strings turned into numbers wherever the schema wants a number."""
    return walk(instance, schema, root, number_from_string)


def validate(instance: Any, schema: dict, prefix: tuple = ()) -> None:
    """Raise ``ConfigError`` listing every schema violation, each with its dotted key."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = []
        for err in errors:
            err.path.extendleft(reversed(prefix))
            lines.append(describe(err))
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
