"""The ``judge`` reward: pairwise comparisons by an LLM judge (LLaVA-Critic style), as win rates.

For each prompt, pairs of its samples (all pairs, or ``max_pairs`` drawn with the prompt's
seeded rng) go to a judge model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint,
which is asked which answer is better: "A", "B" or "tie". Judges favour one position, so by
default every pair is asked in both orders (A/B and B/A), which cancels a constant position
bias. A sample's value is its win rate over the comparisons it took part in:

    (wins + 0.5·ties) / comparisons            (each order of a pair is one comparison)

A reply is read as its first standalone "A", "B" (upper case) or "tie" (any case); a reply with
none of them counts as a tie and is counted in ``unparsed``. A prompt with fewer than two
samples has nothing to compare: None. A request that still fails after ``retries`` retries
(connection errors, timeouts, HTTP 408/409/425/429/5xx, with exponential backoff) leaves the
samples it compared with None, since their win rate would rest on fewer comparisons than
their rivals'. The API key is read from the environment variable named by ``api_key_env``; it
is sent only in the Authorization header, never logged, written or put in details (error
texts are scrubbed of it too).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import string
from itertools import combinations

from dataclasses import dataclass

from ..engines.openai import ERROR_TEXT_LIMIT, RETRYABLE_STATUS, scrub
from ..images import image_data_url
from ..records import content_text, record_images, with_image_parts
from ..spec import option
from .base import Reward, RewardContext, RewardOptions, Scores, prompt_messages, register

log = logging.getLogger("juicebox")

DEFAULT_TEMPLATE = (
    "You are a fair and careful judge. Read the question and two answers to it, then decide which "
    "answer is better: more correct, more faithful to the question (and the image, if any), more "
    "helpful, with nothing made up.\n\n"
    "Question:\n{question}\n\n"
    "Answer A:\n{answer_a}\n\n"
    "Answer B:\n{answer_b}\n\n"
    "Reply with one word only: A if answer A is better, B if answer B is better, tie if they are "
    "equally good."
)
TEMPLATE_FIELDS = {"question", "answer_a", "answer_b"}
_VERDICT = re.compile(r"(?<![A-Za-z0-9])(A|B|[Tt][Ii][Ee])(?![A-Za-z0-9])")


def parse_verdict(reply: str) -> str | None:
    """"A", "B" or "tie" from a judge's reply (its first standalone one), None if it has none."""
    match = _VERDICT.search(reply or "")
    if not match:
        return None
    word = match.group(1)
    return word if word in ("A", "B") else "tie"


def question_text(record: dict) -> str:
    """The prompt as the judge reads it: a single user turn's text, else every turn as "role: text".
    The prompt's ``<image>`` placeholders are left out: the images go to the judge as image parts
    (a multimodal server would read a placeholder left in the text as one more image)."""
    messages = with_image_parts(prompt_messages(record), len(record_images(record)))
    turns = [m for m in messages if m.get("role") != "system"]
    if len(turns) == 1:
        return content_text(turns[0].get("content"))
    return "\n".join(f"{m.get('role')}: {content_text(m.get('content'))}" for m in turns)


class JudgeFailed(RuntimeError):
    """A judge request failed and will not be retried (or ran out of retries)."""


