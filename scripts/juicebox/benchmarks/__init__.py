"""Benchmarks by name: ``type: math`` in a benchmark's config resolves to one registered class.

Each benchmark class reads a public file format into items and scores predictions for them:

* ``load()`` → ``[{"id", "prompt", "gold", "images", "meta"}]``, in file order, the first ``limit``
  only. Every type reads an item's images (``images`` or ``image``: a path relative to
  ``image_root``, or a ``data:`` URI), checks that each decodes, and the evaluation shows them to
  the model with the prompt.
  Files are read with ``sources.read_items`` (JSONL, JSON array, Parquet or CSV, by suffix), so a
  bad line fails naming ``file:line``; an item without an id gets ``<benchmark name>-<line>``.
* ``score(items, predictions, seed)`` → (per-item rows, metrics). Every metric is reported with a
  95% percentile-bootstrap interval over items (seeded), and the metrics say how they were made.

The per-item rows keep the predictions and the gold, so ``rescore`` can recompute the metrics
from a written ``eval/{bench}/{variant}.jsonl`` alone: anyone can check a reported accuracy.
"""

from __future__ import annotations

import logging
from pathlib import Path
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence, TypedDict

from ..io import read_jsonl
from ..registry import Registry
from ..scoring import bootstrap_ci
from ..sources import RawItem, SourceError, SourceSpec, read_items
from ..spec import Options, option

log = logging.getLogger("juicebox")

BENCHMARKS = Registry("benchmark")
register = BENCHMARKS.register
IMAGE_FIELDS = ("images", "image")
FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
CI_ALPHA = 0.05


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded or scored as configured; the message says where and why."""


class Item(TypedDict):
    """One benchmark item: ``gold`` is a final answer (str) or a list of reference captions;
    ``images`` the item's images (paths or ``data:`` URIs) shown with the prompt."""

    id: str
    prompt: str
    gold: str | list[str]
    images: list[str]
    meta: dict[str, Any]


def load_benchmark(name: str, config: dict) -> "Benchmark":
    """Build the benchmark ``name`` from its config entry (``type`` picks the class)."""
    return BENCHMARKS.build(config, f"eval.benchmarks.{name}", name=name)


@dataclass(frozen=True)
class BenchmarkOptions(Options):
    """Keys every benchmark takes."""

    path: str = option(help="The benchmark file (JSONL, JSON array, Parquet or CSV, by suffix).")
    limit: int | None = option(None, "Only the first N items (null: all).", minimum=1)
    fields: dict[str, str | list[str]] = option({}, "Source field names to read instead of the type's defaults, "
                                                "e.g. {prompt: instruction}.")
    n_resamples: int = option(1000, "Bootstrap resamples of the 95% intervals.", minimum=1)
    image_root: str | None = option(None, "Folder relative image paths are resolved against "
                                    "(null: the benchmark file's folder).")


