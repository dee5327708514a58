"""Read data sources (JSONL, JSON, Parquet, CSV, TSV) and validate them into canonical records.

A JSON file is one array of records, or an object holding the array under the first of
``JSON_LIST_KEYS`` it has (TextVQA's ``data``; VQAv2's ``questions`` and ``annotations``); such
an object's records are numbered (``item 3``), since the published files are one line. A TSV
file is VLMEvalKit's layout (MMStar, MMBench, POPE, HallusionBench ...): tab-separated with a
header, an empty or ``nan`` cell missing (as pandas reads it), a cell written as a list
(``['a', 'b']``, Python's or JSON's) a list, and the ``image`` column base64 images, decoded to
bytes here; an ``image`` cell of digits only names the ``index`` of the row that holds the
image (MMBench's rows of one picture share it).

Every item read keeps where it came from (file and line, or row for Parquet) and its raw text,
so a record that fails validation can be quarantined with its reason instead of vanishing.

A record that passes validation is safe for every later stage: every value in it (the whole
record, ``meta`` included) has a JSON form that is written, read back and handed to Data-Juicer
and to a tokenizer unchanged. Text that cannot be encoded as UTF-8 (a lone surrogate, which a
JSON ``\\ud800`` escape produces), NUL characters, keys that are not text, nesting deeper than
``MAX_DEPTH`` and binary data (outside the images) are reasons to quarantine; NaN and Infinity
(which JSON does not have) are read as null; Parquet's dates, times and decimals become text, its
durations seconds.

Which source field holds which canonical field: a source's ``fields:`` entry always wins (a field
it names that a record lacks is missing, nothing else is tried). Without an entry, ``prompt`` and
``images`` are found the way the DeepVision toolkit finds them, in each record: the first of
``AUTO_FIELDS`` that the record has (with a value that is not null) —
``messages`` > ``prompt`` > ``question`` > ``text`` > ``problem`` > ``query`` > ``input`` for the
prompt, ``images`` > ``image`` > ``image_path`` > ``image_paths`` > ``img`` for the images. The
other canonical fields are read under their own names. Source fields not used go to ``meta``.

A prompt is text or chat messages; a message's content is text or a list of OpenAI-style parts
(``{type: text, text}``, ``{type: image}``, ``{type: image_url, image_url: {url}}``; keys whose
value is null are ignored, as Parquet's struct columns give every part every key). Images are
normalised by ``images.normalise_image`` (paths, data URIs, base64 text, ``{bytes, path}``), the
embedded ones written to the pool's image store. A prompt that places images itself (``<image>``
in its text, image parts) must place exactly as many as the record has; one that places none
gets them before its text later (``records.with_image_parts``).
"""

from __future__ import annotations

import ast
import csv
import datetime
import decimal
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .images import base64_bytes, normalise_image
from .records import IMAGE_PLACEHOLDER, Invalid, content_text, image_placeholders, shown

CANONICAL_KEYS = ("id", "task", "prompt", "answer", "references", "images")
# The formats of the pool's sources; benchmarks also read VLMEvalKit's TSVs ("tsv").
FORMATS = ("jsonl", "json", "parquet", "csv")
# Keys under which a JSON object holds its records, tried in order (TextVQA; VQAv2's two files).
JSON_LIST_KEYS = ("data", "questions", "annotations")
# Cells pandas (and so VLMEvalKit) reads as NaN in a TSV: the value is missing.
TSV_MISSING = ("", "nan", "NaN")
# An image cell this short, of digits only, is the index of the row holding the image (VLMEvalKit's rule: <= 64).
IMAGE_REFERENCE_LENGTH = 64
# Fields a task cannot do without, beyond prompt (a record without an id gets one from its place).
TASK_REQUIRED = {"math": ("answer",), "caption": ("references",), "vqa": ("answer",), "yes_no": ("answer",),
                 "mcq": ("answer",)}
