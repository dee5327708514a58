"""The ``short_answer`` reward: 1.0 when a short answer (yes/no, an option letter, a VQA answer)
is the record's gold ``answer``, read as the benchmarks read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from ..benchmarks.multiple_choice import extract_choice
from ..benchmarks.vqa import normalize_vqa_answer
from ..benchmarks.yes_no import parse_yes_no
from ..spec import option
from .base import Reward, RewardOptions, Scores, register, without_gold_answer

# The match ``auto`` uses for a record's task (any other task: vqa).
AUTO_MATCH = {"yes_no": "yes_no", "mcq": "choice"}


def _gold_yes_no(answer: str) -> str | None:
    answer = answer.strip().lower()
    return answer if answer in ("yes", "no") else None


def _gold_choice(answer: str) -> str | None:
    answer = answer.strip().upper()
    return answer if len(answer) == 1 and "A" <= answer <= "Z" else None


# match → (how a sample is read, how the gold answer is read: None when it cannot be that kind of answer).
MATCHERS: dict[str, tuple[Callable[[str], str | None], Callable[[str], str | None]]] = {
    "exact": (str.strip, str.strip),
    "yes_no": (parse_yes_no, _gold_yes_no),
    "choice": (extract_choice, _gold_choice),
    "vqa": (normalize_vqa_answer, normalize_vqa_answer),
}


@register("short_answer")
class ShortAnswer(Reward):
    """1.0 if the sample's short answer (yes/no, letter, VQA answer) is the gold ``answer``, else 0.0.

    ``match`` says how: ``yes_no``, the sample read by ``parse_yes_no`` (LLaVA's POPE rule)
    against the gold "yes"/"no"; ``choice``, the letter ``extract_choice`` reads against the gold
    letter; ``vqa``, the sample and the gold equal after ``normalize_vqa_answer``; ``exact``, equal
    text once stripped; ``auto`` (default), by the record's task: yes_no → yes_no, mcq → choice,
    any other (vqa) → vqa. A reward of 1.0 means what "correct" means in the yes_no,
    multiple_choice and vqa benchmarks (for vqa: the answer of one annotator, the pool record's,
    not VQA's soft accuracy over ten). A record without a gold answer, or with one that is no
    yes/no or letter where that is asked, gets None for every sample. Details: ``gold`` and
    ``parsed`` (the sample as read; None when no letter is found).
    """

    default_tasks = ("yes_no", "mcq", "vqa")

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """short_answer keys."""

        match: Literal["auto", "exact", "yes_no", "choice", "vqa"] = option(
            "auto", "How a sample is compared with the gold answer; auto: by the record's task (yes_no: yes_no, "
            "mcq: choice, others: vqa).")

    def settings(self) -> dict:
        """The match rule."""
        return {"match": self.options.match}

    def score_applicable(self, records: list[dict]) -> Scores:
        """Read every sample and the gold answer as the match rule says; 1.0 when they are equal."""
        out: Scores = []
        for record in records:
            samples, answer = record.get("samples") or [], record.get("answer")
            missing = without_gold_answer(record)
            if missing is not None:
                out.append(missing)
                continue
            match = self.options.match
            if match == "auto":
                match = AUTO_MATCH.get(record.get("task"), "vqa")
            read_sample, read_gold = MATCHERS[match]
            gold = read_gold(str(answer))
            if gold is None:
                out.append([(None, {"reason": f"gold answer {str(answer)!r:.40} is not a {match} answer"})
                            for _ in samples])
                continue
            row = []
            for sample in samples:
                parsed = read_sample(sample.get("text") or "")
                row.append((1.0 if parsed == gold else 0.0, {"gold": gold, "parsed": parsed}))
            out.append(row)
        return out
