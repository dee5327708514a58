"""Pairing strategies and shared post-processing against hand-computed pairs, reasons and counts."""

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import shape_image
from juicebox.io import read_json, read_jsonl, write_json
from juicebox.ledger import check
from juicebox.pairs import (STRATEGIES, LLAMAFACTORY_FILE, Scored, build_pairs, check_rows, dataset_info,
                            is_near_identical, llamafactory_rows, needs_sharegpt, write_llamafactory,
                            write_pairs)


def words(n, tag):
    """n distinct words, so texts of different tags never look alike."""
    return " ".join(f"{tag}{k}" for k in range(n))


def rec(pid, rewards, texts=None, prompt=None, images=None, rewards_by_key=None):
    """A scored record with one sample per reward (None = failed reward), indices 0.."""
    samples = []
    for i, reward in enumerate(rewards):
        sample = {"index": i, "text": texts[i] if texts else words(3, f"{pid}s{i}w"), "reward": reward}
        if rewards_by_key:
            sample["rewards"] = rewards_by_key[i]
        samples.append(sample)
    return {"id": pid, "task": "math", "prompt": prompt if prompt is not None else f"question {pid}",
            "answer": "5", "references": [], "images": images or [], "samples": samples}


def pairs_of(result, pid=None):
    """(chosen index, rejected index) of the rows, optionally of one prompt."""
    return [(r["chosen_index"], r["rejected_index"]) for r in result.rows if pid is None or r["prompt_id"] == pid]


# --- strategies -----------------------------------------------------------------------------

def test_registry_knows_the_four_strategies():
    assert set(STRATEGIES) == {"best_vs_worst", "all_pairs", "rlaifv", "given"}


def test_best_vs_worst_breaks_ties_by_lowest_index():
    result = build_pairs([rec("m1", [0.2, 0.9, 0.1, 0.9, 0.1])], {"type": "best_vs_worst"}, seed=0)
    [row] = result.rows
    assert (row["id"], row["chosen_index"], row["rejected_index"]) == ("m1:1-2", 1, 2)
    assert row["chosen_reward"] == 0.9 and row["rejected_reward"] == 0.1
    assert row["margin"] == pytest.approx(0.8)
    assert row["prompt"] == "question m1" and row["chosen"] == words(3, "m1s1w") and row["task"] == "math"


def test_all_pairs_orders_by_reward_and_applies_min_margin():
    record = rec("m1", [1.0, 0.0, 0.5])
    assert pairs_of(build_pairs([record], {"type": "all_pairs"}, 0)) == [(0, 1), (0, 2), (2, 1)]
    # margins are 1.0, 0.5, 0.5: a margin equal to min_margin is kept
    assert pairs_of(build_pairs([record], {"type": "all_pairs", "min_margin": 0.5}, 0)) == [(0, 1), (0, 2), (2, 1)]
    assert pairs_of(build_pairs([record], {"type": "all_pairs", "min_margin": 0.6}, 0)) == [(0, 1)]
    below = build_pairs([record], {"type": "all_pairs", "min_margin": 1.5}, 0)
    assert below.rows == [] and below.reasons == {"m1": "below_margin"}


def test_min_margin_is_not_defeated_by_floating_point():
    # 0.3 - 0.1 == 0.19999999999999998, which still meets min_margin 0.2
    result = build_pairs([rec("m1", [0.3, 0.1])], {"type": "all_pairs", "min_margin": 0.2}, 0)
    assert pairs_of(result) == [(0, 1)]


def test_all_pairs_cap_is_a_seeded_sample():
    record = rec("m1", [0.0, 1.0, 2.0, 3.0])  # 6 candidate pairs
    every = set(pairs_of(build_pairs([record], {"type": "all_pairs"}, 0)))
    assert every == {(1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2)}
    capped = {seed: pairs_of(build_pairs([record], {"type": "all_pairs", "max_pairs_per_prompt": 2}, seed))
              for seed in range(6)}
    for seed, got in capped.items():
        assert len(got) == 2 and set(got) <= every and got == sorted(got)
        assert got == pairs_of(build_pairs([record], {"type": "all_pairs", "max_pairs_per_prompt": 2}, seed))
    assert len({tuple(v) for v in capped.values()}) > 1  # the seed matters


