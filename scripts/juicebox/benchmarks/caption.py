"""The ``caption`` benchmark type: image captioning scored with the COCO caption metrics."""

from __future__ import annotations

from typing import Any

from ..scoring import caption_figures, caption_scores
from .base import GREEDY, Benchmark, Item, log, register, required_text


@register("caption")
class CaptionBenchmark(Benchmark):
    """Image captioning scored with COCO metrics (BLEU-1..4, METEOR, ROUGE_L, CIDEr); one greedy caption.

    Reads a JSON array or JSONL of ``{"id", "prompt" (or "question"/"text"), "references" (or
    COCO-style "captions": strings or {"caption": ...}), "image"/"images"}``; the images are shown
    to the model with the prompt.
    Only the first prediction of each item is scored (one caption per image; the type's sampling
    is greedy, n 1, unless the benchmark's ``sampling`` says otherwise). Metrics are the corpus
    scores of ``caption_scores``; each row keeps its per-item scores (``score``) and the additive
    statistics of the corpus figures (``stats``: BLEU's n-gram counts and lengths, METEOR's
    matches, chunks and lengths, ROUGE_L, CIDEr), so every bootstrap resample recomputes the
    corpus BLEU and METEOR themselves.
    """

    task = "caption"
    default_sampling = GREEDY
    figures = staticmethod(caption_figures)

    default_fields = {"id": ("id",), "prompt": ("prompt", "question", "text"),
                      "references": ("references", "captions")}

    def describe(self) -> dict[str, Any]:
        """Settings, plus which prediction is scored."""
        return {**super().describe(), "scored_prediction": "first"}

    def make_item(self, record: dict, line: int) -> Item:
        """A caption record → item whose gold is the list of reference captions."""
        prompt = required_text(self.field(record, "prompt"), "prompt")
        references = self.field(record, "references")
        if isinstance(references, str):
            references = [references]
        if not isinstance(references, list):
            raise ValueError(f"references must be a list of captions, found {type(references).__name__}")
        references = [r.get("caption") if isinstance(r, dict) else r for r in references]
        if not references or not all(isinstance(r, str) and r.strip() for r in references):
            raise ValueError("references must be a non-empty list of non-empty captions")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": prompt, "gold": references, "meta": meta}

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """COCO metrics of each item's first prediction; per-item scores in the rows."""
        by_id = self.check_predictions(items, predictions)
        if len(items) < 2:
            log.warning("benchmark %s: CIDEr of a single item is 0 by construction (IDF over one item)", self.name)
        first = {item["id"]: by_id[item["id"]][0] for item in items}
        _, per_item_scores, stats = caption_scores(first, {item["id"]: list(item["gold"]) for item in items})
        rows = [{"id": item["id"], "prompt": item["prompt"], "predictions": by_id[item["id"]], "gold": item["gold"],
                 "score": per_item_scores[item["id"]], "stats": stats[item["id"]]} for item in items]
        return rows, self.summary(rows, seed, "corpus BLEU-n and METEOR recomputed from the pooled statistics of the "
                                  "resampled items, ROUGE_L and CIDEr (IDF of the whole benchmark) their means; "
                                  "first prediction of each item")


# --- multiple choice ---------------------------------------------------------------------

