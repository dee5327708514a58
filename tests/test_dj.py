"""Running the real Data-Juicer: op errors fail naming the op, no runtime installs, per-op counts."""

import pytest
import yaml

from juicebox import dj


def records():
    texts = ["<b>What is 2 plus 3?</b>", "What is 4 plus 5?", "What is 4 plus 5?", "x", "Tell me 7 times 8."]
    return [{"id": f"r{i}", "task": "math", "prompt": t, "answer": "1", "meta": {"k": [i]}} for i, t in enumerate(texts)]


def recipe(tmp_path, process, **extra):
    path = tmp_path / "recipe.yaml"
    # An upstream recipe carries its own paths and np: Juicebox replaces them.
    path.write_text(yaml.safe_dump({"project_name": "t", "dataset_path": "/nowhere/in.jsonl",
                                    "export_path": "/nowhere/out.jsonl", "np": 8, "process": process, **extra}))
    return str(path)


def test_process_counts_per_op_and_carries_cleaned_text(tmp_path):
    path = recipe(tmp_path, [{"clean_html_mapper": None}, {"text_length_filter": {"min_len": 5}},
                             {"document_deduplicator": {"lowercase": True}}])
    kept, counts = dj.process(records(), path, str(tmp_path / "scratch"), np=1)
    assert counts == [{"op": "clean_html_mapper", "in": 5, "kept": 5},
                      {"op": "text_length_filter", "in": 5, "kept": 4},
                      {"op": "document_deduplicator", "in": 4, "kept": 3}]
    assert [r["id"] for r in kept] == ["r0", "r1", "r4"]
    assert kept[0]["prompt"] == "What is 2 plus 3?" and kept[0]["meta"] == {"k": [0]}
    assert not list((tmp_path / "scratch").iterdir())  # Data-Juicer's scratch work dir is removed


def test_an_op_that_raises_fails_with_its_name(tmp_path):
    # Upstream's default (skip_op_error: true) would skip this op and carry on.
    path = recipe(tmp_path, [{"text_length_filter": {"min_len": 1}},
                             {"replace_content_mapper": {"pattern": ["a", "b"], "repl": ["x"]}}],
                  skip_op_error=True)
    with pytest.raises(dj.OpFailed, match="op #1 'replace_content_mapper' failed"):
        dj.process(records(), path, str(tmp_path / "scratch"), np=1)


def test_runtime_package_install_is_refused(tmp_path):
    # chinese_convert_mapper needs opencc, which is not pinned: upstream would pip/uv-install it now.
    path = recipe(tmp_path, [{"chinese_convert_mapper": {"mode": "s2t"}}])
    with pytest.raises(Exception) as err:
        dj.process(records(), path, str(tmp_path / "scratch"), np=1)
    chain, e = [], err.value
    while e is not None:
        chain.append(str(e))
        e = e.__cause__ or e.__context__
    assert any("wanted to install 'opencc'" in m for m in chain), chain


def test_analyze_returns_stats_in_pool_order(tmp_path):
    path = recipe(tmp_path, [{"clean_html_mapper": None}, {"text_length_filter": {"min_len": 5}},
                             {"words_num_filter": {"min_num": 1}}])
    stats = dj.analyze(records(), path, str(tmp_path / "scratch"), np=1)
    assert [s["id"] for s in stats] == [f"r{i}" for i in range(5)]
    assert stats[1]["stats"]["text_len"] == len("What is 4 plus 5?") and stats[1]["stats"]["num_words"] == 3  # Data-Juicer drops "4" and "5?"
