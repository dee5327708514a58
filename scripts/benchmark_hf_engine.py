"""Rollout throughput of the `hf` engine against a naive one-prompt-at-a-time `generate` loop.

Both answer the same prompts with the same model, sampling and number of outputs per prompt;
tokens/s counts generated answer tokens up to the end-of-turn token. Not a test: run it and read
the figures (the README quotes them).

    python scripts/benchmark_hf_engine.py --model results/ksigma/sft/model \\
        --prompts results/demo_data/bench/math_test.jsonl --n 8 --max-tokens 24
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from juicebox.engines import Prompt, Sampling, make_engine  # noqa: E402
from juicebox.records import prompt_messages  # noqa: E402


def naive(engine, prompts: list[Prompt], sampling: Sampling) -> int:
    """One `generate` call per prompt (its n samples together), as a hand-written loop does it."""
    import torch

    tokens = 0
    for prompt in prompts:
        text = engine.render(prompt)
        enc = engine.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = engine.model.generate(**enc, do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                        max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n,
                                        pad_token_id=engine.tokenizer.pad_token_id,
                                        eos_token_id=sorted(engine.eos_ids))
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            tokens += engine._sample(0, row)["n_tokens"]
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompts", required=True, help="JSONL with a `question` or `prompt` field")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines() if line.strip()][: args.limit]
    prompts = [Prompt(str(i), prompt_messages(r.get("question") or r["prompt"])) for i, r in enumerate(rows)]
    sampling = Sampling(n=args.n, temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    engine = make_engine({"type": "hf", "batch_size": args.batch_size}, args.model, None, sampling,
                         threads=args.threads)

    counted = []
    start = time.perf_counter()
    engine.run(prompts, lambda prompt, samples: counted.extend(s["n_tokens"] for s in samples))
    batched_s = time.perf_counter() - start
    batched_tps = sum(counted) / batched_s

    start = time.perf_counter()
    naive_tokens = naive(engine, prompts, sampling)
    naive_s = time.perf_counter() - start
    naive_tps = naive_tokens / naive_s

    print(f"prompts {len(prompts)}, n {args.n}, max_tokens {args.max_tokens}, threads {args.threads}, "
          f"model {args.model}")
    print(f"hf engine (batch {args.batch_size}): {sum(counted)} tokens in {batched_s:.2f} s = {batched_tps:.0f} tokens/s")
    print(f"naive loop (one prompt per generate): {naive_tokens} tokens in {naive_s:.2f} s = {naive_tps:.0f} tokens/s")
    print(f"speedup: {batched_tps / naive_tps:.1f}x")


if __name__ == "__main__":
    main()
