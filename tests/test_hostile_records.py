"""Property-based: hostile raw records are kept or quarantined with a reason, never lost, and every
record the validator keeps survives what later stages do with it.

Hypothesis generates source lines (odd Unicode with lone surrogates, control characters, RTL marks
and noncharacters; huge and empty fields; nested and too deeply nested structures; numbers, bools
and nulls where text is expected; NaN and Infinity; integers too long to parse; odd image values in
every form; odd content parts and prompts that place images)
and writes them into a real JSONL source, and the same items as a JSON array. They are validated
the way the ``build_pool`` rule does, and every kept record is written with ``io.write_jsonl``,
read back, rendered by the tiny model's chat template and, once for all examples, loaded by
Data-Juicer's dataset loader the way ``juicebox.dj`` hands records to Data-Juicer.
Seeded (``derandomize``) and bounded, so CI runs the same examples every time.
"""

import base64
import io
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from juicebox import dj
from juicebox.io import read_jsonl, write_jsonl
from juicebox.ledger import check
from juicebox.models import build_tokenizer
from juicebox.pool import build_pool, validate_sources
from juicebox.records import image_placeholders, prompt_messages, with_image_parts
from juicebox.sources import MAX_DEPTH, SourceError, SourceSpec

assert 8 < MAX_DEPTH < 80  # DEEP_OK is inside the limit, DEEP_TOO_DEEP beyond it

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", 150))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_BASE64 = base64.b64encode(_png()).decode()
PNG_URI = "data:image/png;base64," + PNG_BASE64

# Characters and snippets that broke, or could break, a later stage. Lone surrogates and NUL are
# never valid in a kept record; the rest is odd but valid text.
INVALID = ["\ud800", "\udfff", "\udc80", "\ud83d", "caf\udfff", "\x00", "a\x00b"]
ODD = ["\ud83d\ude00",  # a surrogate *pair*: JSON's escape of U+1F600, valid
       "\x01", "\x08", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u200b", "\u200e", "\u200f", "\u202e", "\u2066",
       "\ufeff", "\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U0001f600", "e\u0301", "\r", "\n", "\r\n", "\t", "\\",
       '"', "'", "{{ messages }}", "{% endfor %}", "<|im_end|>", "<|im_start|>", "<|endoftext|>", "<image>", " ",
       "\u00a0", "NaN", "null", "\u0645\u0631\u062d\u0628\u0627", "\u4f60\u597d"]

# Placeholders replaced in the written line by JSON that Python cannot build or dump itself.
DEEP_OK, DEEP_TOO_DEEP, DEEP_UNPARSEABLE, BIG_INT = "@@DEEP:8@@", "@@DEEP:80@@", "@@DEEP:3000@@", "@@BIGINT@@"
PLACEHOLDER = re.compile(r'"@@(DEEP:(\d+)|BIGINT)@@"')

# Odd but valid text, never blank: any code point but surrogates and NUL, and the odd snippets.
odd_texts = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20),
    st.lists(st.one_of(st.sampled_from(ODD), st.text(max_size=4)), max_size=6).map("".join),
).map(lambda text: text + "?")
# Any text: odd, blank, or not valid in a record (lone surrogates, NUL, any code point at all).
texts = st.one_of(
    odd_texts,
    st.sampled_from(["", " ", "\t\n "]),
    st.text(st.characters(), max_size=20),
    st.lists(st.one_of(st.sampled_from(INVALID + ODD), st.text(max_size=4)), min_size=1, max_size=6).map("".join),
    st.tuples(odd_texts, st.sampled_from(INVALID), odd_texts).map("".join),  # valid text with one bad character
)
huge_texts = st.sampled_from(["word " * 4_000, "\u202e" * 20_000 + "x", "9" * 20_000])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=2**80),
                    st.floats(), texts)
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                      st.dictionaries(texts, kids, max_size=3)), max_leaves=8)
not_text = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), values)

