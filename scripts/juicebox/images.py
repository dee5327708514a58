"""One normaliser for every form an image of a record (or a benchmark item) comes in.

``normalise_image(value, root, store)`` accepts:

* a path (text), relative to ``root`` unless absolute (for a source: its ``image_root``, default
  the source file's folder); the file is used where it is;
* a ``data:image/<type>;base64,<payload>`` URI;
* bare base64 text: an image's bytes base64-encoded, without the ``data:`` prefix. It is told
  apart from a path by naming no existing file and decoding to bytes PIL recognises as an image
  (text that does neither is reported as a path that was not found);
* image bytes (a binary Parquet value);
* ``{bytes, path}``, the Hugging Face ``Image`` layout (RLAIF-V's Parquet): the bytes when present
  (binary, or base64 text where the file is JSON), else the path.

Every image is checked fully: PIL opens it and decodes every pixel (``load()``), so a truncated
file fails here, once, when the pool is built, not in a training job. An embedded image (every
form but a path) is written once to a content-addressed file, ``store/<first 16 hex digits of the
bytes' SHA-256>.<extension of PIL's format>`` (atomically; a file already there is kept), and the
record holds that path, so every later stage reads image files only. Without a store (``None``)
an embedded image comes back as a ``data:`` URI (what benchmark items may carry). Every failure
raises ``records.Invalid`` saying which form the value had and why it is no image.

Later stages open a normalised reference with :func:`load_image` (models' processors), send it
with :func:`image_data_url` (OpenAI-compatible servers, judges) or replace it with
:func:`blank_image` (the evaluation's blank-image ablation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import mimetypes
from pathlib import Path
from typing import Any

from .io import atomic_path
from .records import Invalid, shown

HASH_HEX = 16  # hex digits of the SHA-256 that name a stored image (64 bits: no collision in any pool)
FORMS = "a path, a data:image URI, base64 text, image bytes or {bytes, path}"


def normalise_image(value: Any, root: Path, store: Path | None) -> str:
    """The usable reference of one image: a checked file path (a stored file for embedded images,
    or a ``data:`` URI when ``store`` is None); ``Invalid`` naming the form and the reason otherwise."""
    if isinstance(value, dict):
        return _from_mapping(value, root, store)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _embedded(bytes(value), "image bytes", store)
    if not isinstance(value, str):
        raise Invalid(f"wrong type for 'images': expected {FORMS}, found {type(value).__name__}")
    if not value.strip():
        raise Invalid("empty image path")
    if value.startswith("data:"):
        return _embedded(_data_uri_bytes(value), "inline base64 data (data: URI)", store)
    path = _resolve(value, root)
    if not _is_file(path):
        data = _base64_image(value)
        if data is not None:
            return _embedded(data, "base64 text", store)
    return _checked_file(path)


def _from_mapping(value: dict, root: Path, store: Path | None) -> str:
    """``{bytes, path}``: the bytes when present, else the file at the path."""
    if not value or not set(value) <= {"bytes", "path"}:
        raise Invalid(f"wrong type for 'images': an image object must be {{bytes, path}} (the Hugging Face Image "
                      f"layout), found keys {shown(', '.join(map(str, value)) or 'none')}")
    data = value.get("bytes")
    if data is not None:
        if isinstance(data, str):  # JSON has no binary values: the bytes as base64 text
            data = base64_bytes(data, "{bytes, path} bytes given as text")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise Invalid(f"wrong type for 'images': the bytes of an image {{bytes, path}} must be binary or base64 "
                          f"text, found {type(data).__name__}")
        return _embedded(bytes(data), "{bytes, path} bytes", store)
    path = value.get("path")
    if not (isinstance(path, str) and path.strip()):
        raise Invalid("wrong type for 'images': an image {bytes, path} without bytes needs a path")
    return _checked_file(_resolve(path, root))


def _resolve(path: str, root: Path) -> Path:
    return Path(path) if Path(path).is_absolute() else Path(root) / path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name longer than the file system allows
        return False


def _checked_file(path: Path) -> str:
    """A file used where it is, after a full decode."""
    if not _is_file(path):
        raise Invalid(f"image not found: {shown(str(path), 200)}")
    _decode(path, shown(str(path), 200))
    return str(path)


def _data_uri_bytes(uri: str) -> bytes:
    """The payload of a ``data:image/...;base64,`` URI."""
    header, comma, payload = uri.partition(",")
    if not comma:
        raise Invalid("not an image: inline data without a comma before its payload")
    media, *params = header[len("data:"):].split(";")
    if not media.startswith("image/"):
        raise Invalid(f"not an image: inline data of type {shown(media or 'text/plain')} (expected data:image/...)")
    if "base64" not in params:
        raise Invalid("not an image: inline data that is not base64 (no ';base64' before the comma)")
    return base64_bytes(payload, "inline data")


def base64_bytes(text: str, what: str) -> bytes:
    """The bytes base64 text encodes (white space ignored); ``Invalid`` naming ``what`` otherwise."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise Invalid(f"not an image: {what} that is not base64 ({err})") from None


