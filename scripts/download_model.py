"""Rule download_model: fetch a hub model into resources/models/<owner>--<name> (fails fast offline)."""

from juicebox.io import setup_logging
from juicebox.models import download_model

log = setup_logging(snakemake.log[0])
log.info("downloading %s", snakemake.params.repo_id)
download_model(snakemake.params.repo_id, snakemake.output[0])
