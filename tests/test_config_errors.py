"""A config mistake stops `snakemake -n` before any job, naming the dotted path of the key.

Each case is a user config passed with --configfile on top of config/config.yaml, as a user
would run it; Snakemake itself is run (not only the resolver).
"""

import re

import pytest

from conftest import run_snakemake
from juicebox import layout

pytestmark = pytest.mark.workflow

ENGINE = "defaults:\n  rollouts:\n    engine: {block}\n"
EXPERIMENT = "experiments:\n  mine:\n    {key}: {block}\n"

CASES = {
    # engines
    "engine misspelt key": (ENGINE.format(block="{type: hf, batchsize: 8}"),
                            r"defaults\.rollouts\.engine: unknown key 'batchsize' \(did you mean 'batch_size'\?\); "
                            r"allowed keys: batch_size, device, dtype, type"),
    "engine wrong type": (ENGINE.format(block="{type: hf, batch_size: eight}"),
                          r"defaults\.rollouts\.engine\.batch_size: expected integer, found 'eight' \(str\)"),
    "engine unknown type": (ENGINE.format(block="{type: sglang}"),
                            r"defaults\.rollouts\.engine\.type: unknown engine type 'sglang'; known: hf, openai"),
    "launch misspelt key": ("experiments:\n  mine:\n    rollouts:\n      engine: {type: openai, launch: "
                            "{kind: vllm, tensor_paralel_size: 2}}\n",
                            r"experiments\.mine\.rollouts\.engine\.launch: unknown key 'tensor_paralel_size' "
                            r"\(did you mean 'tensor_parallel_size'\?\)"),
    "server cannot honour the preset": ("experiments:\n  mine:\n    eval:\n      engine: {type: openai, launch: "
                                        "{kind: transformers}}\n      sampling: {preset: qwen_ins}\n",
                                        r"experiments\.mine\.eval\.sampling: .*presence_penalty=1\.5"),
    # rewards
    "reward misspelt key": ("defaults:\n  rewards:\n    functions: [{type: reference_caption, metirc: CIDEr}]\n",
                            r"defaults\.rewards\.functions\[0\]: unknown key 'metirc' \(did you mean 'metric'\?\)"),
    "reward wrong value": ("defaults:\n  rewards:\n    functions: [{type: reference_caption, metric: cider}]\n",
                           r"defaults\.rewards\.functions\[0\]\.metric: expected one of .*found 'cider'"),
    "reward unknown type": ("defaults:\n  rewards:\n    functions: [{type: bleu}]\n",
                            r"defaults\.rewards\.functions\[0\]\.type: unknown reward type 'bleu'; "
                            r"known: divide_conquer, dpo_implicit, judge, math_steps, object_grounding, python, "
                            r"reference_caption, reward_model, short_answer, verifier_math"),
    # pairing
    "pairing misspelt key": (EXPERIMENT.format(key="pairing", block="{type: all_pairs, min_margn: 0.5}"),
                             r"experiments\.mine\.pairing: unknown key 'min_margn' \(did you mean 'min_margin'\?\)"),
    "pairing wrong type": (EXPERIMENT.format(key="pairing", block="{type: rlaifv, rank: [3]}"),
                           r"experiments\.mine\.pairing\.rank: expected integer, found \[3\] \(list\)"),
    "pairing unknown type": (EXPERIMENT.format(key="pairing", block="{type: best}"),
                             r"experiments\.mine\.pairing\.type: unknown pairing type 'best'"),
    # benchmarks
    "benchmark misspelt key": ("experiments:\n  mine:\n    eval:\n      benchmarks:\n        m: {type: math, "
                               "path: results/demo_data/bench/math_test.jsonl, kk: [1, 4]}\n",
                               r"experiments\.mine\.eval\.benchmarks\.m: unknown key 'kk'"),
    "benchmark unknown type": ("experiments:\n  mine:\n    eval:\n      benchmarks:\n        m: {type: maths, "
                               "path: results/demo_data/bench/math_test.jsonl}\n",
                               r"experiments\.mine\.eval\.benchmarks\.m\.type: unknown benchmark type 'maths' "
                               r"\(did you mean 'math'\?\)"),
    # pool steps, Data-Juicer
    "pool step misspelt key": ("experiments:\n  mine:\n    pool:\n      steps: [{op: downsample, n: 10, sed: 1}]\n",
                               r"experiments\.mine\.pool\.steps\[0\]: unknown key 'sed'; allowed keys: n, op"),
    "pool step unknown op": ("experiments:\n  mine:\n    pool:\n      steps: [{op: shuffle}]\n",
                             r"experiments\.mine\.pool\.steps\[0\]\.op: unknown pool step op 'shuffle'"),
    "dj key of another executor": (EXPERIMENT.format(key="dj", block="{np: 1, ray_address: local}"),
                                   r"experiments\.mine\.dj: unknown key 'ray_address'; allowed keys: executor, np"),
    # plain keys, files, tasks
    "plain misspelt key": (EXPERIMENT.format(key="train", block="{lerning_rate: 0.1}"),
                           r"experiments\.mine\.train: unknown key\(s\) \['lerning_rate'\] \(did you mean "
                           r"'learning_rate'\?\)"),
    "no experiments": ("experiments: {}\n", r"experiments: \{\} should be non-empty"),
    "duplicate key": ("experiments:\n  mine:\n    ksigma: {enabled: true}\n    ksigma: {enabled: false}\n",
                      r"user\.yaml:4: key 'ksigma' appears twice in one mapping \(first at line 3\)"),
    "missing source": ("defaults:\n  sources:\n    - {name: math, path: data/nowhere.jsonl, task: math}\n",
                       r"experiments\.mine\.sources\[0\]\.path: data/nowhere\.jsonl does not exist"),
    "recipe with a duplicate key": ("defaults:\n  recipe: dup_recipe.yaml\n",
                                    r"experiments\.mine\.recipe: .*dup_recipe\.yaml:3: key 'np' appears twice"),
    "unknown task": ("defaults:\n  sources:\n    - {name: math, path: results/demo_data/math.jsonl, task: maht}\n",
                     r"experiments\.mine\.sources\[0\]\.task: task 'maht' is known to no reward, benchmark.*"
                     r"\(did you mean 'math'\?\); known tasks: math"),
    "launcher refuses several GPUs": (EXPERIMENT.format(key="train", block="{gpus: 2}"),
                                      r"experiments\.mine\.train\.launcher: training on 2 GPU\(s\) x 1 node\(s\) "
                                      r"needs launcher: accelerate"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_mistake_stops_the_dry_run_naming_the_key(workdir, name):
    text, expected = CASES[name]
    if "experiments:" not in text:
        text += "experiments:\n  mine: {}\n"
    (workdir / "user.yaml").write_text(text)
    (workdir / "dup_recipe.yaml").write_text("project_name: dup\nnp: 1\nnp: 2\nprocess: []\n")
    # Old outputs must not hide a mistake (Snakemake skips a job whose outputs exist).
    (workdir / "results" / "mine" / "pool").mkdir(parents=True)
    (workdir / "results" / "mine" / "pool" / "pool.jsonl").write_text("{}\n")
    proc = run_snakemake(workdir, "--configfile", "user.yaml", "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-2000:]
    assert re.search(expected, out), out[-3000:]
    assert "Job stats" not in out  # stopped while planning, before any job


def test_user_experiments_replace_the_demo_ones_and_numeric_strings_are_numbers(workdir):
    (workdir / "user.yaml").write_text("experiments:\n  mine:\n    train: {learning_rate: 5e-4, epochs: '2'}\n")
    proc = run_snakemake(workdir, "--configfile", "user.yaml", "-n", "--printshellcmds")
    assert "results/mine/" in proc.stdout
    assert "results/raw/" not in proc.stdout and "results/ksigma/" not in proc.stdout


def test_the_demo_config_alone_runs_the_demo_experiments(workdir):
    proc = run_snakemake(workdir, "-n")
    assert "results/raw/" in proc.stdout and "results/ksigma/" in proc.stdout


def test_a_user_block_of_another_type_replaces_the_demos(workdir):
    # Snakemake's own merge would keep the demo's hf `batch_size` under the user's openai engine.
    (workdir / "user.yaml").write_text("defaults:\n  rollouts:\n    engine: {type: openai, endpoints: "
                                       "['http://127.0.0.1:8000']}\nexperiments:\n  mine: {}\n")
    proc = run_snakemake(workdir, "--configfile", "user.yaml", "-n")
    assert layout.path("rollouts", "shard", exp="mine", round=1, shard="1-of-2") in proc.stdout