def test_rlaifv_top_and_bottom_shrink_with_few_samples():
    # 4 samples, rank 3: top and bottom become 2 each so no sample is both
    result = build_pairs([rec("v1", [4.0, 3.0, 2.0, 1.0])], {"type": "rlaifv", "max_pairs_per_prompt": None}, 0)
    assert pairs_of(result) == [(0, 2), (0, 3), (1, 2), (1, 3)]


def test_rlaifv_default_cap_of_three_from_top_and_bottom():
    record = rec("v1", [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0])  # top {0, 1, 2}, bottom {4, 5, 6}: 9 pairs
    got = pairs_of(build_pairs([record], {"type": "rlaifv"}, seed=11))
    assert len(got) == 3 and got == sorted(got)
    assert all(c in {0, 1, 2} and r in {4, 5, 6} for c, r in got)


def test_rlaifv_word_distance_is_strict():
    near = rec("v1", [1.0, 0.0], texts=[words(29, "a"), words(5, "b")])  # gap 24 < 25
    far = rec("v2", [1.0, 0.0], texts=[words(30, "a"), words(5, "b")])   # gap 25, not < 25
    result = build_pairs([near, far], {"type": "rlaifv"}, 0)
    assert pairs_of(result) == [(0, 1)] and result.reasons == {"v2": "word_distance"}
    wider = build_pairs([far], {"type": "rlaifv", "distance": 26}, 0)
    assert pairs_of(wider) == [(0, 1)]


def test_rlaifv_two_key_ranking_needs_agreement():
    by_key = [{"sum": 10, "avg": 1}, {"sum": 8, "avg": 4}, {"sum": 6, "avg": 3}, {"sum": 4, "avg": 2}]
    # k = 2. sum: top {0, 1}, bottom {2, 3}. avg: top {1, 2}, bottom {3, 0}. chosen {1}, rejected {3}.
    record = rec("v1", [0.9, 0.8, 0.5, 0.1], rewards_by_key=by_key)
    config = {"type": "rlaifv", "rank_keys": ["sum", "avg"]}
    assert pairs_of(build_pairs([record], config, 0)) == [(1, 3)]
    # by the combined reward alone: top {0, 1}, bottom {2, 3}
    assert pairs_of(build_pairs([record], {"type": "rlaifv", "max_pairs_per_prompt": None}, 0)) == \
        [(0, 2), (0, 3), (1, 2), (1, 3)]
    opposed = rec("v2", [0.9, 0.8, 0.5, 0.1], rewards_by_key=[{"sum": s, "avg": 5 - s} for s in (4, 3, 2, 1)])
    assert build_pairs([opposed], config, 0).reasons == {"v2": "rank_disagreement"}


def test_rlaifv_missing_rank_key_names_prompt_and_key():
    record = rec("v1", [1.0, 0.0], rewards_by_key=[{"sum": 1}, {"avg": 0}])
    with pytest.raises(ValueError, match=r"prompt 'v1'.*rank key 'sum' of sample 1"):
        build_pairs([record], {"type": "rlaifv", "rank_keys": ["sum"]}, 0)


