"""Shared test helpers: the repository root, Snakemake runs, servers and tiny models (the library,
`juicebox`, is imported as installed: `pip install --no-deps -e .`)."""

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import subprocess
import sys
from pathlib import Path

import pytest

from juicebox.models import TinySpecOptions, VisionTowerOptions

ROOT = Path(__file__).resolve().parent.parent
# The smallest text model the tests build (one layer): quick to build, train and serve.
TINY_SPEC = TinySpecOptions(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1, vocab_size=300)
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile with ``workdir`` as working directory."""
    if _RUNNING["tier"] == "fast":
        raise AssertionError("a fast-tier test may not run Snakemake: mark it @pytest.mark.workflow")
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_workdir(path: Path) -> Path:
    """``path`` made a working directory holding copies of config/ and .test/ (paths in configs
    are relative)."""
    shutil.copytree(ROOT / "config", path / "config")
    shutil.copytree(ROOT / ".test", path / ".test")
    return path


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory holding copies of config/ and .test/."""
    return make_workdir(tmp_path)


@contextlib.contextmanager
def serve_chat_completions(handle):
    """A real aiohttp server on a free localhost port, answering POST /v1/chat/completions with
    ``handle`` from a thread; yields its base URL."""
    from aiohttp import web

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(runner.cleanup())
        loop.close()


@contextlib.contextmanager
def juicebox_log_file(path: Path):
    """Also write the ``juicebox`` logger's records to ``path`` (as a rule's log file) while inside."""
    handler = logging.FileHandler(path, encoding="utf-8")
    logging.getLogger("juicebox").addHandler(handler)
    try:
        yield path
    finally:
        logging.getLogger("juicebox").removeHandler(handler)
        handler.close()


def key_prefixes_in(text: str, key: str, shortest: int = 4) -> list[str]:
    """The prefixes of ``key`` at least ``shortest`` characters long that occur in ``text``."""
    return [key[:n] for n in range(shortest, len(key) + 1) if key[:n] in text]


VLM_TEXTS = ["What colour is the shape?", "What shape is in the picture?", "Describe the image.",
             "A red circle.", "A blue square.", "A green triangle.", "red", "blue", "green", "circle", "square",
             "triangle"] * 10


def quick_sft(folder: Path, records: list[dict], epochs: int, batch_size: int, learning_rate: float,
              max_length: int) -> str:
    """A few seconds of SFT of the model at ``folder / "base"`` on ``records``: the model goes to
    ``folder / "model"`` (its path returned), so that a tiny model's answers are words, not the
    special tokens an untrained one's argmax lands on."""
    from juicebox.io import write_jsonl
    from juicebox.options import SFTOptions
    from juicebox.train import train_sft

    write_jsonl(folder / "data.jsonl", records)
    options = SFTOptions.parse({"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                                "max_length": max_length, "gradient_checkpointing": False, "gpus": 0,
                                "save_steps": 1000}, "sft")
    train_sft(str(folder / "data.jsonl"), str(folder / "base"), str(folder / "model"), str(folder / "sft.csv"),
              options, seed=0)
    return str(folder / "model")


def shape_image(path: Path, colour: str = "red", shape: str = "circle", size: tuple[int, int] = (48, 48)) -> Path:
    """A PNG of one filled shape on white (what the tiny VLM's tests show it)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> str:
    """A tiny LLaVA-architecture VLM (CLIP tower 32 px, 16 image tokens, Qwen2 LM), built once per run."""
    from juicebox.models import build_tiny_vlm

    path = tmp_path_factory.mktemp("tiny_vlm") / "model"
    spec = TinySpecOptions(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    build_tiny_vlm(path, VLM_TEXTS, seed=0, spec=spec, vision=VisionTowerOptions())
    return str(path)


@pytest.fixture(scope="session")
def shape_images(tmp_path_factory) -> dict[str, str]:
    """Three distinct shape images: red circle, blue square, green triangle."""
    folder = tmp_path_factory.mktemp("shapes")
    return {name: str(shape_image(folder / f"{name}.png", colour, shape))
            for name, colour, shape in [("red_circle", "red", "circle"), ("blue_square", "blue", "square"),
                                        ("green_triangle", "green", "triangle")]}


# --- Test tiers -----------------------------------------------------------------------------------
# `make test` runs the fast tier, then one pytest run per slow tier (pyproject.toml's markers); a
# test without a slow-tier marker is fast. The fast tier checks itself: a fast test may not run
# Snakemake (run_snakemake refuses) nor take longer than FAST_LIMIT_S in its call.

SLOW_TIERS = ("train", "server", "vllm", "workflow", "slurm")
FAST_LIMIT_S = float(os.environ.get("JUICEBOX_FAST_LIMIT_S", "60"))
_RUNNING = {"tier": None}  # the tier of the test being set up, run or torn down


def tier_markers(item: pytest.Item) -> list[str]:
    return [name for name in SLOW_TIERS if item.get_closest_marker(name)]


def tier(item: pytest.Item) -> str:
    """The test's tier: its slow-tier marker, else "fast"."""
    return (tier_markers(item) or ["fast"])[0]


def pytest_collection_modifyitems(config, items):
    """Two tier markers would run a test in two of `make test`'s pytest runs: refuse them."""
    doubled = [f"{item.nodeid}: {', '.join(tier_markers(item))}" for item in items if len(tier_markers(item)) > 1]
    if doubled:
        raise pytest.UsageError("tests with more than one tier marker (keep one):\n" + "\n".join(doubled))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _RUNNING["tier"] = tier(item)


def pytest_runtest_logfinish(nodeid, location):
    _RUNNING["tier"] = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.passed and tier(item) == "fast" and report.duration > FAST_LIMIT_S:
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} is in the fast tier but took {report.duration:.1f} s, over "
                           f"{FAST_LIMIT_S:g} s (JUICEBOX_FAST_LIMIT_S): mark it train, server or workflow "
                           f"(pyproject.toml's markers)")
    return report
