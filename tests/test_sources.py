"""Record validation: one case per reason, every format's locations, source-level failures."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from juicebox.pool import validate_sources
from juicebox.sources import SourceError, SourceSpec


def spec(path, **kw):
    return SourceSpec.from_config({"path": str(path), "task": "math", **kw})


def good(i, **extra):
    return {"id": f"g{i}", "prompt": f"What is {i} plus 1?", "answer": str(i + 1), **extra}


def write_jsonl(path, lines):
    path.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    return path


def rejected_reasons(tmp_path, bad_lines, n_good=40, **spec_kw):
    path = write_jsonl(tmp_path / "s.jsonl", [good(i) for i in range(n_good)] + bad_lines)
    out = validate_sources([spec(path, **spec_kw)], max_rejected_fraction=0.5)
    return out, [r["reason"] for r in out.rejected]


@pytest.mark.parametrize("line, reason", [
    ('{"id": "b1", "prompt": "x"', "unparseable JSON"),
    ({"id": "b1", "answer": "2"}, "missing required field 'prompt'"),
    ({"prompt": "What?", "answer": "2"}, "missing required field 'id'"),
    ({"id": "b1", "prompt": "What?"}, "missing required field 'answer' for task 'math'"),
    ({"id": "b1", "prompt": "What?", "answer": {"v": 2}}, "wrong type for 'answer'"),
    ({"id": ["b1"], "prompt": "What?", "answer": "2"}, "wrong type for 'id'"),
    ({"id": "b1", "prompt": 12, "answer": "2"}, "wrong type for 'prompt'"),
    ({"id": "b1", "prompt": "   ", "answer": "2"}, "empty prompt"),
    ({"id": "b1", "prompt": [], "answer": "2"}, "empty prompt"),
    ({"id": "g3", "prompt": "What is 3 plus 1?", "answer": "4"}, "duplicate id 'g3'"),
    ("[1, 2]", "not an object"),
])
def test_each_reason_is_quarantined_with_location(tmp_path, line, reason):
    out, reasons = rejected_reasons(tmp_path, [line])
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
    rejected = out.rejected[0]
    assert rejected["line"] == 41 and rejected["source"].endswith("s.jsonl")
    assert rejected["raw"] == (line if isinstance(line, str) else json.dumps(line))
    assert out.read == 41 and len(out.by_source["s"]) == 40


def test_image_missing_and_not_an_image(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    (tmp_path / "fake.png").write_text("not a png")
    lines = [good(100, image="ok.png"), good(101, image="missing.png"), good(102, image="fake.png")]
    out, reasons = rejected_reasons(tmp_path, lines, fields={"images": "image"})
    assert [r.split(":")[0] for r in reasons] == ["image not found", "not an image"]
    ok = [r for r in out.by_source["s"] if r["id"] == "g100"][0]
    assert ok["images"] == [str(tmp_path / "ok.png")]


def test_field_mapping_and_meta(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [{"qid": 7, "q": "Add 2 and 2.", "gold": 4, "level": 1}])
    out = validate_sources([spec(path, fields={"id": "qid", "prompt": "q", "answer": "gold"})], 0.0)
    assert out.by_source["m"] == [{"id": "7", "task": "math", "prompt": "Add 2 and 2.", "answer": "4",
                                   "source": str(path), "meta": {"level": 1}}]


def test_json_array_lines_parquet_rows_csv_lines(tmp_path):
    items = [good(i) for i in range(30)] + [{"id": "bad", "prompt": ""}]
    (tmp_path / "a.json").write_text("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "a.parquet")
    csv_lines = ["id,prompt,answer"] + [f"c{i},What is {i} plus 1?,{i + 1}" for i in range(30)] + ["c99,,3"]
    (tmp_path / "a.csv").write_text("\n".join(csv_lines) + "\n")
    for name, unit, where in [("a.json", "line", 32), ("a.parquet", "row", 31), ("a.csv", "line", 32)]:
        out = validate_sources([spec(tmp_path / name, name=name)], 0.5)
        assert len(out.by_source[name]) == 30
        assert [(r[unit], r["reason"]) for r in out.rejected] == [(where, "empty prompt")], name


def test_csv_malformed_row(tmp_path):
    rows = ["id,prompt,answer"] + [f"c{i},What is {i} plus 1?,{i + 1}" for i in range(30)] + ["c50,Hi there,1,extra"]
    (tmp_path / "b.csv").write_text("\n".join(rows) + "\n")
    out = validate_sources([spec(tmp_path / "b.csv")], 0.5)
    assert out.rejected[0]["line"] == 32 and out.rejected[0]["reason"].startswith("malformed CSV row")


def test_too_many_rejects_fails_naming_file_and_reasons(tmp_path):
    path = write_jsonl(tmp_path / "noisy.jsonl", [good(i) for i in range(10)] + ['{"broken'])
    with pytest.raises(SourceError) as err:
        validate_sources([spec(path)], max_rejected_fraction=0.05)
    message = str(err.value)
    assert str(path) in message and "1 of 11" in message and "line 11: unparseable JSON" in message


def test_missing_source_fails_before_any_work(tmp_path):
    ok = write_jsonl(tmp_path / "ok.jsonl", [good(1)])
    with pytest.raises(SourceError, match="file not found: .*nope.jsonl"):
        validate_sources([spec(ok), spec(tmp_path / "nope.jsonl")], 0.05)


def test_unreadable_json_source_names_file_and_line(tmp_path):
    (tmp_path / "broken.json").write_text('[\n{"id": 1},\n{"id": \n')
    with pytest.raises(SourceError, match=r"broken.json:\d+: not valid JSON"):
        validate_sources([spec(tmp_path / "broken.json")], 0.05)


def test_duplicate_ids_across_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [good(i) for i in range(40)])
    b = write_jsonl(tmp_path / "b.jsonl", [good(0)] + [good(i) for i in range(100, 140)])
    out = validate_sources([spec(a), spec(b)], 0.05)
    assert [r["reason"] for r in out.rejected] == [f"duplicate id 'g0' (first seen at {a}:1)"]


def test_invalid_utf8_line_is_quarantined_and_bom_is_accepted(tmp_path):
    path = tmp_path / "enc.jsonl"
    body = "\n".join(json.dumps(good(i)) for i in range(40)).encode()
    path.write_bytes(b"\xef\xbb\xbf" + body + b'\n{"id": "bad", "prompt": "caf\xe9", "answer": "1"}\n')
    out = validate_sources([spec(path)], 0.05)
    assert len(out.by_source["enc"]) == 40
    assert [(r["line"], r["reason"].split(" (")[0]) for r in out.rejected] == [(41, "not valid UTF-8")]


def test_invalid_utf8_in_a_json_array_fails_naming_the_line(tmp_path):
    path = tmp_path / "enc.json"
    path.write_bytes(b'[\n{"id": "a", "prompt": "x", "answer": "1"},\n{"id": "b", "prompt": "caf\xe9"}\n]\n')
    with pytest.raises(SourceError, match=r"enc.json:3: not valid UTF-8"):
        validate_sources([spec(path)], 0.05)