def test_rlaifv_strict_follow_rank_zips_in_rank_order_without_a_length_check():
    # rank 3 of 7: top {0, 1, 2}, bottom {4, 5, 6}; zipped best with best: (0, 4), (1, 5), (2, 6);
    # sample 0 is 40 words longer than 4 (beyond distance 25), kept: no word-count check
    texts = [words(43, "a")] + [words(3, f"t{k}") for k in range(1, 7)]
    record = rec("v1", [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], texts=texts)
    strict = {"type": "rlaifv", "strict_follow_rank": True, "max_pairs_per_prompt": None}
    assert pairs_of(build_pairs([record], strict, 0)) == [(0, 4), (1, 5), (2, 6)]
    # the default mode: every chosen x rejected within 25 words (not 0's)
    assert pairs_of(build_pairs([record], {"type": "rlaifv", "max_pairs_per_prompt": None}, 0)) == \
        [(1, 4), (1, 5), (1, 6), (2, 4), (2, 5), (2, 6)]
    # ranked by the first rank key: sum puts 3 first, so the zip starts there
    by_key = [{"sum": s} for s in (2, 1, 3, 4, 0, -1)]
    keyed = rec("v2", [6.0, 5.0, 4.0, 3.0, 2.0, 1.0], rewards_by_key=by_key)
    got = pairs_of(build_pairs([keyed], {**strict, "rank_keys": ["sum"]}, 0))
    assert got == [(0, 5), (2, 4)]  # top by sum: 3, 2, 0; bottom: 1, 4, 5; (3, 1) left out: 3.0 < 5.0


def test_duplicate_pairs_and_the_per_image_cap(tmp_path):
    dup = rec("d", [1.0, 1.0, 0.0], texts=["same answer", "same answer", "other"])
    assert pairs_of(build_pairs([dup], {"type": "all_pairs"}, 0)) == [(0, 2), (1, 2)]
    assert pairs_of(build_pairs([dup], {"type": "all_pairs", "drop_duplicates": True}, 0)) == [(0, 2)]
    picture = str(shape_image(tmp_path / "p.png"))
    same_image = [rec(f"q{k}", [1.0, 0.5, 0.0], images=[picture]) for k in range(3)]  # 3 pairs each
    other = rec("x", [1.0, 0.0], images=[str(shape_image(tmp_path / "o.png", "blue"))])
    config = {"type": "all_pairs", "max_pairs_per_image": 3}
    result = build_pairs(same_image + [other], config, 0)
    assert len([r for r in result.rows if r["prompt_id"] != "x"]) == 3 and pairs_of(result, "x") == [(0, 1)]
    again = build_pairs(list(reversed(same_image)) + [other], config, 0)
    assert sorted(pairs_of(again)) == sorted(pairs_of(result))  # a seeded sample, whatever the input order
    assert set(result.reasons.values()) <= {"image_cap"}


def test_the_ledger_reports_the_pairs_length_balance():
    records = [rec("a", [1.0, 0.0], texts=[words(6, "a"), words(2, "b")]),
               rec("b", [1.0, 0.0], texts=[words(2, "c"), words(3, "d")])]
    result = build_pairs(records, {"type": "all_pairs"}, 0)
    assert result.stage["about"] == {"pairs": 2, "mean_length_gap_words": 1.5, "chosen_longer": 1,
                                     "rejected_longer": 1, "same_length": 0}


# --- usable samples and reasons -------------------------------------------------------------

def test_missing_failed_and_too_few_samples():
    records = [
        {**rec("none", []), "samples": []},
        {key: value for key, value in rec("absent", []).items() if key != "samples"},
        rec("allnull", [None, None]),
        rec("one", [None, 0.7, float("nan")]),
        rec("fewer", [None, 1.0, None, 0.0]),  # 2 usable of 4
        rec("equal", [0.5, 0.5, 0.5]),
    ]
    for strategy in ("best_vs_worst", "all_pairs", "rlaifv"):
        result = build_pairs(records, {"type": strategy}, 0)
        assert result.reasons == {"none": "no_samples", "absent": "no_samples", "allnull": "no_samples",
                                  "one": "single_sample", "equal": "equal_rewards"}
        assert pairs_of(result) == [(1, 3)]  # null-reward samples never pair


