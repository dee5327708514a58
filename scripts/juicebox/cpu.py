"""CPU runs that give the same bytes on any x86-64 CPU: the code paths of torch's numerical
libraries pinned to ones every such CPU has.

torch picks, at run time, the kernels of the widest instruction set the CPU has: ATen's own
(AVX-512, AVX2 or the baseline build), oneDNN's (convolutions: the VLM's patch embedding) and
MKL's (matrix products). Each sums in another order, so the same code, packages and seed give
other weights on another CPU, and a few flipped answers move a benchmark by more than the effects
it is used to measure. With ``cpu_reproducible: true`` (the default) every job of the workflow
starts with ``SETTINGS`` in its environment (set in ``rules/common.smk`` before any job runs,
so local, cluster and resumed jobs get them alike):

* ``ATEN_CPU_CAPABILITY=default``: ATen's kernels built for the x86-64 baseline;
* ``ONEDNN_MAX_CPU_ISA=SSE41``: oneDNN's SSE4.1 kernels (its lowest);
* ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility, the SSE2-compatible path.

Results also depend on each job's thread count (how a reduction is split): the torch jobs use
their rule's ``threads`` (1 by default in every section), so keep those settings when comparing
runs. GPU kernels are not affected (their own determinism is a different matter).
"""

from __future__ import annotations

import os
import platform
from typing import MutableMapping

SETTINGS = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "COMPATIBLE"}


def pin(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Put ``SETTINGS`` into ``environ`` (the jobs inherit it); return what was set."""
    environ.update(SETTINGS)
    return dict(SETTINGS)


def describe() -> dict[str, object]:
    """The CPU and the settings this process runs with, for provenance."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {"machine": platform.machine(), "model": model, "cpus": os.cpu_count(),
            "settings": {key: os.environ.get(key) for key in SETTINGS}}
