"""The ``verifier_math`` reward: 1.0 when math-verify finds the answer equal to the gold answer."""

from __future__ import annotations

from dataclasses import dataclass

from ..rejudge import Rejudge, RejudgeOptions
from ..records import prompt_text
from ..scoring import gold_answer_math, math_judge
from ..spec import option
from .base import Reward, RewardOptions, Scores, register, without_gold_answer


@register("verifier_math")
class VerifierMath(Reward):
    """1.0 if the sample's final answer equals the record's gold ``answer`` (math-verify), else 0.0.

    The gold answer is reduced to its final answer first (GSM8K ``#### N``, MATH's last
    ``\\boxed{}``), exactly as the benchmarks do (:mod:`juicebox.scoring`), so a reward of 1.0 means
    what "correct" means in the evaluation. Garbage is 0.0, never an error. A record without a
    gold answer gets None for every sample. With ``rejudge:``, a sample math-verify marks wrong
    goes to DeepVision's judge (:mod:`juicebox.rejudge`), and 1.0 when it says correct; its reply
    and verdict are in the details.
    """

    default_tasks = ("math",)

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """verifier_math keys."""

        rejudge: RejudgeOptions | None = option(None, "Re-judge what math-verify marks wrong with an LLM judge "
                                                "(DeepVision's re-judge; null: off).")

    def __init__(self, options: Options | None = None, context=None) -> None:
        super().__init__(options, context)
        self.judge = Rejudge(self.options.rejudge) if self.options.rejudge is not None else None

    def settings(self) -> dict:
        rejudge = self.options.rejudge
        return {"rejudge": None if rejudge is None else {"endpoint": rejudge.endpoint, "model": rejudge.model}}

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
                text = sample.get("text") or ""
                correct, extracted = math_judge(text, gold)
                details = {"gold": gold, "extracted": extracted}
                if not correct and self.judge is not None:
                    verdict = self.judge.judge(prompt_text(record["prompt"]), gold,
                                               extracted if extracted is not None else text)
                    correct, details = verdict["verdict"] is True, {**details, "rejudge": verdict}
                row.append((1.0 if correct else 0.0, details))
            out.append(row)
        return out
