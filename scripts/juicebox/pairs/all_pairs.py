"""The ``all_pairs`` pairing strategy: every two samples far enough apart."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from itertools import combinations

from ..spec import option
from .base import Candidate, PairingOptions, PairStrategy, Scored, register


def _at_least(diff: float, bound: float) -> bool:
    # 0.3 - 0.1 is 0.19999999999999998 in floating point; a margin that equals min_margin on
    # paper must pass.
    return diff >= bound or math.isclose(diff, bound, rel_tol=1e-9, abs_tol=1e-12)


@register("all_pairs")
class AllPairs(PairStrategy):
    """Every two samples with different rewards, the higher one chosen.

    Keeps a pair when chosen − rejected >= ``min_margin`` (and always > 0); at most
    ``max_pairs_per_prompt`` per prompt (null: all), drawn with the prompt's seeded rng.
    """

    @dataclass(frozen=True)
    class Options(PairingOptions):
        """all_pairs keys."""

        min_margin: float = option(0.0, "Smallest reward margin (chosen - rejected) a pair may have.", minimum=0)
        max_pairs_per_prompt: int | None = option(None, "At most this many pairs per prompt, a seeded sample "
                                                  "(null: all).", minimum=1)

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """All ordered pairs whose margin reaches ``min_margin``, or ``below_margin``."""
        ordered = [(a, b) if a.reward > b.reward else (b, a)
                   for a, b in combinations(samples, 2) if a.reward != b.reward]
        kept = [(c, r) for c, r in ordered if _at_least(c.reward - r.reward, self.options.min_margin)]
        return (kept, None) if kept else ([], "below_margin")