def test_bad_samples_raise_with_the_prompt_id():
    broken = rec("b1", [1.0, 0.0])
    broken["samples"][1]["text"] = None
    with pytest.raises(ValueError, match=r"prompt 'b1': sample 1 has a reward but its 'text' is None"):
        build_pairs([broken], {"type": "all_pairs"}, 0)
    with pytest.raises(ValueError, match="prompt ids must be unique"):
        build_pairs([rec("x", [1, 0]), rec("x", [1, 0])], {"type": "all_pairs"}, 0)


def test_config_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"pairing\.type: unknown pairing type 'best'; known: all_pairs, "
                                         r"best_vs_worst, given, rlaifv"):
        STRATEGIES.build({"type": "best"}, "pairing")
    with pytest.raises(ValueError, match=r"pairing: unknown key 'rank'; allowed keys: drop_duplicates, "
                                         r"length_balance, max_mean_length_gap, max_pairs_per_image, "
                                         r"max_pairs_per_prompt, min_margin, near_identical, seed, type"):
        STRATEGIES.build({"type": "all_pairs", "rank": 3, "near_identical": 0.9}, "pairing")
    with pytest.raises(ValueError, match=r"pairing\.max_pairs_per_prompt: expected a number >= 1, found 0"):
        STRATEGIES.build({"type": "rlaifv", "max_pairs_per_prompt": 0}, "pairing")
    with pytest.raises(ValueError, match=r"pairing\.near_identical: expected a number <= 1, found 2"):
        STRATEGIES.build({"near_identical": 2}, "pairing")
    options = STRATEGIES.build({}, "pairing").options
    assert STRATEGIES.type_of({}, "pairing") == "best_vs_worst"
    assert (options.near_identical, options.length_balance, options.max_mean_length_gap, options.seed) == \
        (0.95, False, 0.5, None)
    assert build_pairs([rec("s", [1, 0])], {"type": "all_pairs", "seed": 9}, 1).stats["seed"] == 9


# --- near-identical ---------------------------------------------------------------------------

def test_near_identical_pairs_are_dropped():
    # normalised: "the answer is 5." vs "the answer is 5": ratio 30/31 = 0.968
    record = rec("n1", [1.0, 0.0], texts=["The answer is 5.", "the  answer is 5"])
    assert build_pairs([record], {"type": "all_pairs"}, 0).reasons == {"n1": "near_identical"}
    assert pairs_of(build_pairs([record], {"type": "all_pairs", "near_identical": 0.97}, 0)) == [(0, 1)]
    assert pairs_of(build_pairs([record], {"type": "all_pairs", "near_identical": None}, 0)) == [(0, 1)]
    # identical after normalisation: dropped whatever the threshold
    same = rec("n2", [1.0, 0.0], texts=["Five", " five "])
    assert build_pairs([same], {"type": "all_pairs", "near_identical": None}, 0).reasons == {"n2": "near_identical"}


def test_similarity_sees_near_copies_of_long_texts():
    # difflib's autojunk would treat common letters as junk in texts over 200 characters
    long = "the quick brown fox jumps over the lazy dog " * 10
    assert is_near_identical(Scored(0, long + "yes", 1.0), Scored(1, long + "no", 0.0), 0.95)


def test_cap_never_spends_a_slot_on_a_near_identical_pair():
    record = rec("n1", [1.0, 0.0, 0.5], texts=["same text here", "same text here", words(6, "other")])
    for seed in range(8):
        result = build_pairs([record], {"type": "all_pairs", "max_pairs_per_prompt": 1}, seed)
        assert len(result.rows) == 1 and pairs_of(result) != [(0, 1)]


# --- length balancing -------------------------------------------------------------------------

def gap_record(pid, chosen_words, rejected_words, margin=1.0):
    return rec(pid, [margin, 0.0], texts=[words(chosen_words, f"{pid}c"), words(rejected_words, f"{pid}r")])


