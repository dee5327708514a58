"""The ``openai`` engine: an async client over one or more OpenAI-compatible endpoints.

Requests go to ``/v1/chat/completions``. Each endpoint has its own concurrency limit; a request
goes to the endpoint with the most free slots, so load spreads across servers and a slow one
takes less. A failed request (connection refused or reset, timeout, HTTP 429/5xx) is retried
with exponential backoff on whichever endpoint is free next; a server that dies mid-run costs
retries, not answers. A prompt whose requests still fail after ``retries`` is not written; the
run reports it and fails at the end, so a rerun asks again for exactly those prompts.

Servers are either given (``endpoints:``) or launched for the rule and stopped after it
(``launch:``, see :mod:`.servers`). The API key, if any, is read from the environment variable
named by ``api_key_env`` and is never logged or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from dataclasses import dataclass

from . import OnDone, Prompt, Sampling, register, stable_seed

log = logging.getLogger("juicebox")
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestFailed(RuntimeError):
    """A request failed in a way worth retrying (or that exhausted its retries)."""


@dataclass
class Endpoint:
    """One server: its base URL and how many requests it may have in flight."""

    url: str
    concurrency: int
    in_flight: int = 0


@register("openai")
class OpenAIEngine:
    """Answer prompts through OpenAI-compatible servers, given or launched for the rule."""

    def __init__(self, model: str, adapter: str | None, sampling: Sampling, endpoints: list | None = None,
                 launch: dict | None = None, served_model: str | None = None, concurrency: int = 8,
                 retries: int = 5, backoff: float = 1.0, timeout: float = 120.0, request_n: bool = False,
                 api_key_env: str | None = None, log_dir: str = "results/logs/servers"):
        self.model_path, self.adapter, self.sampling = model, adapter, sampling
        self.retries, self.backoff, self.timeout, self.request_n = retries, backoff, timeout, request_n
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise ValueError(f"environment variable {api_key_env} (api_key_env) is not set")
        self._stack = contextlib.ExitStack()
        if launch:
            from .servers import launch as launch_servers

            if launch.get("kind", "transformers") == "transformers" and (sampling.top_k or sampling.repetition_penalty != 1.0):
                # transformers serve answers 422 "Unexpected fields" to these: fail before launching.
                raise ValueError(f"sampling preset {sampling.preset!r} sets top_k/repetition_penalty, which "
                                 "`transformers serve` refuses; use preset custom or greedy with it, or vllm")

            urls, name = self._stack.enter_context(launch_servers(
                launch.get("kind", "transformers"), model, adapter, log_dir,
                tensor_parallel_size=launch.get("tensor_parallel_size", 1),
                data_parallel_size=launch.get("data_parallel_size", 1),
                startup_timeout=launch.get("startup_timeout", 600), extra_args=launch.get("extra_args")))
            self.endpoints = [Endpoint(u, concurrency) for u in urls]
            self.served_model = served_model or name
            self.request_n = launch.get("kind") == "vllm" or request_n
        else:
            if not endpoints:
                raise ValueError("engine type openai needs `endpoints:` or `launch:`")
            self.endpoints = [Endpoint(e, concurrency) if isinstance(e, str)
                              else Endpoint(e["url"], e.get("concurrency", concurrency)) for e in endpoints]
            self.served_model = served_model or model
        self.failed: dict[str, str] = {}

    def provenance(self) -> dict:
        """Engine, endpoints and the model name requested (never the API key)."""
        return {"type": "openai", "model": self.model_path, "adapter": self.adapter,
                "served_model": self.served_model, "endpoints": [e.url for e in self.endpoints]}

    def run(self, prompts: list[Prompt], on_done: OnDone) -> None:
        """Answer every prompt n times; ``on_done`` runs as each prompt completes."""
        asyncio.run(self._run(prompts, on_done))
        if self.failed:
            first = next(iter(self.failed.items()))
            raise RequestFailed(f"{len(self.failed)} prompt(s) failed after {self.retries} retries "
                                f"(first: {first[0]}: {first[1]}); rerun to ask again for them only")

    async def _run(self, prompts: list[Prompt], on_done: OnDone) -> None:
        import aiohttp

        self._free = asyncio.Condition()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async def one(prompt: Prompt) -> None:
                try:
                    samples = await self._answer(session, prompt)
                except RequestFailed as err:
                    self.failed[prompt.id] = str(err)
                    log.warning("prompt %s failed: %s", prompt.id, err)
                    return
                on_done(prompt, samples)

            await asyncio.gather(*(one(p) for p in prompts))

    async def _answer(self, session, prompt: Prompt) -> list[dict]:
        """n samples for one prompt: one request asking for n, or n requests of one."""
        s = self.sampling
        if s.greedy:
            first = (await self._request(session, prompt, 1, stable_seed(s.seed, prompt.id)))[0]
            return [{**first, "index": k} for k in range(s.n)]
        if self.request_n:
            samples = await self._request(session, prompt, s.n, stable_seed(s.seed, prompt.id))
        else:
            samples = []
            for k in range(s.n):
                samples += await self._request(session, prompt, 1, stable_seed(s.seed, prompt.id, k))
        return [{**sample, "index": k} for k, sample in enumerate(samples)]

    def _body(self, prompt: Prompt, n: int, seed: int) -> dict:
        s = self.sampling
        body = {"model": self.served_model, "messages": prompt.messages, "max_tokens": s.max_tokens, "n": n,
                "temperature": s.temperature, "top_p": s.top_p, "seed": seed}
        if s.top_k:
            body["top_k"] = s.top_k
        if s.repetition_penalty != 1.0:
            body["repetition_penalty"] = s.repetition_penalty
        return body

    async def _acquire(self, avoid: list[Endpoint] | None = None) -> Endpoint:
        """The endpoint with the most free slots, outside ``avoid`` while any is; wait while it is full."""
        candidates = [e for e in self.endpoints if not any(e is a for a in avoid or [])] or self.endpoints
        async with self._free:
            while True:
                endpoint = max(candidates, key=lambda e: e.concurrency - e.in_flight)
                if endpoint.in_flight < endpoint.concurrency:
                    endpoint.in_flight += 1
                    return endpoint
                await self._free.wait()

    async def _release(self, endpoint: Endpoint) -> None:
        async with self._free:
            endpoint.in_flight -= 1
            self._free.notify_all()

    async def _request(self, session, prompt: Prompt, n: int, seed: int) -> list[dict]:
        """POST one chat completion with retries and backoff; return its choices as samples."""
        import aiohttp

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = self._body(prompt, n, seed)
        error = "no attempt"
        rng = random.Random(seed)
        # A dead server fails at once, so it always has the most free slots: retry elsewhere.
        failed_at: list[Endpoint] = []
        for attempt in range(self.retries + 1):
            endpoint = await self._acquire(failed_at)
            try:
                async with session.post(f"{endpoint.url}/v1/chat/completions", json=body, headers=headers) as resp:
                    if resp.status == 200:
                        data = await resp.json()
                        return [self._sample(choice) for choice in data["choices"]][:n]
                    text = (await resp.text())[:300]
                    error = f"HTTP {resp.status} from {endpoint.url}: {text}"
                    if resp.status not in RETRYABLE_STATUS:
                        raise RequestFailed(error)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as err:
                error = f"{type(err).__name__} at {endpoint.url}: {err}"
            finally:
                await self._release(endpoint)
            failed_at.append(endpoint)
            if len(failed_at) >= len(self.endpoints):  # every one failed: next round, this one last
                failed_at = [endpoint]
            if attempt < self.retries:
                delay = self.backoff * 2 ** attempt * (0.5 + rng.random())
                log.info("retry %d/%d for %s in %.1f s (%s)", attempt + 1, self.retries, prompt.id, delay, error)
                await asyncio.sleep(delay)
        raise RequestFailed(error)

    @staticmethod
    def _sample(choice: dict) -> dict:
        message = choice.get("message") or {}
        text = message.get("content") or choice.get("text") or ""
        return {"text": text.strip(), "finish_reason": choice.get("finish_reason")}

    def close(self) -> None:
        """Stop servers this engine launched."""
        self._stack.close()
