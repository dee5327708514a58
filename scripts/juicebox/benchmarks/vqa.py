"""The ``vqa`` benchmark type: open questions about an image (VQAv2, TextVQA), soft VQA accuracy."""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sources import RawItem
from ..spec import option
from .base import (GREEDY, Benchmark, BenchmarkError, BenchmarkOptions, Item, group_by_option, item_location, register,
                   required_text)

log = logging.getLogger("juicebox")

# The official VQA evaluation's tables (GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/
# vqaEval.py), value for value: contractions written without their apostrophe, number words,
# articles, punctuation.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!")
# vqaEval.py's patterns as written: the first lookahead, "(?!<=\d)", is a typo for a lookbehind
# and only ever rejects "<=" plus a digit, so a period not followed by a digit is removed.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# Annotators per question in VQAv2 and TextVQA; min(1, matches / 3) is designed for ten.
ANNOTATORS = 10


def _process_punctuation(text: str) -> str:
    """vqaEval.py's ``processPunctuation``: a punctuation mark next to a space (or any, when the
    text has a comma between digits) is removed, otherwise it becomes a space; then periods not
    followed by a digit are removed."""
    out = text
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    # vqaEval.py passes re.UNICODE (32) as sub's count, removing at most 32 periods; no short
    # answer holds that many.
    return _PERIOD_STRIP.sub("", out)


def _process_digit_article(text: str) -> str:
    """vqaEval.py's ``processDigitArticle``: lower case, number words → digits, articles
    dropped, contractions given their apostrophe, words joined by single spaces."""
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def _joined(question: RawItem, annotations: dict[str, dict], path: Path) -> RawItem:
    """A question record with its annotation's fields (the question's own win), or an error naming
    the question_id that ``path`` does not annotate."""
    if question.error or not isinstance(question.value, dict):
        return question
    key = question.value.get("question_id")
    annotation = annotations.get(str(key)) if key is not None else None
    if annotation is None:
        return dataclasses.replace(question, error=f"question_id {key} has no annotation in {path}")
    return dataclasses.replace(question, value={**annotation, **question.value})


def normalize_vqa_answer(text: str) -> str:
    """An answer as the official VQA evaluation compares it: newlines and tabs become spaces,
    the ends are stripped, then ``processPunctuation`` and ``processDigitArticle``
    ("Two dogs." → "2 dogs", "A cat!" → "cat")."""
    return _process_digit_article(_process_punctuation(text.replace("\n", " ").replace("\t", " ").strip()))


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """VQA's soft accuracy of one prediction against the annotators' answers.

    Every answer and the prediction are normalised (``normalize_vqa_answer``); with ``m`` of the
    answers equal to the prediction, each leave-one-out subset (one annotator left out) scores
    min(1, matches among the others / 3), and the accuracy is the mean over the subsets:
    (m·min(1, (m−1)/3) + (n−m)·min(1, m/3)) / n for n answers. With ten answers: 0 matches → 0,
    1 → 0.3, 2 → 0.6, 3 → 0.9, 4 or more → 1.

    The official script normalises the gold answers only with ``processPunctuation`` and only
    when they are not all the same (VQAv2's annotations are normalised already); here they get
    the full normalisation every time, so raw answers (TextVQA's, "Two" for "2") compare too. An
    item with a single answer (VLMEvalKit's TSVs of some sets) scores the exact match of the
    normalised answers, 1 or 0 (the leave-one-out formula would give 0 whatever the prediction).
    """
    if not answers:
        raise ValueError("vqa_accuracy: no answers")
    predicted = normalize_vqa_answer(prediction)
    matches = [normalize_vqa_answer(answer) == predicted for answer in answers]
    if len(matches) == 1:  # one answer leaves no annotator to agree with: exact match of the normalised answer
        return float(matches[0])
    total = sum(matches)
    return sum(min(1.0, (total - match) / 3) for match in matches) / len(matches)