# Content parts: well-formed text and image parts (Parquet's null keys included), and odd ones.
content_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.sampled_from([{"type": "image"}, {"type": "image", "text": None},
                     {"type": "image_url", "image_url": {"url": "x"}}, {"type": "image_url", "image_url": "x"},
                     {"type": "audio"}, {"text": "no type"}, {"type": None}]),
    st.fixed_dictionaries({"type": st.one_of(texts, not_text)}, optional={"text": st.one_of(texts, not_text)}),
    not_text,
)
messages = st.fixed_dictionaries(
    {"role": st.one_of(st.sampled_from(["user", "assistant", "system"]),
                       st.sampled_from(["robot", "", "USER", "tool", "human", "\u202euser"]), texts, not_text),
     "content": st.one_of(odd_texts, texts, huge_texts, not_text, st.lists(content_parts, max_size=3))},
    optional={"name": odd_texts})
chat = st.lists(messages, max_size=3)
image_values = st.one_of(
    st.sampled_from(["", " ", "ok.png", "missing.png", "fake.png", "sub/../ok.png", "/nonexistent/x.jpg", ".",
                     "x" * 5000 + ".png", "nul\x00.png", "\ud800.png", "data:image/png;base64,aGVsbG8=", PNG_URI,
                     "data:text/plain;base64,aGk=", "data:image/png", "data:image/png;base64,***", "ok.png\n",
                     PNG_BASE64, PNG_BASE64[:-12], "aGVsbG8=", PNG_URI[:-12]]),
    st.fixed_dictionaries({}, optional={"bytes": st.one_of(st.none(), st.sampled_from(["iVBORw0KGgo=", PNG_BASE64]),
                                                           st.integers()),
                                        "path": st.one_of(st.none(), st.sampled_from(["ok.png", "missing.png", ""]),
                                                          st.integers())}),
    not_text,
)
# Prompts that place images themselves: right for a record with as many images, wrong for others.
placing = st.sampled_from(["<image>\nWhat is it?", "Compare <image> and <image>.", "<image><image><image>",
                           [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi?"}]}]])
# Hostile values per field: the field's own odd cases, then anything.
hostile = {
    "id": st.one_of(texts, st.integers(), st.floats(), st.booleans(), not_text),
    "question_id": st.one_of(texts, st.integers(), st.none()),
    "task": st.one_of(st.sampled_from(["math", "caption", "chat", "vqa", ""]), texts, not_text),
    "prompt": st.one_of(texts, huge_texts, chat, not_text, placing),
    "question": st.one_of(texts, huge_texts, chat, not_text, placing),
    "answer": st.one_of(texts, huge_texts, st.floats(), st.booleans(), not_text),
    "references": st.one_of(texts, st.lists(st.one_of(texts, st.integers()), max_size=3), not_text),
    "images": st.one_of(image_values, st.lists(image_values, max_size=3)),
    "meta_value": values,
    "deep": st.sampled_from([DEEP_OK, DEEP_TOO_DEEP, DEEP_UNPARSEABLE]),
    "big": st.just(BIG_INT),
}
# A plausible record (odd but valid text) with one or two of its fields replaced by hostile values.
plausible = st.fixed_dictionaries(
    {"prompt": st.one_of(odd_texts, huge_texts,
                         st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                                         "content": odd_texts}), min_size=1, max_size=3)),
     "question": odd_texts,
     "task": st.sampled_from(["math", "caption", "chat"]),
     "answer": st.one_of(odd_texts, st.integers(), st.floats(allow_nan=False, allow_infinity=False)),
     "references": st.lists(odd_texts, min_size=1, max_size=2)},
    optional={"id": st.one_of(odd_texts, st.integers()), "question_id": odd_texts,
              "images": st.sampled_from(["ok.png", ["ok.png", PNG_URI], {"bytes": None, "path": "ok.png"},
                                         [PNG_BASE64], {"bytes": PNG_BASE64, "path": None}]),
              "meta_value": values.filter(lambda v: "\\u0000" not in json.dumps(v)), "deep": st.just(DEEP_OK)})
# Which fields to replace: the prompt and the images more often than the rest.
changes = st.lists(st.sampled_from(sorted(hostile) + ["prompt", "prompt", "question", "images", "images"]),
                   min_size=1, max_size=3, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({key: hostile[key] for key in keys}))
