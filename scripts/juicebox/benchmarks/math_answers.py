"""The ``math`` benchmark type: GSM8K and MATH-style word problems judged by math-verify."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from ..arithmetic import steps
from ..rejudge import Rejudge, RejudgeOptions
from ..scoring import gold_answer_math, math_judge, pass_at_k
from ..spec import option
from .base import Benchmark, BenchmarkOptions, Item, register, required_text

log = logging.getLogger("juicebox")


@register("math")
class MathBenchmark(Benchmark):
    """Math word problems judged by math-verify.

    Reads GSM8K (``question``, ``answer`` ending in ``#### <number>``) and MATH-style files
    (``problem``, ``solution`` with a final ``\\boxed{}``; a separate ``answer`` field, as in
    MATH-500, is used as the gold when present). ``format: auto`` decides per file from the first
    record. Metrics: ``pass@1`` (mean over items of the fraction of that item's samples that are
    correct) and ``pass@k`` for each configured ``k`` up to the smallest number of samples per
    item, by the unbiased estimator; intervals bootstrap the per-item values.

    With ``steps: true`` the metrics add ``steps_right``: per item the share of its answers that
    show at least one worked step (``a op b = c`` or ``<<a op b=c>>``) and whose every step is
    arithmetically right (:mod:`juicebox.arithmetic`), averaged over items, with its interval; each
    row's ``score.steps_right`` holds the per-answer verdicts.

    With ``rejudge:`` (DeepVision's re-judge, :mod:`juicebox.rejudge`), every sample math-verify
    marks wrong goes to the judge with the question, the gold and the extracted answer; the
    metrics add ``rejudged_pass@1`` (a sample counts when math-verify or the judge says correct)
    and ``flipped`` (the share of an item's samples the judge flipped, averaged over items), each
    with its interval, and the file counts ``rejudge`` (judged, flipped, unparsed replies). Each
    row's ``score.rejudge`` holds the judged samples: index, answer shown, reply, verdict.
    """

    task = "math"

    default_fields = {"id": ("id",), "question": ("question",), "answer": ("answer",),
                      "problem": ("problem",), "solution": ("solution",)}

    @dataclass(frozen=True)
    class Options(BenchmarkOptions):
        """math keys."""

        format: Literal["auto", "gsm8k", "math"] = option("auto", "File format; auto: the first record decides "
                                                          "(a `problem` field: MATH, a `question`: GSM8K).")
        k: list[int] = option([1], "pass@k for each k (1 is always reported), up to the samples per item.")
        rejudge: RejudgeOptions | None = option(None, "Re-judge what math-verify marks wrong with an LLM judge "
                                                "(DeepVision's re-judge; null: off).")
        steps: bool = option(False, "Also report steps_right: the share of answers that show worked steps and whose "
                             "every step is arithmetically right (juicebox.arithmetic, the math_steps check).")

        def check(self) -> None:
            """Every k is a positive integer (and the keys every benchmark takes are consistent)."""
            super().check()
            if any(v < 1 for v in self.k):
                raise ValueError(f"k: expected positive integers, found {self.k}")

    def __init__(self, options: Options, name: str):
        super().__init__(options, name)
        self.format = options.format
        self.k = sorted(set(options.k) | {1})
        self._file_format: str | None = None
        self.rejudge = options.rejudge

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
            prompt = required_text(self.field(record, "question"), "question")
            answer = required_text(self.field(record, "answer"), "answer")
            if "####" not in answer:
                raise ValueError("GSM8K answer has no '#### <number>' final line")
            gold = gold_answer_math(answer)
        else:
            prompt = required_text(self.field(record, "problem"), "problem")
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
        solution = required_text(self.field(record, "solution"), "solution")
        if "\\boxed" not in solution and "\\fbox" not in solution:
            raise ValueError("MATH solution has no \\boxed{} answer (and there is no 'answer' field)")
        return gold_answer_math(solution)

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Judge every sample; per item ``correct``/``extracted`` lists and pass@k values."""
        by_id = self.check_predictions(items, predictions)
        judge = Rejudge(self.rejudge) if self.rejudge is not None else None
        min_samples = min(len(by_id[item["id"]]) for item in items)
        ks = [k for k in self.k if k <= min_samples]
        if len(ks) < len(self.k):
            log.warning("benchmark %s: pass@k for k in %s skipped: only %d samples per item",
                        self.name, [k for k in self.k if k > min_samples], min_samples)
        rows = []
        for item in items:
            samples = by_id[item["id"]]
            judged = [math_judge(sample, str(item["gold"])) for sample in samples]
            correct = [ok for ok, _ in judged]
            scores = {f"pass@{k}": pass_at_k(len(correct), sum(correct), k) for k in ks}
            row = {"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                   "score": {"correct": correct, "extracted": [text for _, text in judged], **scores},
                   "stats": {"items": 1.0, **scores}}
            if self.options.steps:
                checked = [steps(sample) for sample in samples]
                right = [bool(found) and all(step.true for step in found) for found in checked]
                row["score"]["steps_right"] = right
                row["stats"]["steps_right"] = sum(right) / len(right)
            if judge is not None:
                self._rejudge(judge, item, row)
            rows.append(row)
        summary = self.summary(rows, seed, "mean over items of the per-item unbiased pass@k")
        if judge is not None:
            judged_rows = [j for row in rows for j in row["score"]["rejudge"]]
            summary["rejudge"] = {"judged": len(judged_rows), "flipped": sum(j["verdict"] is True for j in judged_rows),
                                  "unparsed": sum(j["verdict"] is None for j in judged_rows),
                                  "judge": {"endpoint": self.rejudge.endpoint, "model": self.rejudge.model}}
        return rows, summary

    def _rejudge(self, judge: Rejudge, item: Item, row: dict) -> None:
        """The judge's verdict on each sample math-verify marked wrong, in the row; its stats gain
        ``rejudged_pass@1`` and ``flipped``."""
        score, samples = row["score"], row["predictions"]
        rejudged, asked = list(score["correct"]), []
        for index, (ok, extracted) in enumerate(zip(score["correct"], score["extracted"])):
            if ok:
                continue
            shown = extracted if extracted is not None else samples[index]
            verdict = judge.judge(item["prompt"], str(item["gold"]), shown)
            asked.append({"index": index, "answer": shown, **verdict})
            rejudged[index] = verdict["verdict"] is True
        n = len(rejudged)
        score.update(rejudge=asked, rejudged=rejudged)
        row["stats"].update({"rejudged_pass@1": sum(rejudged) / n,
                             "flipped": sum(a["verdict"] is True for a in asked) / n})


# --- captions ----------------------------------------------------------------------------

