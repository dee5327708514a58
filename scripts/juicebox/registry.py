"""One registry mechanism for every pluggable part: engines, rewards, pairing strategies, benchmarks.

As Data-Juicer maps op names in a recipe to op classes, ``type: <name>`` in the config maps to
a class registered under that name with ``@REGISTRY.register("<name>")``.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


class Registry(dict):
    """Name → class for one kind of part (``kind`` is used in error messages)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``type: <name>`` resolve to the class (and set its ``type``)."""
        def add(cls: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} type {name!r} is registered twice")
            cls.type = name
            self[name] = cls
            return cls
        return add

    def lookup(self, name: str, where: str | None = None, error: type[Exception] = ValueError) -> type:
        """The class registered as ``name``, or ``error`` naming the known types."""
        if name not in self:
            prefix = f"{where}: " if where else ""
            raise error(f"{prefix}unknown {self.kind} type {name!r}; known types: {', '.join(sorted(self))}")
        return self[name]
