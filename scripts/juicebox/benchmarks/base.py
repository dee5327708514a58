"""What every benchmark shares: the ``BENCHMARKS`` registry, :class:`Benchmark` (reading items with
their location, images and prompt template; checking predictions; the bootstrap summary) and the
options every type takes, :func:`load_benchmark`, and :func:`rescore` (a written result checked
from its rows alone).

The benchmark types themselves are modules of this package, registered when
:mod:`juicebox.benchmarks` is imported.
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, TypedDict

from ..engines import NEUTRAL_SAMPLING, PRESETS
from ..images import normalise_image
from ..io import read_jsonl
from ..records import Invalid
from ..registry import Registry
from ..scoring import Figures, bootstrap_figures, figure_values, mean_figures
from ..sources import RawItem, SourceError, SourceSpec, read_items
from ..spec import Options, option

log = logging.getLogger("juicebox")

BENCHMARKS = Registry("benchmark")
register = BENCHMARKS.register
IMAGE_FIELDS = ("images", "image")
FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "tsv"}
CI_ALPHA = 0.05
# The sampling of the benchmark types that decode greedily: argmax, one answer per item.
GREEDY: dict[str, Any] = {"n": 1, "temperature": 0.0}
# The sampling keys a preset sets: a benchmark's own preset replaces these, whatever the layer below says.
PRESET_KEYS = ("preset", "temperature", *NEUTRAL_SAMPLING)
SamplingPreset = Literal[("custom", *PRESETS)]


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded or scored as configured; the message says where and why."""


class Item(TypedDict):
    """One benchmark item: ``gold`` is a final answer (str) or a list (reference captions, the
    annotators' answers, the annotated objects); ``prompt`` the prompt shown to the model (in the
    benchmark's ``prompt_template``); ``images`` the paths of the item's images shown with the
    prompt."""

    id: str
    prompt: str
    gold: str | list[str]
    images: list[str]
    meta: dict[str, Any]


def load_benchmark(name: str, config: dict) -> "Benchmark":
    """Build the benchmark ``name`` from its config entry (``type`` picks the class)."""
    return BENCHMARKS.build(config, f"eval.benchmarks.{name}", name=name)


@dataclass(frozen=True)
class SamplingOptions(Options):
    """A benchmark's own sampling: any key of ``eval.sampling`` (the keys not given are null)."""

    preset: SamplingPreset | None = option(None, "A sampling preset (as in eval.sampling); it replaces the "
                                           "temperature, top_p, top_k and penalties below it.")
    n: int | None = option(None, "Answers per item.", minimum=1)
    temperature: float | None = option(None, "Sampling temperature; 0: argmax decoding.", minimum=0)
    top_p: float | None = option(None, "Nucleus sampling mass.", exclusive_minimum=0, maximum=1)
    top_k: int | None = option(None, "Top-k sampling; 0: off.", minimum=0)
    repetition_penalty: float | None = option(None, "Repetition penalty; 1: off.", exclusive_minimum=0)
    presence_penalty: float | None = option(None, "Presence penalty (OpenAI semantics); 0: off.", minimum=-2,
                                            maximum=2)
    frequency_penalty: float | None = option(None, "Frequency penalty (OpenAI semantics); 0: off.", minimum=-2,
                                             maximum=2)
    max_tokens: int | None = option(None, "Most tokens per answer.", minimum=1)

    def given(self) -> dict[str, Any]:
        """The keys that were set."""
        return {key: value for key, value in self.to_dict().items() if value is not None}


def group_by_option(default: list[str]) -> Any:
    """The ``group_by`` option of the types that also report their metrics per group of items."""
    return option(default, "Item fields whose values split the metrics: `<metric>[<field>=<value>]` for each value "
                  "(items without the field are in no group of it).")


