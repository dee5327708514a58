"""The ``multiple_choice`` benchmark type: questions answered with an option letter."""

from __future__ import annotations

import re
import string
from typing import Any

from . import Benchmark, Item, _text, register

# A letter opening the answer: "B", "(B)", "B.", "B) ...", "**B**"; a leading word such as
# "A cat" or "I think" is not a choice.
_LEADING_CHOICE = re.compile(r"^[\s*_]*[(\[]?([A-Z])(?:[)\].:,*_]|[ \t]*\n|\s*$)")
# "Answer: B", "answer is (C)", "The answer is **D**".
_MARKED_CHOICE = re.compile(r"(?i:answer)\s*(?:(?i:is)\s*|:\s*)[\s*_(\[]*([A-Z])\b")


def extract_choice(text: str) -> str | None:
    """The option letter a model chose, or None.

    Rule: a capital letter that opens the output as a token of its own ("B", "(B)", "B.",
    "B) because ..."); otherwise the capital letter right after the first "Answer:" or
    "answer is" (any case, optional brackets or bold). Lower-case letters are not read as
    choices, since "a" is mostly an article.
    """
    if not isinstance(text, str):
        return None
    match = _LEADING_CHOICE.match(text) or _MARKED_CHOICE.search(text)
    return match.group(1) if match else None


def render_choices(question: str, options: dict[str, str]) -> str:
    """The prompt: the question, one ``X. option`` line per option, and the instruction."""
    lines = [f"{letter}. {text}" for letter, text in options.items()]
    return f"{question.strip()}\n\n" + "\n".join(lines) + "\n\nAnswer with the letter."


@register("multiple_choice")
class MultipleChoiceBenchmark(Benchmark):
    """Multiple-choice questions scored by the letter the model picks (see ``extract_choice``).

    Reads JSONL of ``{"id", "question", "options" (list, lettered A, B, ... in order, or a dict
    letter → text), "answer" (the right letter)}``. Metric: ``accuracy``, the mean over items of
    the fraction of samples whose letter is right; the interval bootstraps the per-item values.
    """

    task = "mcq"

    default_fields = {"id": ("id",), "question": ("question",), "options": ("options",), "answer": ("answer",)}

    def make_item(self, record: dict, line: int) -> Item:
        """A multiple-choice record → item with the rendered prompt and the gold letter."""
        question = _text(self.field(record, "question"), "question")
        options = self._options(self.field(record, "options"))
        gold = self.field(record, "answer")
        if not isinstance(gold, str) or gold.strip().upper() not in options:
            raise ValueError(f"answer must be one of the option letters {', '.join(options)}, found {gold!r}")
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": render_choices(question, options),
                "gold": gold.strip().upper(), "meta": {"options": options, **meta}}

    @staticmethod
    def _options(options: Any) -> dict[str, str]:
        if isinstance(options, list):
            if len(options) > 26:
                raise ValueError(f"at most 26 options, found {len(options)}")
            options = dict(zip(string.ascii_uppercase, options))
        if not isinstance(options, dict) or len(options) < 2:
            raise ValueError("options must be a list or a letter → text object with at least two options")
        letters = {str(key).strip().upper(): value for key, value in options.items()}
        if not all(len(key) == 1 and key in string.ascii_uppercase for key in letters):
            raise ValueError(f"option keys must be single letters A-Z, found {sorted(options)}")
        if not all(isinstance(value, (str, int, float)) and str(value).strip() for value in letters.values()):
            raise ValueError("every option needs non-empty text")
        return {key: str(letters[key]) for key in sorted(letters)}

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """Letter of every sample against the gold; per item ``choices``/``correct``/``accuracy``."""
        by_id = self.check_predictions(items, predictions)
        rows, accuracies = [], []
        for item in items:
            samples = by_id[item["id"]]
            choices = [extract_choice(sample) for sample in samples]
            correct = [choice == item["gold"] for choice in choices]
            accuracy = sum(correct) / len(correct)
            accuracies.append(accuracy)
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                         "score": {"choices": choices, "correct": correct, "accuracy": accuracy}})
        samples = [len(by_id[item["id"]]) for item in items]
        return rows, self.summary(len(items), {"accuracy": sum(accuracies) / len(accuracies)},
                                  {"accuracy": accuracies}, seed, samples,
                                  "mean over items of the per-item fraction of correct samples")


