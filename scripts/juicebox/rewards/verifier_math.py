"""The ``verifier_math`` reward: 1.0 when math-verify finds the answer equal to the gold answer."""

from __future__ import annotations

from ..scoring import gold_answer_math, math_judge
from .base import Reward, Scores, register, without_gold_answer


@register("verifier_math")
class VerifierMath(Reward):
    """1.0 if the sample's final answer equals the record's gold ``answer`` (math-verify), else 0.0.

    The gold answer is reduced to its final answer first (GSM8K ``#### N``, MATH's last
    ``\\boxed{}``), exactly as the benchmarks do (:mod:`juicebox.scoring`), so a reward of 1.0 means
    what "correct" means in the evaluation. Garbage is 0.0, never an error. A record without a
    gold answer gets None for every sample.
    """

    default_tasks = ("math",)

    def score_applicable(self, records: list[dict]) -> Scores:
        """Judge every sample against its record's gold answer."""
        out: Scores = []
        for record in records:
            samples, answer = record.get("samples") or [], record.get("answer")
            missing = without_gold_answer(record)
            if missing is not None:
                out.append(missing)
                continue
            gold = gold_answer_math(str(answer))
            row = []
            for sample in samples:
                correct, extracted = math_judge(sample.get("text") or "", gold)
                row.append((1.0 if correct else 0.0, {"gold": gold, "extracted": extracted}))
            out.append(row)
        return out
