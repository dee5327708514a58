"""What every pairing strategy shares: the ``STRATEGIES`` registry, :class:`PairStrategy` and the
options every strategy takes (:class:`PairingOptions`), the usable samples of a prompt
(:class:`Scored`) and the reasons a prompt can have no pairs (``REASONS``).

The strategies themselves are modules of this package, registered when :mod:`juicebox.pairs` is
imported; :mod:`.build` pairs a whole set with one of them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..registry import Registry
from ..spec import Options, option

# Why a prompt produced no pairs, in the order the steps run (also the order in the ledger).
REASONS = ("no_samples", "single_sample", "equal_rewards", "below_margin", "rank_disagreement",
           "word_distance", "near_identical", "image_cap", "length_balance")


# --- samples ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scored:
    """One usable sample of a prompt: its text, reward, reward components and word count."""

    index: int
    text: str
    reward: float
    rewards: dict = field(default_factory=dict, compare=False)

    @cached_property
    def words(self) -> int:
        """Whitespace word count, the unit of RLAIF-V's distance and length balancing."""
        return len(self.text.split())

    @cached_property
    def normalised(self) -> str:
        """Lowercase text with runs of whitespace collapsed, for the near-identical check."""
        return " ".join(self.text.lower().split())


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def usable_samples(record: dict) -> list[Scored]:
    """The samples of one scored record whose reward is a number, in index order.

    A missing or null reward (or NaN) marks a failed scoring: that sample is left out. A sample
    with a reward but no text, or a reward that is not a number, is a broken input and raises.
    """
    samples = record.get("samples") or []
    if not isinstance(samples, list):
        raise ValueError(f"'samples' must be a list, found {type(samples).__name__}")
    usable, seen = [], set()
    for position, sample in enumerate(samples):
        index = sample.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"sample at position {position} needs an integer 'index', found {index!r}")
        if index in seen:
            raise ValueError(f"sample index {index} appears twice")
        seen.add(index)
        reward = sample.get("reward")
        if reward is None or (isinstance(reward, float) and math.isnan(reward)):
            continue
        if not is_number(reward):
            raise ValueError(f"sample {index}: 'reward' must be a number or null, found {reward!r}")
        if not isinstance(sample.get("text"), str):
            raise ValueError(f"sample {index} has a reward but its 'text' is {sample.get('text')!r}")
        usable.append(Scored(index, sample["text"], float(reward), dict(sample.get("rewards") or {})))
    return sorted(usable, key=lambda s: s.index)


# --- strategies ---------------------------------------------------------------------------

Candidate = tuple[Scored, Scored]


@dataclass(frozen=True)
class PairingOptions(Options):
    """The keys every strategy shares (the post-processing after the strategy's own choice)."""

    near_identical: float | None = option(0.95, "Drop a pair whose texts have a similarity ratio >= this "
                                          "(null: drop only pairs identical after normalisation, which "
                                          "always happens).", minimum=0, maximum=1)
    drop_duplicates: bool = option(False, "Keep one of a prompt's pairs with the same chosen and rejected texts "
                                   "(RLAIF-V's DeleteSameFilter).")
    max_pairs_per_image: int | None = option(None, "At most this many pairs over all prompts showing the same "
                                             "images, a seeded sample (RLAIF-V's NumFilter: 3; null: no cap).",
                                             minimum=1)
    length_balance: bool = option(False, "Drop the most length-biased pairs until the mean signed word gap "
                                  "(chosen - rejected) is within +-max_mean_length_gap (RLAIF-V's LengthFilter).")
    max_mean_length_gap: float = option(0.5, "The bound of length_balance, in words.", minimum=0)
    seed: int | None = option(None, "Pairing seed (null: the workflow's seed).")


class PairStrategy:
    """A pairing strategy: ``pairs`` proposes (chosen, rejected) candidates for one prompt.

    ``pairs`` gets at least two usable samples whose rewards are not all equal (build_pairs
    handles the other cases) and returns the candidates, or ``([], reason)`` with a reason from
    ``REASONS``. Every candidate must have chosen.reward > rejected.reward. ``rng`` is the
    prompt's seeded rng, for strategies whose choice is itself random. The per-prompt cap
    (``max_pairs_per_prompt``) is applied afterwards, by the shared post-processing, so that it
    samples only among pairs that survive the near-identical check.
    """

    Options = PairingOptions

    def __init__(self, options: PairingOptions) -> None:
        self.options = options

    def samples(self, record: dict) -> list[Scored]:
        """The samples a prompt's pairs are chosen from: its scored answers with a reward."""
        return usable_samples(record)

    @property
    def max_pairs_per_prompt(self) -> int | None:
        """The per-prompt cap of the strategy (None: no cap)."""
        return getattr(self.options, "max_pairs_per_prompt", None)

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """Candidate pairs for one prompt, or a reason when there are none."""
        raise NotImplementedError


STRATEGIES = Registry("pairing", default="best_vs_worst")
register = STRATEGIES.register
