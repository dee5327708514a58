"""Benchmarks by name: ``type: math`` in a benchmark's config resolves to one registered class.

Each benchmark class reads a public file format into items and scores predictions for them:

* ``load()`` → ``[{"id", "prompt", "gold", "images", "meta"}]``, in file order, the first ``limit``
  only. Every type reads an item's images (``images`` or ``image``: a path relative to
  ``image_root``, or an embedded image; or the path ``image_template`` builds from the record's
  fields), checks that each decodes, writes the embedded ones to ``image_store`` (content-addressed
  files, as the pool's image store), and the evaluation shows them to the model with the prompt.
  Files are read with ``sources.read_items`` (JSONL, JSON array or object, Parquet, CSV or
  VLMEvalKit's TSV, by suffix), so a bad line fails naming ``file:line`` (``file: item N`` of a
  JSON object's list, ``file: row N`` of Parquet); an item without an id gets
  ``<benchmark name>-<line>``.
* ``score(items, predictions, seed)`` → (per-item rows, metrics). Each row carries the item's
  additive statistics (``stats``); every figure is the type's ``figures`` of their sums (a mean,
  POPE's confusion counts, CHAIR's object counts, corpus BLEU's and METEOR's pooled counts), and
  its 95% percentile-bootstrap interval over items (seeded) recomputes that same figure on every
  resample, so it brackets the figure; the metrics say how they were made. ``lower_is_better``
  names the metrics for which less is better (CHAIR's).

Every type also takes a ``prompt_template`` (the item's prompt is put where it says ``{prompt}``)
and its own ``sampling`` (see :meth:`Benchmark.effective_sampling`): short-answer and caption
benchmarks decode greedily, one answer per item, whatever ``eval.sampling`` says.

The per-item rows keep the predictions and the gold, so ``rescore`` can recompute the metrics
from a written ``eval/{bench}/{variant}.jsonl`` alone: anyone can check a reported accuracy.
"""

# Each type's module registers it.
from . import caption, chair, math_answers, multiple_choice, vqa, yes_no  # noqa: F401
from .base import (BENCHMARKS, GREEDY, Benchmark, BenchmarkError, BenchmarkOptions, Item, SamplingOptions,
                   group_by_option, item_location, load_benchmark, metric_rows, register, required_text, rescore,
                   row_sets)
from .caption import CaptionBenchmark
from .chair import ChairBenchmark
from .math_answers import MathBenchmark
from .multiple_choice import MultipleChoiceBenchmark, extract_choice, options_from_question, render_choices
from .vqa import VqaBenchmark, normalize_vqa_answer, vqa_accuracy
from .yes_no import YesNoBenchmark, parse_yes_no, pope_metrics

__all__ = ["BENCHMARKS", "GREEDY", "Benchmark", "BenchmarkError", "BenchmarkOptions", "CaptionBenchmark",
           "ChairBenchmark", "Item", "MathBenchmark", "MultipleChoiceBenchmark", "SamplingOptions", "VqaBenchmark",
           "YesNoBenchmark", "extract_choice", "group_by_option", "item_location", "load_benchmark", "metric_rows",
           "normalize_vqa_answer", "options_from_question", "parse_yes_no", "pope_metrics", "register",
           "render_choices", "required_text", "rescore", "row_sets", "vqa_accuracy"]
