"""Data pool construction: validate sources, then apply seeded pool manipulations.

The manipulations are the Data-Juicer sandbox's DataPoolManipulators done as pure functions
of (records, parameters, seed): mix sources with weights, duplicate, downsample, split by a
stat into ranked sub-pools, merge. Every one is deterministic for a given seed, and every one
reports what it dropped or added so the ledger can account for each record.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .ledger import stage as ledger_stage
from .records import Invalid, prompt_text
from .registry import Registry
from .sources import RawItem, SourceError, SourceSpec, check_readable, read_items, to_canonical
from .spec import Options, option

log = logging.getLogger("juicebox")


@dataclass
class Validated:
    """The outcome of validating every source: canonical records per source and the quarantine."""

    by_source: dict[str, list[dict]] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    read: int = 0


def _reject(spec: SourceSpec, item: RawItem, reason: str) -> dict:
    """The quarantine entry of an item; its text is made writable as UTF-8 whatever the item held."""
    return {"source": spec.path, item.unit: item.line, "reason": _writable(reason), "raw": _writable(item.raw)}


def _location(entry: dict) -> str:
    """A quarantine entry's place in its source: ``line N``, ``row N`` (Parquet) or ``item N`` (the
    list of a JSON object)."""
    unit = next(unit for unit in ("line", "row", "item") if unit in entry)
    return f"{unit} {entry[unit]}"


def _writable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validate_sources(specs: list[SourceSpec], max_rejected_fraction: float, image_store: Path) -> Validated:
    """Read and validate all sources; quarantine bad records; fail if a source is mostly bad.

    Duplicate ids are checked across all sources of the pool: the first occurrence is kept.
    Images given inline (data URIs, base64, bytes) are written to files in ``image_store`` (the
    pool's ``images/`` folder, created here even when no record has one).
    """
    Path(image_store).mkdir(parents=True, exist_ok=True)
    for spec in specs:
        check_readable(spec)
    out = Validated()
    first_seen: dict[str, str] = {}
    for spec in specs:
        kept, rejected, total = [], [], 0
        for item in read_items(spec):
            total += 1
            try:
                record = to_canonical(item, spec, image_store=Path(image_store))
                where = f"{spec.path}:{item.line}"
                if record["id"] in first_seen:
                    raise Invalid(f"duplicate id {record['id']!r} (first seen at {first_seen[record['id']]})")
                first_seen[record["id"]] = where
                kept.append(record)
            except Invalid as why:
                rejected.append(_reject(spec, item, str(why)))
        if total == 0:
            raise SourceError(f"source {spec.name!r}: {spec.path} holds no records")
        fraction = len(rejected) / total
        log.info("source %s (%s): %d read, %d valid, %d rejected", spec.name, spec.path, total, len(kept),
                 len(rejected))
        if fraction > max_rejected_fraction:
            first = "; ".join(f"{_location(r)}: {r['reason']}" for r in rejected[:5])
            raise SourceError(
                f"{spec.path}: {len(rejected)} of {total} records rejected ({fraction:.1%}), more than "
                f"max_rejected_fraction {max_rejected_fraction}; first reasons: {first}")
        out.by_source[spec.name] = kept
        out.rejected.extend(rejected)
        out.read += total
    return out


# --- manipulations ------------------------------------------------------------------------

@dataclass
class StepResult:
    """Records after a manipulation, and what it dropped or added (by step name)."""

    records: list[dict]
    dropped: int = 0
    added: int = 0


def mix(pools: dict[str, list[dict]], weights: dict[str, float] | None, size: int | None,
        seed: int) -> StepResult:
    """Combine sources; with ``size``, draw from each in proportion to its weight (no replacement).

    Without ``size`` every record of every source is kept, in source order. Targets are rounded
    with the largest-remainder rule so they add up to ``size`` exactly.
    """
    names = list(pools)
    total_in = sum(len(p) for p in pools.values())
    if size is None:
        return StepResult([r for name in names for r in pools[name]])
    weights = weights or {name: 1.0 for name in names}
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"mix: weights name unknown sources {unknown}; sources are {names}")
    active = [n for n in names if weights.get(n, 0) > 0]
    wsum = sum(weights[n] for n in active)
    exact = {n: size * weights[n] / wsum for n in active}
    target = {n: int(exact[n]) for n in active}
    for n in sorted(active, key=lambda n: (-(exact[n] - target[n]), n))[: size - sum(target.values())]:
        target[n] += 1
    out = []
    for index, name in enumerate(names):
        want = target.get(name, 0)
        if want > len(pools[name]):
            raise ValueError(f"mix: source {name!r} has {len(pools[name])} records but its weight asks for "
                             f"{want}; lower size or add a duplicate step")
        picked = sorted(random.Random(seed + index).sample(range(len(pools[name])), want))
        out.extend(pools[name][i] for i in picked)
    return StepResult(out, dropped=total_in - len(out))


def duplicate(records: list[dict], times: int, seed: int, shuffle: bool = False) -> StepResult:
    """Repeat the pool ``times`` times; copies get ids ``<id>#dup<k>`` so ids stay unique."""
    if times < 1:
        raise ValueError(f"duplicate: times must be >= 1, got {times}")
    out = list(records)
    for k in range(1, times):
        out.extend({**r, "id": f"{r['id']}#dup{k}"} for r in records)
    if shuffle:
        random.Random(seed).shuffle(out)
    return StepResult(out, added=len(out) - len(records))


def downsample(records: list[dict], n: int, seed: int) -> StepResult:
    """Keep a seeded random ``n`` of the records, in their original order."""
    if n >= len(records):
        return StepResult(list(records))
    picked = sorted(random.Random(seed).sample(range(len(records)), n))
    return StepResult([records[i] for i in picked], dropped=len(records) - n)


STATS: dict[str, Callable[[dict], float]] = {
    "prompt_chars": lambda r: len(prompt_text(r["prompt"])),
    "prompt_words": lambda r: len(prompt_text(r["prompt"]).split()),
    "answer_chars": lambda r: len(r.get("answer") or ""),
    "num_references": lambda r: len(r.get("references") or []),
}


def stat_value(record: dict, stat: str) -> float:
    """A record's value for a split stat: a built-in name or ``meta.<field>`` (numbers only)."""
    if stat in STATS:
        return STATS[stat](record)
    if stat.startswith("meta."):
        value = record.get("meta", {}).get(stat[5:])
        if isinstance(value, list) and value:
            value = sum(value) / len(value)  # a list stat ranks by its mean, as upstream does
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"split_by_stat: record {record['id']!r} has no number at {stat}")
        return float(value)
    raise ValueError(f"split_by_stat: unknown stat {stat!r}; use one of {sorted(STATS)} or meta.<field>")


