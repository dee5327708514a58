"""docs/config.md is generated from the parts' typed options and is current."""

import subprocess
import sys

from conftest import ROOT


def test_reference_is_generated_from_the_specs(tmp_path):
    out = tmp_path / "config.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "config_reference.py"), str(out)], check=True)
    assert out.read_text() == (ROOT / "docs" / "config.md").read_text(), "docs/config.md is stale: run `make docs`"
    for name in ("`type: hf`", "`launch.tensor_parallel_size`", "`type: reference_caption`", "`type: rlaifv`",
                 "`type: caption`", "`op: split_by_stat`", "`executor: ray`"):
        assert name in out.read_text()
