"""Helpers of the canonical record (DESIGN.md, "Canonical record"), one of each.

A record's ``prompt`` is text or chat messages (``{"role", "content"}``, where ``content`` is text
or a list of OpenAI-style parts such as ``{"type": "text", "text": ...}``); its ``images`` is a
list of normalised image references. Every stage that turns a record into model input or into
text goes through these functions.
"""

from __future__ import annotations

from typing import Any


def prompt_messages(prompt: str | list[dict], system: str | None = None) -> list[dict]:
    """A canonical prompt as chat messages, with an optional system turn.

    A text prompt becomes one user turn; chat messages are copied. ``system`` is added as the
    first turn unless the chat has its own system turn (the chat's own wins) or it is empty.
    """
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def chat_turns(prompt: str | list[dict]) -> list[dict]:
    """The prompt as chat messages holding only ``role`` and ``content`` (the pairs' parquet schema)."""
    return [{"role": m["role"], "content": m["content"]} for m in prompt_messages(prompt)]


def content_text(content: Any) -> str:
    """The text of one message's content: the string, or its text parts joined by newlines."""
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return "" if content is None else str(content)


def prompt_text(prompt: str | list[dict]) -> str:
    """The prompt as one text: itself, or every message's text joined by newlines (what Data-Juicer
    filters and pool statistics read)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(content_text(message.get("content")) for message in prompt)


def record_images(record: dict) -> list[str]:
    """The record's images (normalised references), [] when it has none."""
    return list(record.get("images") or [])
