"""One chat completion, synchronously: for the parts that ask a served model one question at a time
and read more than its text (divide_conquer's labeller reads logprobs, the re-judge a verdict).
The engines' own client (:mod:`juicebox.engines.openai`) is asynchronous and returns answers only."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

from .engines.openai import ERROR_TEXT_LIMIT, RETRYABLE_STATUS, scrub


class ChatFailed(RuntimeError):
    """A chat completion failed and will not be retried (or ran out of retries); the key is scrubbed."""


def api_key(variable: str | None, who: str) -> str | None:
    """The API key held by the environment variable ``variable`` (None when none is named)."""
    if not variable:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ValueError(f"environment variable {variable} ({who}) is not set")
    return key


def post_chat(endpoint: str, body: dict, key: str | None = None, timeout: float = 120.0, retries: int = 3) -> dict:
    """POST ``body`` to ``<endpoint>/v1/chat/completions`` and return the reply's JSON; connection
    errors, timeouts and HTTP 408/409/425/429/5xx are retried with exponential backoff (1, 2, 4 s)."""
    url = f"{endpoint.rstrip('/')}/v1/chat/completions"
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    error = "no attempt"
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, json.dumps(body).encode("utf-8"), headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            text = scrub(err.read().decode("utf-8", "replace"), key, ERROR_TEXT_LIMIT)
            error = f"HTTP {err.code} from {url}: {text}"
            if err.code not in RETRYABLE_STATUS:
                break
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            error = scrub(f"{type(err).__name__} at {url}: {err}", key)
        if attempt < retries:
            time.sleep(2 ** attempt)
    raise ChatFailed(error)