def test_length_balance_drops_largest_gap_until_mean_within_bound():
    records = [gap_record("p1", 10, 2), gap_record("p2", 3, 3), gap_record("p3", 4, 3)]  # gaps 8, 0, 1
    config = {"type": "best_vs_worst", "length_balance": True}
    # mean 9/3 = 3 > 0.5: drop p1 (gap 8) -> mean 1/2 = 0.5 -> stop
    result = build_pairs(records, config, 0)
    assert [r["prompt_id"] for r in result.rows] == ["p2", "p3"] and result.reasons == {"p1": "length_balance"}
    assert result.stats["mean_length_gap_words"] == 0.5
    strict = build_pairs(records, {**config, "max_mean_length_gap": 0}, 0)
    assert [r["prompt_id"] for r in strict.rows] == ["p2"]
    assert len(build_pairs(records, {"type": "best_vs_worst"}, 0).rows) == 3  # off by default


def test_length_balance_handles_rejected_longer_and_ties():
    shorter = [gap_record("p1", 2, 8), gap_record("p2", 3, 3), gap_record("p3", 4, 3)]  # gaps -6, 0, 1
    result = build_pairs(shorter, {"type": "best_vs_worst", "length_balance": True}, 0)
    assert result.reasons == {"p1": "length_balance"}  # mean -5/3 -> drop -6 -> mean 0.5
    # gaps 5, 5, -4: mean 2 -> drop the gap-5 pair with the smaller margin -> mean 0.5
    tied = [gap_record("p1", 6, 1, margin=0.9), gap_record("p2", 6, 1, margin=0.2), gap_record("p3", 1, 5)]
    result = build_pairs(tied, {"type": "best_vs_worst", "length_balance": True}, 0)
    assert result.reasons == {"p2": "length_balance"}
    assert build_pairs(tied[::-1], {"type": "best_vs_worst", "length_balance": True}, 0).reasons == result.reasons


def test_length_balance_counts_a_prompt_only_when_it_loses_every_pair():
    # m1 has pairs with gaps 10 (0-1) and 0 (0-2); m2 has one pair with gap 0
    m1 = rec("m1", [1.0, 0.0, 0.5], texts=[words(12, "a"), words(2, "b"), words(12, "c")])
    m2 = gap_record("m2", 4, 4)
    result = build_pairs([m1, m2], {"type": "all_pairs", "length_balance": True}, 0)
    # gaps: (0,1) 10, (0,2) 0, (2,1) 10, m2 0 -> mean 5 -> drop both gap-10 pairs -> mean 0
    assert pairs_of(result) == [(0, 2), (0, 1)] and result.reasons == {}
    assert result.stage["kept"] == 2


# --- determinism and accounting ---------------------------------------------------------------

def test_same_seed_same_rows_and_order_does_not_matter():
    records = [rec(f"p{i}", [0.1 * k for k in range(6)]) for i in range(5)]
    config = {"type": "all_pairs", "max_pairs_per_prompt": 2}
    first = build_pairs(records, config, seed=3)
    assert build_pairs(records, config, seed=3).rows == first.rows
    backwards = build_pairs(records[::-1], config, seed=3)
    assert sorted(r["id"] for r in backwards.rows) == sorted(r["id"] for r in first.rows)
    assert [r["prompt_id"] for r in backwards.rows][:2] == ["p4", "p4"]  # rows follow input order
    assert build_pairs(records, config, seed=4).rows != first.rows


