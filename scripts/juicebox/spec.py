"""Typed options: every block of the config declares its keys once, as a dataclass.

As TRL's ``DPOConfig`` does, a block's options are a dataclass whose fields are the config keys,
each with its type, default and help text (``option(default, "help")``). The pluggable parts
(engines, rewards, ...) and the plain blocks (:mod:`juicebox.options`: sft, train, sampling,
feedback, ...) are both written this way. ``Options.parse`` builds one from a config block and
checks it on the way:

* an unknown key names the dotted path, the key, the allowed keys and the closest match;
* a wrong type says what was expected and what was found;
* a value written as a string is read as the type wanted (:func:`from_string`: ``5e-4`` where a
  number is wanted, ``false`` where a boolean is), the one place the config's strings become numbers;
* bounds (``minimum``, ``maximum``, ``exclusive_minimum``) and ``Literal`` choices are checked;
* then the block's own rules across fields: ``check()`` (a ValueError, reported at the block) and
  ``check_at(where)`` (a ConfigError naming the exact key).

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``,
``list[X]``, ``dict[str, X]``, ``Any``, a union of those, a nested ``Options`` class, and a
:class:`Part` (a block a registry checks: an engine, a reward, ...). A field may be left unset
(``option(UNSET)``: no default, and absent from ``to_dict``) or named by another key than its
Python name (``key="from"``).

``Options.reference()`` lists the fields for the generated config reference (docs/config.md) and
:func:`json_schema` writes them as the JSON schema the workflow validates against
(config/config.schema.yaml), so a key's type, default, bounds and help have one owner.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
INTEGER = re.compile(r"^[+-]?\d+$")


class ConfigError(ValueError):
    """A config block does not match a part's options; the message starts with the dotted path."""