changed = st.builds(lambda base, new: {**base, **new}, plausible, changes)
records = st.sampled_from([plausible, changed, changed]).flatmap(lambda kind: kind)
broken_lines = st.sampled_from([b'{"id": "x", "prompt"', b"{'prompt': 'single quotes'}", b'{"prompt": "a",}',
                                b'{"prompt": tru}', b"[1, 2]", b'"text"', b"null", b"42", b"NaN", b"{}", b"   ",
                                b"\xff\xfe{}", b'{"prompt": "caf\xe9"}', b'{"prompt": "a", "prompt": "b"}',
                                b'{"prompt": "\xed\xa0\x80"}'])


def _line(record: dict, ascii_only: bool) -> bytes:
    text = json.dumps(record, ensure_ascii=ascii_only)  # NaN and Infinity are written as Python does

    def expand(match):
        if match.group(1) == "BIGINT":
            return "9" * 5000
        depth = int(match.group(2))
        return "[" * depth + "]" * depth

    # Raw lone surrogates (ensure_ascii off) become bytes that are not UTF-8: a line the reader quarantines.
    return PLACEHOLDER.sub(expand, text).encode("utf-8", "surrogatepass")


# Mostly ASCII-escaped lines (lone surrogates as \ud800 escapes); some raw UTF-8 (lone surrogates
# then make the line invalid UTF-8); some lines that are not records at all.
record_lines = st.builds(_line, records, st.sampled_from([True, True, True, False]))
lines = st.sampled_from([record_lines] * 5 + [broken_lines]).flatmap(lambda kind: kind)
sources = st.fixed_dictionaries({
    "lines": st.lists(lines, min_size=1, max_size=8),
    "task": st.sampled_from(["chat", "math", "caption", None]),
    "fields": st.sampled_from([{}, {"id": "question_id", "prompt": "question"}]),
})


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(["What is 2 plus 2? 4", "Describe the image.", "hello world"], vocab_size=300)


def _counted_lines(raw_lines: list[bytes]) -> list[int]:
    """Line numbers the reader counts (it skips blank lines)."""
    return [n for n, raw in enumerate(raw_lines, start=1) if raw.decode("utf-8", errors="replace").strip()]


def _no_nan(text: str):
    raise AssertionError(f"{text} written: not JSON")


def _reasons(rejected: list[dict]) -> list[str]:
    return [r["reason"].split(" (first seen at")[0] for r in rejected]


def _validate_jsonl(folder: Path, source: dict, seen: Counter):
    raw_lines = source["lines"]
    path = folder / "s.jsonl"
    path.write_bytes(b"\n".join(raw_lines) + b"\n")
    spec = SourceSpec.from_config({"path": str(path), "task": source["task"], "fields": source["fields"]})
    counted = _counted_lines(raw_lines)
    if not counted:
        with pytest.raises(SourceError, match="holds no records"):
            validate_sources([spec], max_rejected_fraction=1.0, image_store=folder / "store")
        return None
    validated = validate_sources([spec], max_rejected_fraction=1.0, image_store=folder / "store")
    kept, rejected = validated.by_source["s"], validated.rejected
    # Every record is kept or quarantined with its reason and line, none twice, none lost.
    assert validated.read == len(counted) == len(kept) + len(rejected)
    assert all(isinstance(r["reason"], str) and r["reason"] for r in rejected)
    assert len({r["line"] for r in rejected}) == len(rejected) and {r["line"] for r in rejected} <= set(counted)
    seen["kept"] += len(kept)
    seen.update(_family(reason) for reason in _reasons(rejected))
    return validated


def _family(reason: str) -> str:
    """The kind of a reason, without its field, values and positions."""
    for family in FAMILIES + RARE:
        if family in reason:
            return family
    return re.split(r"[:(]", reason)[0].strip()


# Kinds of reason the generated sources must provoke (so that the generator stays hostile).
FAMILIES = ["lone surrogate", "NUL character", "nested deeper than", "nested too deeply to parse", "Exceeds the limit",
            "not valid UTF-8 (byte", "unparseable JSON", "not an object", "wrong type for 'prompt'",
            "wrong type for 'images'"]
# Rarer kinds, named in the printed verdicts (test_sources.py has a case for each).
RARE = ["wrong type for 'answer'", "image not found", "empty prompt", "has role", "chat messages need",
        "wrong type for 'id'", "not an image", "empty image path", "duplicate id", "missing required field",
        "content part", "image placeholders do not match"]


