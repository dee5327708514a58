"""The one place Juicebox reads and writes files: JSONL, JSON, YAML, atomically.

Every output is written to a temporary file in the destination folder and renamed over the
target, so a killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


# Characters that JSON leaves raw but that Python's str.splitlines (and JavaScript) take as line
# breaks: written as escapes, so that every line of a JSON Lines file is one record for any reader.
_LINE_BREAKS = (("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def dumps(obj: Any) -> str:
    """Serialise one record the same way everywhere (stable key order, UTF-8 kept, no raw line breaks)."""
    text = json.dumps(obj, ensure_ascii=False, sort_keys=False)
    for char, escape in _LINE_BREAKS:
        text = text.replace(char, escape)
    return text


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records as JSON Lines atomically; return how many were written."""
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            try:
                handle.write(dumps(record) + "\n")
            except (TypeError, ValueError) as err:  # UnicodeEncodeError is a ValueError
                rid = record.get("id") if isinstance(record, dict) else None
                raise ValueError(f"{path}: record {count + 1}" + (f" (id {rid!r})" if rid is not None else "")
                                 + f" cannot be written as JSON Lines: {type(err).__name__}: {err}") from err
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON Lines file written by Juicebox; a bad line raises naming file and line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
    return records


def write_json(path: str | os.PathLike, obj: Any, sort_keys: bool = False) -> None:
    """Write one JSON document atomically, indented for people to read.

    Keys are in the order given (every dict we write is built in a fixed order), or sorted with
    ``sort_keys``; lists are written as given, so a list made from a set must be sorted first.
    """
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, sort_keys=sort_keys)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read one JSON document."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class DuplicateKeyError(ValueError):
    """A YAML mapping holds the same key twice (YAML itself would keep the last silently)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that holds a key twice."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(f"{key_node.start_mark.name}:{line}: key {key!r} appears twice in one "
                                        f"mapping (first at line {seen[key]}); YAML would keep only the last")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """Read one YAML document; a syntax error or a key given twice names the file and line."""
    with open(path, encoding="utf-8") as handle:
        try:
            return yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML: {err}") from err


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    """Write one YAML document atomically, keys in the order given."""
    with atomic_open(path) as handle:
        yaml.safe_dump(obj, handle, sort_keys=False, allow_unicode=True, default_flow_style=False)


def setup_logging(log_path: str | os.PathLike | None) -> logging.Logger:
    """Send this script's logging and stderr to the rule's log file (or stderr if none)."""
    logger = logging.getLogger("juicebox")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", encoding="utf-8", buffering=1)
        sys.stderr = stream
    else:
        stream = sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    return logger
