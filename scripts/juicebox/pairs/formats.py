"""Pair rows in TRL's preference format and the files they are written to: ``pairs.parquet``,
``pairs.jsonl`` and LLaMA-Factory's sharegpt ranking file with its ``dataset_info.json`` entry.

When any pair has images, every row's prompt is chat messages whose contents are lists of parts
(:func:`records.vision_chat`), TRL's vision preference format: ``{"type": "image"}`` parts where the
images go, ``{"type": "text", "text": ...}`` parts for the text, and the ``images`` column lists
the image paths. TRL's ``DataCollatorForVisionPreference`` fills the image parts in order, so a
prompt that places its images in its text keeps them there; in parquet the prompt column is
``list<struct<role, content: list<struct<type, text>>>>`` (``text`` null on image parts). Sets
without images keep plain chat turns (string contents) or plain strings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..io import atomic_path, write_jsonl
from ..records import IMAGE_PLACEHOLDER, chat_turns, record_images, vision_chat

LLAMAFACTORY_FILE = "pairs_llamafactory.jsonl"
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}


def pair_row(record: dict, pair: tuple, conversational: bool, parts: bool = False) -> dict:
    """One TRL preference row: prompt/chosen/rejected plus ids, rewards, margin and images.

    ``parts``: the prompt as :func:`vision_chat` (the form of every row of a set with images).
    """
    chosen, rejected = pair
    if parts or conversational:
        prompt: Any = (vision_chat(record["prompt"], len(record_images(record))) if parts
                       else chat_turns(record["prompt"]))
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
_PARTS_CHAT = pa.list_(pa.struct([("role", pa.string()),
                                  ("content", pa.list_(pa.struct([("type", pa.string()), ("text", pa.string())])))]))


def has_parts(rows: list[dict]) -> bool:
    """Whether the rows' prompts are :func:`vision_chat` turns (all rows share one form)."""
    return bool(rows) and isinstance(rows[0]["prompt"], list) and isinstance(rows[0]["prompt"][0]["content"], list)


def pairs_schema(conversational: bool, parts: bool = False) -> pa.Schema:
    """The parquet schema of the rows; chat columns are list<struct<role, content>>, and with
    ``parts`` the prompt's content is list<struct<type, text>>."""
    text = _CHAT if conversational else pa.string()
    prompt = _PARTS_CHAT if parts else text
    return pa.schema([("id", pa.string()), ("prompt_id", pa.string()), ("task", pa.string()),
                      ("prompt", prompt), ("chosen", text), ("rejected", text),
                      ("chosen_reward", pa.float64()), ("rejected_reward", pa.float64()), ("margin", pa.float64()),
                      ("chosen_index", pa.int64()), ("rejected_index", pa.int64()),
                      ("images", pa.list_(pa.string()))])


def write_pairs(rows: list[dict], parquet_path: str | Path, jsonl_path: str | Path,
                conversational: bool | None = None) -> None:
    """Write the rows as parquet and JSONL, both atomically, after checking the reward order.

    ``conversational`` defaults to the form of the first row (plain strings when there are no
    rows); pass ``PairResult.conversational`` to get the right schema for an empty set. Prompts
    in parts (a set with images) get the parts schema.
    """
    check_rows(rows)
    if conversational is None:
        conversational = bool(rows) and isinstance(rows[0]["prompt"], list)
    schema = pairs_schema(conversational, has_parts(rows))
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(parquet_path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    write_jsonl(jsonl_path, rows)


def needs_sharegpt(rows: list[dict], conversational: bool) -> bool:
    """Whether LLaMA-Factory needs the sharegpt file: chat prompts, or images to place in the text."""
    return conversational or any(row["images"] for row in rows)


def _sharegpt_value(content: str | list[dict]) -> str:
    """A turn's content as sharegpt text: text parts as they are, each image part as one <image>."""
    if isinstance(content, str):
        return content
    return "".join(IMAGE_PLACEHOLDER if part["type"] == "image" else part["text"] for part in content)


def _sharegpt_turns(row: dict) -> list[dict]:
    """The prompt as sharegpt turns, with exactly one <image> placeholder per image where the
    prompt's image parts are (a row with images has its prompt in parts)."""
    turns = []
    for message in chat_turns(row["prompt"]):
        if message["role"] not in SHAREGPT_ROLES:
            raise ValueError(f"pair {row['id']}: role {message['role']!r} has no sharegpt tag; "
                             f"expected one of {list(SHAREGPT_ROLES)}")
        turns.append({"from": SHAREGPT_ROLES[message["role"]], "value": _sharegpt_value(message["content"])})
    body = turns[1:] if turns and turns[0]["from"] == "system" else turns
    expected = ["human" if k % 2 == 0 else "gpt" for k in range(len(body))]
    if [t["from"] for t in body] != expected or len(body) % 2 == 0:
        raise ValueError(f"pair {row['id']}: LLaMA-Factory ranking data needs turns alternating user/assistant "
                         f"from a user turn to a user turn, found {[t['from'] for t in body]}")
    return turns


def llamafactory_rows(rows: list[dict], folder: str | Path) -> list[dict]:
    """Rows in LLaMA-Factory's sharegpt ranking form: conversations, chosen/rejected gpt turns.

    Image paths are written relative to ``folder``, the folder of the exported file: LLaMA-Factory
    joins a relative media path to its ``media_dir``, which defaults to the dataset folder.
    """
    out = []
    for row in rows:
        entry = {"id": row["id"], "conversations": _sharegpt_turns(row),
                 "chosen": {"from": "gpt", "value": answer_text(row["chosen"])},
                 "rejected": {"from": "gpt", "value": answer_text(row["rejected"])}}
        if row["images"]:
            entry["images"] = [os.path.relpath(image, folder) for image in row["images"]]
        out.append(entry)
    return out


def write_llamafactory(rows: list[dict], path: str | Path) -> int:
    """Write ``pairs_llamafactory.jsonl`` (sharegpt form) atomically, its image paths relative to
    its folder; return the row count."""
    check_rows(rows)
    return write_jsonl(path, llamafactory_rows(rows, Path(path).parent))


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