def _check_json_array(folder: Path, source: dict, jsonl) -> None:
    """The same items as one JSON array: the same verdicts, or the whole file refused naming it."""
    items = [raw for raw in source["lines"] if raw.strip()]
    try:
        for raw in items:
            json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON or too deep to parse: no element of an array
        return
    path = folder / "a.json"
    path.write_bytes(b"[\n" + b",\n".join(items) + b"\n]\n")
    spec = SourceSpec.from_config({"path": str(path), "task": source["task"], "fields": source["fields"]})
    try:
        validated = validate_sources([spec], max_rejected_fraction=1.0, image_store=folder / "store")
    except SourceError as err:
        assert str(path) in str(err)
        assert any("nested too deeply" in r or "Exceeds the limit" in r for r in _reasons(jsonl.rejected)), err
        return
    assert len(validated.by_source["a"]) == len(jsonl.by_source["s"])
    assert _reasons(validated.rejected) == _reasons(jsonl.rejected)


def test_hostile_records_are_kept_safely_or_quarantined(tokenizer):
    dj_rows: list[dict] = []
    seen: Counter = Counter()

    @settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(sources)
    def check_source(source):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            Image.new("RGB", (4, 4)).save(folder / "ok.png")
            (folder / "fake.png").write_text("not a png")
            validated = _validate_jsonl(folder, source, seen)
            if validated is None:
                return
            _check_json_array(folder, source, validated)
            # What build_pool does next: the pool and the quarantine are written, and read back unchanged.
            pool, stage = build_pool(validated, None, [], seed=0)
            check({"stages": {"pool": stage}})
            write_jsonl(folder / "pool.jsonl", pool)
            write_jsonl(folder / "rejected.jsonl", validated.rejected)
            assert read_jsonl(folder / "pool.jsonl") == pool
            assert read_jsonl(folder / "rejected.jsonl") == validated.rejected
            for text in (folder / "pool.jsonl").read_bytes().decode("utf-8").splitlines():
                json.loads(text, parse_constant=_no_nan)  # strict JSON: no NaN/Infinity
            for record in pool:
                assert record["id"] and isinstance(record["id"], str)
                # Every image is a file, inline ones written to the store; a prompt places all or none.
                assert all(isinstance(i, str) and Path(i).is_file() for i in record.get("images", []))
                assert image_placeholders(record["prompt"]) in (0, len(record.get("images", [])))
                # The chat template renders the prompt (with and without a system turn), with its images
                # as content parts, as the model stages give it to a vision-language model.
                for system in (None, "Be brief."):
                    messages = with_image_parts(prompt_messages(record["prompt"], system),
                                                len(record.get("images", [])))
                    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                        return_dict=False)
                    assert len(ids) > 0
            dj_rows.extend(dj.dj_view(pool, "text"))

    check_source()
    print("verdicts of the generated records:", dict(seen.most_common()))
    assert seen["kept"] == len(dj_rows) > 50, "too few records kept for the later checks to mean anything"
    assert [family for family in FAMILIES if not seen[family]] == [], "the generator no longer provokes these"
    _check_data_juicer_loads(dj_rows)


def _check_data_juicer_loads(rows: list[dict]) -> None:
    """Data-Juicer's loader (the one ``dj.process``/``dj.analyze`` use) reads every kept record back."""
    from data_juicer.core.data.dataset_builder import DatasetBuilder

    with tempfile.TemporaryDirectory() as parent, dj._scratch(parent) as work:  # closes Data-Juicer's log files
        data = Path(work) / "input.jsonl"
        recipe = Path(work) / "recipe.yaml"
        recipe.write_text("process:\n  - text_length_filter: {min_len: 0}\n")
        write_jsonl(data, rows)
        cfg = dj.load_config(str(recipe), str(data), work, np=1)
        loaded = DatasetBuilder(cfg, executor_type="default").load_dataset().to_list()
    assert [(r["id"], r["text"]) for r in loaded] == [(r["id"], r["text"]) for r in rows]
    # Image paths come back as given: absolute paths (Data-Juicer's loader joins any other to the
    # dataset's folder), inline images having been written to files by validation.
    assert all(Path(i).is_absolute() for r in rows for i in r["images"])
    assert [r["images"] for r in loaded] == [r["images"] for r in rows]