def test_ledger_counts_prompts_and_adds_up():
    records = [rec("none", []), rec("one", [1.0, None]), rec("equal", [0.2, 0.2]),
               rec("near", [1.0, 0.0], texts=["x y z", "x y z"]), rec("ok1", [1.0, 0.0, 0.5]),
               rec("ok2", [0.0, 1.0]), rec("small", [0.5, 0.45])]
    result = build_pairs(records, {"type": "all_pairs", "min_margin": 0.1}, 0)
    assert result.stage == {"in": 7, "kept": 2, "rejected": 0,
                            "dropped": {"no_samples": 1, "single_sample": 1, "equal_rewards": 1,
                                        "below_margin": 1, "near_identical": 1},
                            "about": {"pairs": 4, "mean_length_gap_words": 0.0, "chosen_longer": 0,
                                      "rejected_longer": 0, "same_length": 4}}
    check({"stages": {"pairs": result.stage}})
    stats = result.stats
    assert stats["pairs"] == 4 and stats["prompts_with_pairs"] == 2
    assert stats["pairs_per_prompt"] == {"1": 1, "3": 1}
    assert stats["mean_margin"] == pytest.approx((1.0 + 0.5 + 0.5 + 1.0) / 4)
    assert stats["mean_chosen_reward"] == pytest.approx((1.0 + 1.0 + 0.5 + 1.0) / 4)
    assert stats["mean_rejected_reward"] == pytest.approx((0.0 + 0.5 + 0.0 + 0.0) / 4)
    assert stats["strategy"]["type"] == "all_pairs" and stats["seed"] == 0


# --- rows and files ---------------------------------------------------------------------------

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus 3?"}]


def test_chat_prompts_make_conversational_rows_for_the_whole_set():
    records = [rec("c1", [1.0, 0.0], prompt=CHAT), rec("s1", [0.0, 1.0])]
    result = build_pairs(records, {"type": "best_vs_worst"}, 0)
    c1, s1 = result.rows
    assert result.conversational
    assert c1["prompt"] == CHAT and c1["chosen"] == [{"role": "assistant", "content": words(3, "c1s0w")}]
    assert c1["images"] == [] and s1["images"] == []
    assert s1["prompt"] == [{"role": "user", "content": "question s1"}]
    assert s1["rejected"] == [{"role": "assistant", "content": words(3, "s1s0w")}]


def test_a_pair_with_images_puts_every_prompt_in_content_parts():
    placed = [{"role": "user", "content": "Look: <image>\nWhat colour?"}]
    records = [rec("c1", [1.0, 0.0], prompt=CHAT, images=["img/a.png"]), rec("s1", [0.0, 1.0]),
               rec("p1", [1.0, 0.0], prompt=placed, images=["img/b.png"])]
    result = build_pairs(records, {"type": "best_vs_worst"}, 0)
    c1, s1, p1 = result.rows
    assert result.conversational
    # TRL's vision format: images as parts (before the first user turn's text unless the prompt places them)
    assert c1["prompt"] == [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                            {"role": "user", "content": [{"type": "image"},
                                                         {"type": "text", "text": "What is 2 plus 3?"}]}]
    assert p1["prompt"] == [{"role": "user", "content": [{"type": "text", "text": "Look: "}, {"type": "image"},
                                                         {"type": "text", "text": "What colour?"}]}]
    assert s1["prompt"] == [{"role": "user", "content": [{"type": "text", "text": "question s1"}]}]
    assert c1["chosen"] == [{"role": "assistant", "content": words(3, "c1s0w")}]
    assert c1["images"] == ["img/a.png"] and s1["images"] == []
    # pairs only from image-less prompts keep plain chat turns, whatever the prompts without pairs hold
    unpaired = build_pairs([rec("c1", [0.5, 0.5], images=["img/a.png"]), rec("s1", [0.0, 1.0])],
                           {"type": "best_vs_worst"}, 0)
    assert unpaired.rows[0]["prompt"] == "question s1"


def test_a_prompt_placing_too_few_images_names_the_prompt():
    record = rec("p1", [1.0, 0.0], prompt="<image> A", images=["a.png", "b.png"])
    with pytest.raises(ValueError, match=r"prompt 'p1': the prompt has 1 image placeholder\(s\) for 2 image\(s\)"):
        build_pairs([record], {"type": "best_vs_worst"}, 0)


