"""Rule build_tiny_model: the embedded default model, a seeded tiny Qwen2 and its tokenizer."""

from juicebox.io import setup_logging, write_json
from juicebox.models import TinySpec, build_tiny_model, corpus_texts

log = setup_logging(snakemake.log[0])
texts = corpus_texts(snakemake.input.corpus)
log.info("training the tokenizer on %d texts from %s", len(texts), ", ".join(snakemake.input.corpus))
summary = build_tiny_model(snakemake.output.model, texts, snakemake.params.seed, TinySpec(**snakemake.params.spec))
write_json(snakemake.output.summary, summary)
log.info("built %s: %d parameters", snakemake.output.model, summary["parameters"])
