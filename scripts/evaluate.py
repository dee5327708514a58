"""Rule evaluate: one model variant on one benchmark; per-item predictions and metrics.

The benchmark's sampling is ``Benchmark.effective_sampling`` of ``eval.sampling`` (short-answer and
caption types decode greedily, one answer per item, unless the benchmark's ``sampling`` says
otherwise); the metrics file records the sampling used. Its prompts are the items' prompts in the
benchmark's ``prompt_template``.

A variant named ``<variant>_blank`` is the blank-image ablation: the same model and prompts with
every image replaced by a white image of the same size, so the difference from ``<variant>``
shows what the model takes from the images.
"""

from juicebox.benchmarks import load_benchmark
from juicebox.engines import Prompt, Sampling, make_engine
from juicebox.io import setup_logging, write_json, write_jsonl
from juicebox.images import blank_image
from juicebox.records import prompt_messages

log = setup_logging(snakemake.log[0])
settings = snakemake.params.settings
variant = snakemake.wildcards.variant
blank = variant.endswith("_blank")
bench = load_benchmark(snakemake.wildcards.bench, snakemake.params.bench)
items = bench.load()
sampling = Sampling.from_config(bench.effective_sampling(settings["sampling"]), seed=snakemake.params.seed)
adapter = snakemake.input.get("adapter")
log.info("%s / %s: %d items (%d with images%s), model %s, adapter %s, sampling %s", snakemake.wildcards.bench,
         variant, len(items), sum(bool(item["images"]) for item in items), ", shown blank" if blank else "",
         snakemake.input.model, adapter, sampling.to_dict())

predictions: dict[str, list[str]] = {}
engine = make_engine(settings["engine"], snakemake.input.model, adapter, sampling, threads=snakemake.threads,
                     log_dir=snakemake.params.server_logs, where=f"eval.engine ({snakemake.wildcards.exp})")
try:
    engine.run([Prompt(item["id"], prompt_messages(item["prompt"], settings["system_prompt"]),
                       [blank_image(image) for image in item["images"]] if blank else item["images"])
                for item in items],
               lambda prompt, samples: predictions.__setitem__(prompt.id, [s["text"] for s in samples]))
    provenance = engine.provenance()
finally:
    engine.close()

rows, metrics = bench.score(items, predictions, seed=snakemake.params.seed)
write_jsonl(snakemake.output.predictions, rows)
write_json(snakemake.output.metrics, {**metrics, "variant": variant, "model": snakemake.input.model,
                                      "adapter": adapter, "blank_images": blank, "engine": provenance,
                                      "sampling": sampling.to_dict()})
log.info("%s", metrics["metrics"])
