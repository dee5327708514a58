"""The ``chair`` benchmark type: object hallucination in captions (CHAIR, Object HalBench), by rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..objects import ObjectVocabulary, VocabularyError, read_synonyms
from ..scoring import ratio
from ..spec import option
from .base import GREEDY, Benchmark, BenchmarkError, BenchmarkOptions, Item, register, required_text


def chair_figures(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CHAIR's figures of summed per-caption counts: CHAIR_s = hallucinating captions / captions,
    CHAIR_i = hallucinated / mentioned objects, recall = covered / annotated objects (0 where the
    denominator is 0)."""
    return {"CHAIR_s": ratio(totals["hallucinating"], totals["items"]),
            "CHAIR_i": ratio(totals["hallucinated"], totals["mentioned"]),
            "recall": ratio(totals["covered"], totals["annotated"])}


@register("chair")
class ChairBenchmark(Benchmark):
    """Object hallucination in descriptions (CHAIR, Object HalBench), by rule; lower is better; greedy.

    Reads ``{"id", "prompt" (or "question"), "image", "objects"}``, ``objects`` the objects
    annotated in the image (canonical names or synonyms of the ``synonyms`` file, CHAIR's
    format); other fields (a caption file's ``references``) are kept in ``meta``. The first
    prediction of each item is its caption; its mentioned objects are read by
    ``ObjectVocabulary.mentioned`` (words singularised, the longest name first), each counted
    once per caption; hallucinated = mentioned − annotated; covered = mentioned ∩ annotated.
    Metrics: ``CHAIR_s`` = captions with a hallucinated object / captions; ``CHAIR_i`` =
    hallucinated objects / mentioned objects, both summed over captions (0 when no caption
    mentions any; CHAIR's script counts every mention, here each object once per caption);
    ``recall`` = covered objects / annotated objects, summed over captions. The metrics file
    lists CHAIR_s and CHAIR_i under ``lower_is_better``. Intervals: percentile bootstrap over
    items, each ratio recomputed from the resampled counts.
    """

    task = "caption"
    default_sampling = GREEDY
    lower_is_better = ("CHAIR_s", "CHAIR_i")
    figures = staticmethod(chair_figures)

    default_fields = {"id": ("id",), "prompt": ("prompt", "question"), "objects": ("objects",)}

    @dataclass(frozen=True)
    class Options(BenchmarkOptions):
        """chair keys."""

        synonyms: str = option(help="CHAIR's synonyms file: one object per line, `object, synonym, ...`, the "
                               "canonical name first (a relative path is taken from the benchmark file's folder).")

    def __init__(self, options: Options, name: str):
        super().__init__(options, name)
        self.synonyms = options.synonyms
        self._vocabulary: ObjectVocabulary | None = None

    @property
    def vocabulary(self) -> ObjectVocabulary:
        """The synonyms file's objects, read on first use (the file need not exist when the config is checked)."""
        if self._vocabulary is None:
            path = self.resolve_path(self.synonyms)
            if not path.is_file():
                raise BenchmarkError(f"benchmark {self.name!r}: synonyms file not found: {path}")
            try:
                self._vocabulary = ObjectVocabulary(read_synonyms(path))
            except VocabularyError as err:
                raise BenchmarkError(str(err)) from err
        return self._vocabulary

    def load(self) -> list[Item]:
        """Read the synonyms file (a missing one fails before any item), then the items."""
        self.vocabulary
        return super().load()

    def describe(self) -> dict[str, Any]:
        """Settings, plus the synonyms file and which prediction is scored."""
        return {**super().describe(), "synonyms": str(self.resolve_path(self.synonyms)), "scored_prediction": "first"}

    def make_item(self, record: dict, line: int) -> Item:
        """A record → item whose gold is its annotated objects (canonical names, sorted)."""
        prompt = required_text(self.field(record, "prompt"), "prompt")
        objects = self.field(record, "objects")
        if not isinstance(objects, list) or not objects or not all(isinstance(o, str) for o in objects):
            raise ValueError(f"objects must be a non-empty list of object names, found {objects!r:.80}")
        unknown = [name for name in objects if self.vocabulary.canonical(name) is None]
        if unknown:
            raise ValueError(f"objects {unknown} are in no line of the synonyms file "
                             f"{self.resolve_path(self.synonyms)}")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": prompt,
                "gold": sorted({self.vocabulary.canonical(name) for name in objects}), "meta": meta}

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Objects of each item's first prediction; per item ``mentioned``/``hallucinated``/
        ``covered`` and ``CHAIR_s`` (1 when it hallucinates)."""
        by_id = self.check_predictions(items, predictions)
        rows = []
        for item in items:
            annotated = set(item["gold"])
            found = self.vocabulary.grounding(by_id[item["id"]][0], annotated)
            mentioned, hallucinated, covered = found["mentioned"], found["hallucinated"], found["covered"]
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": by_id[item["id"]],
                         "gold": item["gold"], "score": {"mentioned": mentioned, "hallucinated": hallucinated,
                                                         "covered": covered, "CHAIR_s": float(bool(hallucinated))},
                         "stats": {"items": 1.0, "hallucinating": float(bool(hallucinated)),
                                   "hallucinated": float(len(hallucinated)), "mentioned": float(len(mentioned)),
                                   "covered": float(len(covered)), "annotated": float(len(annotated))}})
        return rows, self.summary(rows, seed, "CHAIR_s, CHAIR_i and recall recomputed from the summed counts of the "
                                  "resampled items (first prediction of each)")
