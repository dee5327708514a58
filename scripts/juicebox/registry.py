"""One registry mechanism for every pluggable part: engines, rewards, pairing strategies,
benchmarks, pool steps and Data-Juicer executors.

As Data-Juicer maps op names in a recipe to op classes, ``type: <name>`` in the config (``op:``
for pool steps, ``executor:`` for Data-Juicer) maps to a class registered under that name with
``@REGISTRY.register("<name>")``. Every registered class declares its config keys once, as a
typed ``Options`` dataclass (:mod:`juicebox.spec`); the registry checks a block against them
(``parse``: while Snakemake plans, before any job) and builds the part from them (``build``:
inside the job). Type names live here only: the schema and the docs ask the registries.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from .spec import ConfigError, Options, closest

T = TypeVar("T", bound=type)


class Registry(dict):
    """Name → class for one kind of part.

    ``kind`` names the part in messages; ``key`` is the block's key that names the type;
    ``default`` is the type of a block without that key (None: the key is required).
    """

    def __init__(self, kind: str, key: str = "type", default: str | None = None):
        super().__init__()
        self.kind, self.key, self.default = kind, key, default

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``<key>: <name>`` resolve to the class (and set its ``type``)."""
        def add(cls: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} type {name!r} is registered twice")
            options = getattr(cls, "Options", None)
            if not (isinstance(options, type) and issubclass(options, Options)):
                raise TypeError(f"{self.kind} type {name!r}: {cls.__name__}.Options must be a juicebox.spec.Options")
            cls.type = name
            self[name] = cls
            return cls
        return add

    def lookup(self, name: Any, where: str | None = None) -> type:
        """The class registered as ``name``, or ConfigError naming the known types."""
        if name not in self:
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown {self.kind} {self.key} {name!r}{closest(str(name), sorted(self))}; "
                            f"known: {', '.join(sorted(self))}")
        return self[name]

    def type_of(self, block: Any, where: str) -> str:
        """The type a block names (the default if it names none)."""
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: expected a mapping with {self.key!r}, found {block!r}")
        name = block.get(self.key, self.default)
        if name is None:
            raise ConfigError(f"{where}: missing {self.key!r}; known {self.kind} types: {', '.join(sorted(self))}")
        self.lookup(name, f"{where}.{self.key}")
        return name

    def parse(self, block: dict, where: str) -> Options:
        """The block's options, checked against its type's ``Options`` (ConfigError names the key)."""
        cls = self[self.type_of(block, where)]
        return cls.Options.parse(block, where, extra_keys=(self.key,))

    def normalise(self, block: dict, where: str) -> dict:
        """The block with every option spelled out (defaults filled, numbers converted)."""
        return {self.key: self.type_of(block, where), **self.parse(block, where).to_dict()}

    def build(self, block: dict, where: str, **runtime: Any) -> Any:
        """The part a block describes: ``cls(options, **runtime)``."""
        return self[self.type_of(block, where)](self.parse(block, where), **runtime)

    def reference(self) -> str:
        """Markdown: every registered type with its docstring's first paragraph and its options."""
        out = []
        for name in sorted(self):
            cls = self[name]
            doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            out.append(f"#### `{self.key}: {name}`\n\n{doc}\n")
            rows = cls.Options.reference()
            if rows:
                out.append("| key | type | default | what |\n|---|---|---|---|")
                out += [f"| `{key}` | {tp} | {default} | {help_} |" for key, tp, default, help_ in rows]
            else:
                out.append("No options.")
            out.append("")
        return "\n".join(out)
