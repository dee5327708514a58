"""The ``chair`` benchmark type: object hallucination in captions (CHAIR, Object HalBench), by rule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..scoring import ratio
from ..spec import option
from .base import GREEDY, Benchmark, BenchmarkError, BenchmarkOptions, Item, register, required_text

_WORD = re.compile(r"[a-z]+")


def read_synonyms(path: str | Path) -> dict[tuple[str, ...], str]:
    """CHAIR's synonyms file (``data/synonyms.txt`` of LisaAnne/Hallucination) → {the words of a
    name: its canonical object}.

    Format: one object per line, ``object, synonym, synonym, ...``, the canonical object first;
    a name may have several words ("teddy bear"); names are lower-cased; blank lines are skipped.
    A name given on two lines for two objects is an error naming both lines.
    """
    names: dict[tuple[str, ...], tuple[str, int]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"cannot read the synonyms file {path}: {err}") from err
    for lineno, line in enumerate(lines, start=1):
        entries = [entry.strip() for entry in line.split(",") if entry.strip()]
        if not entries:
            continue
        keys = [tuple(_WORD.findall(entry.lower())) for entry in entries]
        if not all(keys):
            raise BenchmarkError(f"{path}:{lineno}: a name without letters in {line.strip()!r}")
        canonical = " ".join(keys[0])
        for key in keys:
            if key in names and names[key][0] != canonical:
                raise BenchmarkError(f"{path}:{lineno}: {' '.join(key)!r} names {canonical!r} here and "
                                     f"{names[key][0]!r} on line {names[key][1]}")
            names.setdefault(key, (canonical, lineno))
    if not names:
        raise BenchmarkError(f"{path}: no objects in the synonyms file")
    return {key: canonical for key, (canonical, _) in names.items()}


class ObjectVocabulary:
    """The objects a synonyms file names, and the objects a text mentions.

    A text is read as lower-case words (runs of a-z; anything else separates words). A word the
    vocabulary does not hold as written is read as its singular when that is a vocabulary word:
    without a final -s ("circles" → "circle"), without -es ("boxes" → "box") or with -ies as -y
    ("ponies" → "pony"), tried in that order. The words are then matched to names from left to
    right, the longest name first ("hot dog" before "dog"), and each match gives its canonical
    object. CHAIR's hand-made rules for COCO ("baby bird" is a bird, not a person; "toilet seat"
    is no chair) and its lemmatiser are not used: only the synonyms file decides.
    """

    def __init__(self, names: dict[tuple[str, ...], str]):
        self.names = names
        self.words = {word for name in names for word in name}
        self.longest = max(len(name) for name in names)

    def singular(self, word: str) -> str:
        """The word, or its singular when only that is a vocabulary word (see the class doc)."""
        if word in self.words:
            return word
        candidates = []
        if word.endswith("s"):
            candidates.append(word[:-1])
        if word.endswith("es"):
            candidates.append(word[:-2])
        if word.endswith("ies"):
            candidates.append(word[:-3] + "y")
        return next((candidate for candidate in candidates if candidate in self.words), word)

    def tokens(self, text: str) -> list[str]:
        """The text's words, each in the form the vocabulary holds."""
        return [self.singular(word) for word in _WORD.findall(text.lower())]

    def mentioned(self, text: str) -> list[str]:
        """The canonical objects the text mentions, each once, in order of first mention."""
        words, found, i = self.tokens(text), [], 0
        while i < len(words):
            for size in range(min(self.longest, len(words) - i), 0, -1):
                canonical = self.names.get(tuple(words[i:i + size]))
                if canonical is not None:
                    if canonical not in found:
                        found.append(canonical)
                    i += size
                    break
            else:
                i += 1
        return found

    def canonical(self, name: str) -> str | None:
        """The canonical object ``name`` (an object or one of its synonyms) names, or None."""
        return self.names.get(tuple(self.tokens(name)))


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
            self._vocabulary = ObjectVocabulary(read_synonyms(path))
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
            mentioned = self.vocabulary.mentioned(by_id[item["id"]][0])
            hallucinated = [name for name in mentioned if name not in annotated]
            covered = [name for name in mentioned if name in annotated]
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": by_id[item["id"]],
                         "gold": item["gold"], "score": {"mentioned": mentioned, "hallucinated": hallucinated,
                                                         "covered": covered, "CHAIR_s": float(bool(hallucinated))},
                         "stats": {"items": 1.0, "hallucinating": float(bool(hallucinated)),
                                   "hallucinated": float(len(hallucinated)), "mentioned": float(len(mentioned)),
                                   "covered": float(len(covered)), "annotated": float(len(annotated))}})
        return rows, self.summary(rows, seed, "CHAIR_s, CHAIR_i and recall recomputed from the summed counts of the "
                                  "resampled items (first prediction of each)")
