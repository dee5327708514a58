"""Typed options: every pluggable part declares its config keys once, as a dataclass.

As TRL's ``DPOConfig`` does, a part's options are a dataclass whose fields are the config keys,
each with its type, default and help text (``option(default, "help")``). ``Options.parse``
builds one from a config block and checks it on the way:

* an unknown key names the dotted path, the key, the allowed keys and the closest match;
* a wrong type says what was expected and what was found;
* a number written as a string (YAML 1.1 reads ``5e-4`` as a string) is accepted where a number
  is expected;
* bounds (``minimum``, ``maximum``, ``exclusive_minimum``) and ``Literal`` choices are checked.

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
``list[X]``, ``dict[str, X]``, ``Any``, a union of those, and a nested ``Options`` class.
``Options.reference()`` lists the fields for the generated config reference (docs/config.md).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
INTEGER = re.compile(r"^[+-]?\d+$")


class ConfigError(ValueError):
    """A config block does not match a part's options; the message starts with the dotted path."""


def option(default: Any = dataclasses.MISSING, help: str = "", *, minimum: float | None = None,
           maximum: float | None = None, exclusive_minimum: float | None = None) -> Any:
    """A dataclass field for one config key: its default, help text and numeric bounds.

    Without a default the key is required. A mutable default (list, dict) is copied for every instance.
    """
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    if default is dataclasses.MISSING:  # a required key: keyword-only, so it may follow keys with defaults
        return dataclasses.field(kw_only=True, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def closest(key: str, allowed: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``key``, else ''."""
    match = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def type_name(tp: Any) -> str:
    """A type annotation in words, for error messages and the reference."""
    origin = get_origin(tp)
    if tp is Any:
        return "any"
    if origin is Literal:
        return ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp))
    if origin is list:
        return f"list of {type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"mapping to {type_name(get_args(tp)[1])}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Options):
        return "mapping"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _found(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the type ``tp`` (numeric strings become numbers); ConfigError if it does not fit."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for member in get_args(tp):
            try:
                return convert(value, member, where)
            except ConfigError as err:
                if get_origin(member) in (list, dict) or (isinstance(member, type) and issubclass(member, Options)):
                    if isinstance(value, (list, dict)):  # the right shape, a wrong item: say which
                        raise err
        raise ConfigError(f"{where}: expected {type_name(tp)}, found {_found(value)}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if any(value == choice and type(value) is type(choice) for choice in get_args(tp)):
            return value
        choices = [str(choice) for choice in get_args(tp)]
        raise ConfigError(f"{where}: expected one of {type_name(tp)}, found {value!r}{closest(str(value), choices)}")
    elif origin is list:
        if isinstance(value, list):
            return [convert(item, get_args(tp)[0], f"{where}[{i}]") for i, item in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            key_type, value_type = get_args(tp)
            return {convert(k, key_type, where): convert(v, value_type, f"{where}.{k}") for k, v in value.items()}
    elif isinstance(tp, type) and issubclass(tp, Options):
        if isinstance(value, dict):
            return tp.parse(value, where)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and INTEGER.match(value.strip()):
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and NUMBER.match(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{where}: the option type {tp!r} is not supported by juicebox.spec")
    raise ConfigError(f"{where}: expected {type_name(tp)}, found {_found(value)}")


def _check_bounds(value: Any, meta: dict, where: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"{where}: expected a number >= {meta['minimum']}, found {value!r}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"{where}: expected a number <= {meta['maximum']}, found {value!r}")
    if meta.get("exclusive_minimum") is not None and value <= meta["exclusive_minimum"]:
        raise ConfigError(f"{where}: expected a number > {meta['exclusive_minimum']}, found {value!r}")


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every part's options. Subclasses are frozen dataclasses made of ``option`` fields.

    A subclass may define ``check(self)`` for rules across fields; it raises ValueError.
    """

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name → resolved type annotation."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def parse(cls, block: dict | None, where: str, extra_keys: tuple[str, ...] = ()) -> "Options":
        """The options in ``block`` (missing keys take their defaults), checked; ConfigError names the key.

        ``extra_keys`` are keys the block may hold that are not options (a registry's ``type``).
        """
        block = {} if block is None else block
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: expected a mapping, found {_found(block)}")
        field_types = cls.field_types()
        allowed = sorted([*field_types, *extra_keys])
        for key in block:
            if key not in field_types and key not in extra_keys:
                raise ConfigError(f"{where}: unknown key {key!r}{closest(str(key), allowed)}; allowed keys: "
                                f"{', '.join(allowed)}")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in block:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"{where}: missing required key {f.name!r}: {f.metadata.get('help', '')}")
                continue
            values[f.name] = convert(block[f.name], field_types[f.name], f"{where}.{f.name}")
            _check_bounds(values[f.name], f.metadata, f"{where}.{f.name}")
        options = cls(**values)
        try:
            options.check()
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from err
        return options

    def check(self) -> None:
        """Rules across fields (none by default); raise ValueError saying what is wrong."""

    def to_dict(self) -> dict:
        """The options as a plain dict (nested options too), for provenance and rule params."""
        return dataclasses.asdict(self)

    @classmethod
    def reference(cls, prefix: str = "") -> list[tuple[str, str, str, str]]:
        """(key, type, default, help) of every field; nested options are flattened as ``a.b``."""
        rows = []
        for f in dataclasses.fields(cls):
            tp = cls.field_types()[f.name]
            if f.default is not dataclasses.MISSING:
                default = _show(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = _show(f.default_factory())
            else:
                default = "(required)"
            rows.append((prefix + f.name, type_name(tp), default, f.metadata.get("help", "")))
            nested = _nested_options(tp)
            if nested is not None:
                rows += nested.reference(prefix=f"{prefix}{f.name}.")
        return rows


def _nested_options(tp: Any) -> type[Options] | None:
    candidates = get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, Options)), None)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`" if value else "''"
    if isinstance(value, Options):
        return "{}"
    return f"`{value}`"
