"""Rules build_tiny_model and build_tiny_vlm: the embedded default models, seeded, no download.

``build_tiny_model``: a tiny Qwen2 and its tokenizer. ``build_tiny_vlm`` (params.vision set): a tiny
LLaVA-architecture VLM (CLIP tower + projector + the same kind of Qwen2) and its processor.
"""

from juicebox.io import setup_logging, write_json
from juicebox.models import build_tiny_model, build_tiny_vlm, corpus_texts
from juicebox.models import TinySpecOptions, VisionTowerOptions

log = setup_logging(snakemake.log[0])
texts = corpus_texts(snakemake.input.corpus)
log.info("training the tokenizer on %d texts from %s", len(texts), ", ".join(snakemake.input.corpus))
spec, vision = TinySpecOptions.parse(snakemake.params.spec, "model_build.spec"), snakemake.params.vision
if vision is None:
    summary = build_tiny_model(snakemake.output.model, texts, snakemake.params.seed, spec)
else:
    tower = VisionTowerOptions.parse(vision, "model_build.vision")
    summary = build_tiny_vlm(snakemake.output.model, texts, snakemake.params.seed, spec, tower)
write_json(snakemake.output.summary, summary)
log.info("built %s (%s): %d parameters", snakemake.output.model, summary["architecture"], summary["parameters"])
