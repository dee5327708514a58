"""Record validation: one case per reason, every format's locations, source-level failures."""

import json
from pathlib import Path

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
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def rejected_reasons(tmp_path, bad_lines, n_good=40, **spec_kw):
    path = write_jsonl(tmp_path / "s.jsonl", [good(i) for i in range(n_good)] + bad_lines)
    out = validate_sources([spec(path, **spec_kw)], max_rejected_fraction=0.5, image_store=tmp_path / "store")
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
    out = validate_sources([spec(path, fields={"id": "qid", "prompt": "q", "answer": "gold"})], 0.0,
                           tmp_path / "store")
    assert out.by_source["m"] == [{"id": "7", "task": "math", "prompt": "Add 2 and 2.", "answer": "4",
                                   "source": str(path), "meta": {"level": 1}}]


def test_json_array_lines_parquet_rows_csv_lines(tmp_path):
    items = [good(i) for i in range(30)] + [{"id": "bad", "prompt": ""}]
    (tmp_path / "a.json").write_text("[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\n")
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "a.parquet")
    csv_lines = ["id,prompt,answer"] + [f"c{i},What is {i} plus 1?,{i + 1}" for i in range(30)] + ["c99,,3"]
    (tmp_path / "a.csv").write_text("\n".join(csv_lines) + "\n")
    for name, unit, where in [("a.json", "line", 32), ("a.parquet", "row", 31), ("a.csv", "line", 32)]:
        out = validate_sources([spec(tmp_path / name, name=name)], 0.5, tmp_path / "store")
        assert len(out.by_source[name]) == 30
        assert [(r[unit], r["reason"]) for r in out.rejected] == [(where, "empty prompt")], name


def test_csv_malformed_row(tmp_path):
    rows = ["id,prompt,answer"] + [f"c{i},What is {i} plus 1?,{i + 1}" for i in range(30)] + ["c50,Hi there,1,extra"]
    (tmp_path / "b.csv").write_text("\n".join(rows) + "\n")
    out = validate_sources([spec(tmp_path / "b.csv")], 0.5, tmp_path / "store")
    assert out.rejected[0]["line"] == 32 and out.rejected[0]["reason"].startswith("malformed CSV row")


def test_too_many_rejects_fails_naming_file_and_reasons(tmp_path):
    path = write_jsonl(tmp_path / "noisy.jsonl", [good(i) for i in range(10)] + ['{"broken'])
    with pytest.raises(SourceError) as err:
        validate_sources([spec(path)], max_rejected_fraction=0.05, image_store=tmp_path / "store")
    message = str(err.value)
    assert str(path) in message and "1 of 11" in message and "line 11: unparseable JSON" in message


def test_missing_source_fails_before_any_work(tmp_path):
    ok = write_jsonl(tmp_path / "ok.jsonl", [good(1)])
    with pytest.raises(SourceError, match="file not found: .*nope.jsonl"):
        validate_sources([spec(ok), spec(tmp_path / "nope.jsonl")], 0.05, tmp_path / "store")


def test_unreadable_json_source_names_file_and_line(tmp_path):
    (tmp_path / "broken.json").write_text('[\n{"id": 1},\n{"id": \n')
    with pytest.raises(SourceError, match=r"broken.json:\d+: not valid JSON"):
        validate_sources([spec(tmp_path / "broken.json")], 0.05, tmp_path / "store")


def test_json_object_holding_its_records_under_data_is_read_by_item(tmp_path):
    # TextVQA's layout: one object, the records under "data" (published as one line).
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"dataset_name": "textvqa", "data": [good(1), {"id": "b", "answer": "2"}, good(2)]}))
    out = validate_sources([spec(path)], 0.5, tmp_path / "store")
    assert [r["id"] for r in out.by_source["obj"]] == ["g1", "g2"]
    assert [(r["item"], r["reason"]) for r in out.rejected] == [(2, "missing required field 'prompt' (looked for "
                                                                    "source fields messages, prompt, question, text, "
                                                                    "problem, query, input)")]
    with pytest.raises(SourceError, match=r"first reasons: item 2: missing required field 'prompt'"):
        validate_sources([spec(path)], 0.1, tmp_path / "store")


