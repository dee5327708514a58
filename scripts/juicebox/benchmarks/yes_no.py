"""The ``yes_no`` benchmark type: POPE-style yes/no questions about an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..scoring import ratio
from .base import GREEDY, Benchmark, BenchmarkOptions, Item, group_by_option, register, required_text

YES_NO_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio_pred")


def parse_yes_no(text: str) -> str:
    """"yes" or "no" for a model's answer, exactly as LLaVA's ``llava/eval/eval_pope.py`` reads it.

    Rule: keep the text before the first '.', remove every ',', split on ' '; "no" if one of the
    words is exactly 'No', 'not' or 'no', otherwise "yes" (so an empty or evasive answer counts
    as "yes", and "NO" or "no\\n" as "yes", as in LLaVA's evaluation).
    """
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if "No" in words or "not" in words or "no" in words else "yes"


def pope_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """POPE's figures of one set of confusion counts (``pope_figures``)."""
    counts = {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    return {name: float(value) for name, value in pope_figures({k: np.asarray(v) for k, v in counts.items()}).items()}


def pope_figures(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """POPE's figures from the confusion counts of predictions (positive = "yes").

    accuracy = (TP + TN) / all; precision = TP / (TP + FP); recall = TP / (TP + FN);
    f1 = 2·precision·recall / (precision + recall); ``yes_ratio_pred`` = (TP + FP) / all, the
    share of predictions that are "yes" (as LLaVA's eval computes it; other write-ups give the
    share of "yes" labels, 0.5 by POPE's construction). A ratio whose denominator is 0 is 0.
    """
    tp, fp, tn, fn = (totals[key] for key in ("tp", "fp", "tn", "fn"))
    total = tp + fp + tn + fn
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return {"accuracy": ratio(tp + tn, total), "precision": precision, "recall": recall,
            "f1": ratio(2 * precision * recall, precision + recall), "yes_ratio_pred": ratio(tp + fp, total)}


@register("yes_no")
class YesNoBenchmark(Benchmark):
    """Yes/no questions about an image (POPE), answers read as LLaVA's POPE evaluation does; greedy.

    Reads POPE's files (``{"question_id", "image", "text", "label"}``, ``category`` in LLaVA's
    merged file), the Hugging Face layout (``question``, ``answer``, ``image``, ``category``) and
    VLMEvalKit's TSVs (POPE, HallusionBench: ``index``, ``question``, ``answer`` Yes/No, base64
    ``image``): the prompt is the question, the gold its "yes"/"no" label. Each answer is read by
    ``parse_yes_no``. Metrics over all predictions (every sample of every item counts as one
    prediction; with one answer per item, as POPE is run, one per item), positive = "yes":
    ``accuracy``, ``precision``, ``recall``, ``f1`` and ``yes_ratio_pred`` (``pope_metrics``), and
    the same for each value of each ``group_by`` field (POPE's ``category``: random, popular,
    adversarial), e.g. ``f1[category=adversarial]``. Intervals: percentile bootstrap over items,
    the figure recomputed from the confusion counts of every resample.
    """

    task = "yes_no"
    default_sampling = GREEDY
    figures = staticmethod(pope_figures)

    default_fields = {"id": ("id", "question_id", "index"), "question": ("question", "text"),
                      "label": ("label", "answer")}

    @dataclass(frozen=True)
    class Options(BenchmarkOptions):
        """yes_no keys."""

        group_by: list[str] = group_by_option(["category"])

    def make_item(self, record: dict, line: int) -> Item:
        """A POPE record → item whose gold is "yes" or "no"."""
        question = required_text(self.field(record, "question"), "question")
        label = self.field(record, "label")
        if not isinstance(label, str) or label.strip().lower() not in ("yes", "no"):
            raise ValueError(f"label must be 'yes' or 'no', found {label!r}")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": question, "gold": label.strip().lower(), "meta": meta}

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Read every sample as yes/no; per item ``parsed``/``correct``/``accuracy`` and its
        confusion counts ``tp``/``fp``/``tn``/``fn`` (and its ``groups``)."""
        by_id = self.check_predictions(items, predictions)
        rows = []
        for item in items:
            samples = by_id[item["id"]]
            parsed = [parse_yes_no(sample) for sample in samples]
            correct = [answer == item["gold"] for answer in parsed]
            yes = item["gold"] == "yes"
            confusion = {"tp": sum(a == "yes" for a in parsed) if yes else 0,
                         "fp": 0 if yes else sum(a == "yes" for a in parsed),
                         "tn": 0 if yes else sum(a == "no" for a in parsed),
                         "fn": sum(a == "no" for a in parsed) if yes else 0}
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                         "groups": self.groups(item),
                         "score": {"parsed": parsed, "correct": correct, "accuracy": sum(correct) / len(correct),
                                   **confusion},
                         "stats": {key: float(value) for key, value in confusion.items()}})
        return rows, self.summary(rows, seed, "POPE's figures recomputed from the confusion counts of the resampled "
                                  "items (every sample is a prediction)")
