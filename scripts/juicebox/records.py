"""Helpers of the canonical record (docs/design.md, "The canonical record"), one of each.

A record's ``prompt`` is text or chat messages (``{"role", "content"}``, where ``content`` is text
or a list of OpenAI-style parts such as ``{"type": "text", "text": ...}``); its ``images`` is a
list of normalised image references (:mod:`juicebox.images` makes, opens and encodes them). Every
stage that turns a record into model input or into text goes through these functions; a record
that cannot become one raises :class:`Invalid` with the reason it is quarantined.
"""

from __future__ import annotations

from typing import Any


class Invalid(Exception):
    """A record (or a value of one: its prompt, an image) that cannot become a canonical record; the
    message is the reason it is quarantined (``sources.to_canonical``, ``images.normalise_image``)."""


def shown(text: str, limit: int = 80) -> str:
    """``text`` as it may appear in a reason: writable as UTF-8 and at most ``limit`` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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


def sft_target(record: dict) -> str | None:
    """The text SFT trains a record towards: its answer, else its first reference (None: neither)."""
    target = record.get("answer") or (record.get("references") or [None])[0]
    return str(target) if target else None


def record_images(record: dict) -> list[str]:
    """The record's images (normalised references), [] when it has none."""
    return list(record.get("images") or [])


# --- images in prompts ------------------------------------------------------------------------

IMAGE_PLACEHOLDER = "<image>"  # an image's place in prompt text (LLaVA, RLAIF-V, LLaMA-Factory)
IMAGE_PART_TYPES = ("image", "image_url")  # content parts that stand for an image


def image_placeholders(prompt: str | list[dict]) -> int:
    """How many images the prompt places itself: ``<image>`` in its text and image content parts."""
    count = 0
    for message in prompt_messages(prompt):
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if part.get("type") in IMAGE_PART_TYPES:
                    count += 1
                elif part.get("type") == "text":
                    count += str(part.get("text") or "").count(IMAGE_PLACEHOLDER)
        elif content is not None:
            count += str(content).count(IMAGE_PLACEHOLDER)
    return count


def _parts(text: str) -> list[dict]:
    """Text split at its ``<image>`` placeholders into image and text parts (empty text dropped)."""
    parts: list[dict] = []
    for k, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if k:
            parts.append({"type": "image"})
        if piece.strip("\n"):
            parts.append({"type": "text", "text": piece.strip("\n") if k else piece.rstrip("\n")})
    return parts


def with_image_parts(messages: list[dict], n_images: int) -> list[dict]:
    """Chat messages with their images as content parts, the form multimodal chat templates,
    processors and OpenAI servers read; unchanged when there are no images.

    Every content becomes a list of parts: ``<image>`` in text becomes an ``{"type": "image"}``
    part where it stands, image parts stay (as ``{"type": "image"}``). A prompt that places none
    of its images gets them all before the text of its first user turn (LLaVA's
    ``"<image>\\n{question}"``, TRL's ``prepare_multimodal_messages``). Raises ``ValueError`` when the
    prompt places some images but not as many as it has (validation quarantines such records).
    """
    if n_images == 0:
        return messages
    placed = image_placeholders(messages)
    if placed not in (0, n_images):
        raise ValueError(f"the prompt has {placed} image placeholder(s) for {n_images} image(s)")
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") in IMAGE_PART_TYPES:
                    parts.append({"type": "image"})
                elif part.get("type") == "text":
                    parts.extend(_parts(str(part.get("text") or "")))
        else:
            parts = _parts("" if content is None else str(content))
        out.append({**message, "content": parts})
    if placed == 0:
        first_user = next((m for m in out if m["role"] == "user"), out[0])
        first_user["content"] = [{"type": "image"} for _ in range(n_images)] + first_user["content"]
    return out


def vision_chat(prompt: str | list[dict], n_images: int) -> list[dict]:
    """The prompt as chat turns whose every content is a list of parts: TRL's vision format, and
    one struct type for a parquet column whether or not a row has images.

    Images become ``{"type": "image"}`` parts where the prompt places them (``<image>`` in its
    text), else before the text of the first user turn (:func:`with_image_parts`).
    """
    turns = with_image_parts(chat_turns(prompt), n_images)
    return [{**turn, "content": turn["content"] if isinstance(turn["content"], list)
             else [{"type": "text", "text": turn["content"]}]} for turn in turns]