@register("judge")
class Judge(Reward):
    """Win rate of each sample in pairwise comparisons by an LLM judge (see the module doc).

    Keys: ``endpoint`` (base URL of the server; ``/v1/chat/completions`` is appended), ``model``
    (the served model name), ``api_key_env``, ``template`` (with {question}, {answer_a},
    {answer_b}), ``both_orders``, ``max_pairs`` (per prompt; null: all), ``seed`` (for that draw;
    default the run's seed), ``concurrency``, ``retries``, ``backoff`` (seconds, doubled per
    retry), ``timeout`` (seconds per request), ``max_tokens``, ``temperature``, ``images``
    (send the record's images, files or data: URIs, as data URLs before the text, for multimodal
    judges).
    """

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """judge keys."""

        endpoint: str = option(help="Base URL of the judge server (/v1/chat/completions is appended).")
        model: str = option(help="The served model name.")
        api_key_env: str | None = option(None, "Environment variable holding the API key (never logged or written).")
        template: str = option(DEFAULT_TEMPLATE, "The judge prompt, with {question}, {answer_a} and {answer_b}.")
        both_orders: bool = option(True, "Ask every pair in both orders (cancels a constant position bias).")
        max_pairs: int | None = option(None, "Pairs compared per prompt, a seeded draw (null: all).", minimum=1)
        seed: int | None = option(None, "Seed of that draw (null: the run's seed).")
        concurrency: int = option(8, "Requests in flight.", minimum=1)
        retries: int = option(3, "Retries of a failed request, with exponential backoff.", minimum=0)
        backoff: float = option(1.0, "First retry delay in seconds (doubled per retry).", minimum=0)
        timeout: float = option(120.0, "Seconds per request.", exclusive_minimum=0)
        max_tokens: int = option(16, "Tokens of the judge's reply.", minimum=1)
        temperature: float = option(0.0, "Judge sampling temperature.", minimum=0)
        images: bool = option(True, "Send the record's images (files or data: URIs) as data URLs (multimodal judges).")

        def check(self) -> None:
            """The template uses exactly the three fields."""
            fields = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
            if fields != TEMPLATE_FIELDS:
                raise ValueError(f"judge: template must use exactly the fields {sorted(TEMPLATE_FIELDS)} "
                                 f"(literal braces doubled), found {sorted(fields)}")

    def __init__(self, options: Options, context: RewardContext | None = None) -> None:
        super().__init__(options, context)
        options.check()
        endpoint, model, api_key_env, template = options.endpoint, options.model, options.api_key_env, options.template
        both_orders, max_pairs, seed = options.both_orders, options.max_pairs, options.seed
        concurrency, retries, backoff, timeout = options.concurrency, options.retries, options.backoff, options.timeout
        max_tokens, temperature, images = options.max_tokens, options.temperature, options.images
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self._api_key:
            raise ValueError(f"judge: environment variable {api_key_env} (api_key_env) is not set")
        endpoint = endpoint.rstrip("/")
        self.endpoint = endpoint[:-3] if endpoint.endswith("/v1") else endpoint
        self.model, self.api_key_env, self.template = model, api_key_env, template
        self.both_orders, self.max_pairs = bool(both_orders), max_pairs
        self.seed = self.context.seed if seed is None else seed
        self.concurrency, self.retries, self.backoff, self.timeout = concurrency, retries, backoff, timeout
        self.max_tokens, self.temperature, self.images = max_tokens, temperature, images

    def settings(self) -> dict:
        """Everything but the key (only the name of its environment variable)."""
        return {"endpoint": self.endpoint, "model": self.model, "api_key_env": self.api_key_env,
                "template": self.template, "both_orders": self.both_orders, "max_pairs": self.max_pairs,
                "seed": self.seed, "concurrency": self.concurrency, "retries": self.retries,
                "backoff": self.backoff, "timeout": self.timeout, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "images": self.images}

    def pairs(self, record: dict) -> list[tuple[int, int]]:
        """The sample positions compared for one prompt: all pairs, or ``max_pairs`` of them drawn
        with ``random.Random(f"{seed}:{id}")`` (independent of the other prompts)."""
        pairs = list(combinations(range(len(record.get("samples") or [])), 2))
        if self.max_pairs is not None and len(pairs) > self.max_pairs:
            pairs = sorted(random.Random(f"{self.seed}:{record.get('id')}").sample(pairs, self.max_pairs))
        return pairs

    def score_applicable(self, records: list[dict]) -> Scores:
        """Ask every comparison of every prompt concurrently, then count wins per sample."""
        queries = []  # (record position, sample position of A, of B, messages)
        for i, record in enumerate(records):
            samples = record.get("samples") or []
            pairs = self.pairs(record)
            if not pairs:
                continue
            question, images = question_text(record), self._image_parts(record)
            for a, b in pairs:
                for x, y in ((a, b), (b, a)) if self.both_orders else ((a, b),):
                    text = self.template.format(question=question, answer_a=samples[x].get("text") or "",
                                                answer_b=samples[y].get("text") or "")
                    content = [*images, {"type": "text", "text": text}] if images else text
                    queries.append((i, x, y, [{"role": "user", "content": content}]))
        replies = asyncio.run(self._ask_all([q[3] for q in queries])) if queries else []
        tallies = [[{"wins": 0, "ties": 0, "losses": 0, "comparisons": 0, "unparsed": 0, "failed": 0}
                    for _ in record.get("samples") or []] for record in records]
        errors: dict[tuple[int, int], str] = {}
        for (i, x, y), reply in zip((q[:3] for q in queries), replies):
            if isinstance(reply, JudgeFailed):
                for s in (x, y):
                    tallies[i][s]["failed"] += 1
                    errors.setdefault((i, s), str(reply))
                continue
            verdict = parse_verdict(reply)
            for s, mine in ((x, "A"), (y, "B")):
                tally = tallies[i][s]
                tally["comparisons"] += 1
                tally["unparsed"] += verdict is None
                if verdict in (None, "tie"):
                    tally["ties"] += 1
                elif verdict == mine:
                    tally["wins"] += 1
                else:
                    tally["losses"] += 1
        out: Scores = []
        for i, record in enumerate(records):
            row = []
            n = len(record.get("samples") or [])
            for s, tally in enumerate(tallies[i]):
                if n < 2:
                    row.append((None, {**tally, "reason": "fewer than two samples: nothing to compare"}))
                elif tally["failed"]:
                    row.append((None, {**tally, "reason": f"{tally['failed']} judge request(s) failed: "
                                                          f"{errors[(i, s)]}"}))
                elif not tally["comparisons"]:
                    row.append((None, {**tally, "reason": "in none of the pairs drawn (max_pairs)"}))
                else:
                    row.append(((tally["wins"] + 0.5 * tally["ties"]) / tally["comparisons"], tally))
            out.append(row)
        return out

    def _image_parts(self, record: dict) -> list[dict]:
        """The record's images as OpenAI ``image_url`` parts with data URLs (if ``images``): a file
        is read and encoded, a data: URI is sent as it is."""
        if not self.images:
            return []
        parts = []
        for reference in record_images(record):
            try:
                url = image_data_url(reference)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"judge: prompt {record.get('id')}: image {reference} not found") from err
            parts.append({"type": "image_url", "image_url": {"url": url}})
        return parts

    def _scrub(self, text: str, limit: int | None = None) -> str:
        """``text`` without the API key, then cut to ``limit`` characters (in that order: see ``scrub``)."""
        return scrub(text, self._api_key, limit)

    async def _ask_all(self, conversations: list[list[dict]]) -> list[str | JudgeFailed]:
        import aiohttp

        semaphore = asyncio.Semaphore(self.concurrency)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            async def one(k: int, messages: list[dict]) -> str | JudgeFailed:
                try:
                    return await self._ask(session, semaphore, messages, random.Random(f"{self.seed}:{k}"))
                except JudgeFailed as err:
                    log.warning("judge: request %d failed: %s", k, err)
                    return err

            return await asyncio.gather(*(one(k, m) for k, m in enumerate(conversations)))

    async def _ask(self, session, semaphore: asyncio.Semaphore, messages: list[dict], rng: random.Random) -> str:
        """One chat completion with retries and backoff (the pattern of :mod:`juicebox.engines.openai`)."""
        import aiohttp

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        body = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature}
        url = f"{self.endpoint}/v1/chat/completions"
        error = "no attempt"
        for attempt in range(self.retries + 1):
            async with semaphore:
                try:
                    async with session.post(url, json=body, headers=headers) as resp:
                        if resp.status == 200:
                            data = await resp.json(content_type=None)
                            try:
                                return data["choices"][0]["message"]["content"] or ""
                            except (KeyError, IndexError, TypeError):
                                # scrub the whole body, then cut it: a key across the cut must not leave its prefix
                                raise JudgeFailed(f"malformed reply from {url}: "
                                                  f"{self._scrub(str(data), ERROR_TEXT_LIMIT)}")
                        error = f"HTTP {resp.status} from {url}: {self._scrub(await resp.text(), ERROR_TEXT_LIMIT)}"
                        if resp.status not in RETRYABLE_STATUS:
                            raise JudgeFailed(error)
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, ValueError) as err:
                    # ValueError: a 200 whose body is not JSON (a proxy's error page); worth a retry.
                    error = self._scrub(f"{type(err).__name__} at {url}: {err}")
            if attempt < self.retries:
                delay = self.backoff * 2 ** attempt * (0.5 + rng.random())
                log.info("judge: retry %d/%d in %.2f s (%s)", attempt + 1, self.retries, delay, error)
                await asyncio.sleep(delay)
        raise JudgeFailed(error)