def test_written_files_round_trip(tmp_path):
    for records, name in (([rec("c1", [1.0, 0.0, 0.4], prompt=CHAT)], "chat"), ([rec("m1", [0.2, 0.9, 0.5])], "plain")):
        result = build_pairs(records, {"type": "all_pairs"}, 0)
        parquet, jsonl = tmp_path / name / "pairs.parquet", tmp_path / name / "pairs.jsonl"
        write_pairs(result.rows, parquet, jsonl, result.conversational)
        table = pq.read_table(parquet)
        back = table.to_pylist()
        assert back == result.rows and read_jsonl(jsonl) == result.rows
        assert all(r["chosen_reward"] > r["rejected_reward"] and r["margin"] > 0 for r in back)
        assert str(table.schema.field("chosen").type) == (
            "list<element: struct<role: string, content: string>>" if name == "chat" else "string")
    assert sorted(p.name for p in (tmp_path / "chat").iterdir()) == ["pairs.jsonl", "pairs.parquet"]  # no temp left


def test_pairs_with_images_round_trip_in_the_parts_schema(tmp_path):
    records = [rec("c1", [1.0, 0.0], prompt=CHAT, images=["a.png"]), rec("s1", [0.0, 1.0])]
    result = build_pairs(records, {"type": "best_vs_worst"}, 0)
    write_pairs(result.rows, tmp_path / "p.parquet", tmp_path / "p.jsonl", result.conversational)
    table = pq.read_table(tmp_path / "p.parquet")
    assert str(table.schema.field("prompt").type) == (
        "list<element: struct<role: string, content: list<element: struct<type: string, text: string>>>>")
    assert str(table.schema.field("chosen").type) == "list<element: struct<role: string, content: string>>"
    back = table.to_pylist()
    for row in result.rows:  # parquet gives an image part a null text
        for turn in row["prompt"]:
            turn["content"] = [{"text": None, **part} for part in turn["content"]]
    assert back == result.rows
    assert back[0]["images"] == ["a.png"] and back[1]["images"] == []


def test_empty_set_keeps_its_schema(tmp_path):
    result = build_pairs([rec("c1", [0.5, 0.5], prompt=CHAT)], {"type": "best_vs_worst"}, 0)
    write_pairs(result.rows, tmp_path / "p.parquet", tmp_path / "p.jsonl", result.conversational)
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == 0 and str(table.schema.field("prompt").type).startswith("list<")


def test_writers_refuse_a_row_whose_rewards_are_not_ordered(tmp_path):
    row = build_pairs([rec("m1", [1.0, 0.0])], {"type": "best_vs_worst"}, 0).rows[0]
    bad = {**row, "chosen_reward": 0.0, "rejected_reward": 1.0, "margin": -1.0}
    with pytest.raises(ValueError, match="m1:0-1: chosen reward 0.0 is not above rejected reward 1.0"):
        check_rows([bad])
    with pytest.raises(ValueError):
        write_pairs([bad], tmp_path / "p.parquet", tmp_path / "p.jsonl")
    assert not list(tmp_path.iterdir())


