"""Graded rewards for the CI-sized config, as `python` rewards.

The CI's tiny text model, trained for seconds, almost never gets a held-out sum right, so
verifier_math gives every sample 0 and no pair can be formed. This reward gives partial credit:
the share of the gold answer's digits that the answer's first number has in the same place.
"""

import re


def digit_overlap(record: dict, sample: dict) -> float:
    """Share of the gold answer's digits matched position by position by the answer's first number."""
    gold = re.sub(r"\D", "", str(record.get("answer", "")))
    found = re.search(r"-?\d+", sample["text"])
    if not gold or not found:
        return 0.0
    answer = found.group().lstrip("-")
    return sum(a == b for a, b in zip(answer.zfill(len(gold))[-len(gold):], gold)) / len(gold)


def answer_similarity(record: dict, sample: dict) -> float:
    """Partial credit for a short answer (the CI's briefly trained VLM is rarely exactly right):
    difflib's similarity ratio of the answer's first line to the gold answer, lower-cased."""
    from difflib import SequenceMatcher

    answer = (sample["text"].strip().splitlines() or [""])[0].lower()
    return SequenceMatcher(None, answer, str(record.get("answer", "")).lower()).ratio()
