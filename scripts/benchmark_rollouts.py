"""Rollout throughput: the `hf` engine, a per-prompt loop and, with --vllm, a vLLM server (CPU build),
each decoding a fixed number of tokens.

All answer the same prompts with the same model and sampling (temperature 1, --n answers per
prompt): the engine in batches of --batch-size prompts, the loop one prompt per `generate` call
(its n answers together, through the engine's own code), vLLM through the `openai` engine with
every prompt in flight at once (one request of n answers a prompt). Every answer is exactly
--tokens tokens long (min_new_tokens = max_new_tokens; vLLM's min_tokens = max_tokens, and each of
its answers must end with finish_reason "length"), so the figures measure decoding, not how soon
an untrained model happens to stop. The hf sides are timed --runs times, alternating; then the
vLLM server is started by the project's launcher with the Python given (`make vllm-venv`:
.venv-vllm/bin/python) and timed --runs times once it answers (while it runs, its worker's threads
slow whatever runs right after it). The median is reported, in generated tokens per second.

The model is built here, seeded, like the embedded tiny models (--kind text: Qwen2; vlm: the
LLaVA-architecture VLM, 16 image tokens an image) at the size given (--hidden, --layers), or
read from --model. Prompts are the demo data's math questions (text) or caption prompts with
their scene images (vlm). --profile adds what explains the ratio: decode time per step against
batch rows, the prefill's share, padding. Not a test: run it and read the figures (docs/results/rollouts.md
quotes them).

    python scripts/benchmark_rollouts.py --kind text
    python scripts/benchmark_rollouts.py --kind vlm --hidden 512 --layers 8 --profile
    python scripts/benchmark_rollouts.py --kind text --vllm .venv-vllm/bin/python
"""

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

from juicebox.demo_data import (caption_prompt, draw_scene, math_key, math_question, math_solution,
                                scene_key, scene_references)
from juicebox.engines import Prompt, Sampling, make_engine
from juicebox.models import build_tiny_model, build_tiny_vlm
from juicebox.models import TinySpecOptions, VisionTowerOptions
from juicebox.records import prompt_messages


def machine() -> str:
    """CPU model, cores, torch threads and versions: what the figures were taken on."""
    import torch
    import transformers

    cpu = platform.processor() or "?"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    return (f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}")


def demo_items(kind: str, count: int, image_dir: Path, seed: int = 0) -> tuple[list[Prompt], list[str]]:
    """``count`` prompts of the demo data (math questions, or caption prompts with a scene image
    each, drawn into ``image_dir``) and a tokenizer corpus for building a model."""
    rng = random.Random(seed)
    prompts, texts = [], []
    for i in range(count):
        if kind == "text":
            key = math_key(rng)
            question = math_question(key, rng)
            prompts.append(Prompt(f"p{i:04d}", prompt_messages(question)))
            texts += [question, math_solution(key)]
        else:
            key, path = scene_key(rng), image_dir / f"scene-{i:04d}.png"
            draw_scene(key, path)
            prompts.append(Prompt(f"p{i:04d}", prompt_messages(caption_prompt(rng)), [str(path)]))
            texts += scene_references(key, rng)
    return prompts, texts


