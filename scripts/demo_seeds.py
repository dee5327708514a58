"""Print the README's "What the demo shows" tables from several seeds' results/eval.json.

    python scripts/demo_seeds.py results/seeds/eval-42.json results/seeds/eval-43.json ...

``make demo-seeds`` runs the demo for three seeds and calls this.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from juicebox.seeds import main  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(main(sys.argv[1:]), end="")