def test_duplicate_ids_across_sources(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [good(i) for i in range(40)])
    b = write_jsonl(tmp_path / "b.jsonl", [good(0)] + [good(i) for i in range(100, 140)])
    out = validate_sources([spec(a), spec(b)], 0.05, tmp_path / "store")
    assert [r["reason"] for r in out.rejected] == [f"duplicate id 'g0' (first seen at {a}:1)"]


def test_invalid_utf8_line_is_quarantined_and_bom_is_accepted(tmp_path):
    path = tmp_path / "enc.jsonl"
    body = "\n".join(json.dumps(good(i)) for i in range(40)).encode()
    path.write_bytes(b"\xef\xbb\xbf" + body + b'\n{"id": "bad", "prompt": "caf\xe9", "answer": "1"}\n')
    out = validate_sources([spec(path)], 0.05, tmp_path / "store")
    assert len(out.by_source["enc"]) == 40
    assert [(r["line"], r["reason"].split(" (")[0]) for r in out.rejected] == [(41, "not valid UTF-8")]


def test_invalid_utf8_in_a_json_array_fails_naming_the_line(tmp_path):
    path = tmp_path / "enc.json"
    path.write_bytes(b'[\n{"id": "a", "prompt": "x", "answer": "1"},\n{"id": "b", "prompt": "caf\xe9"}\n]\n')
    with pytest.raises(SourceError, match=r"enc.json:3: not valid UTF-8"):
        validate_sources([spec(path)], 0.05, tmp_path / "store")


def test_records_without_ids_get_source_and_line(tmp_path):
    items = [{"prompt": f"What is {i} plus 1?", "answer": str(i + 1)} for i in range(3)]
    items[1]["question_id"] = "q1"  # RLAIF-V: question_id is optional
    items[2]["id"] = ""
    path = write_jsonl(tmp_path / "rlaif.jsonl", [items[0], items[1], items[2]])
    out = validate_sources([spec(path, fields={"id": "question_id"})], 0.0, tmp_path / "store")
    assert [r["id"] for r in out.by_source["rlaif"]] == ["rlaif:1", "q1", "rlaif:3"]
    again = validate_sources([spec(path, fields={"id": "question_id"})], 0.0, tmp_path / "store")
    assert again.by_source == out.by_source  # stable
    # Parquet: the row; CSV: the line the row starts on; the source's name, not its file name.
    pq.write_table(pa.Table.from_pylist([{"prompt": "Hi?", "answer": "1"}] * 2), tmp_path / "dv.parquet")
    (tmp_path / "dv.csv").write_text('prompt,answer\n"two\nlines",1\nHi,2\n')
    for name, ids in [("dv.parquet", ["toolkit:1", "toolkit:2"]), ("dv.csv", ["toolkit:2", "toolkit:4"])]:
        out = validate_sources([spec(tmp_path / name, name="toolkit")], 0.0, tmp_path / "store")
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
    ([{"bytes": "iVBO", "path": "x.png"}], "not an image: {bytes, path} bytes (not a format PIL reads)"),
    ([{"bytes": "**", "path": "x.png"}], "not an image: {bytes, path} bytes given as text that is not base64"),
    ([{"bytes": 3, "path": "ok.png"}], "wrong type for 'images': the bytes of an image {bytes, path} must be"),
    ([3], "wrong type for 'images'"),
    (7, "wrong type for 'images'"),
    ({"url": "x"}, "wrong type for 'images'"),
    ("x" * 5000 + ".png", "image not found: "),
    ("nul\u0000.png", "field image: text contains a NUL character"),
    ("data:image/png;base64,aGVsbG8=", "not an image: inline base64 data"),
    ("data:image/png;base64,***", "not an image: inline data that is not base64"),
    ("data:image/png", "not an image: inline data without a comma"),
    ("data:text/plain;base64,aGVsbG8=", "not an image: inline data of type text/plain"),
    ("data:image/png,aGVsbG8=", "not an image: inline data that is not base64 (no ';base64'"),
    ("aGVsbG8=", "image not found: "),  # base64 of no image: taken for a path
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
    out = validate_sources([spec(tmp_path / "t.parquet")], 0.5, tmp_path / "store")
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
    out = validate_sources([spec(tmp_path / "u.parquet")], 0.5, tmp_path / "store")
    assert [r["id"] for r in out.by_source["u"]] == ["u:1", "u:2", "u:3"]
    assert [(r["row"], r["reason"].split(" (")[0]) for r in out.rejected] == [(4, "not valid UTF-8")]