# Roles a chat prompt may use: the ones every chat template, OpenAI server and the pairs' exports know.
CHAT_ROLES = ("system", "user", "assistant")
# Deepest nesting of lists and objects a record may have (the record itself is level 1): deeper
# structures come near Python's recursion limit when a later stage writes them.
MAX_DEPTH = 64
# Source fields tried, in order, for a canonical field the source's ``fields:`` does not map (the
# DeepVision toolkit's detection); the first one a record has with a value that is not null wins.
AUTO_FIELDS = {"prompt": ("messages", "prompt", "question", "text", "problem", "query", "input"),
               "images": ("images", "image", "image_path", "image_paths", "img")}
# Content parts a chat message may hold: type -> the other keys it must have.
CONTENT_PARTS = {"text": ("text",), "image": (), "image_url": ("image_url",)}


class SourceError(Exception):
    """A source that cannot be used at all (missing, unreadable, wrong format, too many rejects)."""


@dataclass
class RawItem:
    """One item as read from a source, before validation."""

    line: int
    raw: str
    value: Any = None
    error: str | None = None
    unit: str = "line"


@dataclass
class SourceSpec:
    """One entry of ``sources:`` in the config; ``fields`` holds its explicit field mapping."""

    name: str
    path: str
    format: str
    task: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    image_root: str | None = None
    kind: str = "records"

    @classmethod
    def from_config(cls, entry: dict) -> "SourceSpec":
        """Build a spec from a validated config entry; the format defaults to the suffix."""
        path = entry["path"]
        fmt = entry.get("format") or Path(path).suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise SourceError(f"source {entry.get('name', path)!r}: cannot tell the format of {path}; "
                              f"set format: to one of {', '.join(FORMATS)}")
        return cls(name=entry.get("name") or Path(path).stem, path=path, format=fmt,
                   task=entry.get("task"), fields=dict(entry.get("fields") or {}), image_root=entry.get("image_root"),
                   kind=entry.get("kind") or "records")

    def candidates(self, key: str) -> tuple[str, ...]:
        """Source fields that may hold canonical field ``key``, in order (module docstring)."""
        if key in self.fields:
            return (self.fields[key],)
        return AUTO_FIELDS.get(key, (key,))

    def image_folder(self) -> Path:
        """The folder relative image paths are resolved against."""
        return Path(self.image_root) if self.image_root else Path(self.path).parent


def check_readable(spec: SourceSpec) -> None:
    """Fail before any work if the source file is missing or unreadable."""
    path = Path(spec.path)
    if not path.is_file():
        raise SourceError(f"source {spec.name!r}: file not found: {spec.path}")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        raise SourceError(f"source {spec.name!r}: cannot read {spec.path}: {err}") from err


def read_items(spec: SourceSpec) -> Iterator[RawItem]:
    """Yield every item of a source with its location; parse errors become items with ``error``."""
    reader = {"jsonl": _read_jsonl, "json": _read_json, "parquet": _read_parquet, "csv": _read_csv,
              "tsv": _read_tsv}
    yield from reader[spec.format](Path(spec.path))


def _read_jsonl(path: Path) -> Iterator[RawItem]:
    with open(path, "rb") as handle:
        for lineno, raw_line in enumerate(handle, start=1):
            try:
                text = raw_line.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                text = raw_line.decode("utf-8", errors="replace").rstrip("\r\n")
                yield RawItem(lineno, text, error=f"not valid UTF-8 (byte {err.start} of the line)")
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                yield RawItem(lineno, text, error=f"unparseable JSON: {err.msg} at column {err.colno}")
            except ValueError as err:  # an integer of more than 4300 digits
                yield RawItem(lineno, text, error=f"unparseable JSON: {err}")
            except RecursionError:
                yield RawItem(lineno, text, error=_too_deep("the line"))
            else:
                yield RawItem(lineno, text, value)