def build(kind: str, outdir: Path, texts: list[str], hidden: int, layers: int) -> dict:
    """A seeded model of the given size (intermediate 2x hidden, 64-wide heads, 2 query heads per KV head)."""
    heads = max(4, hidden // 64)
    spec = TinySpecOptions(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, num_key_value_heads=heads // 2)
    if kind == "text":
        return build_tiny_model(outdir, texts * 4, seed=0, spec=spec)
    return build_tiny_vlm(outdir, texts * 4, seed=0, spec=spec, vision=VisionTowerOptions())


def fixed_length(engine) -> None:
    """Every `generate` call of the engine decodes exactly max_new_tokens (end tokens get no
    probability before that), so the engine and the loop generate the same number of tokens."""
    generate = engine.model.generate
    engine.model.generate = lambda **kwargs: generate(**kwargs, min_new_tokens=kwargs["max_new_tokens"])


def batched(engine, prompts: list[Prompt]) -> int:
    """The engine's run over all prompts; generated tokens."""
    counted = []
    engine.run(prompts, lambda prompt, samples: counted.extend(s["n_tokens"] for s in samples))
    return sum(counted)


def loop(engine, prompts: list[Prompt]) -> int:
    """One `generate` call per prompt (its n samples together), through the engine's own code."""
    return sum(s["n_tokens"] for p in prompts for s in engine.generate([engine.render(p)], [p.id], [p.images])[0])


def vllm_engine(python: str, model: str, sampling: Sampling, log_dir: str):
    """A vLLM server (CPU) of ``model`` behind the `openai` engine, all prompts in flight, every
    answer exactly max_tokens long (vLLM's min_tokens)."""
    engine = make_engine({"type": "openai", "concurrency": 1024,
                          "launch": {"kind": "vllm", "device": "cpu", "python": python, "startup_timeout": 600}},
                         model, None, sampling, log_dir=log_dir)
    body = engine._body
    engine._body = lambda messages, n, seed: {**body(messages, n, seed), "min_tokens": sampling.max_tokens}
    return engine


def served(engine, prompts: list[Prompt]) -> int:
    """The `openai` engine's run over all prompts; generated tokens (each answer max_tokens long, which
    its finish_reason "length" shows)."""
    finished = []
    engine.run(prompts, lambda prompt, samples: finished.extend(s["finish_reason"] for s in samples))
    assert set(finished) == {"length"}, f"answers that stopped early: {finished.count('stop')}"
    return len(finished) * engine.sampling.max_tokens


def timed(fn, *args) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn(*args)
    return time.perf_counter() - start, tokens


def time_sides(sides: dict, prompts: list[Prompt], runs: int) -> tuple[dict, dict]:
    """Each side's seconds over ``runs`` runs, alternating between the sides after one untimed warm-up
    each, and its generated tokens. A side: (function, what it runs on, whether the hf engine shares
    the prefill)."""
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    tokens = {}
    for fn, side, shares_prefill in sides.values():
        if shares_prefill is not None:
            side.shares_prefill = shares_prefill
        fn(side, prompts[:4])
    for _ in range(runs):
        for name, (fn, side, shares_prefill) in sides.items():
            if shares_prefill is not None:
                side.shares_prefill = shares_prefill
            took, tokens[name] = timed(fn, side, prompts)
            seconds[name].append(took)
    return seconds, tokens


def compare(engine, prompts: list[Prompt], runs: int, vllm_python: str | None, log_dir: str) -> None:
    """Median seconds and tokens/s of each way of answering: the engine (each prompt prefilled once
    for its n rows), the engine with every row prefilled (``num_return_sequences`` alone, as before)
    and the loop (one prompt a call, every row prefilled), runs alternating between them; then, given
    ``vllm_python``, a vLLM server, started after the others are timed (its worker's threads would
    take CPU from whatever runs right after it) and stopped at the end."""
    sides = {f"hf engine (batch {engine.batch_size})": (batched, engine, True),
             "hf engine, prefill per row": (batched, engine, False),
             "per-prompt loop": (loop, engine, False)}
    seconds, tokens = time_sides(sides, prompts, runs)
    engine.shares_prefill = True
    if vllm_python:
        start = time.perf_counter()
        server = vllm_engine(vllm_python, engine.model_path, engine.sampling, log_dir)
        print(f"vLLM server up and answering after {time.perf_counter() - start:.0f} s")
        try:
            more = time_sides({"vLLM (CPU), all in flight": (served, server, None)}, prompts, runs)
        finally:
            server.close()
        seconds.update(more[0])
        tokens.update(more[1])
    rate = {name: tokens[name] / statistics.median(seconds[name]) for name in seconds}
    for name in seconds:
        median = statistics.median(seconds[name])
        spread = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(f"{name:27s} {tokens[name]} tokens, median {median:6.2f} s ({spread}) = {rate[name]:6.0f} tokens/s, "
              f"{rate[name] / rate['per-prompt loop']:.2f}x the loop")


def profile(engine, prompts: list[Prompt], rows_list: list[int], batch_sizes: list[int], tokens: int,
            runs: int) -> None:
    """Why the ratio is what it is: prefill and per-step decode time against batch rows (the
    first prompt repeated, so no padding), the engine against its batch size, and the padding of
    the engine's batches."""
    import torch

    prompt = prompts[0]
    enc = engine.encoder.encode([engine.render(prompt)], [prompt.images])
    print(f"decode against batch rows (prompt of {enc['input_ids'].shape[1]} tokens, {tokens} new tokens):")
    for rows in rows_list:
        batch = {k: v.repeat(rows, *[1] * (v.ndim - 1)) for k, v in enc.items()}

        def run(new: int) -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                engine.model.generate(**batch, max_new_tokens=new, do_sample=True,  # fixed_length: min = max
                                      pad_token_id=engine.tokenizer.pad_token_id)
            return time.perf_counter() - start

        first = statistics.median(run(1) for _ in range(runs))  # prefill and one step
        whole = statistics.median(run(tokens) for _ in range(runs))
        step = (whole - first) / (tokens - 1)
        print(f"  rows {rows:4d}: prefill {first * 1000:7.1f} ms, decode {step * 1000:6.1f} ms/step "
              f"= {rows / step:6.0f} tokens/s; the prefill is {first / whole:.0%} of the call")
    default = engine.batch_size
    print(f"the engine against its batch size ({len(prompts)} prompts, n {engine.sampling.n}):")
    for size in batch_sizes:
        engine.batch_size = size
        seconds = statistics.median(timed(batched, engine, prompts)[0] for _ in range(runs))
        print(f"  hf engine, batch {size:3d} prompts ({size * engine.sampling.n:4d} rows): "
              f"{len(prompts) * engine.sampling.n * tokens / seconds:6.0f} tokens/s")
    engine.batch_size = default
    lengths = [engine.encoder.length(p) for p in prompts]

    def padding(order: list[int]) -> float:
        batches = [order[i:i + engine.batch_size] for i in range(0, len(order), engine.batch_size)]
        padded = sum(max(lengths[j] for j in b) * len(b) for b in batches)
        return 1 - sum(lengths) / padded

    print(f"padding of the engine's batches: {padding(sorted(range(len(prompts)), key=lambda j: lengths[j])):.1%} "
          f"sorted by length, {padding(list(range(len(prompts)))):.1%} unsorted "
          f"(prompts of {min(lengths)}-{max(lengths)} tokens)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["text", "vlm"], default="text", help="model and prompts to build")
    parser.add_argument("--model", help="an existing model directory instead of building one")
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the built model")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the built model")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8, help="answers per prompt")
    parser.add_argument("--tokens", type=int, default=24, help="new tokens of every answer")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per batch of the engine (its default)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side (the median is reported)")
    parser.add_argument("--vllm", metavar="PYTHON", help="also a vLLM server (CPU) started with this Python "
                        "(.venv-vllm/bin/python)")
    parser.add_argument("--profile", action="store_true", help="also measure decode against batch rows, padding")
    parser.add_argument("--rows", default="8,32,128,256", help="batch rows --profile measures")
    parser.add_argument("--batch-sizes", default="4,16,64", help="engine batch sizes --profile measures")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        prompts, texts = demo_items(args.kind, args.prompts, Path(tmp))
        model = args.model
        if model is None:
            model = str(Path(tmp) / "model")
            built = build(args.kind, Path(model), texts, args.hidden, args.layers)
            model_text = f"built {built['architecture']}, hidden {args.hidden}, {args.layers} layers, " \
                         f"{built['parameters'] / 1e6:.1f}M parameters"
        else:
            model_text = model
        sampling = Sampling(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.tokens, seed=0)
        engine = make_engine({"type": "hf", "batch_size": args.batch_size, "device": "cpu"}, model, None, sampling,
                             threads=args.threads)
        fixed_length(engine)
        print(f"machine: {machine()}")
        print(f"model: {model_text}; {args.kind} prompts {len(prompts)}, n {args.n}, {args.tokens} new tokens each, "
              f"{args.runs} runs")
        compare(engine, prompts, args.runs, args.vllm, str(Path(tmp) / "server-logs"))
        if args.profile:
            profile(engine, prompts, [int(r) for r in args.rows.split(",")],
                    [int(b) for b in args.batch_sizes.split(",")], args.tokens, args.runs)


if __name__ == "__main__":
    main()