def test_csv_cell_that_looks_like_deep_json_stays_text(tmp_path):
    deep = "[" * 3000
    (tmp_path / "d.csv").write_text(f"id,prompt,answer,note\nc1,Hi,1,{deep}\nc2,Ho,{'9' * 5000},[NaN]\n")
    out = validate_sources([spec(tmp_path / "d.csv")], 0.5, tmp_path / "store")
    assert [r["meta"]["note"] for r in out.by_source["d"]] == [deep, [None]]


def test_json_array_too_deep_or_huge_number_fails_naming_the_file(tmp_path):
    (tmp_path / "deep.json").write_text('[{"id": "a", "prompt": "x", "answer": ' + "[" * 5000 + "]" * 5000 + "}]")
    with pytest.raises(SourceError, match=r"deep.json: not valid JSON \(nested too deeply"):
        validate_sources([spec(tmp_path / "deep.json")], 0.05, tmp_path / "store")
    (tmp_path / "big.json").write_text('[{"id": "a", "prompt": "x", "answer": ' + "9" * 5000 + "}]")
    with pytest.raises(SourceError, match=r"big.json: not valid JSON \(Exceeds the limit"):
        validate_sources([spec(tmp_path / "big.json")], 0.05, tmp_path / "store")


def test_write_jsonl_names_file_and_record_it_cannot_write(tmp_path):
    from juicebox.io import write_jsonl as write_records

    target = tmp_path / "pool.jsonl"
    with pytest.raises(ValueError, match=r"pool.jsonl: record 2 \(id 'b'\) cannot be written .*UnicodeEncodeError"):
        write_records(target, [{"id": "a"}, {"id": "b", "prompt": "\ud800"}])
    assert not target.exists()


# --- images in every form, written once to the pool's image store ----------------------------

def image_bytes(fmt="PNG", size=(6, 4), colour=(200, 10, 10)):
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def stored_name(data, ext):
    import hashlib

    return f"{hashlib.sha256(data).hexdigest()[:16]}.{ext}"


def test_every_image_form_is_checked_and_embedded_ones_are_stored_once_by_content(tmp_path):
    import base64

    png, jpeg = image_bytes(), image_bytes("JPEG", colour=(10, 10, 200))
    b64 = base64.b64encode(png).decode()
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "ok.png").write_bytes(png)
    forms = {"path": "pics/ok.png", "data_uri": f"data:image/png;base64,{b64}", "bare_base64": b64,
             "wrapped_base64": "\n".join(b64[i:i + 16] for i in range(0, len(b64), 16)),
             "json_bytes": {"bytes": b64, "path": "gone.png"}, "json_path": {"bytes": None, "path": "pics/ok.png"},
             # the format comes from the bytes, not from the URI's media type
             "jpeg_as_png": "data:image/png;base64," + base64.b64encode(jpeg).decode()}
    path = write_jsonl(tmp_path / "s.jsonl", [good(i, image=form, form=name)
                                              for i, (name, form) in enumerate(forms.items())])
    # Parquet: the Hugging Face Image layout (bytes win over the path), and bare binary values.
    pq.write_table(pa.Table.from_pylist([good(10, img={"bytes": png, "path": "nowhere.png"}),
                                         good(11, img={"bytes": None, "path": "pics/ok.png"})]),
                   tmp_path / "hf.parquet")
    pq.write_table(pa.Table.from_pylist([good(12, images=[png, jpeg])]), tmp_path / "bin.parquet")
    store = tmp_path / "pool" / "images"
    out = validate_sources([spec(path, fields={"images": "image"}), spec(tmp_path / "hf.parquet"),
                            spec(tmp_path / "bin.parquet")], 0.0, store)
    assert out.rejected == []
    images = {r["meta"].get("form", r["id"]): r["images"] for rs in out.by_source.values() for r in rs}
    own, png_file, jpeg_file = str(tmp_path / "pics" / "ok.png"), str(store / stored_name(png, "png")), \
        str(store / stored_name(jpeg, "jpeg"))
    assert images == {"path": [own], "data_uri": [png_file], "bare_base64": [png_file], "wrapped_base64": [png_file],
                      "json_bytes": [png_file], "json_path": [own], "jpeg_as_png": [jpeg_file],
                      "g10": [png_file], "g11": [own], "g12": [png_file, jpeg_file]}
    assert sorted(p.name for p in store.iterdir()) == sorted([Path(png_file).name, Path(jpeg_file).name])
    assert (store / Path(png_file).name).read_bytes() == png


