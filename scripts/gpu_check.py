"""The prepared GPU check (`make gpu-check`): what a machine with one NVIDIA GPU must show, in one run
of a few minutes, written as a JSON of checks and timings.

Parts, in order (--parts picks some):

  envs      the GPU environments: .venv (`make venv`: PyPI's torch wheel, CUDA on Linux) and the
            vLLM venv (`make vllm-gpu-venv`: requirements-vllm.txt), each timed; torch sees the GPU
  serve     tests/test_vllm.py against vLLM on the GPU (JUICEBOX_VLLM_DEVICE=gpu): the tiny text
            model (n answers, seeded; greedy against the hf engine), its adapter by name, a round-2
            policy, the tiny VLM and its adapter from images, a round-2 VLM policy; each test's
            outcome and seconds
  workflow  the CI workflow's text and VLM experiments with every rollout and evaluation engine a
            launched vLLM, SFT and LoRA DPO under `accelerate launch` on the GPU (gpus: 1): each
            output checked, the jobs' seconds from Snakemake's benchmark files

--device cpu runs the serve and workflow parts on PyPI's CPU build of vLLM (.venv-vllm, `make
vllm-venv`) and trains on the CPU: how this script is itself tested (tests/test_vllm.py), on a
machine without a GPU.

    python scripts/gpu_check.py --out results/gpu_check.json
    python scripts/gpu_check.py --device cpu --parts workflow --out /tmp/check.json
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from juicebox import layout
from juicebox.io import read_json, read_jsonl

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = {"gpu": ROOT / ".venv-vllm-gpu" / "bin" / "python", "cpu": ROOT / ".venv-vllm" / "bin" / "python"}
VENV_TARGETS = {"gpu": "vllm-gpu-venv", "cpu": "vllm-venv"}
CI_CONFIG = ROOT / ".test" / "config_ci" / "config.yaml"
# One experiment of each kind and the benchmark its trained policy is evaluated on.
WORKFLOW_RUNS = {"raw": "demo_math", "vlm": "demo_pope"}


class Report:
    """The checks run so far, each with its outcome, seconds and details; written after each."""

    def __init__(self, out: Path, device: str):
        self.out, self.checks = out, []
        self.head = {"device": device, "machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def run(self, name: str, fn, *args) -> dict | None:
        """Run one check; an exception fails it with its message. Returns what ``fn`` returned."""
        start = time.perf_counter()
        try:
            details, passed, error = fn(*args), True, None
        except Exception as err:  # noqa: BLE001 (each failure is recorded and the next check runs)
            details, passed, error = None, False, f"{type(err).__name__}: {err}"[-4000:]
        self.checks.append({"check": name, "passed": passed, "seconds": round(time.perf_counter() - start, 1),
                            "details": details, "error": error})
        print(f"{'PASS' if passed else 'FAIL'} {name} ({self.checks[-1]['seconds']} s){': ' + error if error else ''}",
              flush=True)
        self.write()
        return details

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        passed = all(c["passed"] for c in self.checks)
        self.out.write_text(json.dumps({**self.head, "passed": passed, "checks": self.checks}, indent=2) + "\n")


def machine() -> dict:
    """CPU, cores and the GPUs nvidia-smi lists."""
    cpu = platform.processor()
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    gpus = []
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True)
        gpus = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "python": platform.python_version()}


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd`` in the repository; fail with the end of its output."""
    proc = subprocess.run(cmd, cwd=kwargs.pop("cwd", ROOT), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{output}")
    return proc


def build_env(target: str, stamp: Path) -> dict:
    """``make target``, timed; whether it was built before (then the seconds are make's check alone)."""
    built_before, start = stamp.exists(), time.perf_counter()
    run(["make", target])
    return {"make": target, "built_before": built_before, "seconds": round(time.perf_counter() - start, 1)}


def torch_sees_the_gpu() -> dict:
    code = "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
    return {"device": run([str(ROOT / ".venv" / "bin" / "python"), "-c", code]).stdout.strip()}


def serve(python: Path, device: str, workdir: Path) -> dict:
    """tests/test_vllm.py's server tests on ``device``; each test's outcome and seconds."""
    report = workdir / "serve.xml"
    env = {**os.environ, "JUICEBOX_VLLM_PYTHON": str(python), "JUICEBOX_VLLM_DEVICE": device}
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_vllm.py", "-m", "vllm", "-k", "not workflow",
                           "-p", "no:cacheprovider", f"--junitxml={report}", "-q"],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    tests = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        tests[case.get("name")] = {"outcome": outcome, "seconds": round(float(case.get("time")), 1)}
    if proc.returncode != 0:
        failed = [name for name, test in tests.items() if test["outcome"] in ("failure", "error")]
        raise RuntimeError(f"{failed or 'pytest'} failed; tests: {tests}; output: {proc.stdout[-2000:]}")
    return tests


