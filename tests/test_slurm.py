"""The CI-sized workflow through the slurm profile on a real single-node SLURM started here.

`scripts/local_slurm.sh` installs slurm-wlm and munge from Debian's packages and starts a cluster
with a `cpu` and a `gpu` partition and two fake GPUs (a gres backed by dummy files). The run uses
the profile as users do, plus the two flags a cluster without an accounting database needs, on the
CI config's three experiments (two data pools). While it runs, the test records every job SLURM
sees and cancels one rollout shard job with scancel: Snakemake must retry it and the run must
still end with every prompt rolled out exactly once. Every job must fit the 2-CPU node and run: a
job asking for more CPUs than any node has waits forever (Reason=PartitionConfig), and the run
is killed after 30 minutes.
"""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, SNAKEMAKE
from juicebox import layout

pytestmark = pytest.mark.slurm

CONFIG = ".test/config_ci/config.yaml"
LOCAL_SLURM = str(ROOT / "scripts" / "local_slurm.sh")
STATE = "/tmp/juicebox-slurm"
GPU_RULES = ("rollout_shard", "sft", "train_dpo", "evaluate")
# The fake node has 2 CPUs and about 20 GB: GPU jobs ask for what it has.
SITE = {"JUICEBOX_SLURM_CPUS_PER_GPU": "1", "JUICEBOX_SLURM_GPU_MEM_MB": "4000"}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("starting a local SLURM needs root (slurmctld, slurmd and munged run as root here)")
    if not (shutil.which("slurmctld") or shutil.which("apt-get")):
        pytest.skip("no SLURM installed and no apt-get to install slurm-wlm and munge")
    subprocess.run([LOCAL_SLURM, "install"], check=True)
    subprocess.run([LOCAL_SLURM, "stop", STATE], check=True)
    subprocess.run([LOCAL_SLURM, "start", STATE], check=True)
    yield STATE
    subprocess.run([LOCAL_SLURM, "stop", STATE], check=True)


