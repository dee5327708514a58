"""Benchmarks by name: ``type: math`` in a benchmark's config resolves to one registered class.

Each benchmark class reads a public file format into items and scores predictions for them:

* ``load()`` → ``[{"id", "prompt", "gold", "meta"}]``, in file order, the first ``limit`` only.
  Files are read with ``sources.read_items`` (JSONL, JSON array, Parquet or CSV, by suffix), so a
  bad line fails naming ``file:line``; an item without an id gets ``<benchmark name>-<line>``.
* ``score(items, predictions, seed)`` → (per-item rows, metrics). Every metric is reported with a
  95% percentile-bootstrap interval over items (seeded), and the metrics say how they were made.

The per-item rows keep the predictions and the gold, so ``rescore`` can recompute the metrics
from a written ``eval/{bench}/{variant}.jsonl`` alone: anyone can check a reported accuracy.
"""

from __future__ import annotations

import logging
import re
import string
from pathlib import Path
from typing import Any, ClassVar, Sequence, TypedDict

from .io import read_jsonl
from .registry import Registry
from .scoring import (CAPTION_METRICS, bleu_bootstrap_ci, bootstrap_ci, caption_scores, gold_answer_math, math_judge,
                      pass_at_k)
from .sources import RawItem, SourceError, SourceSpec, read_items

log = logging.getLogger("juicebox")