@register("vqa")
class VqaBenchmark(Benchmark):
    """Open questions about an image (VQAv2, TextVQA) scored with VQA's soft accuracy; greedy.

    Reads ``{"question_id" (or "id", "index"), "question", "answers" (or "answer"), "image"}`` with
    ``answers`` the annotators' answers (ten in VQAv2 and TextVQA): strings, or VQAv2's
    ``{"answer", "answer_confidence", "answer_id"}`` objects; a single answer (a VLMEvalKit TSV's)
    is a list of one. The files as published: TextVQA's JSON object (records under ``data``, images
    by ``image_template: train_images/{image_id}.jpg``); VQAv2's questions file as ``path`` with its
    ``annotations`` file, joined on ``question_id`` (``answer_type`` and ``question_type`` go to
    ``meta``; images by ``image_template: val2014/COCO_val2014_{image_id:012d}.jpg``); VLMEvalKit's
    TSVs. The prompt is the question. Each sample gets ``vqa_accuracy``; metric ``accuracy``: the
    mean over items of the mean over the item's samples, and ``accuracy[<field>=<value>]`` for
    each value of each ``group_by`` field (e.g. VQAv2's ``answer_type``); intervals bootstrap the
    per-item values.
    """

    task = "vqa"
    default_sampling = GREEDY

    default_fields = {"id": ("id", "question_id", "index"), "question": ("question",),
                      "answers": ("answers", "answer")}

    @dataclass(frozen=True)
    class Options(BenchmarkOptions):
        """vqa keys."""

        group_by: list[str] = group_by_option([])
        annotations: str | None = option(None, "VQAv2's annotations file (`v2_mscoco_val2014_annotations.json`), "
                                         "joined on question_id to the questions of `path` "
                                         "(`v2_OpenEnded_mscoco_val2014_questions.json`); a relative path is taken "
                                         "from the benchmark file's folder (null: the answers are in `path`).")

    def describe(self) -> dict[str, Any]:
        """Settings, plus the annotations file."""
        annotations = self.options.annotations
        return {**super().describe(), "annotations": str(self.resolve_path(annotations)) if annotations else None}

    def _raw_items(self) -> list[RawItem]:
        """The benchmark file's records; with ``annotations``, each question joined with its annotation."""
        questions = super()._raw_items()
        if self.options.annotations is None:
            return questions
        path = self.resolve_path(self.options.annotations)
        annotations = self._annotations(path)
        return [_joined(question, annotations, path) for question in questions]

    def _annotations(self, path: Path) -> dict[str, dict]:
        """The annotations file's records by question_id (as text)."""
        by_question: dict[str, dict] = {}
        for raw in self.read_file(path):
            where = item_location(str(path), raw)
            if raw.error:
                raise BenchmarkError(f"{where}: {raw.error}")
            if not isinstance(raw.value, dict) or raw.value.get("question_id") is None:
                raise BenchmarkError(f"{where}: an annotation must be an object with a question_id")
            key = str(raw.value["question_id"])
            if key in by_question:
                raise BenchmarkError(f"{where}: a second annotation of question_id {key}")
            by_question[key] = raw.value
        return by_question

    def load(self) -> list[Item]:
        """Read the file; say so when items do not have the ten answers the metric is made for."""
        items = super().load()
        uneven = sum(len(item["gold"]) != ANNOTATORS for item in items)
        if uneven:
            log.warning("benchmark %s: %d items have other than %d answers; VQA accuracy (min(1, matches / 3) "
                        "over leave-one-out subsets) is made for %d", self.name, uneven, ANNOTATORS, ANNOTATORS)
        return items

    def make_item(self, record: dict, line: int) -> Item:
        """A VQA record → item whose gold is the list of the annotators' answers."""
        question = required_text(self.field(record, "question"), "question")
        answers = self._answers(self.field(record, "answers"))
        meta = {key: value for key, value in record.items() if key not in self.used_fields()}
        return {"id": self.item_id(record, line), "prompt": question, "gold": answers, "meta": meta}

    @staticmethod
    def _answers(answers: Any) -> list[str]:
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers:
            raise ValueError(f"answers must be a non-empty list of the annotators' answers, found {answers!r:.80}")
        out = [answer.get("answer") if isinstance(answer, dict) else answer for answer in answers]
        if not all(isinstance(answer, str) for answer in out):
            raise ValueError("every answer must be text, or an object with an 'answer' text (VQAv2)")
        return out

    def score(self, items: list[Item], predictions: dict[str, list[str]],
              seed: int) -> tuple[list[dict], dict]:
        """VQA accuracy of every sample; per item ``normalized``/``accuracies``/``accuracy`` (and its
        ``groups``)."""
        by_id = self.check_predictions(items, predictions)
        rows = []
        for item in items:
            samples = by_id[item["id"]]
            values = [vqa_accuracy(sample, list(item["gold"])) for sample in samples]
            accuracy = sum(values) / len(values)
            rows.append({"id": item["id"], "prompt": item["prompt"], "predictions": samples, "gold": item["gold"],
                         "groups": self.groups(item),
                         "score": {"normalized": [normalize_vqa_answer(sample) for sample in samples],
                                   "accuracies": values, "accuracy": accuracy},
                         "stats": {"items": 1.0, "accuracy": accuracy}})
        return rows, self.summary(rows, seed, "mean over items (of the group) of the per-item mean VQA accuracy of "
                                  "the samples")