def _base64_image(text: str) -> bytes | None:
    """The bytes of bare base64 text that encodes an image; None for text that does not (a path)."""
    from PIL import Image

    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        with Image.open(io.BytesIO(data)):  # identifies the format only; the full check follows
            return data
    except Exception:  # PIL raises many types (UnidentifiedImageError, SyntaxError, struct.error, ...)
        return None


def _decode(source: Path | io.BytesIO, label: str) -> str:
    """Open and decode every pixel of an image (truncated files fail); its PIL format name.

    Importing Data-Juicer turns PIL's ``LOAD_TRUNCATED_IMAGES`` on for the whole process (a
    truncated image then loads, padded); the check turns it off while it decodes."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    lenient, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(source) as image:
            image.load()
            return image.format
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, struct.error, ...)
        why = ("not a format PIL reads" if isinstance(err, UnidentifiedImageError)
               else f"{type(err).__name__}: {shown(str(err), 120)}")
        raise Invalid(f"not an image: {label} ({why})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def _embedded(data: bytes, form: str, store: Path | None) -> str:
    """An embedded image checked, then written to the store (or returned as a data: URI)."""
    from PIL import Image

    fmt = _decode(io.BytesIO(data), form)
    if store is None:
        mime = Image.MIME.get(fmt, f"image/{fmt.lower()}")
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    target = Path(store) / f"{hashlib.sha256(data).hexdigest()[:HASH_HEX]}.{_extension(fmt)}"
    if not target.exists():
        with atomic_path(target, suffix=target.suffix) as tmp:
            tmp.write_bytes(data)
    return str(target)


def _extension(fmt: str) -> str:
    """The file extension of a PIL format: its own name when registered (png, jpeg, webp), else
    the first one PIL registers for it."""
    from PIL import Image

    registered = [ext for ext, name in Image.registered_extensions().items() if name == fmt]
    own = f".{fmt.lower()}"
    return (own if own in registered or not registered else registered[0]).lstrip(".")


# --- using a normalised reference ---------------------------------------------------------------

def load_image(reference: str):
    """An image reference (a file path, or a ``data:`` URI) opened as an RGB ``PIL.Image``."""
    from PIL import Image

    if reference.startswith("data:"):
        source = io.BytesIO(base64.b64decode(reference.split(",", 1)[1]))
    else:
        source = reference
    with Image.open(source) as image:
        return image.convert("RGB")


def image_data_url(reference: str) -> str:
    """An image reference as a base64 ``data:`` URL (what OpenAI-compatible servers accept; vLLM
    reads local files only when started with ``--allowed-local-media-path``)."""
    if reference.startswith("data:"):
        return reference
    mime = mimetypes.guess_type(reference)[0] or "image/png"
    with open(reference, "rb") as handle:
        return f"data:{mime};base64,{base64.b64encode(handle.read()).decode('ascii')}"


def image_digest(reference: str) -> str:
    """SHA-256 of an image reference's bytes (a file's, or a ``data:`` URI's decoded payload)."""
    import hashlib

    if reference.startswith("data:"):
        data = base64.b64decode(reference.split(",", 1)[1])
    else:
        with open(reference, "rb") as handle:
            data = handle.read()
    return hashlib.sha256(data).hexdigest()


def blank_image(reference: str) -> str:
    """A white image of the same size as ``reference``, as a PNG ``data:`` URI (the blank-image
    ablation of the evaluation)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", load_image(reference).size, "white").save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