class Benchmark:
    """What every benchmark shares: reading records with their location, ids, limit, checks of the
    predictions, and the bootstrap summary. Subclasses add ``make_item`` and ``score``.

    Config keys: ``BenchmarkOptions`` plus the type's own (its ``Options``).
    """

    type: ClassVar[str] = ""
    # The record task the benchmark measures (the ``task`` of pool records that train for it).
    task: ClassVar[str] = ""
    # canonical field -> source field names tried in order; ``fields`` in the config replaces them.
    # Every type also reads ``images`` (IMAGE_FIELDS unless its default_fields say otherwise).
    default_fields: ClassVar[dict[str, tuple[str, ...]]] = {"id": ("id",)}

    Options = BenchmarkOptions

    def __init__(self, options: BenchmarkOptions, name: str):
        self.options, self.name = options, name
        self.path, self.limit, self.n_resamples = options.path, options.limit, options.n_resamples
        self.image_root = options.image_root
        self.fields = self._resolve_fields(options.fields)

    def _resolve_fields(self, overrides: dict[str, str | list[str]]) -> dict[str, tuple[str, ...]]:
        defaults = {"images": IMAGE_FIELDS, **self.default_fields}
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise BenchmarkError(f"benchmark {self.name!r}: unknown fields {sorted(unknown)}; "
                                 f"a {self.type} benchmark knows {sorted(defaults)}")
        resolved = dict(defaults)
        for key, value in overrides.items():
            resolved[key] = (value,) if isinstance(value, str) else tuple(value)
        return resolved

    def describe(self) -> dict[str, Any]:
        """The settings that determine the scores, for the metrics file."""
        return {"name": self.name, "type": self.type, "path": self.path, "limit": self.limit,
                "image_root": self.image_root, "fields": {k: list(v) for k, v in self.fields.items()}}

    # --- reading ---------------------------------------------------------------------------

    def load(self) -> list[Item]:
        """Read the benchmark file into items (the first ``limit``); a bad record fails naming it."""
        items: list[Item] = []
        seen: set[str] = set()
        for raw in self._raw_items():
            if self.limit is not None and len(items) >= self.limit:
                break
            where = _where(self.path, raw)
            if raw.error:
                raise BenchmarkError(f"{where}: {raw.error}")
            if not isinstance(raw.value, dict):
                raise BenchmarkError(f"{where}: expected an object, found {type(raw.value).__name__}")
            try:
                item = self.make_item(raw.value, raw.line)
                item = {**item, "images": self.images(self.field(raw.value, "images", required=False))}
            except (KeyError, TypeError, ValueError) as err:
                raise BenchmarkError(f"{where}: {err}") from err
            if item["id"] in seen:
                raise BenchmarkError(f"{where}: duplicate id {item['id']!r}")
            seen.add(item["id"])
            items.append(item)
        if not items:
            raise BenchmarkError(f"benchmark {self.name!r}: no items in {self.path}")
        log.info("benchmark %s: %d %s items from %s", self.name, len(items), self.type, self.path)
        return items

    def _raw_items(self) -> list[RawItem]:
        if not self.path:
            raise BenchmarkError(f"benchmark {self.name!r}: no path: set")
        path = Path(self.path)
        fmt = FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise BenchmarkError(f"benchmark {self.name!r}: cannot read {path}: expected a file ending in "
                                 f"{', '.join(FILE_FORMATS)}")
        if not path.is_file():
            raise BenchmarkError(f"benchmark {self.name!r}: file not found: {path}")
        try:
            return list(read_items(SourceSpec(name=self.name, path=str(path), format=fmt)))
        except SourceError as err:
            raise BenchmarkError(str(err)) from err

    def make_item(self, record: dict, line: int) -> Item:
        """Turn one source record into an item; raise ValueError/KeyError saying what is wrong."""
        raise NotImplementedError

    def field(self, record: dict, key: str, required: bool = True) -> Any:
        """The value of canonical field ``key``: the first configured source field present."""
        for source in self.fields[key]:
            if record.get(source) is not None:
                return record[source]
        if required:
            raise ValueError(f"missing field {key!r} (looked for {', '.join(map(repr, self.fields[key]))})")
        return None

    def images(self, images: Any) -> list[str]:
        """An item's images, each in any form a record's may take (:mod:`juicebox.images`): paths
        resolved against ``image_root`` (default the benchmark file's folder), embedded images as
        ``data:`` URIs; each is checked to decode."""
        from ..images import normalise_image
        from ..sources import Invalid

        if images is None:
            return []
        root = Path(self.image_root) if self.image_root else Path(self.path or ".").parent
        try:
            return [normalise_image(image, root, None) for image in (images if isinstance(images, list) else [images])]
        except Invalid as err:
            raise ValueError(str(err)) from err

    def item_id(self, record: dict, line: int) -> str:
        """The record's id, or ``<name>-<line>`` when it has none."""
        value = self.field(record, "id", required=False)
        if value is None:
            return f"{self.name}-{line}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"id must be a string or integer, found {type(value).__name__}")
        return str(value)

    def used_fields(self) -> set[str]:
        """Source field names this benchmark reads; the others go to ``meta``."""
        return {source for sources in self.fields.values() for source in sources}

    # --- scoring ---------------------------------------------------------------------------

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Score predictions (several samples per item) → (per-item rows, metrics)."""
        raise NotImplementedError

    def check_predictions(self, items: list[Item], predictions: dict) -> dict[str, list[str]]:
        """Predictions keyed by item id as strings; fail if any item has none or ids are unknown."""
        by_id = {str(key): value for key, value in predictions.items()}
        ids = {item["id"] for item in items}
        missing = [item["id"] for item in items if not by_id.get(item["id"])]
        if missing:
            raise BenchmarkError(f"benchmark {self.name!r}: no predictions for {len(missing)} items "
                                 f"(e.g. {missing[:5]})")
        unknown = sorted(set(by_id) - ids)
        if unknown:
            raise BenchmarkError(f"benchmark {self.name!r}: predictions for {len(unknown)} ids that are not "
                                 f"items (e.g. {unknown[:5]})")
        for key, value in by_id.items():
            if isinstance(value, str) or not all(isinstance(p, str) for p in value):
                raise BenchmarkError(f"benchmark {self.name!r}: predictions for {key!r} must be a list of strings")
        return by_id

    def summary(self, n: int, metrics: dict[str, float], per_item: dict[str, list[float]], seed: int,
                samples: Sequence[int], statistic: str) -> dict:
        """The metrics file: values, bootstrap CIs of the per-item values, and how they were made."""
        return {
            "n": n,
            "metrics": {name: float(value) for name, value in metrics.items()},
            "ci95": {name: list(bootstrap_ci(values, seed, self.n_resamples, CI_ALPHA))
                     for name, values in per_item.items()},
            "samples_per_item": {"min": min(samples), "max": max(samples)},
            "bootstrap": {"method": "percentile", "over": "items", "statistic": statistic,
                          "n_resamples": self.n_resamples, "alpha": CI_ALPHA, "seed": seed},
            "benchmark": self.describe(),
        }


def _where(path: str | None, raw: RawItem) -> str:
    return f"{path}:{raw.line}" if raw.unit == "line" else f"{path}: {raw.unit} {raw.line}"


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} must be non-empty text, found {value!r:.60}")
    return value


# --- checking a written result -------------------------------------------------------------

def rescore(rows_path: str, config: dict | None = None, seed: int = 0) -> dict:
    """Recompute the metrics of a written ``eval/{bench}/{variant}.jsonl`` from its predictions and
    gold alone (math: math-verify only), ignoring the scores stored in it.

    ``config`` is the benchmark's config entry (its ``type``, default math, and e.g. ``k``); its
    ``path`` is not read. Use the seed of the original run to reproduce its intervals too.
    """
    rows = read_jsonl(rows_path)
    if not rows:
        raise BenchmarkError(f"{rows_path}: no rows to rescore")
    options = {"type": "math", **(config or {}), "path": rows_path}
    benchmark = load_benchmark(Path(rows_path).parent.name or "rescore", options)
    items: list[Item] = []
    for lineno, row in enumerate(rows, start=1):
        missing = [key for key in ("id", "predictions", "gold") if key not in row]
        if missing:
            raise BenchmarkError(f"{rows_path}: row {lineno} lacks {', '.join(missing)}")
        items.append({"id": str(row["id"]), "prompt": row.get("prompt", ""), "gold": row["gold"], "images": [],
                      "meta": {}})
    predictions = {str(row["id"]): row["predictions"] for row in rows}
    return benchmark.score(items, predictions, seed)[1]



# Registers the benchmark types (one module each).
from .caption import CaptionBenchmark  # noqa: E402,F401
from .math_answers import MathBenchmark  # noqa: E402,F401
from .multiple_choice import MultipleChoiceBenchmark, extract_choice, render_choices  # noqa: E402,F401
