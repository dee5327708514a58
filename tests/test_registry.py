"""The one registry mechanism behind engines, rewards, pairing strategies and benchmarks."""

import pytest

from juicebox.registry import Registry


def test_registry_refuses_a_name_twice_and_names_the_known_types():
    parts = Registry("widget")

    @parts.register("a")
    class A:
        pass

    assert parts.lookup("a") is A and A.type == "a"
    with pytest.raises(ValueError, match="widget type 'a' is registered twice"):
        parts.register("a")(type("B", (), {}))
    with pytest.raises(KeyError, match=r"cfg: unknown widget type 'z'; known types: a"):
        parts.lookup("z", "cfg", KeyError)
