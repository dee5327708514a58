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


def test_records_without_ids_get_source_and_line(tmp_path):
    items = [{"prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(3)]
    items[1]["question_id"] = "q1"  # RLAIF-V: question_id is optional
    items[2]["id"] = ""
    path = write_jsonl(tmp_path / "rlaif.jsonl", [items[0], items[1], items[2]])
    out = validate_sources([spec(path, fields={"id": "question_id"})], 0.0)
    assert [r["id"] for r in out.by_source["rlaif"]] == ["rlaif:1", "q1", "rlaif:3"]
    again = validate_sources([spec(path, fields={"id": "question_id"})], 0.0)
    assert again.by_source == out.by_source  # stable
    # Parquet: the row; CSV: the line the row starts on; the source's name, not its file name.
    pq.write_table(pa.Table.from_pylist([{"prompt": "Hi?", "answer": "1"}] * 2), tmp_path / "dv.parquet")
    (tmp_path / "dv.csv").write_text('prompt,answer\n"two\nlines",1\nHi,2\n')
    for name, ids in [("dv.parquet", ["toolkit:1", "toolkit:2"]), ("dv.csv", ["toolkit:2", "toolkit:4"])]:
        out = validate_sources([spec(tmp_path / name, name="toolkit")], 0.0)
        assert [r["id"] for r in out.by_source["toolkit"]] == ids, name


@pytest.mark.parametrize("record, reason", [
    ('{"id": "s", "prompt": "caf\\ud800", "answer": "1"}',
     "field prompt: text is not valid UTF-8 (lone surrogate U+D800 at character 3)"),
    ('{"id": "s", "prompt": [{"role": "user", "content": "\\udfff"}], "answer": "1"}',
     "field prompt[0].content: text is not valid UTF-8 (lone surrogate U+DFFF at character 0)"),
    ('{"id": "s", "prompt": "Hi", "answer": "1", "extra": {"a": [1, "x\\udc80"]}}',
     "field extra.a[1]: text is not valid UTF-8 (lone surrogate U+DC80 at character 1)"),
    ('{"id": "s", "prompt": "Hi", "answer": "1", "extra": {"\\ud800": 1}}',
     "field extra: field name '\\ud800': text is not valid UTF-8"),
    ('{"id": "s\\ud83d", "prompt": "Hi", "answer": "1"}', "field id: text is not valid UTF-8"),
    ('{"id": "s", "prompt": "Hi", "answer": "1", "references": ["ok", "\\ud800"]}',
     "field references[1]: text is not valid UTF-8"),
    ('{"id": "s", "prompt": "Hi\\u0000there", "answer": "1"}',
     "field prompt: text contains a NUL character (U+0000) at character 2"),
    ('{"id": "s", "prompt": "Hi", "answer": "1", "deep": ' + "[" * 70 + "]" * 70 + "}",
     "field deep[0][0]"),
    ('{"id": "s", "prompt": "Hi", "answer": "1", "deep": ' + "[" * 5000 + "]" * 5000 + "}",
     "nested too deeply to parse"),
    ('{"id": "s", "prompt": "Hi", "answer": ' + "9" * 5000 + "}", "unparseable JSON: Exceeds the limit"),
    ('{"id": "s", "prompt": "Hi", "answer": NaN}', "missing required field 'answer' for task 'math'"),
    ('{"id": "s", "prompt": [{"role": "robot", "content": "Hi"}], "answer": "1"}',
     "wrong value for 'prompt': chat message 1 has role 'robot'; expected one of system, user, assistant"),
    ('{"id": true, "prompt": "Hi", "answer": "1"}', "wrong type for 'id'"),
    ('{"id": "s", "prompt": "Hi", "answer": true}', "wrong type for 'answer'"),
    ('{"id": "s", "prompt": "Hi", "answer": "1", "references": [1]}', "wrong type for 'references'"),
])
def test_text_that_later_stages_cannot_take_is_quarantined(tmp_path, record, reason):
    from juicebox.io import read_jsonl
    from juicebox.io import write_jsonl as write_records

    out, reasons = rejected_reasons(tmp_path, [record])
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
    assert out.rejected[0]["line"] == 41 and out.rejected[0]["raw"] == record
    # What build_pool writes next: the quarantine and the pool, both readable again.
    write_records(tmp_path / "rejected.jsonl", out.rejected)
    assert read_jsonl(tmp_path / "rejected.jsonl") == out.rejected
    write_records(tmp_path / "pool.jsonl", out.by_source["s"])
    assert len(read_jsonl(tmp_path / "pool.jsonl")) == 40


def test_nan_and_infinity_become_null_and_every_value_is_written(tmp_path):
    line = '{"id": "n", "prompt": "Hi", "answer": 2.5, "score": NaN, "more": [Infinity, -Infinity, 1.5]}'
    out, reasons = rejected_reasons(tmp_path, [line])
    record = out.by_source["s"][-1]
    assert reasons == [] and record["answer"] == "2.5"
    assert record["meta"] == {"score": None, "more": [None, None, 1.5]}
    from juicebox.io import dumps
    assert "NaN" not in dumps(record) and json.loads(dumps(record)) == record


@pytest.mark.parametrize("image, reason", [
    ({"bytes": None, "path": "ok.png"}, None),
    ({"path": "ok.png"}, None),
    ("", None),  # an empty field is no image
    ([""], "empty image path"),
    ({"bytes": None, "path": ""}, "wrong type for 'images': an image {bytes, path} without bytes needs a path"),
    ([{"bytes": "iVBO", "path": "x.png"}], "embedded image bytes ({bytes, path}) are not supported"),
    ([3], "wrong type for 'images'"),
    (7, "wrong type for 'images'"),
    ({"url": "x"}, "wrong type for 'images'"),
    ("x" * 5000 + ".png", "image not found: "),
    ("nul\u0000.png", "field image: text contains a NUL character"),
    ("data:image/png;base64,aGVsbG8=", "not an image: inline base64 data"),
    ("data:image/png;base64,***", "not an image: inline data that is not base64"),
    ("data:image/png", "not an image: inline data without a comma"),
    ("data:text/plain;base64,aGVsbG8=", "image not found: "),
])
def test_odd_image_values(tmp_path, image, reason):
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    out, reasons = rejected_reasons(tmp_path, [good(100, image=image)], fields={"images": "image"})
    if reason is None:
        assert reasons == []
        kept = out.by_source["s"][-1]
        assert kept.get("images", []) == ([] if image == "" else [str(tmp_path / "ok.png")])
    else:
        assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
        assert len(reasons[0]) < 400


def test_parquet_types_without_a_json_form(tmp_path):
    import datetime
    import decimal

    table = pa.table({"id": ["a", "b"], "prompt": ["Hi", "Ho"], "answer": ["1", "2"],
                      "when": [datetime.datetime(2024, 5, 1, 12, 30), None],
                      "day": [datetime.date(2024, 5, 1), None],
                      "price": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
                      "took": pa.array([datetime.timedelta(seconds=90), None], pa.duration("s")),
                      "blob": pa.array([None, b"\x00\xff"], pa.binary())})
    pq.write_table(table, tmp_path / "t.parquet")
    out = validate_sources([spec(tmp_path / "t.parquet")], 0.5)
    assert out.by_source["t"][0]["meta"] == {"when": "2024-05-01T12:30:00", "day": "2024-05-01", "price": "1.50",
                                             "took": 90.0, "blob": None}
    assert [(r["row"], r["reason"]) for r in out.rejected] == [
        (2, "field blob: binary data (2 bytes) has no JSON form")]


def test_parquet_string_that_is_not_utf8_is_quarantined_by_row(tmp_path):
    good_rows = pa.array(["Hi", "Ho", "He"], pa.string())
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(pa.array([0, 2], pa.int32()).buffers()[1]),
                                                   pa.py_buffer(b"\xff\xfe")])
    prompts = pa.concat_arrays([good_rows, bad])
    pq.write_table(pa.table({"prompt": prompts, "answer": ["1"] * 4}), tmp_path / "u.parquet")
    out = validate_sources([spec(tmp_path / "u.parquet")], 0.5)
    assert [r["id"] for r in out.by_source["u"]] == ["u:1", "u:2", "u:3"]
    assert [(r["row"], r["reason"].split(" (")[0]) for r in out.rejected] == [(4, "not valid UTF-8")]