@dataclass(frozen=True)
class BenchmarkOptions(Options):
    """Keys every benchmark takes."""

    path: str = option(help="The benchmark file, by suffix: JSONL, JSON (an array, or an object holding it under "
                       "`data`, `questions` or `annotations`), Parquet, CSV or VLMEvalKit's TSV.")
    limit: int | None = option(None, "Only the first N items (null: all).", minimum=1)
    fields: dict[str, str | list[str]] = option({}, "Source field names to read instead of the type's defaults, "
                                                "e.g. {prompt: instruction}.")
    n_resamples: int = option(1000, "Bootstrap resamples of the 95% intervals.", minimum=1)
    image_root: str | None = option(None, "Folder relative image paths are resolved against "
                                    "(null: the benchmark file's folder).")
    image_template: str | None = option(None, "An item's image path made from its fields, with Python format "
                                        "specs, relative to image_root: `train_images/{image_id}.jpg` (TextVQA), "
                                        "`val2014/COCO_val2014_{image_id:012d}.jpg` (VQAv2) (null: the item's "
                                        "`images` or `image` field).")
    image_store: str = option("results/eval_images", "Folder the embedded images (base64 cells of a TSV, data: "
                              "URIs, image bytes) are written to, one file per image named by its content hash as "
                              "in the pool's image store; shared by every benchmark (relative to the working "
                              "directory).")
    prompt_template: str | None = option(None, "The prompt shown to the model, with `{prompt}` where the item's "
                                         "prompt goes (other braces are kept as written), e.g. \"{prompt}\\nAnswer "
                                         "the question using a single word or phrase.\" (null: the item's prompt).")
    sampling: SamplingOptions | None = option(None, "This benchmark's sampling: its keys laid over the type's "
                                              "default (caption, chair, multiple_choice, vqa, yes_no: greedy, "
                                              "n 1; math: eval.sampling); max_tokens is eval.sampling's unless "
                                              "set here (null: the type's default).")

    def check(self) -> None:
        """A prompt template says where the prompt goes; an image template names fields."""
        if self.prompt_template is not None and "{prompt}" not in self.prompt_template:
            raise ValueError(f"prompt_template: must contain {{prompt}} (where the item's prompt goes), found "
                             f"{self.prompt_template!r}")
        if self.image_template is not None:
            try:
                names = [name for _, name, _, _ in string.Formatter().parse(self.image_template) if name is not None]
            except ValueError as err:
                raise ValueError(f"image_template: {err} in {self.image_template!r}") from None
            if not names or not all(name and not name[0].isdigit() for name in names):
                raise ValueError(f"image_template: must name the record's fields in braces, e.g. "
                                 f"'train_images/{{image_id}}.jpg', found {self.image_template!r}")


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
    # The type's sampling, laid over eval.sampling's max_tokens (None: eval.sampling as it is).
    default_sampling: ClassVar[dict[str, Any] | None] = None
    # Metrics for which less is better (the metrics file lists them).
    lower_is_better: ClassVar[tuple[str, ...]] = ()
    # The figures of summed per-item statistics (each row's ``stats``); default: the mean of each
    # per-item value (every statistic divided by ``items``, 1 per item).
    figures: ClassVar[Figures] = staticmethod(mean_figures)

    Options = BenchmarkOptions

    def __init__(self, options: BenchmarkOptions, name: str):
        self.options, self.name = options, name
        self.path, self.limit, self.n_resamples = options.path, options.limit, options.n_resamples
        self.image_root, self.image_store = options.image_root, Path(options.image_store)
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
                "image_root": self.image_root, "image_template": self.options.image_template,
                "fields": {k: list(v) for k, v in self.fields.items()},
                "prompt_template": self.options.prompt_template}

    def effective_sampling(self, eval_sampling: dict[str, Any]) -> dict[str, Any]:
        """The sampling block this benchmark is evaluated with, given ``eval.sampling``.

        Without a ``default_sampling`` of its type and without keys of its own: ``eval.sampling``
        as it is. Otherwise the type's default (caption, chair, multiple_choice, vqa, yes_no:
        greedy, one answer) with ``eval.sampling``'s ``max_tokens`` (the answer budget of the
        model), or ``eval.sampling`` when the type has no default (math), then the benchmark's own
        ``sampling`` keys over that. A ``preset`` among its own keys replaces the values a preset
        sets (temperature, top_p, top_k, penalties) of the layer below, so that they do not
        override the preset; ``n`` and ``max_tokens`` carry on.
        """
        own = self.options.sampling.given() if self.options.sampling is not None else {}
        if self.default_sampling is None:
            base = dict(eval_sampling)
        else:
            budget = {"max_tokens": eval_sampling["max_tokens"]} if "max_tokens" in eval_sampling else {}
            base = {**budget, **self.default_sampling}
        if "preset" in own:
            base = {key: value for key, value in base.items() if key not in PRESET_KEYS}
        return {**base, **own}

    def render_prompt(self, prompt: str) -> str:
        """The prompt shown to the model: ``prompt_template`` with ``{prompt}`` replaced (plain text
        replacement: other braces stay as written), or the item's prompt without a template."""
        template = self.options.prompt_template
        return prompt if template is None else template.replace("{prompt}", prompt)

    # --- reading ---------------------------------------------------------------------------

    def load(self) -> list[Item]:
        """Read the benchmark file into items (the first ``limit``), each prompt in the
        ``prompt_template``; a bad record fails naming it."""
        items: list[Item] = []
        seen: set[str] = set()
        for raw in self._raw_items():
            if self.limit is not None and len(items) >= self.limit:
                break
            where = item_location(self.path, raw)
            if raw.error:
                raise BenchmarkError(f"{where}: {raw.error}")
            if not isinstance(raw.value, dict):
                raise BenchmarkError(f"{where}: expected an object, found {type(raw.value).__name__}")
            try:
                item = self.make_item(raw.value, raw.line)
                item = {**item, "prompt": self.render_prompt(item["prompt"]), "images": self.images(raw.value)}
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
        return self.read_file(Path(self.path))

    def read_file(self, path: Path) -> list[RawItem]:
        """Every record of a file the benchmark reads, by its suffix (``FILE_FORMATS``); a file
        that cannot be read at all fails naming it."""
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

    def images(self, record: dict) -> list[str]:
        """A record's images, each in any form a record's may take (:mod:`juicebox.images`), or the
        path ``image_template`` makes of its fields: paths resolved against ``image_root`` (default
        the benchmark file's folder), embedded images written to ``image_store``; each is checked
        to decode."""
        if self.options.image_template is None:
            images = self.field(record, "images", required=False)
        else:
            images = self.templated_image(record)
        if images is None:
            return []
        root = Path(self.image_root) if self.image_root else Path(self.path or ".").parent
        try:
            return [normalise_image(image, root, self.image_store)
                    for image in (images if isinstance(images, list) else [images])]
        except Invalid as err:
            raise ValueError(str(err)) from err

    def templated_image(self, record: dict) -> str:
        """The image path ``image_template`` makes of the record's fields."""
        template = self.options.image_template
        try:
            return template.format_map(record)
        except KeyError as err:
            raise ValueError(f"image_template {template!r} names field {err}, which the record lacks") from None
        except (ValueError, TypeError, IndexError, AttributeError) as err:
            raise ValueError(f"image_template {template!r} does not fit the record ({err})") from None

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

    def resolve_path(self, path: str) -> Path:
        """A file named in the benchmark's options: a relative path is taken from the benchmark
        file's folder (as image paths are, by default)."""
        return Path(path) if Path(path).is_absolute() else Path(self.path or ".").parent / path

    # --- groups ----------------------------------------------------------------------------

    def groups(self, item: Item) -> dict[str, str]:
        """The item's value (as text) of each ``group_by`` field it has (from its ``meta``)."""
        fields = getattr(self.options, "group_by", [])
        return {field: str(item["meta"][field]) for field in fields if item["meta"].get(field) is not None}

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

    def summary(self, rows: list[dict], seed: int, statistic: str) -> dict:
        """The metrics file from the scored rows: each of ``figures`` over all items and, as
        ``<metric>[<field>=<value>]``, over the items of each group (rows' ``groups``), each with
        its percentile-bootstrap interval (resampling those items), and how they were made."""
        metrics, ci95 = {}, {}
        for suffix, members in row_sets(rows, getattr(self.options, "group_by", [])).items():
            stats = [rows[i]["stats"] for i in members]
            for name, value in figure_values(stats, self.figures).items():
                metrics[f"{name}{suffix}"] = value
            for name, bounds in bootstrap_figures(stats, self.figures, seed, self.n_resamples, CI_ALPHA).items():
                ci95[f"{name}{suffix}"] = list(bounds)
        samples = [len(row["predictions"]) for row in rows]
        return {
            "n": len(rows),
            "metrics": metrics,
            "ci95": ci95,
            "lower_is_better": list(self.lower_is_better),
            "samples_per_item": {"min": min(samples), "max": max(samples)},
            "bootstrap": {"method": "percentile", "over": "items", "statistic": statistic,
                          "n_resamples": self.n_resamples, "alpha": CI_ALPHA, "seed": seed},
            "benchmark": self.describe(),
        }


