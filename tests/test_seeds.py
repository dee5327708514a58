"""The three-seed tables of docs/results/demo-seeds.md: built from each seed's eval.json as measured, nothing
averaged."""

import subprocess
import sys

from conftest import ROOT
from juicebox.io import write_json
from juicebox.seeds import headline, improved, tables


def doc(seed, dpo, ci, blank=None):
    variants = {"base": 0.0, "sft": 0.30, "dpo": dpo}
    bench = {v: {"n": 10, "metrics": {"accuracy": x, "precision": 0.5}, "ci95": {}, "lower_is_better": []}
             for v, x in variants.items()}
    deltas = {"accuracy": {"dpo_vs_sft": dpo - 0.30, "dpo_vs_base": dpo}}
    deltas_ci = {"accuracy": {"dpo_vs_sft": ci, "dpo_vs_base": [0.1, 0.2]}}
    if blank is not None:
        bench["sft_blank"] = {"n": 10, "metrics": {"accuracy": blank, "precision": 0.5}, "ci95": {}}
        deltas["accuracy"]["sft_vs_sft_blank"] = 0.30 - blank
        deltas_ci["accuracy"]["sft_vs_sft_blank"] = [0.05, 0.2]
    return {"experiments": {"vlm": {"benchmarks": {"pope": bench}, "deltas": {"pope": deltas},
                                    "deltas_ci95": {"pope": deltas_ci}}},
            "comparisons": [], "provenance": {"seed": seed}}


def test_tables_count_the_seeds_whose_interval_is_clear_of_zero():
    text = tables({"1": doc(1, 0.40, [0.02, 0.18], blank=0.1), "2": doc(2, 0.35, [-0.01, 0.11], blank=0.2),
                   "3": doc(3, 0.45, [0.05, 0.25], blank=0.1)})
    assert "| vlm | pope (accuracy) | 1 | 0.000 / 0.300 / 0.400 | +0.100 [+0.020, +0.180] |" in text
    assert "dpo better than sft with the interval clear of 0 in 2 of 3 seeds" in text
    assert "| vlm | pope (accuracy) | 2 | 0.300 / 0.200 | +0.100 [+0.050, +0.200] |" in text


def test_headline_and_direction():
    assert headline(["BLEU-1", "CIDEr"]) == "CIDEr" and headline(["CHAIR_i", "CHAIR_s"]) == "CHAIR_s"
    assert headline(["recall"]) == "recall"
    assert improved([0.01, 0.2], False) and not improved([0.01, 0.2], True) and improved([-0.2, -0.01], True)


def test_script_reads_the_files_and_labels_them_by_seed(tmp_path):
    paths = []
    for seed, dpo in ((42, 0.4), (43, 0.5)):
        write_json(tmp_path / f"eval-{seed}.json", doc(seed, dpo, [0.01, 0.3]))
        paths.append(str(tmp_path / f"eval-{seed}.json"))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_seeds.py"), *paths], capture_output=True,
                         text=True, check=True).stdout
    assert "| 43 | 0.000 / 0.300 / 0.500 |" in out and "in 2 of 2 seeds" in out