def test_csv_cell_that_looks_like_deep_json_stays_text(tmp_path):
    deep = "[" * 3000
    (tmp_path / "d.csv").write_text(f"id,prompt,answer,note\nc1,Hi,1,{deep}\nc2,Ho,{'9' * 5000},[NaN]\n")
    out = validate_sources([spec(tmp_path / "d.csv")], 0.5)
    assert [r["meta"]["note"] for r in out.by_source["d"]] == [deep, [None]]


def test_json_array_too_deep_or_huge_number_fails_naming_the_file(tmp_path):
    (tmp_path / "deep.json").write_text('[{"id": "a", "prompt": "x", "answer": ' + "[" * 5000 + "]" * 5000 + "}]")
    with pytest.raises(SourceError, match=r"deep.json: not valid JSON \(nested too deeply"):
        validate_sources([spec(tmp_path / "deep.json")], 0.05)
    (tmp_path / "big.json").write_text('[{"id": "a", "prompt": "x", "answer": ' + "9" * 5000 + "}]")
    with pytest.raises(SourceError, match=r"big.json: not valid JSON \(Exceeds the limit"):
        validate_sources([spec(tmp_path / "big.json")], 0.05)


def test_write_jsonl_names_file_and_record_it_cannot_write(tmp_path):
    from juicebox.io import write_jsonl as write_records

    target = tmp_path / "pool.jsonl"
    with pytest.raises(ValueError, match=r"pool.jsonl: record 2 \(id 'b'\) cannot be written .*UnicodeEncodeError"):
        write_records(target, [{"id": "a"}, {"id": "b", "prompt": "\ud800"}])
    assert not target.exists()