def split_by_stat(records: list[dict], stat: str, ratios: list[float]) -> list[list[dict]]:
    """Sort by ``stat`` ascending (ties by id) and cut at ``ratios``: ranked sub-pools, lowest first."""
    if any(not 0 < r < 1 for r in ratios) or ratios != sorted(ratios):
        raise ValueError(f"split_by_stat: ratios must be increasing and inside (0, 1), got {ratios}")
    ordered = sorted(records, key=lambda r: (stat_value(r, stat), r["id"]))
    cuts = [0] + [round(len(ordered) * r) for r in ratios] + [len(ordered)]
    return [ordered[a:b] for a, b in zip(cuts, cuts[1:])]


def merge(pools: list[list[dict]]) -> StepResult:
    """Concatenate pools in order; a record whose id was already merged is dropped."""
    seen, out = set(), []
    for pool in pools:
        for record in pool:
            if record["id"] not in seen:
                seen.add(record["id"])
                out.append(record)
    return StepResult(out, dropped=sum(len(p) for p in pools) - len(out))


# --- pool steps: config entries under pool.steps, by op name --------------------------------

POOL_STEPS = Registry("pool step", key="op")


class PoolStep:
    """One entry of ``pool.steps``: ``apply`` turns the pool into the next one.

    ``seed`` is the step's own seed (the workflow seed and the step's position); ``extra_pools``
    holds the records of every file a merge step names, read by the rule.
    """

    Options = Options

    def __init__(self, options: Options) -> None:
        self.options = options

    def apply(self, records: list[dict], seed: int, extra_pools: dict[str, list[dict]]) -> StepResult:
        """The records after this step, and what it dropped or added."""
        raise NotImplementedError


@POOL_STEPS.register("duplicate")
class Duplicate(PoolStep):
    """Repeat the pool ``times`` times (copies get ids ``<id>#dup<k>``)."""

    @dataclass(frozen=True)
    class Options(Options):
        """duplicate keys."""

        times: int = option(help="Copies of every record (copies get ids <id>#dup<k>).", minimum=1)
        shuffle: bool = option(False, "Shuffle the result with the step's seed.")

    def apply(self, records, seed, extra_pools):
        """The records repeated."""
        return duplicate(records, self.options.times, seed, self.options.shuffle)