def workflow_config(python: Path, device: str) -> dict:
    """The CI config with every rollout and evaluation engine a launched vLLM (one shard) and, on a
    GPU, SFT and DPO on one GPU under accelerate."""
    config = yaml.safe_load(CI_CONFIG.read_text())
    engine = {"type": "openai", "launch": {"kind": "vllm", "device": device, "python": str(python),
                                          "startup_timeout": 600}}
    defaults = config["defaults"]
    defaults["rollouts"].update(engine=engine, shards=1)
    defaults["eval"]["engine"] = engine
    if device == "gpu":
        for stage in ("sft", "train"):
            defaults[stage].update(gpus=1, launcher="accelerate")
    return config


def workflow(python: Path, device: str, workdir: Path) -> dict:
    """The CI workflow through vLLM for WORKFLOW_RUNS; what it wrote, checked; its jobs' seconds."""
    shutil.copytree(ROOT / "config", workdir / "config", dirs_exist_ok=True)
    shutil.copytree(ROOT / ".test", workdir / ".test", dirs_exist_ok=True)
    config = workflow_config(python, device)
    (workdir / "vllm.yaml").write_text(yaml.safe_dump(config))
    targets = [layout.eval_path("metrics", "dpo", exp=exp, round=1, bench=bench)
               for exp, bench in WORKFLOW_RUNS.items()]
    snakemake = Path(sys.executable).parent / "snakemake"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    run([str(snakemake), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--profile",
         str(ROOT / "profiles" / "local"), "--configfile", "vllm.yaml", "--cores", str(min(os.cpu_count() or 1, 8)),
         *targets], cwd=workdir, env=env)
    details = {"seconds": round(time.perf_counter() - start, 1), "experiments": {}}
    n = config["defaults"]["rollouts"]["sampling"]["n"]
    for exp, bench in WORKFLOW_RUNS.items():
        rollouts = list(read_jsonl(workdir / layout.path("rollouts", "rollouts", exp=exp, round=1)))
        if not rollouts or any(len(r["samples"]) != n for r in rollouts):
            raise AssertionError(f"{exp}: {len(rollouts)} rollout records, not all with {n} answers")
        if exp == "vlm" and not all(r.get("images") for r in rollouts):
            raise AssertionError("vlm: rollout records without their images")
        metrics = read_json(workdir / layout.eval_path("metrics", "dpo", exp=exp, round=1, bench=bench))
        if metrics["engine"]["type"] != "openai" or metrics["engine"]["served_model"] != "adapter":
            raise AssertionError(f"{exp}: the dpo evaluation did not go through the served adapter: "
                                 f"{metrics['engine']}")
        server_log = (workdir / layout.log_folder("round_eval", "eval/servers-{bench}-{variant}").format(
            exp=exp, round=1, bench=bench, variant="dpo")) / "server-0.log"
        if "vllm" not in server_log.read_text().lower():
            raise AssertionError(f"{server_log} is not a vLLM server's log")
        details["experiments"][exp] = {"rollout_records": len(rollouts), "benchmark": bench,
                                       "dpo_metrics": metrics.get("metrics"), "jobs_s": job_seconds(workdir, exp)}
    return details


def job_seconds(workdir: Path, exp: str) -> dict:
    """Each job's wall seconds from the Snakemake benchmark files of an experiment."""
    seconds, folder = {}, workdir / layout.RESULTS / exp / "benchmarks"
    for path in sorted(folder.rglob("*.tsv")):
        lines = path.read_text().splitlines()
        if len(lines) > 1:
            seconds[str(path.relative_to(folder))] = round(float(lines[1].split("\t")[0]), 1)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--parts", default="envs,serve,workflow", help="comma-separated: envs, serve, workflow")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check.json")
    parser.add_argument("--workdir", type=Path, default=None, help="where the workflow runs (default: a new folder "
                        "beside --out)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts - {"envs", "serve", "workflow"}:
        parser.error(f"unknown parts: {sorted(parts - {'envs', 'serve', 'workflow'})}")
    workdir = args.workdir or args.out.parent / f"{args.out.stem}-work"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    python = PYTHONS[args.device]
    report = Report(args.out, args.device)
    if "envs" in parts:
        report.run("make venv", build_env, "venv", ROOT / ".venv" / ".installed")
        report.run(f"make {VENV_TARGETS[args.device]}", build_env, VENV_TARGETS[args.device],
                   python.parent.parent / ".installed")
        if args.device == "gpu":
            report.run("torch sees the GPU", torch_sees_the_gpu)
    if "serve" in parts:
        report.run("vLLM serves the tiny models and their adapters", serve, python, args.device, workdir)
    if "workflow" in parts:
        report.run("CI workflow through vLLM", workflow, python, args.device, workdir / "workflow")
    report.write()
    print(f"wrote {args.out}")
    sys.exit(0 if all(c["passed"] for c in report.checks) else 1)


if __name__ == "__main__":
    main()
