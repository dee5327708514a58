"""What a job asks a cluster for, derived from a stage's settings (rules/common.smk wires it in).

The parts answer for themselves: an engine's options know its GPU count and conda env, a reward
class says whether it runs a model. The slurm profile turns the resources into sbatch flags:
``gpu`` into ``--gpus``, ``nodes`` into ``--nodes``; ``mpi`` marks a job whose shell calls
``srun`` itself (multi-node training).
"""

import os
import shlex
import sys
from pathlib import Path

from .engines import ENGINES
from .rewards import REWARDS


# The variable naming the checkout to the conda envs (envs/*.yaml): their pip entry
# `-e ${JUICEBOX_ROOT}` installs the library editable from it, expanded by pip. (Snakemake copies each
# env file under .snakemake/conda/, so a path relative to envs/ would not find the checkout.)
CHECKOUT_VARIABLE = "JUICEBOX_ROOT"


def export_checkout(basedir: str | Path) -> None:
    """Name the workflow's checkout to the conda envs this run creates (and to its jobs), and put the
    folder of the Python running Snakemake first on the jobs' PATH: rules start ``python``,
    ``accelerate`` and ``transformers`` by name, which must be this environment's when Snakemake is
    started as ``.venv/bin/snakemake`` without the venv activated (a job's conda env, when conda
    is used, comes first again)."""
    os.environ[CHECKOUT_VARIABLE] = str(basedir)
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def engine_gpus(settings: dict) -> int:
    """GPUs of one rollout/eval job, as its engine's options say (launched vLLM: tensor x data
    parallel size; launched `transformers serve` or the hf engine: 1, 0 on the CPU; endpoints: 0)."""
    return ENGINES.parse(settings["engine"], "engine").gpus()


def engine_env(settings: dict, cpu_env: str) -> str:
    """Conda env of a rollout/eval job: envs/vllm.yaml when its engine launches vLLM servers."""
    return ENGINES.parse(settings["engine"], "engine").conda_env(cpu_env)


def reward_gpus(functions: list[dict]) -> int:
    """1 when one of a shard's reward functions runs a model, else 0."""
    return int(any(REWARDS[f["type"]].runs_model for f in functions))


def train_gpus(settings: dict) -> int:
    """GPUs of a training job: gpus (per node) x nodes."""
    return settings["gpus"] * settings["nodes"]


def multinode(settings: dict, value):
    """``value`` for a training job over several nodes, else None (Snakemake then omits the resource)."""
    return value if settings["nodes"] > 1 else None


def accelerate_config(settings: dict, presets: Path) -> str | None:
    """An accelerate config file: a preset name in ``presets`` (ddp, zero2, zero3) or a path."""
    name = settings["accelerate_config"]
    if name is None:
        return None
    preset = presets / f"{name}.yaml"
    return str(preset) if preset.is_file() else name


def launcher(settings: dict, presets: Path, multinode_script: Path) -> str:
    """The command a training script runs under: python; ``accelerate launch`` with one process per
    GPU; or, over several nodes, srun starting ``multinode_script`` once per node."""
    if settings["launcher"] == "python":
        if settings["nodes"] > 1 or settings["gpus"] > 1:
            raise ValueError("training on several GPUs or nodes needs launcher: accelerate")
        return "python"
    config_file = accelerate_config(settings, presets)
    if settings["nodes"] > 1:
        return (f"srun --nodes={settings['nodes']} --ntasks-per-node=1"
                f" bash {shlex.quote(str(multinode_script))} {settings['gpus']} {shlex.quote(config_file or '')}")
    config = f" --config_file {shlex.quote(config_file)}" if config_file else ""
    if settings["gpus"] == 0:
        return f"accelerate launch{config} --cpu --num_processes 1"
    return f"accelerate launch{config} --num_processes {settings['gpus']}"
