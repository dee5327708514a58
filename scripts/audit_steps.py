"""What the ``math_steps`` check finds in rollouts: of the math answers whose final answer is right,
how many have a wrong step, and how often the final answer is right with and without right steps.

    python scripts/audit_steps.py results/raw/round1/rollouts/rollouts.jsonl [--against gold]

Reads a rollouts (or scored) JSONL file, scores every sample of its math records with the
``math_steps`` reward (strict) and prints the counts and shares.
"""

import argparse

from juicebox.io import read_jsonl
from juicebox.rewards import make_reward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rollouts", nargs="+", help="rollouts.jsonl or scored.jsonl files")
    parser.add_argument("--against", choices=["arithmetic", "gold"], default="arithmetic")
    args = parser.parse_args()
    reward = make_reward({"type": "math_steps", "against": args.against})
    for path in args.rollouts:
        records = [r for r in read_jsonl(path) if r.get("task") == "math" and r.get("samples")]
        details = [d for row in reward.score(records) for _, d in row if "final_correct" in d]
        final = [d for d in details if d["final_correct"]]
        right_steps = [d for d in details if d["all_steps_right"]]
        wrong_steps = [d for d in details if not d["all_steps_right"]]
        lucky = sum(not d["all_steps_right"] for d in final)

        def share(part: int, whole: int) -> str:
            return f"{part}/{whole} = {part / whole:.3f}" if whole else f"{part}/0"

        print(f"{path} (steps checked against {args.against}): {len(records)} prompts, {len(details)} answers")
        print(f"  final answer right: {share(len(final), len(details))}")
        print(f"  final answer right with a wrong (or no) step: {share(lucky, len(final))}")
        for label, group in (("every step right", right_steps), ("a step wrong or none", wrong_steps)):
            print(f"  P(final right | {label}) = {share(sum(d['final_correct'] for d in group), len(group))}")


if __name__ == "__main__":
    main()
