"""Pair rows in TRL's preference format and the files they are written to: ``pairs.parquet``,
``pairs.jsonl`` and LLaMA-Factory's sharegpt ranking file with its ``dataset_info.json`` entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_path, write_jsonl
from ..records import chat_turns, record_images

LLAMAFACTORY_FILE = "pairs_llamafactory.jsonl"
IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's placeholder; it needs one per image in the prompt
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}


def pair_row(record: dict, pair: tuple, conversational: bool) -> dict:
    """One TRL preference row: prompt/chosen/rejected plus ids, rewards, margin and images."""
    chosen, rejected = pair
    if conversational:
        prompt: Any = chat_turns(record["prompt"])
        chosen_col: Any = [{"role": "assistant", "content": chosen.text}]
        rejected_col: Any = [{"role": "assistant", "content": rejected.text}]
    else:
        prompt, chosen_col, rejected_col = record["prompt"], chosen.text, rejected.text
    return {
        "id": f"{record['id']}:{chosen.index}-{rejected.index}",
        "prompt_id": record["id"],
        "task": record.get("task"),
        "prompt": prompt,
        "chosen": chosen_col,
        "rejected": rejected_col,
        "chosen_reward": chosen.reward,
        "rejected_reward": rejected.reward,
        "margin": chosen.reward - rejected.reward,
        "chosen_index": chosen.index,
        "rejected_index": rejected.index,
        "images": record_images(record),
    }


def answer_text(answer: str | list[dict]) -> str:
    """The text of a chosen/rejected column, plain or one assistant message."""
    return answer if isinstance(answer, str) else answer[0]["content"]


def check_rows(rows: list[dict]) -> None:
    """Raise unless every row prefers a strictly better-rewarded answer (the pairs' guarantee)."""
    for row in rows:
        if not (row["chosen_reward"] > row["rejected_reward"] and row["margin"] > 0):
            raise ValueError(f"pair {row['id']}: chosen reward {row['chosen_reward']} is not above "
                             f"rejected reward {row['rejected_reward']}")


_CHAT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def pairs_schema(conversational: bool) -> pa.Schema:
    """The parquet schema of the rows; chat columns are list<struct<role, content>>."""
    text = _CHAT if conversational else pa.string()
    return pa.schema([("id", pa.string()), ("prompt_id", pa.string()), ("task", pa.string()),
                      ("prompt", text), ("chosen", text), ("rejected", text),
                      ("chosen_reward", pa.float64()), ("rejected_reward", pa.float64()), ("margin", pa.float64()),
                      ("chosen_index", pa.int64()), ("rejected_index", pa.int64()),
                      ("images", pa.list_(pa.string()))])


def write_pairs(rows: list[dict], parquet_path: str | Path, jsonl_path: str | Path,
                conversational: bool | None = None) -> None:
    """Write the rows as parquet and JSONL, both atomically, after checking the reward order.

    ``conversational`` defaults to the form of the first row (plain strings when there are no
    rows); pass ``PairResult.conversational`` to get the right schema for an empty set.
    """
    check_rows(rows)
    if conversational is None:
        conversational = bool(rows) and isinstance(rows[0]["prompt"], list)
    schema = pairs_schema(conversational)
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(parquet_path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    write_jsonl(jsonl_path, rows)


def needs_sharegpt(rows: list[dict], conversational: bool) -> bool:
    """Whether LLaMA-Factory needs the sharegpt file: chat prompts, or images to place in the text."""
    return conversational or any(row["images"] for row in rows)


def _sharegpt_turns(row: dict) -> list[dict]:
    """The prompt as sharegpt turns; <image> placeholders added so there is one per image."""
    turns = []
    for message in chat_turns(row["prompt"]):
        if message["role"] not in SHAREGPT_ROLES:
            raise ValueError(f"pair {row['id']}: role {message['role']!r} has no sharegpt tag; "
                             f"expected one of {list(SHAREGPT_ROLES)}")
        turns.append({"from": SHAREGPT_ROLES[message["role"]], "value": message["content"]})
    body = turns[1:] if turns and turns[0]["from"] == "system" else turns
    expected = ["human" if k % 2 == 0 else "gpt" for k in range(len(body))]
    if [t["from"] for t in body] != expected or len(body) % 2 == 0:
        raise ValueError(f"pair {row['id']}: LLaMA-Factory ranking data needs turns alternating user/assistant "
                         f"from a user turn to a user turn, found {[t['from'] for t in body]}")
    missing = len(row["images"]) - sum(t["value"].count(IMAGE_PLACEHOLDER) for t in body)
    if missing > 0:
        body[0]["value"] = IMAGE_PLACEHOLDER * missing + body[0]["value"]
    return turns


def llamafactory_rows(rows: list[dict]) -> list[dict]:
    """Rows in LLaMA-Factory's sharegpt ranking form: conversations, chosen/rejected gpt turns."""
    out = []
    for row in rows:
        entry = {"id": row["id"], "conversations": _sharegpt_turns(row),
                 "chosen": {"from": "gpt", "value": answer_text(row["chosen"])},
                 "rejected": {"from": "gpt", "value": answer_text(row["rejected"])}}
        if row["images"]:
            entry["images"] = list(row["images"])
        out.append(entry)
    return out


def write_llamafactory(rows: list[dict], path: str | Path) -> int:
    """Write ``pairs_llamafactory.jsonl`` (sharegpt form) atomically; return the row count."""
    check_rows(rows)
    return write_jsonl(path, llamafactory_rows(rows))


def dataset_info(name: str, file_name: str, conversational: bool, images: bool = False) -> dict:
    """LLaMA-Factory's ``dataset_info.json`` entry for the pairs.

    Plain prompts: alpaca style over ``pairs.jsonl`` (prompt/chosen/rejected strings). Chat
    prompts: sharegpt style over the file from ``write_llamafactory``. ``images`` adds the
    images column (LLaMA-Factory then needs <image> placeholders: use the sharegpt file).
    """
    if conversational:
        entry = {"file_name": file_name, "formatting": "sharegpt", "ranking": True,
                 "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
                 "tags": dict(SHAREGPT_TAGS)}
    else:
        entry = {"file_name": file_name, "ranking": True,
                 "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}}
    if images:
        entry["columns"]["images"] = "images"
    return {name: entry}