def row_sets(rows: list[dict], fields: list[str]) -> dict[str, list[int]]:
    """Metric-name suffix → the positions of its rows: "" for all, ``[<field>=<value>]`` for the
    rows whose ``groups`` give that value, fields in ``fields`` order, values sorted."""
    sets: dict[str, list[int]] = {"": list(range(len(rows)))}
    for field in fields:
        values = sorted({row.get("groups", {})[field] for row in rows if field in row.get("groups", {})})
        for value in values:
            sets[f"[{field}={value}]"] = [i for i, row in enumerate(rows) if row.get("groups", {}).get(field) == value]
    return sets


def metric_rows(rows: list[dict], metric: str) -> tuple[str, list[int]]:
    """A reported metric's name without its group suffix, and the positions of the rows its
    figure is computed from (all, or those of ``[<field>=<value>]``)."""
    if not metric.endswith("]") or "[" not in metric:
        return metric, list(range(len(rows)))
    base, group = metric[:-1].split("[", 1)
    field, _, value = group.partition("=")
    return base, [i for i, row in enumerate(rows) if row.get("groups", {}).get(field) == value]


def item_location(path: str | None, raw: RawItem) -> str:
    """Where an item was read: ``file:line``, or ``file: item N`` / ``file: row N``."""
    return f"{path}:{raw.line}" if raw.unit == "line" else f"{path}: {raw.unit} {raw.line}"


def required_text(value: Any, key: str) -> str:
    """``value`` when it is non-empty text; ValueError naming field ``key`` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} must be non-empty text, found {value!r:.60}")
    return value


# --- checking a written result -------------------------------------------------------------

def rescore(rows_path: str, config: dict | None = None, seed: int = 0) -> dict:
    """Recompute the metrics of a written ``eval/{bench}/{variant}.jsonl`` from its predictions and
    gold alone (math: math-verify only), ignoring the scores stored in it.

    ``config`` is the benchmark's config entry (its ``type``, default math, and e.g. ``k``); its
    ``path`` is not read (a chair benchmark's relative ``synonyms`` path is then taken from the
    rows file's folder: give it as an absolute path). The rows' ``groups`` give the per-group
    metrics. Use the seed of the original run to reproduce its intervals too.
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
                      "meta": dict(row.get("groups") or {})})
    predictions = {str(row["id"]): row["predictions"] for row in rows}
    return benchmark.score(items, predictions, seed)[1]