class _Unset:
    """The value of an optional key that has no default: it stays out of ``to_dict`` (and the resolved config)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


UNSET: Any = _Unset()


def from_string(value: Any, wanted: typing.Collection[type]) -> Any:
    """A string read as one of the ``wanted`` types when it spells one, else ``value`` unchanged.

    The one place the config's strings become numbers and booleans: YAML 1.1 reads ``5e-4`` as a
    string, and ``--config key=false`` gives the string "false". Nothing happens where a string is
    itself allowed. An integer string becomes an int where integers are wanted, else a float where
    numbers are; "true"/"false" become booleans where booleans are wanted.
    """
    if not isinstance(value, str) or str in wanted:
        return value
    text = value.strip()
    if bool in wanted and text in ("true", "false"):
        return text == "true"
    if int in wanted and INTEGER.match(text):
        return int(text)
    if float in wanted and NUMBER.match(text):
        return float(text)
    return value


def option(default: Any = dataclasses.MISSING, help: str = "", *, minimum: float | None = None,
           maximum: float | None = None, exclusive_minimum: float | None = None, key: str | None = None,
           schema: dict | None = None) -> Any:
    """A dataclass field for one config key: its default, help text and numeric bounds.

    Without a default the key is required; ``UNSET``: optional, absent unless given. A mutable
    default (list, dict) is copied for every instance; an ``Options`` class as default is that
    block with its own defaults. ``key``: the config key when it is no Python name (``from``).
    ``schema``: JSON-schema keywords the type cannot say (``minItems``, ``uniqueItems``, bounds
    of a mapping's values), laid over the field's generated schema.
    """
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum,
                "key": key, "schema": schema or {}}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: copy.deepcopy(value), metadata=metadata)
    if isinstance(default, type) and issubclass(default, Options):
        return dataclasses.field(default_factory=default, metadata=metadata)
    if default is dataclasses.MISSING:  # a required key: keyword-only, so it may follow keys with defaults
        return dataclasses.field(kw_only=True, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def config_key(f: dataclasses.Field) -> str:
    """The config key of a field (its name unless ``option(key=...)`` says otherwise)."""
    return f.metadata.get("key") or f.name


def is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def closest(key: str, allowed: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``key``, else ''."""
    match = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Part(dict):
    """The type of a block that a registry checks by its ``type:`` (``op:``, ``executor:``): an engine,
    a reward, a pairing strategy, a benchmark, a pool step, a Data-Juicer executor.

    Its keys are the chosen type's ``Options`` (:mod:`juicebox.registry`); here it is a mapping.
    A subclass names its schema (``schema_name``: a ``$defs`` entry) and keywords (``schema_extra``).
    """

    schema_name: ClassVar[str | None] = None
    schema_extra: ClassVar[dict] = {}
    about: ClassVar[str] = ""


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
    if isinstance(tp, type) and issubclass(tp, (Options, Part)):
        return "mapping"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _found(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the type ``tp`` (strings read by :func:`from_string`); ConfigError if it does
    not fit."""
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
    elif isinstance(tp, type) and issubclass(tp, Part):
        if isinstance(value, dict):
            return value
    elif tp is bool:
        value = from_string(value, (bool,))
        if isinstance(value, bool):
            return value
    elif tp is int:
        value = from_string(value, (int,))
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        value = from_string(value, (float,))
        # an int stays an int, as Python's typing takes it for a float: the options then hold the value
        # as written, and so does what is made from them (PEFT's adapter_config.json, ``lora_alpha: 32``)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
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
    """Base of every block's options. Subclasses are frozen dataclasses made of ``option`` fields.

    A subclass may define ``check(self)`` for rules across fields, raising ValueError (reported at
    the block), or ``check_at(self, where)``, raising ConfigError at the exact dotted key.
    ``schema_name`` makes the class a ``$defs`` entry of the generated JSON schema (used by
    ``$ref``), ``schema_extra`` adds keywords to its object schema, ``about`` describes it.
    """

    schema_name: ClassVar[str | None] = None
    schema_extra: ClassVar[dict] = {}
    about: ClassVar[str] = ""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name → resolved type annotation."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def keys(cls) -> list[str]:
        """The config keys of the block."""
        return [config_key(f) for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, block: dict | None, where: str, extra_keys: tuple[str, ...] = ()) -> "Options":
        """The options in ``block`` (missing keys take their defaults), checked; ConfigError names the key.

        ``extra_keys`` are keys the block may hold that are not options (a registry's ``type``).
        """
        block = {} if block is None else block
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: expected a mapping, found {_found(block)}")
        field_types = cls.field_types()
        keys = cls.keys()
        allowed = sorted([*keys, *extra_keys])
        for key in block:
            if key not in keys and key not in extra_keys:
                raise ConfigError(f"{where}: unknown key {key!r}{closest(str(key), allowed)}; allowed keys: "
                                f"{', '.join(allowed)}")
        values = {}
        for f in dataclasses.fields(cls):
            key = config_key(f)
            if key not in block:
                if is_required(f):
                    raise ConfigError(f"{where}: missing required key {key!r}: {f.metadata.get('help', '')}")
                continue
            values[f.name] = convert(block[key], field_types[f.name], f"{where}.{key}")
            _check_bounds(values[f.name], f.metadata, f"{where}.{key}")
        options = cls(**values)
        try:
            options.check()
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from err
        options.check_at(where)
        return options

    def check(self) -> None:
        """Rules across fields (none by default); raise ValueError saying what is wrong."""

    def check_at(self, where: str) -> None:
        """Rules across fields that name their own key (none by default); raise ConfigError at ``where``'s keys."""

    @classmethod
    def object_schema(cls, defs: dict) -> dict:
        """The JSON schema of the block (its nested classes with a ``schema_name`` go to ``defs``)."""
        return _object_schema(cls, defs)

    def to_dict(self) -> dict:
        """The options as a plain dict (nested options too; unset keys left out), for provenance and rule params."""
        return {config_key(f): _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not UNSET}

    @classmethod
    def reference(cls, prefix: str = "", inline: bool = True) -> list[tuple[str, str, str, str]]:
        """(key, type, default, help) of every field; nested options are flattened as ``a.b`` (an item of a
        list as ``a[].b``, a value of a mapping as ``a.<name>.b``), unless they have a ``schema_name`` and
        ``inline`` is false (then they are documented on their own)."""
        rows = []
        for f in dataclasses.fields(cls):
            key = config_key(f)
            tp = cls.field_types()[f.name]
            if f.default is UNSET:
                default = "not set"
            elif f.default is not dataclasses.MISSING:
                default = _show(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = _show(f.default_factory())
            else:
                default = "(required)"
            rows.append((prefix + key, type_name(tp), default, f.metadata.get("help", "")))
            nested = _nested_options(tp)
            if nested is not None and (inline or not nested[1].schema_name):
                rows += nested[1].reference(prefix=f"{prefix}{key}{nested[0]}.", inline=inline)
        return rows


def _plain(value: Any) -> Any:
    if isinstance(value, Options):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return type(value)((_plain(k), _plain(v)) for k, v in value.items())
    return copy.deepcopy(value)


def _nested_options(tp: Any) -> tuple[str, type[Options]] | None:
    """The options class a field's type holds, and how its keys are reached: ('', cls) for the block
    itself, ('[]', cls) for the items of a list, ('.<name>', cls) for the values of a mapping."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for member in get_args(tp):
            found = _nested_options(member)
            if found is not None:
                return found
        return None
    if origin is list:
        found = _nested_options(get_args(tp)[0])
        return None if found is None else ("[]" + found[0], found[1])
    if origin is dict:
        found = _nested_options(get_args(tp)[1])
        return None if found is None else (".<name>" + found[0], found[1])
    if isinstance(tp, type) and issubclass(tp, Options):
        return ("", tp)
    return None


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


# --- the JSON schema ------------------------------------------------------------------------

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _overlay(base: dict, extra: dict) -> dict:
    """``extra`` laid over ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _overlay(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def schema_of(tp: Any, defs: dict) -> dict:
    """The JSON schema of a type annotation; classes with a ``schema_name`` go to ``defs`` and are referred to."""
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (Union, types.UnionType):
        members = [schema_of(member, defs) for member in get_args(tp)]
        if not all("type" in member for member in members):
            raise TypeError(f"a union of {tp!r} cannot be written as one JSON schema type list")
        out: dict = {"type": [member["type"] for member in members]}
        for member in members:
            out.update({k: v for k, v in member.items() if k != "type"})
        return out
    if origin is list:
        items = schema_of(get_args(tp)[0], defs)
        return {"type": "array", **({"items": items} if items else {})}
    if origin is dict:
        values = schema_of(get_args(tp)[1], defs)
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if isinstance(tp, type) and issubclass(tp, (Options, Part)):
        body = tp.object_schema(defs) if issubclass(tp, Options) else \
            {"type": "object", **({"description": tp.about} if tp.about else {}), **tp.schema_extra}
        if tp.schema_name is None:
            return body
        if defs.get(tp.schema_name, body) != body:
            raise TypeError(f"two classes are named {tp.schema_name!r} in the schema")
        defs[tp.schema_name] = body
        return {"$ref": f"#/$defs/{tp.schema_name}"}
    if tp in _JSON_TYPES:
        return {"type": _JSON_TYPES[tp]}
    raise TypeError(f"the option type {tp!r} has no JSON schema")


def field_schema(f: dataclasses.Field, tp: Any, defs: dict) -> dict:
    """The JSON schema of one field: its type's, with its default, bounds, help and extra keywords."""
    out = schema_of(tp, defs)
    if f.default is not dataclasses.MISSING and f.default is not UNSET:
        out["default"] = _plain(f.default)
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()  # a nested block's default is {}: the schema fills its own keys' defaults
        out["default"] = {} if isinstance(default, Options) else _plain(default)
    for meta, keyword in (("minimum", "minimum"), ("maximum", "maximum"), ("exclusive_minimum", "exclusiveMinimum")):
        if f.metadata.get(meta) is not None:
            out[keyword] = f.metadata[meta]
    if f.metadata.get("help"):
        out["description"] = f.metadata["help"]
    return _overlay(out, f.metadata.get("schema") or {})


def _object_schema(cls: type[Options], defs: dict) -> dict:
    hints = cls.field_types()
    fields = dataclasses.fields(cls)
    out: dict = {"type": "object", "additionalProperties": False}
    if cls.about:
        out["description"] = cls.about
    required = [config_key(f) for f in fields if is_required(f)]
    if required:
        out["required"] = required
    out.update(cls.schema_extra)
    out["properties"] = {config_key(f): field_schema(f, hints[f.name], defs) for f in fields}
    return out


def json_schema(cls: type[Options], **top: Any) -> dict:
    """The JSON schema (draft 2020-12) of a whole config whose top level is ``cls``: the classes with a
    ``schema_name`` under ``$defs``. ``top``: keywords put first (``$schema``, ``title``)."""
    defs: dict = {}
    body = _object_schema(cls, defs)
    return {**top, **body, "$defs": defs}
