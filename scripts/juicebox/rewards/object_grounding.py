"""The ``object_grounding`` reward: the share of a caption's objects that are in its image's annotation."""

from __future__ import annotations

from dataclasses import dataclass

from ..objects import ObjectVocabulary, read_synonyms
from ..spec import option
from .base import Reward, RewardOptions, Scores, register


@register("object_grounding")
class ObjectGrounding(Reward):
    """Checks every object a caption mentions against the objects annotated in its image, by CHAIR's rule.

    The caption's objects are read as the ``chair`` benchmark reads them (:mod:`juicebox.objects`:
    CHAIR's synonyms file, words singularised, the longest name first). The record's annotated
    objects are its ``objects_field`` (a list of object names or synonyms), looked up on the record
    and then in its ``meta`` (where a source's fields beyond the canonical ones go). The reward is
    covered / mentioned: 1.0 when every mentioned object is in the picture, 0.0 when none is;
    ``no_mention`` when the caption names no object of the vocabulary. The details name the
    mentioned, hallucinated and covered objects and the annotated ones. A record without
    annotated objects, or with one the synonyms file does not know, gets no value, with the reason.
    """

    default_tasks = ("caption",)

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """object_grounding keys."""

        synonyms: str = option(help="CHAIR's synonyms file: one object per line, `object, synonym, ...`, the "
                               "canonical name first (the embedded default's: results/demo_data/bench/synonyms.txt).")
        objects_field: str = option("objects", "The record field (or meta field) listing the image's annotated "
                                    "objects.")
        no_mention: float = option(0.0, "The reward of a caption that mentions no object of the vocabulary.")

    def __init__(self, options: Options | None = None, context=None) -> None:
        super().__init__(options, context)
        self._vocabulary: ObjectVocabulary | None = None

    @property
    def vocabulary(self) -> ObjectVocabulary:
        """The synonyms file, read on first use (it need not exist when the config is checked)."""
        if self._vocabulary is None:
            self._vocabulary = ObjectVocabulary(read_synonyms(self.options.synonyms))
        return self._vocabulary

    def settings(self) -> dict:
        return {"synonyms": self.options.synonyms, "objects_field": self.options.objects_field,
                "no_mention": self.options.no_mention}

    def annotated(self, record: dict) -> tuple[set[str] | None, str | None]:
        """The record's annotated objects as canonical names, or None and why."""
        field = self.options.objects_field
        names = record.get(field)
        if names is None:
            names = (record.get("meta") or {}).get(field)
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            return None, f"the record has no annotated objects (a list of names under {field!r} or meta.{field})"
        unknown = [name for name in names if self.vocabulary.canonical(name) is None]
        if unknown:
            return None, f"annotated objects {unknown} are in no line of {self.options.synonyms}"
        return {self.vocabulary.canonical(name) for name in names}, None

    def score_applicable(self, records: list[dict]) -> Scores:
        """covered / mentioned objects of every sample, against its record's annotation."""
        out: Scores = []
        for record in records:
            samples = record.get("samples") or []
            annotated, reason = self.annotated(record)
            if annotated is None:
                out.append([(None, {"reason": reason}) for _ in samples])
                continue
            row = []
            for sample in samples:
                found = self.vocabulary.grounding(sample.get("text") or "", annotated)
                mentioned = found["mentioned"]
                value = len(found["covered"]) / len(mentioned) if mentioned else self.options.no_mention
                row.append((value, {**found, "annotated": sorted(annotated)}))
            out.append(row)
        return out