def _read_text(path: Path) -> str:
    """A whole text source; invalid UTF-8 fails the source naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SourceError(f"{path}:{line}: not valid UTF-8 (byte {err.start} of the file)") from err


def _read_json(path: Path) -> Iterator[RawItem]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); a JSON source must be "
                          "one array of objects") from err
    except ValueError as err:  # an integer of more than 4300 digits
        raise SourceError(f"{path}: not valid JSON ({err})") from err
    except RecursionError as err:
        raise SourceError(f"{path}: not valid JSON ({_too_deep('the file')})") from err
    if isinstance(data, dict):
        yield from _json_object_items(path, data)
    elif isinstance(data, list):
        yield from _json_array_items(text, data)
    else:
        raise SourceError(f"{path}: a JSON source must be an array of objects, found {type(data).__name__}")


def _json_array_items(text: str, data: list) -> Iterator[RawItem]:
    """The array's elements, each with the line it starts on."""
    # Walk the array again with raw_decode to know where each element starts; count the lines
    # from the previous element on (a one-line file of many elements would be quadratic).
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    line, counted = 1, 0
    for _ in range(len(data)):
        while text[pos] in " \t\r\n,":
            pos += 1
        value, end = decoder.raw_decode(text, pos)
        line, counted = line + text.count("\n", counted, pos), pos
        yield RawItem(line, text[pos:end], value)
        pos = end


def _json_object_items(path: Path, data: dict) -> Iterator[RawItem]:
    """The records an object holds under the first of ``JSON_LIST_KEYS`` it has, numbered from 1."""
    key = next((key for key in JSON_LIST_KEYS if isinstance(data.get(key), list)), None)
    if key is None:
        raise SourceError(f"{path}: a JSON source must be an array of objects, or an object holding them under "
                          f"{', '.join(map(repr, JSON_LIST_KEYS))}; found an object with keys "
                          f"{shown(', '.join(map(str, data)) or 'none')}")
    for number, value in enumerate(data[key], start=1):
        yield RawItem(number, json.dumps(value, ensure_ascii=False), value, unit="item")


def _read_parquet(path: Path) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise SourceError(f"{path}: not a readable Parquet file: {err}") from err
    try:
        rows = table.to_pylist()
    except UnicodeDecodeError:  # a string column holding bytes that are not UTF-8: find the rows
        rows = None
    for row in range(1, table.num_rows + 1):
        if rows is not None:
            value = rows[row - 1]
        else:
            try:
                value = table.slice(row - 1, 1).to_pylist()[0]
            except UnicodeDecodeError as err:
                yield RawItem(row, "", error=f"not valid UTF-8 ({err.reason})", unit="row")
                continue
        yield RawItem(row, json.dumps(value, ensure_ascii=False, default=str), value, unit="row")


def _read_csv(path: Path) -> Iterator[RawItem]:
    yield from _read_delimited(path, ",", "CSV", _csv_cell)


def _read_tsv(path: Path) -> Iterator[RawItem]:
    """VLMEvalKit's TSV (module docstring): rows with their image references resolved and their
    images decoded."""
    rows = list(_read_delimited(path, "\t", "TSV", _tsv_cell))
    for item in _resolve_image_references(rows):
        yield _decoded_images(item) if item.error is None else item


def _read_delimited(path: Path, delimiter: str, kind: str, read_cell: Callable[[str], Any]) -> Iterator[RawItem]:
    """Rows of a CSV or TSV file with a header, each with the line it starts on; blank rows skipped."""
    # A cell may hold a whole base64 image (VLMEvalKit's TSVs), far past csv's default limit of 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    start = reader.line_num + 1
    for row in reader:
        raw = delimiter.join(row)
        if not any(cell.strip() for cell in row):
            start = reader.line_num + 1
            continue
        if len(row) != len(header):
            yield RawItem(start, raw, error=f"malformed {kind} row: {len(row)} columns, header has {len(header)}")
        else:
            yield RawItem(start, raw, {key: read_cell(cell) for key, cell in zip(header, row)})
        start = reader.line_num + 1


def _csv_cell(cell: str) -> Any:
    """CSV cells are text; a cell written as a JSON list (references, images) is read as a list."""
    stripped = cell.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):  # not JSON after all: the cell is text
            return cell
    return cell