def test_image_store_is_made_even_when_no_record_has_images(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [good(1)])
    validate_sources([spec(path)], 0.0, tmp_path / "pool" / "images")
    assert (tmp_path / "pool" / "images").is_dir() and not list((tmp_path / "pool" / "images").iterdir())


def test_truncated_images_are_quarantined_in_every_form(tmp_path):
    import base64

    cut = image_bytes(size=(64, 64), colour=(1, 2, 3))[:-30]
    (tmp_path / "cut.png").write_bytes(cut)
    uri = "data:image/png;base64," + base64.b64encode(cut).decode()
    rows = [good(50, images={"bytes": cut, "path": None})] + [good(i) for i in range(40)]  # the first row's schema
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "cut.parquet")
    _, reasons = rejected_reasons(tmp_path, [good(100, image="cut.png"), good(101, image=uri)],
                                  fields={"images": "image"})
    parquet = validate_sources([spec(tmp_path / "cut.parquet")], 0.5, tmp_path / "store")
    reasons += [r["reason"] for r in parquet.rejected]
    assert [r.split(" (")[0] for r in reasons] == [f"not an image: {tmp_path / 'cut.png'}",
                                                   "not an image: inline base64 data",
                                                   "not an image: {bytes, path} bytes"]
    assert not list((tmp_path / "store").iterdir())  # nothing stored for a record that fails


def test_without_a_store_embedded_images_come_back_as_data_uris(tmp_path):
    import base64

    from juicebox.images import normalise_image

    png = image_bytes()
    uri = normalise_image({"bytes": png, "path": None}, tmp_path, None)
    assert uri == "data:image/png;base64," + base64.b64encode(png).decode()


# --- chat prompts with content parts; image placeholders ----------------------------------

def chat(*parts):
    return [{"role": "user", "content": list(parts)}]


TEXT = {"type": "text", "text": "What colour is it?"}


@pytest.mark.parametrize("prompt, n_images, reason", [
    (chat(TEXT), 0, None),
    (chat({"type": "image"}, TEXT), 1, None),
    (chat({"type": "image_url", "image_url": {"url": "x.png", "detail": "low"}}, TEXT), 1, None),
    (chat({"type": "image", "text": None, "image": None}, {**TEXT, "image": None}), 1, None),  # Parquet's nulls
    (chat({"type": "image"}), 1, None),  # an image is a prompt too
    ("<image>\nWhat colour is it?", 1, None),
    ("What colour is it?", 2, None),  # places none: the images go before the text
    (chat({"type": "image"}, {"type": "image"}, TEXT), 1, "image placeholders do not match the images: the prompt "
                                                          "places 2 ('<image>' in its text, image content parts) but "
                                                          "the record has 1 image(s)"),
    ("<image> What colour is it?", 0, "image placeholders do not match the images: the prompt places 1"),
    (chat({"type": "image"}, {"type": "text", "text": "<image>"}), 1, "image placeholders do not match"),
    (chat({"type": "audio", "audio": "a.wav"}), 0, "wrong value for 'prompt': chat message 1, content part 1 has "
                                                   "type 'audio'; expected one of text, image, image_url"),
    (chat({"text": "Hi"}), 0, "wrong value for 'prompt': chat message 1, content part 1 has type None"),
    (chat({"type": ["text"], "text": "Hi"}), 0, "wrong value for 'prompt': chat message 1, content part 1 has type "
                                                "['text']"),
    (chat({"type": "text", "text": 3}), 0, "wrong type for 'prompt': chat message 1, content part 1 needs string "
                                           "'text', found int"),
    (chat({"type": "image", "url": "x.png"}), 1, "wrong value for 'prompt': chat message 1, content part 1 (image) "
                                                 "has keys type, url; expected type"),
    (chat({"type": "image_url", "image_url": "x.png"}), 1, "wrong type for 'prompt': chat message 1, content part 1 "
                                                           "needs 'image_url' holding a string 'url'"),
    (chat("just text"), 0, "wrong type for 'prompt': chat message 1, content part 1 is a str"),
    (chat({"type": "text", "text": "  "}), 0, "empty prompt"),
])
def test_content_parts_and_image_placeholders(tmp_path, prompt, n_images, reason):
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png")
    record = {**good(100), "prompt": prompt, "images": ["ok.png"] * n_images}
    out, reasons = rejected_reasons(tmp_path, [record])
    if reason is None:
        assert reasons == []
        assert out.by_source["s"][-1]["prompt"] == prompt
    else:
        assert len(reasons) == 1 and reasons[0].startswith(reason), reasons