BENCHMARKS = Registry("benchmark")
register = BENCHMARKS.register
FILE_FORMATS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
CI_ALPHA = 0.05


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded or scored as configured; the message says where and why."""


class Item(TypedDict):
    """One benchmark item: ``gold`` is a final answer (str) or a list of reference captions."""

    id: str
    prompt: str
    gold: str | list[str]
    meta: dict[str, Any]


def load_benchmark(name: str, config: dict) -> "Benchmark":
    """Build the benchmark ``name`` from its config entry (``type`` picks the class)."""
    options = dict(config)
    kind = options.pop("type", None)
    return BENCHMARKS.lookup(kind, f"benchmark {name!r}", BenchmarkError)(name, **options)


class Benchmark:
    """What every benchmark shares: reading records with their location, ids, limit, checks of the
    predictions, and the bootstrap summary. Subclasses add ``make_item`` and ``score``.

    Config keys: ``path`` (the benchmark file), ``limit`` (first N items; null = all), ``fields``
    (source field names to use instead of the defaults, e.g. ``{"prompt": "instruction"}``),
    ``n_resamples`` (bootstrap resamples, 1000). Other keys (generation settings such as the
    number of samples) are kept in ``extra`` for the rules that need them.
    """

    type: ClassVar[str] = ""
    # canonical field -> source field names tried in order; ``fields`` in the config replaces them.
    default_fields: ClassVar[dict[str, tuple[str, ...]]] = {"id": ("id",)}

    def __init__(self, name: str, path: str | None = None, limit: int | None = None,
                 fields: dict[str, str | list[str]] | None = None, n_resamples: int = 1000, **extra: Any):
        self.name = name
        self.path = path
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise BenchmarkError(f"benchmark {name!r}: limit must be a positive integer or null, found {limit!r}")
        self.limit = limit
        self.fields = self._resolve_fields(fields or {})
        self.n_resamples = int(n_resamples)
        self.extra = extra

    def _resolve_fields(self, overrides: dict[str, str | list[str]]) -> dict[str, tuple[str, ...]]:
        unknown = set(overrides) - set(self.default_fields)
        if unknown:
            raise BenchmarkError(f"benchmark {self.name!r}: unknown fields {sorted(unknown)}; "
                                 f"a {self.type} benchmark knows {sorted(self.default_fields)}")
        resolved = dict(self.default_fields)
        for key, value in overrides.items():
            resolved[key] = (value,) if isinstance(value, str) else tuple(value)
        return resolved

    def describe(self) -> dict[str, Any]:
        """The settings that determine the scores, for the metrics file."""
        return {"name": self.name, "type": self.type, "path": self.path, "limit": self.limit,
                "fields": {k: list(v) for k, v in self.fields.items()}}

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


# --- math --------------------------------------------------------------------------------

MATH_FORMATS = ("gsm8k", "math", "auto")


@register("math")
class MathBenchmark(Benchmark):
    """Math word problems judged by math-verify.

    Reads GSM8K (``question``, ``answer`` ending in ``#### <number>``) and MATH-style files
    (``problem``, ``solution`` with a final ``\\boxed{}``; a separate ``answer`` field, as in
    MATH-500, is used as the gold when present). ``format: auto`` decides per file from the first
    record. Metrics: ``pass@1`` (mean over items of the fraction of that item's samples that are
    correct) and ``pass@k`` for each configured ``k`` up to the smallest number of samples per
    item, by the unbiased estimator; intervals bootstrap the per-item values.
    """

    default_fields = {"id": ("id",), "question": ("question",), "answer": ("answer",),
                      "problem": ("problem",), "solution": ("solution",)}

    def __init__(self, name: str, format: str = "auto", k: Sequence[int] = (1,), **common: Any):
        super().__init__(name, **common)
        if format not in MATH_FORMATS:
            raise BenchmarkError(f"benchmark {name!r}: format must be one of {', '.join(MATH_FORMATS)}, "
                                 f"found {format!r}")
        if isinstance(k, int):
            k = [k]
        if not k or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in k):
            raise BenchmarkError(f"benchmark {name!r}: k must be a list of positive integers, found {k!r}")
        self.format = format
        self.k = sorted(set(k) | {1})
        self._file_format: str | None = None

    def describe(self) -> dict[str, Any]:
        """Settings, plus the math format and the requested k."""
        return {**super().describe(), "format": self.format, "k": self.k}

    def load(self) -> list[Item]:
        """Read the file; with ``format: auto`` its first record decides the format for all."""
        self._file_format = None if self.format == "auto" else self.format
        return super().load()

    def _detect(self, record: dict) -> str:
        if self.field(record, "problem", required=False) is not None:
            return "math"
        if self.field(record, "question", required=False) is not None:
            return "gsm8k"
        raise ValueError("cannot tell the format: neither a GSM8K 'question' nor a MATH 'problem' field "
                         "(set format: and fields:)")

    def make_item(self, record: dict, line: int) -> Item:
        """A GSM8K or MATH record → item whose gold is the final answer."""
        if self._file_format is None:
            self._file_format = self._detect(record)
        if self._file_format == "gsm8k":
            prompt = _text(self.field(record, "question"), "question")
            answer = _text(self.field(record, "answer"), "answer")
            if "####" not in answer:
                raise ValueError("GSM8K answer has no '#### <number>' final line")
            gold = gold_answer_math(answer)
        else:
            prompt = _text(self.field(record, "problem"), "problem")
            gold = self._math_gold(record)
        if not gold:
            raise ValueError("empty gold answer")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": prompt, "gold": gold,
                "meta": {"format": self._file_format, **meta}}

    def _math_gold(self, record: dict) -> str:
        answer = self.field(record, "answer", required=False)
        if answer is not None:
            return str(answer).strip()
        solution = _text(self.field(record, "solution"), "solution")
        if "\\boxed" not in solution and "\\fbox" not in solution:
            raise ValueError("MATH solution has no \\boxed{} answer (and there is no 'answer' field)")
        return gold_answer_math(solution)

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Judge every sample; per item ``correct``/``extracted`` lists and pass@k values."""
        by_id = self.check_predictions(items, predictions)
        min_samples = min(len(by_id[item["id"]]) for item in items)
        ks = [k for k in self.k if k <= min_samples]
        if len(ks) < len(self.k):
            log.warning("benchmark %s: pass@k for k in %s skipped: only %d samples per item",
                        self.name, [k for k in self.k if k > min_samples], min_samples)
        rows, per_item = [], {f"pass@{k}": [] for k in ks}
        for item in items:
            samples = by_id[item["id"]]
            judged = [math_judge(sample, str(item["gold"])) for sample in samples]
            correct = [ok for ok, _ in judged]
            scores = {f"pass@{k}": pass_at_k(len(correct), sum(correct), k) for k in ks}
            for name, value in scores.items():
                per_item[name].append(value)
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                         "score": {"correct": correct, "extracted": [text for _, text in judged], **scores}})
        metrics = {name: sum(values) / len(values) for name, values in per_item.items()}
        samples = [len(by_id[item["id"]]) for item in items]
        return rows, self.summary(len(items), metrics, per_item, seed, samples,
                                  "mean over items of the per-item unbiased pass@k")


