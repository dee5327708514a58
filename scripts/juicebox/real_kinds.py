"""ReaL's dataset kinds (``realhf/api/quickstart/dataset.py``), written beside the project's own files
so that ReaL (and anything that reads its kinds) can train on an experiment's data:

- ``prompt_answer``: ``{"id", "prompt", "answer"}`` (ReaL trains on prompt + answer + EOS): the rows
  SFT trained on (``sft/prompt_answer.jsonl``);
- ``prompt``: ``{"id", "prompt"}``: every processed record's prompt (``processed/prompts.jsonl``);
- ``rw_pair``: ``{"id", "prompt", "pos_answers", "neg_answers"}``, the two lists of equal length and
  paired one to one: a prompt's DPO pairs (``round<r>/pairs/pairs_rw_pair.jsonl``).

ReaL's prompts are strings: a chat prompt is written as its turns' text joined by newlines (the
chat template is the trainer's to apply). A record with images also carries ``images`` (paths),
a key ReaL's text kinds do not read.
"""

from __future__ import annotations

from collections import defaultdict

from .pairs.formats import answer_text
from .records import prompt_text, record_images


def _with_images(row: dict, record: dict) -> dict:
    images = record_images(record)
    return {**row, "images": images} if images else row


def prompt_rows(records: list[dict]) -> list[dict]:
    """ReaL ``prompt`` rows of canonical records."""
    return [_with_images({"id": r["id"], "prompt": prompt_text(r["prompt"])}, r) for r in records]


def prompt_answer_rows(records: list[dict], targets: list[str]) -> list[dict]:
    """ReaL ``prompt_answer`` rows of records and the answer each is trained towards."""
    return [_with_images({"id": r["id"], "prompt": prompt_text(r["prompt"]), "answer": target}, r)
            for r, target in zip(records, targets)]


def rw_pair_rows(pair_rows: list[dict]) -> list[dict]:
    """ReaL ``rw_pair`` rows of TRL preference rows (:func:`juicebox.pairs.pair_row`), one per prompt,
    its pairs in the rows' order."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for row in pair_rows:
        by_prompt[row["prompt_id"]].append(row)
    out = []
    for pid, rows in by_prompt.items():
        first = rows[0]
        prompt = first["prompt"] if isinstance(first["prompt"], str) else prompt_text(first["prompt"])
        entry = {"id": pid, "prompt": prompt, "pos_answers": [answer_text(r["chosen"]) for r in rows],
                 "neg_answers": [answer_text(r["rejected"]) for r in rows]}
        out.append({**entry, "images": first["images"]} if first.get("images") else entry)
    return out

