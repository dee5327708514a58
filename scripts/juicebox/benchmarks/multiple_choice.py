"""The ``multiple_choice`` benchmark type: questions answered with an option letter."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

from .base import GREEDY, Benchmark, BenchmarkOptions, Item, group_by_option, register, required_text

# A letter opening the answer: "B", "(B)", "B.", "B) ...", "**B**"; a leading word such as
# "A cat" or "I think" is not a choice.
_LEADING_CHOICE = re.compile(r"^[\s*_]*[(\[]?([A-Z])(?:[)\].:,*_]|[ \t]*\n|\s*$)")
# "Answer: B", "answer is (C)", "The answer is **D**".
_MARKED_CHOICE = re.compile(r"(?i:answer)\s*(?:(?i:is)\s*|:\s*)[\s*_(\[]*([A-Z])\b")
# The option columns of VLMEvalKit's TSVs, in order.
LETTER_COLUMNS = tuple(string.ascii_uppercase)
# An option marker inside a question's text: "(A)", "A:" or "A." at the start, or after white
# space, a comma or a semicolon, and followed by white space.
_OPTION_MARKER = re.compile(r"(?:^|(?<=[\s,;]))(?:\(([A-Z])\)|([A-Z])([:.]))(?=[ \t])")


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


def options_from_question(question: str) -> dict[str, str]:
    """The lettered options written in a question's text, as MMStar writes them
    ("...\\nOptions: A: cat, B: dog, C: bird"); {} when there are fewer than two.

    Rule: option markers are "A:", "A." or "(A)" at the start of the text or after white space,
    a comma or a semicolon, followed by a space. From each "A" marker, the chain takes the next
    "B" marker of the same style after it, then "C", and so on; the longest chain wins (the
    later one on a tie, so that a stray "A." in the question before the options does not count).
    An option's text runs to the next marker of the chain or to the end of its line, without the
    surrounding white space and a separating comma or semicolon.
    """
    markers = [(m.start(), m.end(), m.group(1) or m.group(2), "()" if m.group(1) else m.group(3))
               for m in _OPTION_MARKER.finditer(question)]
    best: list[tuple[int, int, str, str]] = []
    for i, first in enumerate(markers):
        if first[2] != "A":
            continue
        chain = [first]
        for marker in markers[i + 1:]:
            if marker[3] == first[3] and marker[2] == chr(ord(chain[-1][2]) + 1):
                chain.append(marker)
        if len(chain) >= len(best):
            best = chain
    if len(best) < 2:
        return {}
    options = {}
    for marker, following in zip(best, [*best[1:], None]):
        text = question[marker[1]:following[0] if following else len(question)]
        options[marker[2]] = text.split("\n")[0].strip().rstrip(",;").strip()
    return options


def _letter_columns(record: dict) -> dict[str, Any]:
    """The options a VLMEvalKit TSV gives in columns ``A``, ``B``, ...: each letter column with a
    value (an empty cell is none)."""
    return {letter: record[letter] for letter in LETTER_COLUMNS if record.get(letter) is not None}


def render_choices(question: str, options: dict[str, str]) -> str:
    """The prompt: the question, one ``X. option`` line per option, and the instruction."""
    lines = [f"{letter}. {text}" for letter, text in options.items()]
    return f"{question.strip()}\n\n" + "\n".join(lines) + "\n\nAnswer with the letter."


@register("multiple_choice")
class MultipleChoiceBenchmark(Benchmark):
    """Multiple-choice questions (MMStar's too) scored by the letter the model picks; greedy.

    Reads records of ``{"id" (or "index"), "question", "options" (list, lettered A, B, ... in
    order, or a dict letter → text), "answer" (the right letter), "hint" (optional)}``: the prompt
    is ``Hint: <hint>`` (when given), the question, one ``X. option`` line per option and "Answer
    with the letter.". VLMEvalKit's TSVs (MMStar, MMBench) give the options in columns ``A``,
    ``B``, ... (an empty cell: no such option), read the same way. A record without either carries
    them in its question, as MMStar's do (``"...\\nOptions: A: ..., B: ..."``, read by
    ``options_from_question``; none found fails naming the line): the prompt is then the question
    as given. The letter is read by ``extract_choice``. Metrics: ``accuracy``, the mean over items
    of the fraction of samples whose letter is right, and ``accuracy[<field>=<value>]`` for each
    value of each ``group_by`` field (MMStar: ``category``, ``l2_category``; VLMEvalKit's TSVs
    ``l2-category``), the mean over that group's items; intervals bootstrap the per-item values
    (within the group).
    """

    task = "mcq"
    default_sampling = GREEDY

    default_fields = {"id": ("id", "index"), "question": ("question",), "options": ("options",),
                      "answer": ("answer",), "hint": ("hint",)}

    @dataclass(frozen=True)
    class Options(BenchmarkOptions):
        """multiple_choice keys."""

        group_by: list[str] = group_by_option(["category", "l2_category", "l2-category"])

    def make_item(self, record: dict, line: int) -> Item:
        """A multiple-choice record → item with its prompt and the gold letter."""
        question = required_text(self.field(record, "question"), "question")
        hint = self.field(record, "hint", required=False)
        if hint is not None:
            question = f"Hint: {required_text(hint, 'hint')}\n{question}"
        given = self.field(record, "options", required=False)
        if given is None:
            given = _letter_columns(record) or None
        if given is not None:
            options = self._options(given)
            prompt = render_choices(question, options)
        else:
            options, prompt = options_from_question(question), question
            if not options:
                raise ValueError("no options: the record has no 'options' field and its question names none "
                                 "(option markers 'A:', 'A.' or '(A)' followed by a space, from A on)")
        gold = self.field(record, "answer")
        if not isinstance(gold, str) or gold.strip().upper() not in options:
            raise ValueError(f"answer must be one of the option letters {', '.join(options)}, found {gold!r}")
        meta = {key: value for key, value in record.items()
                if key not in self.used_fields() and key not in LETTER_COLUMNS}
        return {"id": self.item_id(record, line), "prompt": prompt, "gold": gold.strip().upper(),
                "meta": {"options": options, **meta}}

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
        """Letter of every sample against the gold; per item ``choices``/``correct``/``accuracy``
        (and its ``groups``)."""
        by_id = self.check_predictions(items, predictions)
        rows = []
        for item in items:
            samples = by_id[item["id"]]
            choices = [extract_choice(sample) for sample in samples]
            correct = [choice == item["gold"] for choice in choices]
            accuracy = sum(correct) / len(correct)
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                         "groups": self.groups(item),
                         "score": {"choices": choices, "correct": correct, "accuracy": accuracy},
                         "stats": {"items": 1.0, "accuracy": accuracy}})
        return rows, self.summary(rows, seed, "mean over items (of the group) of the per-item fraction of correct "
                                  "samples")


