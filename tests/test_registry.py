"""The one registry mechanism behind every pluggable part, and the typed options it checks."""

from dataclasses import dataclass
from typing import Literal

import pytest

from juicebox.registry import Registry
from juicebox.spec import ConfigError, Options, option


@dataclass(frozen=True)
class WidgetOptions(Options):
    size: int = option(3, "How big.", minimum=1)
    rate: float = option(0.5, "How fast.", exclusive_minimum=0)
    shape: Literal["round", "square"] = option("round", "Which shape.")
    tags: list[str] = option([], "Labels.")
    label: str | None = option(None, "A name.")
    path: str = option(help="Required.")


def make_registry():
    parts = Registry("widget", default="a")

    @parts.register("a")
    class A:
        Options = WidgetOptions

        def __init__(self, options, colour=None):
            self.options, self.colour = options, colour

    return parts, A


def test_registry_refuses_a_name_twice_and_names_the_known_types():
    parts, A = make_registry()
    assert parts.lookup("a") is A and A.type == "a"
    with pytest.raises(ValueError, match="widget type 'a' is registered twice"):
        parts.register("a")(A)
    with pytest.raises(TypeError, match="Options must be a juicebox.spec.Options"):
        parts.register("b")(type("B", (), {}))
    with pytest.raises(ConfigError, match=r"cfg\.type: unknown widget type 'aa' \(did you mean 'a'\?\); known: a"):
        parts.parse({"type": "aa", "path": "x"}, "cfg")


def test_build_parses_the_block_and_passes_runtime_arguments():
    parts, A = make_registry()
    widget = parts.build({"path": "p", "size": "4", "rate": "5e-1", "tags": ["x"]}, "cfg", colour="red")
    assert isinstance(widget, A) and widget.colour == "red"
    assert widget.options == WidgetOptions(size=4, rate=0.5, tags=["x"], path="p")
    assert parts.normalise({"path": "p"}, "cfg") == {"type": "a", "size": 3, "rate": 0.5, "shape": "round",
                                                    "tags": [], "label": None, "path": "p"}


@pytest.mark.parametrize("block, message", [
    ({"path": "p", "sise": 2}, r"cfg: unknown key 'sise' \(did you mean 'size'\?\); allowed keys: label, path, "
                               r"rate, shape, size, tags, type"),
    ({"path": "p", "size": 0}, r"cfg\.size: expected a number >= 1, found 0"),
    ({"path": "p", "size": True}, r"cfg\.size: expected integer, found True \(bool\)"),
    ({"path": "p", "size": 2.5}, r"cfg\.size: expected integer, found 2\.5 \(float\)"),
    ({"path": "p", "rate": 0}, r"cfg\.rate: expected a number > 0, found 0$"),
    ({"path": "p", "rate": "fast"}, r"cfg\.rate: expected number, found 'fast' \(str\)"),
    ({"path": "p", "shape": "rund"}, r"cfg\.shape: expected one of 'round', 'square', found 'rund' \(did you mean "
                                     r"'round'\?\)"),
    ({"path": "p", "tags": "x"}, r"cfg\.tags: expected list of string, found 'x' \(str\)"),
    ({"path": "p", "tags": ["x", 1]}, r"cfg\.tags\[1\]: expected string, found 1 \(int\)"),
    ({"path": "p", "label": 3}, r"cfg\.label: expected string or null, found 3 \(int\)"),
    ({}, r"cfg: missing required key 'path': Required\."),
    ("p", r"cfg: expected a mapping with 'type', found 'p'"),
])
def test_a_bad_block_names_the_key_what_was_expected_and_what_was_found(block, message):
    parts, _ = make_registry()
    with pytest.raises(ConfigError, match=message):
        parts.parse(block, "cfg")
