"""Rule make_pairs: DPO chosen/rejected pairs from scored rollouts, in TRL and LLaMA-Factory formats.

The engines sent every prompt through the chat template (as a user turn after the optional
system prompt), so the pairs are conversational with exactly those messages: DPO then trains on
the text the policy was sampled from. When pairs have images, the prompts are in content parts
(TRL's vision format) and the LLaMA-Factory file's image paths are relative to the pairs folder.
"""

from pathlib import Path

from juicebox.io import read_jsonl, setup_logging, write_json, write_jsonl
from juicebox.pairs import build_pairs, dataset_info, needs_sharegpt, write_llamafactory, write_pairs
from juicebox.real_kinds import rw_pair_rows
from juicebox.records import prompt_messages

log = setup_logging(snakemake.log[0])
records = [{**r, "prompt": prompt_messages(r["prompt"], snakemake.params.system_prompt)}
           for r in read_jsonl(snakemake.input[0])]
result = build_pairs(records, snakemake.params.pairing, snakemake.params.seed)
write_pairs(result.rows, snakemake.output.parquet, snakemake.output.jsonl, result.conversational)
write_llamafactory(result.rows, snakemake.output.llamafactory)
write_jsonl(snakemake.output.rw_pair, rw_pair_rows(result.rows))  # ReaL's rw_pair kind
name = f"juicebox_{snakemake.wildcards.exp}"
if needs_sharegpt(result.rows, result.conversational):
    info = dataset_info(name, Path(snakemake.output.llamafactory).name, True,
                        images=any(r["images"] for r in result.rows))
else:
    info = dataset_info(name, Path(snakemake.output.jsonl).name, False)
write_json(snakemake.output.dataset_info, info)
write_json(snakemake.output.stage, result.stage)
write_json(snakemake.output.summary, {**result.stats, "no_pair_reasons": result.stage["dropped"]})
log.info("pairs: %d from %d prompts (%s)", len(result.rows), result.stage["kept"], result.stage["dropped"])