# --- captions ----------------------------------------------------------------------------

@register("caption")
class CaptionBenchmark(Benchmark):
    """Image captioning scored with COCO metrics (BLEU-1..4, METEOR, ROUGE_L, CIDEr).

    Reads a JSON array or JSONL of ``{"id", "prompt" (or "question"/"text"), "references" (or
    COCO-style "captions": strings or {"caption": ...}), "image"/"images"}``. Image paths are
    resolved against ``image_root`` (default: the benchmark file's folder) and must exist.
    Only the first prediction of each item is scored (captioning is evaluated greedy, one
    caption per image). Metrics are the corpus scores of ``caption_scores``; intervals bootstrap
    the mean of the per-item scores, which for BLEU and METEOR (pooled statistics) is close to,
    but not the same as, the corpus value.
    """

    default_fields = {"id": ("id",), "prompt": ("prompt", "question", "text"),
                      "references": ("references", "captions"), "images": ("images", "image")}

    def __init__(self, name: str, image_root: str | None = None, **common: Any):
        super().__init__(name, **common)
        self.image_root = image_root

    def describe(self) -> dict[str, Any]:
        """Settings, plus where images are resolved from."""
        return {**super().describe(), "image_root": self.image_root, "scored_prediction": "first"}

    def make_item(self, record: dict, line: int) -> Item:
        """A caption record → item whose gold is the list of reference captions."""
        prompt = _text(self.field(record, "prompt"), "prompt")
        references = self.field(record, "references")
        if isinstance(references, str):
            references = [references]
        if not isinstance(references, list):
            raise ValueError(f"references must be a list of captions, found {type(references).__name__}")
        references = [r.get("caption") if isinstance(r, dict) else r for r in references]
        if not references or not all(isinstance(r, str) and r.strip() for r in references):
            raise ValueError("references must be a non-empty list of non-empty captions")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        meta["images"] = self._images(self.field(record, "images", required=False))
        return {"id": self.item_id(record, line), "prompt": prompt, "gold": references, "meta": meta}

    def _images(self, images: Any) -> list[str]:
        if images is None:
            return []
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise ValueError("images must be a path or a list of paths")
        root = Path(self.image_root) if self.image_root else Path(self.path or ".").parent
        resolved = []
        for image in images:
            if image.startswith("data:image"):
                resolved.append(image)
                continue
            path = Path(image) if Path(image).is_absolute() else root / image
            if not path.is_file():
                raise ValueError(f"image not found: {path}")
            resolved.append(str(path))
        return resolved

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """COCO metrics of each item's first prediction; per-item scores in the rows."""
        by_id = self.check_predictions(items, predictions)
        if len(items) < 2:
            log.warning("benchmark %s: CIDEr of a single item is 0 by construction (IDF over one item)", self.name)
        first = {item["id"]: by_id[item["id"]][0] for item in items}
        corpus, per_item_scores = caption_scores(first, {item["id"]: list(item["gold"]) for item in items})
        rows = [{"id": item["id"], "prompt": item["prompt"], "predictions": by_id[item["id"]], "gold": item["gold"],
                 "score": per_item_scores[item["id"]]} for item in items]
        per_item = {name: [per_item_scores[item["id"]][name] for item in items] for name in CAPTION_METRICS}
        samples = [len(by_id[item["id"]]) for item in items]
        summary = self.summary(len(items), corpus, per_item, seed, samples,
                               "BLEU-n: corpus BLEU recomputed per resample; other metrics: mean of per-item "
                               "scores of the first prediction (METEOR's corpus score pools statistics, so "
                               "its interval is approximate)")
        bleu = bleu_bootstrap_ci(first, {item["id"]: list(item["gold"]) for item in items}, seed, self.n_resamples)
        summary["ci95"].update({name: list(bounds) for name, bounds in bleu.items()})
        return rows, summary


# --- multiple choice ---------------------------------------------------------------------

# A letter opening the answer: "B", "(B)", "B.", "B) ...", "**B**"; a leading word such as
# "A cat" or "I think" is not a choice.
_LEADING_CHOICE = re.compile(r"^[\s*_]*[(\[]?([A-Z])(?:[)\].:,*_]|[ \t]*\n|\s*$)")
# "Answer: B", "answer is (C)", "The answer is **D**".
_MARKED_CHOICE = re.compile(r"(?i:answer)\s*(?:(?i:is)\s*|:\s*)[\s*_(\[]*([A-Z])\b")


