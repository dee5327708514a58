"""The ``python`` reward: any function ``f(record, sample) -> float | None`` named in the config."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..spec import option
from .base import Reward, RewardContext, RewardOptions, Scores, register


def load_function(function: str, path: str | None = None) -> Callable:
    """``"module:function"`` imported from sys.path, or ``function`` (or ``"x:function"``) from the
    .py file at ``path``; a missing module, file or function raises naming it."""
    module_name, _, attr = function.rpartition(":")
    if not attr:
        raise ValueError(f"python reward: function {function!r} should be 'module:function'")
    if path:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"python reward: path {path} is not a file")
        # A name unique per file, so two reward files with the same stem do not replace each other.
        unique = f"juicebox_reward_{file.stem}_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(unique, file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        where = str(path)
    else:
        if not module_name:
            raise ValueError(f"python reward: function {function!r} should be 'module:function' (or give `path:`)")
        module = importlib.import_module(module_name)
        where = module_name
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"python reward: {where} has no function {attr!r}")
    return fn


@register("python")
class PythonFunction(Reward):
    """The value ``function(record, sample)`` returns: a number, or None when it does not apply.

    ``function``: ``"module:function"`` with the module importable from sys.path, or the
    function's name in the file given by ``path``. An exception or a value that is not a number
    stops the run with an error naming the function, the prompt id and the sample index.
    """

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """python keys."""

        function: str = option(help="'module:function' (importable), or the function's name in the file `path`.")
        path: str | None = option(None, "A Python file defining `function`.")

    def __init__(self, options: Options, context: RewardContext | None = None) -> None:
        super().__init__(options, context)
        function, path = options.function, options.path
        self.function, self.path = function, path
        self._fn = load_function(function, path)

    def settings(self) -> dict:
        """The function and the file it came from."""
        return {"function": self.function, "path": self.path}

    def score_applicable(self, records: list[dict]) -> Scores:
        """Call the function on every sample."""
        out: Scores = []
        for record in records:
            row = []
            for sample in record.get("samples") or []:
                where = f"python reward {self.function}: prompt {record.get('id')} sample {sample.get('index')}"
                try:
                    value = self._fn(record, sample)
                except Exception as err:
                    raise RuntimeError(f"{where}: {type(err).__name__}: {err}") from err
                if value is None:
                    row.append((None, {"reason": f"{self.function} returned None"}))
                elif isinstance(value, (int, float)):
                    row.append((float(value), {}))
                else:
                    raise TypeError(f"{where}: returned {value!r}; expected a number or None")
            out.append(row)
        return out
