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