def _tsv_cell(cell: str) -> Any:
    """A TSV cell: missing (None) when pandas reads it as NaN; a list when it is written as one
    (VLMEvalKit writes Python's ``str(list)``: answers, several images); text otherwise."""
    stripped = cell.strip()
    if stripped in TSV_MISSING:
        return None
    if stripped.startswith("[") and stripped.endswith("]"):
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError):  # not a literal after all: the cell is text
            return cell
        return value if isinstance(value, list) else cell
    return cell


def _is_image_reference(cell: Any) -> bool:
    return isinstance(cell, str) and len(cell) <= IMAGE_REFERENCE_LENGTH and cell.isascii() and cell.isdigit()


def _resolve_image_references(rows: list[RawItem]) -> Iterator[RawItem]:
    """Rows whose ``image`` names another row's ``index`` get that row's image."""
    images = {str(row.value.get("index")): row.value.get("image") for row in rows
              if row.error is None and not _is_image_reference(row.value.get("image"))}
    for row in rows:
        cell = row.value.get("image") if row.error is None else None
        if not _is_image_reference(cell):
            yield row
        elif images.get(cell) is None:
            yield replace(row, value=None, error=f"column 'image' refers to the row of index {cell}, but no row of "
                                                 "that index has an image")
        else:
            yield replace(row, value={**row.value, "image": images[cell]})


def _decoded_images(row: RawItem) -> RawItem:
    """The row with its ``image`` cell (base64 text, or a list of them) decoded to bytes."""
    cell = row.value.get("image")
    if cell is None:
        return row
    images = cell if isinstance(cell, list) else [cell]
    if not all(isinstance(image, str) for image in images):
        return replace(row, value=None, error="column 'image': expected base64 text of an image, or a list of them")
    try:
        decoded = [base64_bytes(image, "a cell") for image in images]
    except Invalid as err:
        return replace(row, value=None, error=f"column 'image': {err}")
    return replace(row, value={**row.value, "image": decoded if isinstance(cell, list) else decoded[0]})


def _too_deep(what: str) -> str:
    return (f"nested too deeply to parse ({what} nests lists or objects deeper than the JSON parser allows; "
            f"a record may have {MAX_DEPTH} levels)")


def derived_id(spec: SourceSpec, item: RawItem) -> str:
    """The id of a record whose source gives none: ``<source name>:<line>`` (``<row>`` for Parquet)."""
    return f"{spec.name}:{item.line}"


