"""The ``caption`` benchmark type: image captioning scored with the COCO caption metrics."""

from __future__ import annotations

from typing import Any

from ..scoring import CAPTION_METRICS, bleu_bootstrap_ci, caption_scores
from . import GREEDY, Benchmark, Item, _text, log, register


@register("caption")
class CaptionBenchmark(Benchmark):
    """Image captioning scored with COCO metrics (BLEU-1..4, METEOR, ROUGE_L, CIDEr); one greedy caption.

    Reads a JSON array or JSONL of ``{"id", "prompt" (or "question"/"text"), "references" (or
    COCO-style "captions": strings or {"caption": ...}), "image"/"images"}``; the images are shown
    to the model with the prompt.
    Only the first prediction of each item is scored (one caption per image; the type's sampling
    is greedy, n 1, unless the benchmark's ``sampling`` says otherwise). Metrics are the corpus
    scores of ``caption_scores``; intervals bootstrap the mean of the per-item scores, which for
    BLEU and METEOR (pooled statistics) is close to, but not the same as, the corpus value.
    """

    task = "caption"
    default_sampling = GREEDY

    default_fields = {"id": ("id",), "prompt": ("prompt", "question", "text"),
                      "references": ("references", "captions")}

    def describe(self) -> dict[str, Any]:
        """Settings, plus which prediction is scored."""
        return {**super().describe(), "scored_prediction": "first"}

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
        return {"id": self.item_id(record, line), "prompt": prompt, "gold": references, "meta": meta}

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

