"""Profiles dry-run without SLURM; GPU counts, nodes, envs and launchers derive from the config."""

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, SNAKEMAKE, run_snakemake

pytestmark = pytest.mark.workflow

CONFIG = ".test/config_ci/config.yaml"


def root_like(workdir):
    """``workdir`` laid out like the repository root for `--profile slurm`: the root's ``slurm``
    link (to profiles/slurm) and a copy of profiles/. Snakemake looks for ``--profile NAME`` in the
    current directory, so a dry run from here finds the profile as it would from the root, without
    seeing the root's results/ and .snakemake/ (which `make demo` fills) or writing there."""
    assert (ROOT / "slurm").is_symlink()
    shutil.copy2(ROOT / "slurm", workdir / "slurm", follow_symlinks=False)
    shutil.copytree(ROOT / "profiles", workdir / "profiles")
    return workdir


def slurm_dry_run(workdir, env):
    """A dry run of results/eval.json with the literal ``--profile slurm``, from ``workdir``."""
    return subprocess.run(
        [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--profile", "slurm", "--directory", str(workdir),
         "--configfile", CONFIG, "-n", "results/eval.json"], cwd=root_like(workdir), capture_output=True, text=True,
        env=env)


def job_blocks(output: str) -> list[tuple[str, str]]:
    """(rule, block text) of every job a dry run prints."""
    parts = re.split(r"\n(?=(?:local)?rule \w+:\n)", output)
    return [(re.match(r"(?:local)?rule (\w+):", p).group(1), p) for p in parts if re.match(r"(?:local)?rule \w+:\n", p)]


def resources(block: str) -> dict[str, str]:
    line = re.search(r"^\s+resources: (.*)$", block, re.M).group(1)
    return dict(item.split("=", 1) for item in line.split(", "))


def test_literal_slurm_profile_dry_runs_from_the_repository_root(workdir):
    # `--profile slurm` is found because the root holds the `slurm` link to profiles/slurm.
    proc = slurm_dry_run(workdir, env={"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(workdir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Using profile slurm" in proc.stdout + proc.stderr
    blocks = job_blocks(proc.stdout)
    assert {rule for rule, _ in blocks} >= {"rollout_shard", "train_dpo", "evaluate", "process_data"}
    for rule, block in blocks:
        res = resources(block)
        if rule in ("rollout_shard", "sft", "train_dpo", "evaluate"):
            assert res["slurm_partition"] == "gpu" and res["gpu"] == "1" and res["cpus_per_gpu"] == "8", (rule, res)
        elif rule in ("build_pool", "probe", "process_data", "gather_rollouts", "ledger"):
            assert res["slurm_partition"] == "cpu" and "gpu" not in res, (rule, res)


def test_site_settings_come_from_one_place(workdir):
    env = {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin", "HOME": str(workdir),
           "JUICEBOX_SLURM_GPU_MODEL": "h100", "JUICEBOX_SLURM_ACCOUNT": "proj42",
           "JUICEBOX_SLURM_CPU_PARTITION": "short"}
    proc = slurm_dry_run(workdir, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule, block in job_blocks(proc.stdout):
        res = resources(block)
        assert res["slurm_account"] == "proj42"
        if rule == "train_dpo":
            assert res["gpu_model"] == "h100" and res["slurm_partition"] == "gpu"
        if rule == "gather_rollouts":
            assert res["slurm_partition"] == "short" and "gpu_model" not in res


def test_local_profile_dry_runs(workdir):
    proc = run_snakemake(workdir, "--profile", str(ROOT / "profiles" / "local"), "--configfile", CONFIG,
                         "--cores", "2", "-n")
    assert "rollout_shard" in proc.stdout


@pytest.fixture
def gpu_config(workdir):
    """The CI config with vLLM rollouts (TP 2 x DP 2), vLLM eval (TP 1 x DP 4) and 2-node ZeRO-3 DPO."""
    cfg = yaml.safe_load((workdir / CONFIG).read_text())
    d = cfg["defaults"]
    d["rollouts"]["engine"] = {"type": "openai", "launch": {"kind": "vllm", "tensor_parallel_size": 2,
                                                            "data_parallel_size": 2}}
    d["eval"]["engine"] = {"type": "openai", "launch": {"kind": "vllm", "data_parallel_size": 4}}
    d["train"].update(launcher="accelerate", accelerate_config="zero3", gpus=4, nodes=2)
    d["sft"].update(launcher="accelerate", accelerate_config="zero2", gpus=2)
    d["rewards"]["functions"].append({"type": "dpo_implicit", "tasks": ["math"]})
    path = workdir / "gpu.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_gpu_resources_envs_and_launchers_derive_from_the_config(workdir, gpu_config):
    proc = run_snakemake(workdir, "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", str(gpu_config),
                         "-n", "-p", "results/eval.json")
    seen = set()
    for rule, block in job_blocks(proc.stdout):
        res = resources(block)
        seen.add(rule)
        if rule == "rollout_shard":
            assert res["gpu"] == "4"  # tensor_parallel_size 2 x data_parallel_size 2
        elif rule == "evaluate":
            assert res["gpu"] == "4"
        elif rule == "reward_shard":
            # dpo_implicit runs the policy and reference models; the vlm's rewards (short answers,
            # CIDEr) run no model
            assert res["gpu"] == ("0" if re.search(r"wildcards: exp=(\w+)", block).group(1) == "vlm" else "1"), block
        elif rule == "train_dpo":
            assert (res["gpu"], res["nodes"], res["mpi"], res["tasks"], res["tasks_per_gpu"]) == \
                ("8", "2", "srun", "2", "0")
            assert re.search(r"srun --nodes=2 --ntasks-per-node=1 bash \S+/accelerate_multinode\.sh 4 "
                             r"\S+/resources/accelerate/zero3\.yaml \S+/train\.py dpo", block), block
        elif rule == "sft":
            assert res["gpu"] == "2" and res["nodes"] == "1" and "mpi" not in res
            assert re.search(r"accelerate launch --config_file \S+/resources/accelerate/zero2\.yaml "
                             r"--num_processes 2 \S+/train\.py sft", block), block
    assert {"rollout_shard", "evaluate", "reward_shard", "train_dpo", "sft"} <= seen


def test_training_on_several_gpus_needs_accelerate(workdir, gpu_config):
    cfg = yaml.safe_load(gpu_config.read_text())
    cfg["defaults"]["train"].update(launcher="python")
    gpu_config.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(workdir, "--configfile", str(gpu_config), "-n", check=False)
    assert proc.returncode != 0
    assert re.search(r"train\.launcher: training on 4 GPU\(s\) x 2 node\(s\) needs launcher: accelerate",
                     proc.stdout + proc.stderr)