def to_canonical(item: RawItem, spec: SourceSpec, *, image_store: Path | None) -> dict:
    """Map one parsed item onto the canonical record, or raise ``Invalid`` with the reason.

    Embedded images are written to ``image_store`` (``images.normalise_image``)."""
    if item.error:
        raise Invalid(item.error)
    raw = item.value
    if not isinstance(raw, dict):
        raise Invalid(f"not an object: found {type(raw).__name__}")
    # The source field of each canonical field; None where the record has none of the candidates.
    src = {key: next((name for name in spec.candidates(key) if raw.get(name) is not None), None)
           for key in CANONICAL_KEYS}
    value = json_safe(raw, bytes_under=src["images"])

    def get(key: str, required: bool = False) -> Any:
        found = src[key]
        if found is None or value[found] is None or value[found] == "" and key != "prompt":
            if required:
                tried = spec.candidates(key)
                where = (f"source field {tried[0]!r}" if len(tried) == 1
                         else f"looked for source fields {', '.join(tried)}")
                raise Invalid(f"missing required field {key!r} ({where})")
            return None
        return value[found]

    rec_id = get("id")
    if rec_id is None:
        rec_id = derived_id(spec, item)
    if isinstance(rec_id, bool) or not isinstance(rec_id, (str, int)):
        raise Invalid(f"wrong type for 'id': expected string or integer, found {type(rec_id).__name__}")
    task = get("task") or spec.task
    if task is None:
        raise Invalid(f"missing required field 'task' (source field {spec.candidates('task')[0]!r}, and the source "
                      "sets no task:)")
    if not isinstance(task, str):
        raise Invalid(f"wrong type for 'task': expected string, found {type(task).__name__}")
    prompt = _check_prompt(get("prompt", required=True))

    record: dict[str, Any] = {"id": str(rec_id), "task": task, "prompt": prompt}
    answer = get("answer")
    if answer is not None:
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise Invalid(f"wrong type for 'answer': expected string or number, found {type(answer).__name__}")
        record["answer"] = str(answer)
    references = get("references")
    if references is not None:
        if isinstance(references, str):
            references = [references]
        if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
            raise Invalid("wrong type for 'references': expected a list of strings")
        references = [r for r in references if r.strip()]
        record["references"] = references
    if spec.kind == "rw_pair":
        _check_pairs(value)
    for key in TASK_REQUIRED.get(task, ()) if spec.kind == "records" else ():
        if not record.get(key):
            raise Invalid(f"missing required field {key!r} for task {task!r} (source field "
                          f"{spec.candidates(key)[0]!r})")
    images = get("images")
    if isinstance(images, (str, dict, bytes)):
        images = [images]
    if images is not None and not isinstance(images, list):
        raise Invalid(f"wrong type for 'images': expected an image or a list of images, found {type(images).__name__}")
    _check_placeholders(prompt, len(images or []))
    if images is not None:
        record["images"] = [normalise_image(image, spec.image_folder(), image_store) for image in images]
    mapped = {found for found in src.values() if found is not None}
    record["source"] = spec.path
    record["meta"] = {k: v for k, v in value.items() if k not in mapped}
    return record


def _check_pairs(value: dict) -> None:
    """ReaL's rw_pair fields: ``pos_answers`` and ``neg_answers``, lists of equal length (at least
    one pair) of non-empty strings."""
    pos, neg = value.get("pos_answers"), value.get("neg_answers")
    for name, answers in (("pos_answers", pos), ("neg_answers", neg)):
        if not isinstance(answers, list) or not answers:
            raise Invalid(f"rw_pair: {name!r} must be a non-empty list of answers, found {shown(repr(answers))}")
        if not all(isinstance(text, str) and text.strip() for text in answers):
            raise Invalid(f"rw_pair: every answer of {name!r} must be non-empty text")
    if len(pos) != len(neg):
        raise Invalid(f"rw_pair: pos_answers ({len(pos)}) and neg_answers ({len(neg)}) must pair one to one")


# --- every value of a record has a JSON form -----------------------------------------------

def json_safe(value: dict, bytes_under: str | None = None) -> dict:
    """A copy of a parsed record in which every value has a JSON form that UTF-8, Data-Juicer and
    tokenizers accept, or ``Invalid`` naming the field (its source name, ``a.b[2]`` inside).

    Quarantined: text that is not valid UTF-8 (lone surrogates), text with a NUL character, a key
    that is not text, lists/objects nested deeper than ``MAX_DEPTH``, binary data (allowed only
    under the field ``bytes_under``, the images, whose own check explains it) and values of any
    other type. Normalised: NaN and +-Infinity become null; dates and times ISO 8601 text,
    decimals their exact text, durations seconds (Parquet's types)."""
    return _safe(value, "", 1, bytes_under)


