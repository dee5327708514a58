"""GPU counts, nodes, conda envs and launch commands derived from a stage's settings."""

from pathlib import Path

import pytest

from conftest import ROOT
from juicebox import cluster

PRESETS = ROOT / "resources" / "accelerate"
MULTINODE = ROOT / "scripts" / "accelerate_multinode.sh"


def stage(engine):
    return {"engine": engine}


@pytest.mark.parametrize("engine, gpus, env", [
    ({"type": "openai", "launch": {"kind": "vllm", "tensor_parallel_size": 2, "data_parallel_size": 3}}, 6, "vllm"),
    ({"type": "openai", "launch": {"kind": "vllm"}}, 1, "vllm"),
    ({"type": "openai", "launch": {"kind": "transformers"}}, 1, "cpu"),
    ({"type": "openai", "launch": {"startup_timeout": 60}}, 1, "cpu"),  # kind defaults to transformers
    ({"type": "openai", "endpoints": ["http://node:8000/v1"]}, 0, "cpu"),
    ({"type": "hf"}, 1, "cpu"),
    ({"type": "hf", "device": "cuda:0"}, 1, "cpu"),
    ({"type": "hf", "device": "cpu"}, 0, "cpu"),
])
def test_engine_gpus_and_env(engine, gpus, env):
    assert cluster.engine_gpus(stage(engine)) == gpus
    expected = "envs/vllm.yaml" if env == "vllm" else "envs/train.yaml"
    assert cluster.engine_env(stage(engine), "envs/train.yaml") == expected


def test_reward_gpus():
    assert cluster.reward_gpus([{"type": "verifier_math"}, {"type": "reference_caption"}]) == 0
    assert cluster.reward_gpus([{"type": "verifier_math"}, {"type": "dpo_implicit"}]) == 1
    assert cluster.reward_gpus([{"type": "reward_model"}]) == 1


def train(**kw):
    return {"launcher": "python", "accelerate_config": None, "gpus": 1, "nodes": 1, **kw}


def test_single_process_training_runs_under_python():
    assert cluster.launcher(train(), PRESETS, MULTINODE) == "python"
    assert cluster.train_gpus(train()) == 1
    assert cluster.multinode(train(), "srun") is None


def test_accelerate_on_one_node_starts_one_process_per_gpu():
    cmd = cluster.launcher(train(launcher="accelerate", accelerate_config="zero2", gpus=4), PRESETS, MULTINODE)
    assert cmd == f"accelerate launch --config_file {PRESETS / 'zero2.yaml'} --num_processes 4"
    cmd = cluster.launcher(train(launcher="accelerate", gpus=0), PRESETS, MULTINODE)
    assert cmd == "accelerate launch --cpu --num_processes 1"
    # A path that is not a preset name is passed as given.
    cmd = cluster.launcher(train(launcher="accelerate", accelerate_config="my/acc.yaml"), PRESETS, MULTINODE)
    assert cmd == "accelerate launch --config_file my/acc.yaml --num_processes 1"


def test_several_nodes_start_one_launcher_per_node_with_srun():
    settings = train(launcher="accelerate", accelerate_config="zero3", gpus=8, nodes=4)
    assert cluster.train_gpus(settings) == 32
    assert cluster.multinode(settings, "srun") == "srun"
    assert cluster.launcher(settings, PRESETS, MULTINODE) == (
        f"srun --nodes=4 --ntasks-per-node=1 bash {MULTINODE} 8 {PRESETS / 'zero3.yaml'}")


@pytest.mark.parametrize("settings", [train(gpus=2), train(nodes=2)])
def test_python_launcher_refuses_several_gpus_or_nodes(settings):
    with pytest.raises(ValueError, match="needs launcher: accelerate"):
        cluster.launcher(settings, PRESETS, MULTINODE)


def test_presets_exist():
    for name in ("ddp", "zero2", "zero3"):
        assert cluster.accelerate_config(train(accelerate_config=name), PRESETS) == str(PRESETS / f"{name}.yaml")
    assert Path(MULTINODE).is_file()
