"""The ``rlaifv`` pairing strategy: RLAIF-V's data engine pairing."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..spec import option
from .base import Candidate, PairingOptions, PairStrategy, Scored, is_number, register


@register("rlaifv")
class RlaifV(PairStrategy):
    """RLAIF-V's data engine pairing, per prompt and for any number of samples.

    Samples are ranked by each key of ``rank_keys`` (values in ``sample["rewards"]``; RLAIF-V
    uses its ``sum`` and ``avg`` scores), or by the combined ``reward`` when the list is empty.
    Chosen = in the top ``rank`` of every ranking, rejected = in the bottom ``rank`` of every
    ranking. With fewer than 2·rank samples the top and bottom shrink to n // 2 each, so no
    sample is ever both. Pairs are chosen × rejected with chosen reward > rejected reward whose
    word counts differ by less than ``distance``; at most ``max_pairs_per_prompt`` per prompt,
    drawn with the prompt's seeded rng.

    ``strict_follow_rank`` (upstream's ``pair_union``): the chosen and the rejected, each in the
    order of the first ranking (best first), are paired one to one (``zip``: the best chosen with
    the best of the rejected, and so on) with no word-count check. That is the mode upstream's
    pipeline runs whatever its flag says: ``dpo_reward_pipeline.py`` calls
    ``data_pair_builder.main(rewards, sample_k, rank, distance)`` against the signature
    ``main(rewards, sample_k, rank, strict_follow_rank, distance)``, so ``distance`` (25) lands in
    the strict flag's slot. A zipped pair whose chosen reward is not above its rejected one is left
    out (upstream keeps it; every strategy here proposes only ordered pairs).
    """

    @dataclass(frozen=True)
    class Options(PairingOptions):
        """rlaifv keys."""

        rank: int = option(3, "Chosen: in the top `rank` of every ranking; rejected: in the bottom `rank`.", minimum=1)
        rank_keys: list[str] = option([], "Keys of a sample's `rewards` to rank by (e.g. dpo_implicit.sum, "
                                      "dpo_implicit.avg); empty: the combined reward.")
        distance: float = option(25, "Pairs whose word counts differ by this much or more are dropped.",
                                 exclusive_minimum=0)
        max_pairs_per_prompt: int | None = option(3, "At most this many pairs per prompt, a seeded sample "
                                                  "(null: all).", minimum=1)
        strict_follow_rank: bool = option(False, "Pair chosen and rejected one to one in rank order, no word-count "
                                          "check (what upstream's pipeline runs: it passes `distance` into this "
                                          "flag's slot).")

    @staticmethod
    def _value(sample: Scored, key: str | None) -> float:
        if key is None:
            return sample.reward
        value = sample.rewards.get(key)
        if not is_number(value):
            raise ValueError(f"rlaifv: rank key {key!r} of sample {sample.index} should be a number, found "
                             f"{value!r} (its rewards have keys {sorted(sample.rewards)})")
        return float(value)

    def _top_and_bottom(self, samples: list[Scored]) -> tuple[set[int], set[int]]:
        """Indices in the top / bottom ``k`` of every ranking (ties: lower index ranks higher)."""
        k = min(self.options.rank, len(samples) // 2)
        top: set[int] | None = None
        bottom: set[int] | None = None
        for key in self.options.rank_keys or [None]:
            order = sorted(samples, key=lambda s: (-self._value(s, key), s.index))
            these_top = {s.index for s in order[:k]}
            these_bottom = {s.index for s in order[len(order) - k:]}
            top = these_top if top is None else top & these_top
            bottom = these_bottom if bottom is None else bottom & these_bottom
        return top or set(), bottom or set()

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """Ranked chosen × rejected pairs within ``distance`` words, or why there are none."""
        top, bottom = self._top_and_bottom(samples)
        if self.options.strict_follow_rank:
            key = (self.options.rank_keys or [None])[0]
            order = sorted(samples, key=lambda s: (-self._value(s, key), s.index))
            chosen = [s for s in order if s.index in top]
            rejected = [s for s in order if s.index in bottom]
            zipped = [(c, r) for c, r in zip(chosen, rejected) if c.reward > r.reward]
            return (zipped, None) if zipped else ([], "rank_disagreement")
        chosen = [s for s in samples if s.index in top]
        rejected = [s for s in samples if s.index in bottom]
        ranked = [(c, r) for c in chosen for r in rejected if c.reward > r.reward]
        if not ranked:
            return [], "rank_disagreement"
        close = [(c, r) for c, r in ranked if abs(c.words - r.words) < self.options.distance]
        return (close, None) if close else ([], "word_distance")
