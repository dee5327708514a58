"""Conda env files agree with requirements.txt; every rule has log, benchmark, conda, threads, resources."""

import re

import yaml

from conftest import ROOT


def requirement_pins():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_env_files_pin_the_same_versions_as_requirements():
    pins = requirement_pins()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        deps = spec["dependencies"]
        python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
        assert tuple(int(x) for x in python.split("=")[1].split(".")[:2]) >= (3, 10), env.name
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for entry in pip:
            name, version = entry.split("==")
            assert pins.get(name.lower()) == version, f"{env.name}: {entry} vs requirements.txt {pins.get(name.lower())}"


def test_every_rule_has_its_anatomy_and_an_existing_env():
    rules = {}
    for smk in (ROOT / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            match = re.match(r"rule (\w+):", block)
            if match:
                rules[match.group(1)] = block
    assert {"make_demo_data", "build_pool", "probe", "refine_recipe_ksigma", "process_data", "ledger"} <= set(rules)
    for name, block in rules.items():
        for directive in ("log:", "benchmark:", "conda:", "threads:", "resources:"):
            assert f"\n    {directive}" in block, f"rule {name} lacks {directive}"
        env = re.search(r'conda:\n\s+"\.\./(envs/[\w.]+)"', block).group(1)
        assert (ROOT / env).is_file(), f"rule {name}: {env} missing"
