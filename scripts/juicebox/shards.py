"""Sharded, resumable per-prompt work (rollouts, rewards).

The prompts of a stage are split into S shards by position (shard i takes prompts i, i+S, ...),
so every shard gets a similar mix and the split depends only on the input order. A shard job
appends each finished prompt as one complete JSON line to ``<output>.partial`` (flushed and
fsynced), which is not a Snakemake output, so Snakemake leaves it alone when a job is killed.
On restart the finished ids are read back (a torn last line is cut off) and skipped; when the
shard is complete the partial file is renamed onto the output. The partial file starts with a
header holding a fingerprint of everything that decides the answers (model, sampling, engine,
reward config, prompt ids): a partial file from other settings is set aside, never mixed in.

A rerun after a kill writes the bytes an uninterrupted run writes. Work done in batches (the
``hf`` engine's generation batches, the reward chunks) is batched by position in the whole
shard, never by what is left (:func:`pending_batches`): a batch that was partly appended when
the job was killed is done again whole, with the same members and seed, and only its prompts
not yet in the partial file are appended.

Debugging knob: ``JUICEBOX_DEBUG_APPEND_DELAY=<seconds>`` makes every append sleep that long
after the record is durable, so that a test (or a person) can kill a job between two appends
of one batch. It changes no output; leave it unset otherwise.

``gather`` puts the shards back together in the stage's input order and checks that every
prompt appears exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Sequence, TypeVar

from .io import dumps, read_jsonl, write_jsonl

log = logging.getLogger("juicebox")
T = TypeVar("T")
APPEND_DELAY_ENV = "JUICEBOX_DEBUG_APPEND_DELAY"


class ShardError(RuntimeError):
    """Shards that do not add up to the stage's prompts."""


def fingerprint(obj: Any) -> str:
    """A stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_shard(name: str) -> tuple[int, int]:
    """``"2-of-4"`` → (1, 4): zero-based index and count."""
    index, _, count = name.partition("-of-")
    i, n = int(index), int(count)
    if not 1 <= i <= n:
        raise ShardError(f"shard {name!r}: index must be between 1 and {n}")
    return i - 1, n


def shard_names(count: int) -> list[str]:
    """Names of the shards of a stage split ``count`` ways (``1-of-N`` ... ``N-of-N``)."""
    return [f"{i}-of-{count}" for i in range(1, count + 1)]


def select(records: list[dict], index: int, count: int) -> list[dict]:
    """The records of one shard: every ``count``-th record starting at ``index``."""
    return records[index::count]


def pending_batches(items: Sequence[T], size: int, done: Collection[str],
                    key: Callable[[T], str] = lambda item: item["id"]) -> Iterator[list[T]]:
    """The batches of ``size`` consecutive ``items`` that still hold an item whose key is not in ``done``.

    Batches are fixed by position in ``items`` (the whole shard, in a fixed order; the last
    batch may be shorter), whatever ``done`` holds, so a resumed run forms the batches an
    uninterrupted run forms. A batch is yielded whole, also when some of its items are done:
    the caller redoes it (same members, same seed) and keeps only the results not yet written.
    """
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    for start in range(0, len(items), size):
        batch = list(items[start:start + size])
        if any(key(item) not in done for item in batch):
            yield batch


class ShardFile:
    """Append-only progress of one shard, resumable after a kill."""

    def __init__(self, output: str | os.PathLike, header: dict):
        self.output = Path(output)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.header = {"fingerprint": fingerprint(header)}
        self.records: list[dict] = []
        self._open()

    def _open(self) -> None:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.exists():
            lines, good_bytes = self._read_complete_lines()
            if lines and lines[0] == self.header:
                self.records = lines[1:]
                with open(self.partial, "r+b") as handle:
                    handle.truncate(good_bytes)
                log.info("resuming %s: %d prompt(s) already done", self.partial, len(self.records))
            else:
                stale = self.partial.with_name(self.partial.name + ".stale")
                os.replace(self.partial, stale)
                log.warning("%s was written with other settings; moved to %s and starting over", self.partial, stale)
        if not self.partial.exists():
            with open(self.partial, "w", encoding="utf-8") as handle:
                handle.write(dumps(self.header) + "\n")
        self._handle = open(self.partial, "a", encoding="utf-8")

    def _read_complete_lines(self) -> tuple[list[dict], int]:
        """Parsed complete lines and the byte length they span (a torn tail is dropped)."""
        lines, good_bytes = [], 0
        for raw in self.partial.read_bytes().split(b"\n")[:-1]:  # after the last newline: a torn line
            try:
                lines.append(json.loads(raw))
            except ValueError:  # not JSON, or not UTF-8: keep the lines before it, redo the rest
                break
            good_bytes += len(raw) + 1
        return lines, good_bytes

    @property
    def done(self) -> set[str]:
        """Ids already finished."""
        return {r["id"] for r in self.records}

    def append(self, record: dict) -> None:
        """Write one finished prompt as a single line and make it durable."""
        self._handle.write(dumps(record) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records.append(record)
        delay = float(os.environ.get(APPEND_DELAY_ENV) or 0)
        if delay > 0:  # debugging knob (see the module docstring): room to kill between two appends
            time.sleep(delay)

    def finish(self, order: Iterable[str]) -> int:
        """Write the output in the shard's prompt order and remove the partial file."""
        self._handle.close()
        by_id = {r["id"]: r for r in self.records}
        n = write_jsonl(self.output, (by_id[i] for i in order if i in by_id))
        self.partial.unlink()
        return n


def gather(shard_paths: list[str], expected_ids: list[str]) -> list[dict]:
    """All shard records in the stage's input order; each expected id at most once, nothing else."""
    seen: dict[str, dict] = {}
    for path in shard_paths:
        for record in read_jsonl(path):
            if record["id"] in seen:
                raise ShardError(f"{path}: prompt {record['id']!r} appears in more than one shard record")
            seen[record["id"]] = record
    unexpected = set(seen) - set(expected_ids)
    if unexpected:
        raise ShardError(f"shards hold {len(unexpected)} prompt(s) not in the input, e.g. {sorted(unexpected)[:3]}")
    return [seen[i] for i in expected_ids if i in seen]