def slurm_jobs() -> dict[str, dict]:
    """Every job slurmctld still knows (finished ones for MinJobAge), as field dicts by id."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def rule_of(job: dict) -> str:
    """The rule a job runs: the SLURM plugin sets the comment to rule_<name>_wildcards_<...>."""
    return job.get("Comment", "").removeprefix("rule_").split("_wildcards_")[0]


def cancel_shard_midway(work, jobs: dict[str, dict]) -> dict | None:
    """scancel a running rollout shard job once it has written prompts to its partial file (or has
    run for a minute); return {"job": id, "partial": path, "done": prompts written} or None."""
    for job in jobs.values():
        if rule_of(job) != "rollout_shard" or job["JobState"] != "RUNNING":
            continue
        # the wildcards in the order of the output's pattern: results/{exp}/round{round}/rollouts/shards/{shard}
        exp, round_, shard = job["Comment"].split("_wildcards_")[1].rsplit("_", 2)
        partial = work / (layout.path("rollouts", "shard", exp=exp, round=round_, shard=shard) + ".partial")
        done = len(partial.read_text().splitlines()) - 1 if partial.exists() else 0  # less the header
        if done > 0 or int(job["RunTime"].split(":")[-2]) >= 1:
            subprocess.run(["scancel", job["JobId"]], check=True)
            return {"job": job["JobId"], "exp": exp, "shard": shard, "done": max(done, 0)}
    return None


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    work = tmp_path_factory.mktemp("slurm")
    shutil.copytree(ROOT / "config", work / "config")
    shutil.copytree(ROOT / ".test", work / ".test")
    cmd = [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles" / "slurm"),
           "--configfile", CONFIG, "--slurm-status-command", "squeue", "--slurm-no-account",
           "--slurm-init-seconds-before-status-checks", "5", "--verbose", "results/eval.json"]
    env = {**os.environ, **SITE, "PATH": f"{os.path.dirname(SNAKEMAKE)}{os.pathsep}{os.environ['PATH']}"}
    seen: dict[str, dict] = {}
    cancelled = None
    start = time.monotonic()
    with open(work / "snakemake.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(0.5)
            jobs = slurm_jobs()
            seen.update(jobs)
            if cancelled is None:
                cancelled = cancel_shard_midway(work, jobs)
            if time.monotonic() - start > 1800:
                proc.kill()
    seen.update(slurm_jobs())
    output = (work / "snakemake.log").read_text()
    # The plugin names every job of one run after the run's id: keep this run's jobs only.
    run_name = re.search(r"sbatch call: sbatch --parsable --job-name (\S+)", output).group(1)
    seen = {jid: job for jid, job in seen.items() if job["JobName"] == run_name}
    return {"work": work, "rc": proc.returncode, "output": output, "jobs": seen, "cancelled": cancelled,
            "wall_s": time.monotonic() - start}


def test_workflow_completes_through_slurm(slurm_run):
    assert slurm_run["rc"] == 0, slurm_run["output"][-6000:]
    summary = json.loads((slurm_run["work"] / "results" / "eval.json").read_text())
    assert set(summary["experiments"]) == {"raw", "ksigma", "vlm"}
    # Every job went through SLURM: the slurm executor's sbatch calls are in the verbose log.
    assert slurm_run["output"].count("sbatch call:") == len(slurm_run["jobs"]) > 20
    print(f"SLURM run: {slurm_run['wall_s']:.0f} s wall, {len(slurm_run['jobs'])} SLURM jobs")


def test_every_job_fits_the_node_and_ran(slurm_run):
    node_cpus = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    jobs = slurm_run["jobs"].values()
    too_big = {job["JobId"]: (rule_of(job), job["NumCPUs"]) for job in jobs if int(job["NumCPUs"]) > node_cpus}
    assert not too_big, f"jobs asking for more than the node's {node_cpus} CPUs: {too_big}"
    states = {job["JobId"]: (rule_of(job), job["JobState"]) for job in jobs
              if job["JobId"] != (slurm_run["cancelled"] or {}).get("job")}
    assert {state for _, state in states.values()} == {"COMPLETED"}, states
    largest = max(jobs, key=lambda job: int(job["NumCPUs"]))
    print(f"largest request: {largest['NumCPUs']} CPUs ({rule_of(largest)})")


def test_gpu_rules_requested_gpus(slurm_run):
    by_rule: dict[str, list[dict]] = {}
    for job in slurm_run["jobs"].values():
        by_rule.setdefault(rule_of(job), []).append(job)
    for rule in GPU_RULES:
        assert rule in by_rule, f"no SLURM job for {rule}; saw {sorted(by_rule)}"
        for job in by_rule[rule]:
            assert job.get("TresPerJob") == "gres:gpu:1", (rule, job.get("TresPerJob"))
            assert job["Partition"] == "gpu", (rule, job["Partition"])
    for rule in ("gather_rollouts", "probe", "process_data"):
        for job in by_rule.get(rule, []):
            assert job["Partition"] == "cpu" and "TresPerJob" not in job, (rule, job)
    # Small CPU rules were grouped: one SLURM job ran gather_rewards and make_pairs together.
    assert any(job.get("Comment", "").startswith("rule_pairs_") for job in slurm_run["jobs"].values())


def test_cancelled_job_was_retried_and_nothing_lost(slurm_run):
    cancelled = slurm_run["cancelled"]
    assert cancelled, "no rollout shard job was seen running"
    assert slurm_run["jobs"][cancelled["job"]]["JobState"] == "CANCELLED"
    output = slurm_run["output"]
    assert f"SLURM-job '{cancelled['job']}' failed, SLURM status is: 'CANCELLED'" in output
    assert "Trying to restart job" in output
    work = slurm_run["work"]
    print(f"cancelled SLURM job {cancelled['job']} (rollouts {cancelled['exp']} {cancelled['shard']}) "
          f"after {cancelled['done']} prompt(s)")
    if cancelled["done"]:
        # The retried job continued from the partial file the cancelled one left.
        shard_log = layout.log("rollouts", "rollouts/{shard}").format(exp=cancelled["exp"], round=1,
                                                                       shard=cancelled["shard"])
        shard_log = (work / shard_log).read_text()
        assert "prompt(s) already done" in shard_log
    for exp in ("raw", "ksigma", "vlm"):
        processed = (work / layout.path("processed", "data", exp=exp)).read_text().splitlines()
        rollouts_path = work / layout.path("rollouts", "rollouts", exp=exp, round=1)
        rollouts = [json.loads(line) for line in rollouts_path.read_text().splitlines()]
        stage = json.loads((work / layout.path("rollouts", "stage", exp=exp, round=1)).read_text())
        ids = [r["id"] for r in rollouts]
        assert len(ids) == len(set(ids)) == stage["kept"]
        assert stage["in"] == len(processed) == stage["kept"] + sum(stage["dropped"].values())