# --- fields found without a mapping (DeepVision toolkit order) ---------------------------------

def test_prompt_and_images_fields_are_detected_in_toolkit_order_unless_mapped(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    Image.new("RGB", (5, 5)).save(tmp_path / "b.png")
    messages = [{"role": "user", "content": "From messages?"}]
    items = [{"id": "1", "answer": "1", "messages": messages, "prompt": "From prompt?", "img": "b.png",
              "image": "a.png"},
             {"id": "2", "answer": "1", "question": "From question?", "text": "From text?", "image_paths": ["a.png"]},
             {"id": "3", "answer": "1", "messages": None, "query": "From query?", "input": "From input?"},
             {"id": "4", "answer": "1", "problem": "From problem?", "input": "From input?", "images": None,
              "img": "b.png"}]
    path = write_jsonl(tmp_path / "d.jsonl", items)
    found = validate_sources([spec(path)], 0.0, tmp_path / "store").by_source["d"]
    assert [(r["prompt"], r.get("images"), sorted(r["meta"])) for r in found] == [
        (messages, [str(tmp_path / "a.png")], ["img", "prompt"]),
        ("From question?", [str(tmp_path / "a.png")], ["text"]),
        ("From query?", None, ["input", "messages"]),
        ("From problem?", [str(tmp_path / "b.png")], ["images", "input"]),
    ]
    # A mapped field always wins, also over a record that lacks it (nothing else is tried).
    mapped = validate_sources([spec(path, fields={"prompt": "input", "images": "img"})], 0.5, tmp_path / "store")
    assert [r["prompt"] for r in mapped.by_source["d"]] == ["From input?", "From input?"]
    assert [r["reason"] for r in mapped.rejected] == ["missing required field 'prompt' (source field 'input')"] * 2
    # Nothing found: the reason names every field tried.
    _, reasons = rejected_reasons(tmp_path, [{"id": "x", "answer": "1", "instruction": "Hi?"}])
    assert reasons == ["missing required field 'prompt' (looked for source fields messages, prompt, question, text, "
                       "problem, query, input)"]


def test_truncated_images_fail_also_after_data_juicer_made_pil_lenient(tmp_path):
    from PIL import ImageFile

    import data_juicer  # noqa: F401  (sets ImageFile.LOAD_TRUNCATED_IMAGES for the whole process)

    assert ImageFile.LOAD_TRUNCATED_IMAGES
    (tmp_path / "cut.png").write_bytes(image_bytes(size=(64, 64))[:-30])
    _, reasons = rejected_reasons(tmp_path, [good(100, image="cut.png")], fields={"images": "image"})
    assert reasons == [f"not an image: {tmp_path / 'cut.png'} (OSError: image file is truncated)"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES  # left as it was


def test_a_rw_pair_source_needs_its_pairs_not_the_tasks_gold(tmp_path):
    from juicebox.records import Invalid
    from juicebox.sources import RawItem, SourceSpec, to_canonical

    spec = SourceSpec("prefs", str(tmp_path / "p.jsonl"), "jsonl", task="math", kind="rw_pair")
    good = to_canonical(RawItem(1, "", {"prompt": "2+3?", "pos_answers": ["5"], "neg_answers": ["6"]}), spec,
                        image_store=None)
    assert "answer" not in good and good["meta"] == {"pos_answers": ["5"], "neg_answers": ["6"]}
    for value, reason in [({"prompt": "q", "pos_answers": ["5"]}, "'neg_answers' must be a non-empty list"),
                          ({"prompt": "q", "pos_answers": ["5", "4"], "neg_answers": ["6"]}, "must pair one to one"),
                          ({"prompt": "q", "pos_answers": ["5"], "neg_answers": [" "]}, "must be non-empty text")]:
        with pytest.raises(Invalid, match=reason):
            to_canonical(RawItem(1, "", value), spec, image_store=None)
    with pytest.raises(Invalid, match="missing required field 'answer' for task 'math'"):  # as records, the gold
        to_canonical(RawItem(1, "", {"prompt": "2+3?"}), SourceSpec("m", "m.jsonl", "jsonl", task="math"),
                     image_store=None)