def extract_choice(text: str) -> str | None:
    """The option letter a model chose, or None.

    Rule: a capital letter that opens the output as a token of its own ("B", "(B)", "B.",
    "B) because ..."); otherwise the capital letter right after the first "Answer:" or
    "answer is" (any case, optional brackets or bold). Lower-case letters are not read as
    choices, since "a" is mostly an article.
    """
    if not isinstance(text, str):
        return None
    match = _LEADING_CHOICE.match(text) or _MARKED_CHOICE.search(text)
    return match.group(1) if match else None


def render_choices(question: str, options: dict[str, str]) -> str:
    """The prompt: the question, one ``X. option`` line per option, and the instruction."""
    lines = [f"{letter}. {text}" for letter, text in options.items()]
    return f"{question.strip()}\n\n" + "\n".join(lines) + "\n\nAnswer with the letter."


@register("multiple_choice")
class MultipleChoiceBenchmark(Benchmark):
    """Multiple-choice questions scored by the letter the model picks (see ``extract_choice``).

    Reads JSONL of ``{"id", "question", "options" (list, lettered A, B, ... in order, or a dict
    letter → text), "answer" (the right letter)}``. Metric: ``accuracy``, the mean over items of
    the fraction of samples whose letter is right; the interval bootstraps the per-item values.
    """

    default_fields = {"id": ("id",), "question": ("question",), "options": ("options",), "answer": ("answer",)}

    def make_item(self, record: dict, line: int) -> Item:
        """A multiple-choice record → item with the rendered prompt and the gold letter."""
        question = _text(self.field(record, "question"), "question")
        options = self._options(self.field(record, "options"))
        gold = self.field(record, "answer")
        if not isinstance(gold, str) or gold.strip().upper() not in options:
            raise ValueError(f"answer must be one of the option letters {', '.join(options)}, found {gold!r}")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": render_choices(question, options),
                "gold": gold.strip().upper(), "meta": {"options": options, **meta}}

    @staticmethod
    def _options(options: Any) -> dict[str, str]:
        if isinstance(options, list):
            if len(options) > 26:
                raise ValueError(f"at most 26 options, found {len(options)}")
            options = dict(zip(string.ascii_uppercase, options))
        if not isinstance(options, dict) or len(options) < 2:
            raise ValueError("options must be a list or a letter → text object with at least two options")
        letters = {str(key).strip().upper(): value for key, value in options.items()}
        if not all(len(key) == 1 and key in string.ascii_uppercase for key in letters):
            raise ValueError(f"option keys must be single letters A-Z, found {sorted(options)}")
        if not all(isinstance(value, (str, int, float)) and str(value).strip() for value in letters.values()):
            raise ValueError("every option needs non-empty text")
        return {key: str(letters[key]) for key in sorted(letters)}

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Letter of every sample against the gold; per item ``choices``/``correct``/``accuracy``."""
        by_id = self.check_predictions(items, predictions)
        rows, accuracies = [], []
        for item in items:
            samples = by_id[item["id"]]
            choices = [extract_choice(sample) for sample in samples]
            correct = [choice == item["gold"] for choice in choices]
            accuracy = sum(correct) / len(correct)
            accuracies.append(accuracy)
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                         "score": {"choices": choices, "correct": correct, "accuracy": accuracy}})
        samples = [len(by_id[item["id"]]) for item in items]
        return rows, self.summary(len(items), {"accuracy": sum(accuracies) / len(accuracies)},
                                  {"accuracy": accuracies}, seed, samples,
                                  "mean over items of the per-item fraction of correct samples")


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
    options = {"type": "math", **(config or {})}
    benchmark = load_benchmark(Path(rows_path).parent.name or "rescore", options)
    items: list[Item] = []
    for lineno, row in enumerate(rows, start=1):
        missing = [key for key in ("id", "predictions", "gold") if key not in row]
        if missing:
            raise BenchmarkError(f"{rows_path}: row {lineno} lacks {', '.join(missing)}")
        items.append({"id": str(row["id"]), "prompt": row.get("prompt", ""), "gold": row["gold"], "meta": {}})
    predictions = {str(row["id"]): row["predictions"] for row in rows}
    return benchmark.score(items, predictions, seed)[1]
