"""The ``reference_caption`` reward: a COCO caption metric of each sample against the references."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from ..scoring import caption_scores
from ..spec import option
from .base import Reward, RewardContext, RewardOptions, Scores, register

log = logging.getLogger("juicebox")


@register("reference_caption")
class ReferenceCaption(Reward):
    """``metric`` (BLEU-1..4, METEOR, ROUGE_L or CIDEr; default CIDEr) of each sample against its
    record's ``references``, by pycocoevalcap as COCO computes it (:func:`juicebox.scoring.caption_scores`).

    Every sample of every record given to one ``score`` call is one item of a single
    pycocoevalcap run. That matters for CIDEr: its n-gram IDF weights come from the references
    of all items scored together (a record's references count once per sample), so a sample's
    CIDEr depends on the set it was scored with, and one item alone scores 0. Score a whole
    batch (a shard of rollouts) in one call; the samples of one prompt are then always compared
    under the same weights. BLEU, METEOR and ROUGE-L per item do not depend on the set. Details
    hold all seven metrics and ``batch_items``, the size of the set. A record without references
    gets None for every sample.
    """

    default_tasks = ("caption",)

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """reference_caption keys."""

        metric: Literal["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr"] = option(
            "CIDEr", "The COCO caption metric used as the reward.")

    def __init__(self, options: Options, context: RewardContext | None = None) -> None:
        super().__init__(options, context)
        self.metric = options.metric

    def settings(self) -> dict:
        """The metric."""
        return {"metric": self.metric}

    def score_applicable(self, records: list[dict]) -> Scores:
        """Score all samples of all records in one pycocoevalcap run."""
        predictions: dict[tuple[int, int], str] = {}
        references: dict[tuple[int, int], list[str]] = {}
        for i, record in enumerate(records):
            refs = [r for r in record.get("references") or [] if isinstance(r, str) and r.strip()]
            if not refs:
                continue
            for j, sample in enumerate(record.get("samples") or []):
                predictions[(i, j)] = sample.get("text") or ""
                references[(i, j)] = refs
        per_item: dict = {}
        if predictions:
            if self.metric == "CIDEr" and len(predictions) < 2:
                log.warning("reference_caption: CIDEr of a single caption is always 0 (IDF over one item)")
            _, per_item, _ = caption_scores(predictions, references)
        out: Scores = []
        for i, record in enumerate(records):
            row = []
            for j, _ in enumerate(record.get("samples") or []):
                if (i, j) in per_item:
                    scores = per_item[(i, j)]
                    row.append((scores[self.metric], {**scores, "batch_items": len(per_item)}))
                else:
                    row.append((None, {"reason": "the prompt has no reference captions"}))
            out.append(row)
        return out
