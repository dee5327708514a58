"""Pool manipulations: hand-checked counts, seeds honoured, ledger stage adds up."""

import pytest

from juicebox.ledger import check
from juicebox.pool import (Validated, build_pool, downsample, duplicate, merge, mix, split_by_stat)


def recs(prefix, n, words=None):
    return [{"id": f"{prefix}{i}", "task": "chat", "prompt": " ".join(["w"] * (words(i) if words else i + 1)),
             "meta": {"score": i}} for i in range(n)]


def ids(records):
    return [r["id"] for r in records]


def test_mix_without_size_keeps_everything_in_source_order():
    out = mix({"a": recs("a", 3), "b": recs("b", 2)}, None, None, seed=1)
    assert ids(out.records) == ["a0", "a1", "a2", "b0", "b1"] and out.dropped == 0


def test_mix_weights_largest_remainder():
    # size 10, weights 2:1 -> exact 6.67 / 3.33 -> 7 / 3
    out = mix({"a": recs("a", 20), "b": recs("b", 20)}, {"a": 2, "b": 1}, 10, seed=3)
    assert sum(i.startswith("a") for i in ids(out.records)) == 7
    assert sum(i.startswith("b") for i in ids(out.records)) == 3
    assert out.dropped == 30
    assert ids(mix({"a": recs("a", 20), "b": recs("b", 20)}, {"a": 2, "b": 1}, 10, seed=3).records) == ids(out.records)
    assert ids(mix({"a": recs("a", 20), "b": recs("b", 20)}, {"a": 2, "b": 1}, 10, seed=4).records) != ids(out.records)


def test_mix_refuses_to_draw_more_than_a_source_has():
    with pytest.raises(ValueError, match="source 'b' has 2 records but its weight asks for 5"):
        mix({"a": recs("a", 20), "b": recs("b", 2)}, {"a": 1, "b": 1}, 10, seed=0)


def test_duplicate_keeps_ids_unique_and_seed():
    out = duplicate(recs("a", 3), times=3, seed=0)
    assert ids(out.records) == ["a0", "a1", "a2", "a0#dup1", "a1#dup1", "a2#dup1", "a0#dup2", "a1#dup2", "a2#dup2"]
    assert out.added == 6
    shuffled = duplicate(recs("a", 3), times=3, seed=5, shuffle=True)
    assert sorted(ids(shuffled.records)) == sorted(ids(out.records))
    assert ids(shuffled.records) == ids(duplicate(recs("a", 3), times=3, seed=5, shuffle=True).records)


def test_downsample_seeded_and_ordered():
    pool = recs("a", 50)
    first = downsample(pool, 10, seed=11)
    assert len(first.records) == 10 and first.dropped == 40
    assert ids(first.records) == ids(downsample(pool, 10, seed=11).records)
    assert ids(first.records) != ids(downsample(pool, 10, seed=12).records)
    positions = [ids(pool).index(i) for i in ids(first.records)]
    assert positions == sorted(positions)
    assert len(downsample(pool, 80, seed=0).records) == 50


def test_split_by_stat_ranks_and_cuts():
    pool = recs("a", 9, words=lambda i: 9 - i)  # a0 has 9 words ... a8 has 1 word
    low, mid, high = split_by_stat(pool, "prompt_words", [1 / 3, 2 / 3])
    assert ids(low) == ["a8", "a7", "a6"] and ids(mid) == ["a5", "a4", "a3"] and ids(high) == ["a2", "a1", "a0"]
    by_meta = split_by_stat(pool, "meta.score", [0.5])
    assert [len(p) for p in by_meta] == [4, 5] and ids(by_meta[0]) == ["a0", "a1", "a2", "a3"]
    with pytest.raises(ValueError, match="unknown stat"):
        split_by_stat(pool, "nope", [0.5])


def test_merge_drops_repeated_ids():
    out = merge([recs("a", 3), recs("a", 5)])
    assert ids(out.records) == ["a0", "a1", "a2", "a3", "a4"] and out.dropped == 3


def test_build_pool_stage_accounts_for_every_record():
    validated = Validated(by_source={"a": recs("a", 30), "b": recs("b", 30)}, rejected=[{"reason": "x"}] * 4, read=64)
    steps = [{"op": "duplicate", "times": 2},
             {"op": "split_by_stat", "stat": "prompt_words", "ratios": [0.5], "keep": [1]},
             {"op": "downsample", "n": 20},
             {"op": "merge", "paths": ["other"]}]
    pool, stage = build_pool(validated, {"weights": {"a": 1, "b": 3}, "size": 40}, steps, seed=1,
                             extra_pools={"other": recs("z", 5) + recs("a", 60)})
    # mix 40 of 60 (20 dropped), duplicate +40 -> 80, keep upper half -> 40, downsample -> 20, merge +65 new ids
    assert stage["dropped"]["mix"] == 20 and stage["added"]["duplicate#1"] == 40
    assert stage["dropped"]["split_by_stat#2"] == 40 and stage["dropped"]["downsample#3"] == 20
    assert stage["in"] == 64 and stage["rejected"] == 4 and stage["kept"] == len(pool)
    assert len({r["id"] for r in pool}) == len(pool)
    check({"stages": {"pool": stage}})
    again, _ = build_pool(validated, {"weights": {"a": 1, "b": 3}, "size": 40}, steps, seed=1,
                          extra_pools={"other": recs("z", 5) + recs("a", 60)})
    assert ids(again) == ids(pool)
