"""The ``math_steps`` reward: the worked steps of a math answer checked one by one, with its final answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..arithmetic import Step, Unreadable, agrees, parse_number, steps
from ..scoring import gold_answer_math, math_judge
from ..spec import option
from .base import Reward, RewardOptions, Scores, register, without_gold_answer


@register("math_steps")
class MathSteps(Reward):
    """Checks the work of a math answer, not only its final number.

    The answer's worked steps are read by :func:`juicebox.arithmetic.steps` (GSM8K's
    ``<<48/2=24>>`` annotations, else every ``a op b = c``), each evaluated exactly without running
    any text. With ``against: arithmetic`` a step is right when its stated value is its value; with
    ``against: gold`` it must also give the value of the gold solution's step at the same position
    (the record's ``answer`` holds a worked solution, GSM8K style), and the answer must have as
    many steps as the gold one. The final answer is judged by math-verify against the gold final
    answer (as ``verifier_math``), and must equal the last step's stated value.

    ``mode: strict``: 1.0 when the final answer is correct, every step is right, there is at least
    one step and the final answer is the last step's value; else 0.0. ``mode: graded``:
    (1 − final_weight) × the share of right steps (over the answer's steps, or the gold solution's
    when it has more; 0 with no steps) + final_weight × final correctness. The details hold every
    step (expression, stated value, computed value, whether right and why not), the counts, the
    final answer extracted and whether it matched the last step.
    """

    default_tasks = ("math",)

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """math_steps keys."""

        mode: Literal["strict", "graded"] = option("strict", "strict: 1 only when the final answer and every "
                                                   "step are right; graded: share of right steps and final "
                                                   "correctness, weighted.")
        against: Literal["arithmetic", "gold"] = option("arithmetic", "arithmetic: a step is right when its "
                                                      "stated value is its value; gold: it must also be the gold "
                                                      "solution's step at the same position.")
        final_weight: float = option(0.5, "graded: weight of the final answer's correctness (the steps get the "
                                     "rest).", minimum=0, maximum=1)

    def settings(self) -> dict:
        return {"mode": self.options.mode, "against": self.options.against, "final_weight": self.options.final_weight}

    def score_applicable(self, records: list[dict]) -> Scores:
        """Check every sample's steps and final answer against its record's gold solution."""
        out: Scores = []
        for record in records:
            missing = without_gold_answer(record)
            if missing is not None:
                out.append(missing)
                continue
            solution = str(record["answer"])
            gold_steps = steps(solution) if self.options.against == "gold" else None
            if gold_steps is not None and not gold_steps:
                out.append([(None, {"reason": "against: gold needs worked steps in the gold answer; it has none"})
                            for _ in record.get("samples") or []])
                continue
            gold = gold_answer_math(solution)
            out.append([self.score_text(sample.get("text") or "", gold, gold_steps)
                        for sample in record.get("samples") or []])
        return out

    def score_text(self, text: str, gold: str, gold_steps: list[Step] | None) -> tuple[float, dict]:
        """The reward of one answer and its details."""
        found = steps(text)
        checked = [step.to_dict() for step in found]
        for k, step in enumerate(checked):
            if gold_steps is not None and step["true"] and not (k < len(gold_steps)
                                                               and agrees(found[k].stated, gold_steps[k].stated)):
                step["true"], step["reason"] = False, "not the gold solution's step"
        right = sum(step["true"] for step in checked)
        expected = max(len(found), len(gold_steps or []))
        correct, extracted = math_judge(text, gold)
        final_is_last = bool(found) and _same_number(extracted, found[-1].stated)
        all_right = bool(found) and right == expected
        share = right / expected if expected else 0.0
        if self.options.mode == "strict":
            value = float(correct and all_right and final_is_last)
        else:
            value = (1 - self.options.final_weight) * share + self.options.final_weight * float(correct)
        return value, {"gold": gold, "extracted": extracted, "final_correct": correct, "steps": checked,
                       "n_steps": len(found), "n_right": right, "all_steps_right": all_right,
                       "final_is_last_step": final_is_last}


def _same_number(extracted: str | None, stated) -> bool:
    """Whether math-verify's extracted final answer is the number a step stated."""
    if extracted is None:
        return False
    try:
        return parse_number(extracted) == stated
    except Unreadable:
        return False