def test_dataset_info_shapes():
    assert dataset_info("juicebox_dpo", "pairs.jsonl", conversational=False) == {"juicebox_dpo": {
        "file_name": "pairs.jsonl", "ranking": True,
        "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}}}
    entry = dataset_info("juicebox_dpo", LLAMAFACTORY_FILE, conversational=True, images=True)["juicebox_dpo"]
    assert entry["file_name"] == "pairs_llamafactory.jsonl" and entry["formatting"] == "sharegpt"
    assert entry["ranking"] is True
    assert entry["columns"] == {"messages": "conversations", "chosen": "chosen", "rejected": "rejected",
                                "images": "images"}
    assert entry["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                             "assistant_tag": "gpt", "system_tag": "system"}


def test_llamafactory_file_uses_sharegpt_turns_and_image_placeholders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # image paths are relative to the working directory, as in the workflow
    images = [str(shape_image(Path("pool/images") / name)) for name in ("a.png", "b.png", "c.png")]
    placed = [{"role": "user", "content": "Left <image> right <image>?"}]
    records = [rec("c1", [1.0, 0.0], prompt=CHAT, images=images[:2]), rec("s1", [0.0, 1.0]),
               rec("p1", [1.0, 0.0], prompt=placed, images=images[1:])]
    result = build_pairs(records, {"type": "best_vs_worst"}, 0)
    assert needs_sharegpt(result.rows, result.conversational)
    export = Path("results/exp/pairs")
    assert write_llamafactory(result.rows, export / LLAMAFACTORY_FILE) == 3
    c1, s1, p1 = read_jsonl(export / LLAMAFACTORY_FILE)
    assert c1["conversations"] == [{"from": "system", "value": "Be brief."},
                                   {"from": "human", "value": "<image><image>What is 2 plus 3?"}]
    assert p1["conversations"] == [{"from": "human", "value": "Left <image> right <image>?"}]  # one per image
    assert c1["chosen"] == {"from": "gpt", "value": words(3, "c1s0w")}
    assert c1["rejected"] == {"from": "gpt", "value": words(3, "c1s1w")}
    assert "images" not in s1
    assert s1["conversations"] == [{"from": "human", "value": "question s1"}]
    # LLaMA-Factory joins a relative media path to media_dir, by default the dataset folder (the export's)
    assert c1["images"] == ["../../../pool/images/a.png", "../../../pool/images/b.png"]
    for row in (c1, p1):
        assert all((export / image).is_file() for image in row["images"])
    write_json(export / "dataset_info.json", dataset_info("d", LLAMAFACTORY_FILE, True, images=True))
    assert read_json(export / "dataset_info.json")["d"]["file_name"] == LLAMAFACTORY_FILE


def test_llamafactory_refuses_a_prompt_that_ends_with_the_assistant(tmp_path):
    ends_badly = CHAT + [{"role": "assistant", "content": "5"}]
    rows = build_pairs([rec("c1", [1.0, 0.0], prompt=ends_badly)], {"type": "best_vs_worst"}, 0).rows
    with pytest.raises(ValueError, match="pair c1:0-1: LLaMA-Factory ranking data needs turns alternating"):
        llamafactory_rows(rows, tmp_path)
    plain = build_pairs([rec("m1", [1.0, 0.0])], {"type": "best_vs_worst"}, 0)
    assert not needs_sharegpt(plain.rows, plain.conversational)


# --- pairs given with the data ---------------------------------------------------------------

def given_record(pid, pos, neg, where="meta"):
    record = {"id": pid, "task": "math", "prompt": f"question {pid}", "answer": None, "references": [],
              "images": []}
    fields = {"pos_answers": pos, "neg_answers": neg}
    return {**record, "meta": fields} if where == "meta" else {**record, **fields}


def test_given_pairs_are_the_records_own_one_to_one():
    records = [given_record("a", ["5", "five"], ["6", "seven"]), given_record("b", ["x y"], ["z"], where="top"),
               {**given_record("c", [], []), "meta": {}}]
    result = build_pairs(records, {"type": "given"}, 0)
    rows = [(r["prompt_id"], r["chosen"], r["rejected"], r["chosen_reward"], r["rejected_reward"]) for r in result.rows]
    assert rows == [("a", "5", "6", 1.0, 0.0), ("a", "five", "seven", 1.0, 0.0), ("b", "x y", "z", 1.0, 0.0)]
    assert result.stage["dropped"] == {"no_samples": 1} and result.stage["kept"] == 2
    with pytest.raises(ValueError, match=r"prompt 'd'.*lists of equal length"):
        build_pairs([given_record("d", ["5"], ["6", "7"])], {"type": "given"}, 0)
    with pytest.raises(ValueError, match=r"prompt 'e'.*non-empty text"):
        build_pairs([given_record("e", ["5"], [""])], {"type": "given"}, 0)