def _safe(value: Any, where: str, depth: int, bytes_under: str | None) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        _check_text(value, f"field {where}")
        return value
    if isinstance(value, (dict, list, tuple)):
        if depth > MAX_DEPTH:
            raise Invalid(f"field {where}: nested deeper than {MAX_DEPTH} levels of lists or objects")
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise Invalid(f"{_in(where)}: a field name is not text ({type(key).__name__} {shown(repr(key))})")
                _check_text(key, f"{_in(where)}: field name '{shown(key)}'")
                out[key] = _safe(item, f"{where}.{shown(key)}" if where else shown(key), depth + 1,
                                 bytes_under if where else (key if key == bytes_under else None))
            return out
        return [_safe(item, f"{where}[{index}]", depth + 1, bytes_under) for index, item in enumerate(value)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        if bytes_under is not None:
            return bytes(value)
        raise Invalid(f"field {where}: binary data ({len(value)} bytes) has no JSON form")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    raise Invalid(f"field {where}: a {type(value).__name__} value has no JSON form")


def _in(where: str) -> str:
    return f"field {where}" if where else "record"


def _check_text(text: str, label: str) -> None:
    """Refuse text that cannot be written as UTF-8 (lone surrogates) or that holds a NUL character."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise Invalid(f"{label}: text is not valid UTF-8 (lone surrogate U+{ord(text[err.start]):04X} at "
                      f"character {err.start})") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise Invalid(f"{label}: text contains a NUL character (U+0000) at character {nul}")


def _check_prompt(prompt: Any) -> Any:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise Invalid("empty prompt")
        return prompt
    if isinstance(prompt, list) and prompt:
        for turn in prompt:
            if not (isinstance(turn, dict) and isinstance(turn.get("role"), str)
                    and isinstance(turn.get("content"), (str, list))):
                raise Invalid("wrong type for 'prompt': chat messages need string 'role' and 'content' "
                              "(text or a list of content parts)")
        for number, turn in enumerate(prompt, start=1):
            if turn["role"] not in CHAT_ROLES:
                raise Invalid(f"wrong value for 'prompt': chat message {number} has role '{shown(turn['role'])}'; "
                              f"expected one of {', '.join(CHAT_ROLES)}")
            if isinstance(turn["content"], list):
                for index, part in enumerate(turn["content"], start=1):
                    _check_part(part, f"chat message {number}, content part {index}")
        if not any(content_text(turn["content"]).strip() for turn in prompt) and not image_placeholders(prompt):
            raise Invalid("empty prompt")
        return prompt
    if isinstance(prompt, list):
        raise Invalid("empty prompt")
    raise Invalid(f"wrong type for 'prompt': expected string or chat messages, found {type(prompt).__name__}")


def _check_part(part: Any, where: str) -> None:
    """One content part: ``{type: text, text}``, ``{type: image}`` or ``{type: image_url, image_url:
    {url}}``; keys whose value is null are ignored (Parquet gives every struct field to every part)."""
    if not isinstance(part, dict):
        raise Invalid(f"wrong type for 'prompt': {where} is a {type(part).__name__}, expected an object")
    given = {key: value for key, value in part.items() if value is not None}
    kind = given.get("type")
    if not isinstance(kind, str) or kind not in CONTENT_PARTS:
        raise Invalid(f"wrong value for 'prompt': {where} has type {shown(repr(kind))}; expected one of "
                      f"{', '.join(CONTENT_PARTS)}")
    if set(given) != {"type", *CONTENT_PARTS[kind]}:
        raise Invalid(f"wrong value for 'prompt': {where} ({kind}) has keys {', '.join(sorted(map(shown, given)))}; "
                      f"expected {', '.join(('type',) + CONTENT_PARTS[kind])}")
    if kind == "text" and not isinstance(given["text"], str):
        raise Invalid(f"wrong type for 'prompt': {where} needs string 'text', found {type(given['text']).__name__}")
    if kind == "image_url" and not (isinstance(given["image_url"], dict)
                                    and isinstance(given["image_url"].get("url"), str)):
        raise Invalid(f"wrong type for 'prompt': {where} needs 'image_url' holding a string 'url'")


def _check_placeholders(prompt: Any, n_images: int) -> None:
    """A prompt that places images (``<image>`` in its text, image parts) places all of them."""
    placed = image_placeholders(prompt)
    if placed and placed != n_images:
        raise Invalid(f"image placeholders do not match the images: the prompt places {placed} ('{IMAGE_PLACEHOLDER}' "
                      f"in its text, image content parts) but the record has {n_images} image(s)")
