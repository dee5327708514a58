"""Read data sources (JSONL, JSON array, Parquet, CSV) and validate them into canonical records.

Every item read keeps where it came from (file and line, or row for Parquet) and its raw text,
so a record that fails validation can be quarantined with its reason instead of vanishing.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

CANONICAL_KEYS = ("id", "task", "prompt", "answer", "references", "images")
FORMATS = ("jsonl", "json", "parquet", "csv")
# Fields a task cannot do without, beyond id and prompt.
TASK_REQUIRED = {"math": ("answer",), "caption": ("references",)}


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
    """One entry of ``sources:`` in the config, with its field mapping resolved."""

    name: str
    path: str
    format: str
    task: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    image_root: str | None = None

    @classmethod
    def from_config(cls, entry: dict) -> "SourceSpec":
        """Build a spec from a validated config entry; the format defaults to the suffix."""
        path = entry["path"]
        fmt = entry.get("format") or Path(path).suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise SourceError(f"source {entry.get('name', path)!r}: cannot tell the format of {path}; "
                              f"set format: to one of {', '.join(FORMATS)}")
        fields = {key: key for key in CANONICAL_KEYS}
        fields.update(entry.get("fields") or {})
        return cls(name=entry.get("name") or Path(path).stem, path=path, format=fmt,
                   task=entry.get("task"), fields=fields, image_root=entry.get("image_root"))


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
    reader = {"jsonl": _read_jsonl, "json": _read_json_array, "parquet": _read_parquet, "csv": _read_csv}
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
                yield RawItem(lineno, text, json.loads(text))
            except json.JSONDecodeError as err:
                yield RawItem(lineno, text, error=f"unparseable JSON: {err.msg} at column {err.colno}")


def _read_text(path: Path) -> str:
    """A whole text source; invalid UTF-8 fails the source naming the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SourceError(f"{path}:{line}: not valid UTF-8 (byte {err.start} of the file)") from err


def _read_json_array(path: Path) -> Iterator[RawItem]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SourceError(f"{path}:{err.lineno}: not valid JSON ({err.msg}); a JSON source must be "
                          "one array of objects") from err
    if not isinstance(data, list):
        raise SourceError(f"{path}: a JSON source must be an array of objects, found {type(data).__name__}")
    # Walk the array again with raw_decode to know the line each element starts on.
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    for _ in range(len(data)):
        while text[pos] in " \t\r\n,":
            pos += 1
        value, end = decoder.raw_decode(text, pos)
        yield RawItem(text.count("\n", 0, pos) + 1, text[pos:end], value)
        pos = end


def _read_parquet(path: Path) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise SourceError(f"{path}: not a readable Parquet file: {err}") from err
    for row, value in enumerate(table.to_pylist(), start=1):
        yield RawItem(row, json.dumps(value, ensure_ascii=False, default=str), value, unit="row")


def _read_csv(path: Path) -> Iterator[RawItem]:
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    start = reader.line_num + 1
    for row in reader:
        raw = ",".join(row)
        if not any(cell.strip() for cell in row):
            start = reader.line_num + 1
            continue
        if len(row) != len(header):
            yield RawItem(start, raw, error=f"malformed CSV row: {len(row)} columns, header has {len(header)}")
        else:
            yield RawItem(start, raw, {key: _csv_cell(cell) for key, cell in zip(header, row)})
        start = reader.line_num + 1


def _csv_cell(cell: str) -> Any:
    """CSV cells are text; a cell written as a JSON list (references, images) is read as a list."""
    stripped = cell.strip()
    if stripped.startswith("["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return cell
    return cell


class Invalid(Exception):
    """Raised by ``to_canonical`` with the reason a record is quarantined."""


def to_canonical(item: RawItem, spec: SourceSpec) -> dict:
    """Map one parsed item onto the canonical record, or raise ``Invalid`` with the reason."""
    if item.error:
        raise Invalid(item.error)
    value = item.value
    if not isinstance(value, dict):
        raise Invalid(f"not an object: found {type(value).__name__}")
    f = spec.fields

    def get(key: str, required: bool = False) -> Any:
        src = f[key]
        if src not in value or value[src] is None or value[src] == "" and key != "prompt":
            if required:
                raise Invalid(f"missing required field {key!r} (source field {src!r})")
            return None
        return value[src]

    rec_id = get("id", required=True)
    if isinstance(rec_id, bool) or not isinstance(rec_id, (str, int)):
        raise Invalid(f"wrong type for 'id': expected string or integer, found {type(rec_id).__name__}")
    task = get("task") or spec.task
    if task is None:
        raise Invalid(f"missing required field 'task' (source field {f['task']!r}, and the source sets no task:)")
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
    for key in TASK_REQUIRED.get(task, ()):
        if not record.get(key):
            raise Invalid(f"missing required field {key!r} for task {task!r} (source field {f[key]!r})")
    images = get("images")
    if images is not None:
        if isinstance(images, str):
            images = [images]
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise Invalid("wrong type for 'images': expected a path or a list of paths")
        root = Path(spec.image_root) if spec.image_root else Path(spec.path).parent
        record["images"] = [_check_image(image, root) for image in images]
    mapped = {f[key] for key in CANONICAL_KEYS}
    record["source"] = spec.path
    record["meta"] = {k: v for k, v in value.items() if k not in mapped}
    return record


def _check_prompt(prompt: Any) -> Any:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise Invalid("empty prompt")
        return prompt
    if isinstance(prompt, list) and prompt:
        for turn in prompt:
            if not (isinstance(turn, dict) and isinstance(turn.get("role"), str)
                    and isinstance(turn.get("content"), str)):
                raise Invalid("wrong type for 'prompt': chat messages need string 'role' and 'content'")
        if not any(turn["content"].strip() for turn in prompt):
            raise Invalid("empty prompt")
        return prompt
    if isinstance(prompt, list):
        raise Invalid("empty prompt")
    raise Invalid(f"wrong type for 'prompt': expected string or chat messages, found {type(prompt).__name__}")


def _check_image(image: str, root: Path) -> str:
    """Return the image's usable path (or the data URI); raise ``Invalid`` if it is no image."""
    from PIL import Image, UnidentifiedImageError

    if image.startswith("data:image"):
        try:
            payload = base64.b64decode(image.split(",", 1)[1], validate=True)
            with Image.open(io.BytesIO(payload)) as img:
                img.verify()
        except (IndexError, ValueError, UnidentifiedImageError, OSError) as err:
            raise Invalid(f"not an image: inline base64 data ({err})") from err
        return image
    path = Path(image) if Path(image).is_absolute() else root / image
    if not path.is_file():
        raise Invalid(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.verify()
    except (UnidentifiedImageError, OSError) as err:
        raise Invalid(f"not an image: {path} ({type(err).__name__})") from err
    return str(path)
