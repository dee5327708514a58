"""The ledger's arithmetic: within a stage and across stages."""

import pytest

from juicebox.ledger import LedgerError, assemble, stage


def test_assemble_checks_and_keeps_order():
    ledger = assemble([("pool", stage(10, 8, {}, 2)), ("process", stage(8, 5, {"text_length_filter": 3}))])
    assert list(ledger["stages"]) == ["pool", "process"]
    assert ledger["stages"]["process"] == {"in": 8, "kept": 5, "dropped": {"text_length_filter": 3}, "rejected": 0}


def test_stage_that_loses_a_record_is_refused():
    with pytest.raises(LedgerError, match="stage 'process': in 8 \\+ added 0 != kept 5 \\+ dropped 2"):
        assemble([("pool", stage(10, 8, {}, 2)), ("process", stage(8, 5, {"x": 2}))])


def test_stage_whose_in_is_not_the_previous_kept_is_refused():
    with pytest.raises(LedgerError, match="in 7 != kept 8 of the previous stage 'pool'"):
        assemble([("pool", stage(10, 8, {}, 2)), ("process", stage(7, 7))])


def test_added_records_balance():
    assemble([("pool", stage(10, 15, {"downsample": 3}, 2, added={"duplicate": 10}))])


def test_training_entries_count_skipped_and_truncated_rows():
    from juicebox.ledger import training_entry

    vlm = training_entry({"pairs": 10, "truncated": 2, "skipped": 1, "steps": 3, "train_loss": 0.5})
    assert vlm == {"in": 10, "kept": 9, "dropped": {"prompt_over_max_length": 1}, "rejected": 0, "truncated": 2}
    text = training_entry({"examples": 7, "steps": 1, "train_loss": 1.0})
    assert text == {"in": 7, "kept": 7, "dropped": {}, "rejected": 0, "truncated": None}
    ledger = assemble([("pool", stage(10, 10))], {"sft": text, "dpo": vlm})
    assert list(ledger["training"]) == ["sft", "dpo"]
    with pytest.raises(LedgerError, match="training 'dpo'"):
        assemble([("pool", stage(10, 10))], {"dpo": {**vlm, "kept": 10}})
