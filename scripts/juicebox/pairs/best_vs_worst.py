"""The ``best_vs_worst`` pairing strategy: one pair per prompt."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .base import Candidate, PairingOptions, PairStrategy, Scored, register


@register("best_vs_worst")
class BestVsWorst(PairStrategy):
    """One pair per prompt: the highest-reward sample against the lowest-reward one.

    Ties go to the lowest sample index on both ends, so the choice is deterministic without the
    rng. Takes only the shared keys.
    """

    @dataclass(frozen=True)
    class Options(PairingOptions):
        """Only the shared keys."""

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """The (best, worst) pair, or ``equal_rewards`` when every reward is the same."""
        best = min(samples, key=lambda s: (-s.reward, s.index))
        worst = min(samples, key=lambda s: (s.reward, s.index))
        if best.reward == worst.reward:
            return [], "equal_rewards"
        return [(best, worst)], None