@POOL_STEPS.register("downsample")
class Downsample(PoolStep):
    """Keep a seeded sample of ``n`` records, in their original order."""

    @dataclass(frozen=True)
    class Options(Options):
        """downsample keys."""

        n: int = option(help="Records to keep (a seeded sample in original order).", minimum=1)

    def apply(self, records, seed, extra_pools):
        """A seeded sample of n records."""
        return downsample(records, self.options.n, seed)


@POOL_STEPS.register("split_by_stat")
class SplitByStat(PoolStep):
    """Rank the pool by a stat, cut it into sub-pools and keep some of them (the sandbox's
    ``split_by_stat`` manipulation)."""

    @dataclass(frozen=True)
    class Options(Options):
        """split_by_stat keys."""

        stat: str = option(help="prompt_chars, prompt_words, answer_chars, num_references, or meta.<field>.")
        ratios: list[float] = option([1 / 3, 2 / 3], "Cut points of the ranked sub-pools (increasing, inside (0, 1)).")
        keep: list[int] | None = option(None, "Ranks (0 = lowest stat) of the sub-pools merged back into the pool "
                                        "(null: all).")

        def check(self) -> None:
            """Ratios increase inside (0, 1); ranks are >= 0; the stat is known."""
            if any(not 0 < r < 1 for r in self.ratios) or self.ratios != sorted(self.ratios):
                raise ValueError(f"ratios must be increasing and inside (0, 1), found {self.ratios}")
            if any(k < 0 or k > len(self.ratios) for k in self.keep or []):
                raise ValueError(f"keep names ranks {self.keep}, but {len(self.ratios)} cut points make "
                                 f"{len(self.ratios) + 1} sub-pools (ranks 0..{len(self.ratios)})")
            if self.stat not in STATS and not self.stat.startswith("meta."):
                raise ValueError(f"unknown stat {self.stat!r}; use one of {sorted(STATS)} or meta.<field>")

    def apply(self, records, seed, extra_pools):
        """The kept sub-pools, lowest rank first."""
        subpools = split_by_stat(records, self.options.stat, self.options.ratios)
        log.info("split_by_stat %s: sub-pool sizes (lowest rank first) %s", self.options.stat,
                 [len(p) for p in subpools])
        keep = self.options.keep if self.options.keep is not None else list(range(len(subpools)))
        kept = [r for k in keep for r in subpools[k]]
        return StepResult(kept, dropped=len(records) - len(kept))


@POOL_STEPS.register("merge")
class Merge(PoolStep):
    """Merge other canonical-record files (e.g. another experiment's pool) into the pool."""

    @dataclass(frozen=True)
    class Options(Options):
        """merge keys."""

        paths: list[str] = option(help="Canonical-record JSONL files merged in; repeated ids are dropped.")

        def check(self) -> None:
            """At least one file."""
            if not self.paths:
                raise ValueError("paths: give at least one file")

    def apply(self, records, seed, extra_pools):
        """The pool, then every file's records whose id is new."""
        merged = merge([records] + [extra_pools[p] for p in self.options.paths])
        incoming = sum(len(extra_pools[p]) for p in self.options.paths)
        # Records merged in from other pools count as added; repeated ids among them as dropped.
        return StepResult(merged.records, dropped=merged.dropped, added=incoming)


def build_pool(validated: Validated, mix_cfg: dict | None, steps: list[dict], seed: int,
               extra_pools: dict[str, list[dict]] | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Mix the validated sources and run the pool steps; return the pool and its ledger stage."""
    mix_cfg = mix_cfg or {}
    result = mix(validated.by_source, mix_cfg.get("weights"), mix_cfg.get("size"), seed)
    dropped: dict[str, int] = {"mix": result.dropped} if result.dropped else {}
    added: dict[str, int] = {}
    records = result.records
    for index, step in enumerate(steps, start=1):
        op = POOL_STEPS.type_of(step, f"pool.steps[{index - 1}]")
        out = POOL_STEPS.build(step, f"pool.steps[{index - 1}]").apply(records, seed + 1000 * index, extra_pools or {})
        log.info("pool step %d %s: %d -> %d records", index, op, len(records), len(out.records))
        key = f"{op}#{index}"
        if out.dropped:
            dropped[key] = dropped.get(key, 0) + out.dropped
        if out.added:
            added[key] = out.added
        records = out.records
    stage = ledger_stage(validated.read, len(records), dropped, len(validated.rejected), added)
    return records, stage
