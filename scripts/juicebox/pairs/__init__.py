"""DPO chosen/rejected pairs from scored rollouts, by a registered pairing strategy.

One scored record per prompt comes in (``rewards/scored.jsonl``); preference pairs in TRL's
format go out. The work is split the way Data-Juicer splits ops from the executor:

* a **strategy** (``type:`` in the config, one small class registered with ``@register``) looks
  at one prompt's usable samples and proposes candidate (chosen, rejected) pairs, or says in one
  word why it has none;
* **shared post-processing** (``PairingOptions``, keys every strategy takes), the same for every strategy: drop near-identical
  pairs, cap the pairs per prompt with a seeded sample, then (optionally) balance word lengths
  across the whole set.

Design choices, and why:

* A sample is usable only when its reward is a number; a null reward means scoring failed and
  the sample neither pairs nor counts. Prompts may have any number of samples (upstream RLAIF-V
  assumed exactly k per question).
* Every random choice uses ``random.Random(f"{seed}:{prompt_id}")``, so a prompt's pairs do not
  depend on where it sits in the input or on which other prompts are there. Length balancing is
  the one step that looks across prompts; it breaks ties by margin and pair id, never by input
  order.
* Near-identical pairs are dropped *before* the per-prompt cap, so the cap never spends a slot on
  a pair that would be thrown away afterwards (upstream also removed duplicates before capping).
* Length balancing follows RLAIF-V's ``LengthFilter``: the gap is signed (chosen words minus
  rejected words) and pairs with the most extreme gap are dropped until the mean gap lies within
  ``±max_mean_length_gap``. Signed, because the aim is that DPO cannot learn "longer (or
  shorter) wins"; a bound on the mean *absolute* gap would instead demand equal lengths and drop
  almost every pair. Upstream only handled chosen-longer bias; this handles both signs.
* Every prompt is accounted for: it is either kept (at least one pair) or dropped for exactly
  one reason, the first step that left it without pairs. The ledger counts prompts, not pairs.
"""


from __future__ import annotations

import difflib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..ledger import stage as ledger_stage
from ..registry import Registry
from ..spec import Options, option
from ..records import record_images
from .formats import (LLAMAFACTORY_FILE, SHAREGPT_TAGS, answer_text, check_rows, dataset_info,  # noqa: F401
                      llamafactory_rows, needs_sharegpt, pair_row, write_llamafactory, write_pairs)

# Why a prompt produced no pairs, in the order the steps run (also the order in the ledger).
REASONS = ("no_samples", "single_sample", "equal_rewards", "below_margin", "rank_disagreement",
           "word_distance", "near_identical", "length_balance")


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


def _is_number(value: Any) -> bool:
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
        if not _is_number(reward):
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

    @property
    def max_pairs_per_prompt(self) -> int | None:
        """The per-prompt cap of the strategy (None: no cap)."""
        return getattr(self.options, "max_pairs_per_prompt", None)

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """Candidate pairs for one prompt, or a reason when there are none."""
        raise NotImplementedError


STRATEGIES = Registry("pairing", default="best_vs_worst")
register = STRATEGIES.register


# --- shared post-processing ---------------------------------------------------------------

def is_near_identical(chosen: Scored, rejected: Scored, threshold: float | None) -> bool:
    """Whether the two texts are too alike to teach a preference (similarity ratio >= threshold)."""
    a, b = chosen.normalised, rejected.normalised
    if a == b:
        return True
    if threshold is None:
        return False
    # The cheap upper bounds rule out most pairs before the quadratic ratio.
    # autojunk=False: with it, characters frequent in a long text count as junk and the ratio
    # of two near-copies comes out far too low.
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return (matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold
            and matcher.ratio() >= threshold)


def prompt_rng(seed: int, prompt_id: str) -> random.Random:
    """The rng of one prompt: depends on the seed and the prompt id only, never on input order."""
    return random.Random(f"{seed}:{prompt_id}")


def _pair_order(pair: Candidate) -> tuple[int, int]:
    return pair[0].index, pair[1].index


def cap_pairs(pairs: list[Candidate], cap: int | None, rng: random.Random) -> list[Candidate]:
    """At most ``cap`` pairs, a seeded sample, returned in (chosen, rejected) index order."""
    ordered = sorted(pairs, key=_pair_order)  # sample from a fixed order so only the rng decides
    if cap is not None and len(ordered) > cap:
        ordered = sorted(rng.sample(ordered, cap), key=_pair_order)
    return ordered


def prompt_pairs(record: dict, strategy: PairStrategy, seed: int) -> tuple[list[Candidate], str | None]:
    """One prompt's pairs before length balancing, or the reason it has none."""
    samples = usable_samples(record)
    if not samples:
        return [], "no_samples"
    if len(samples) == 1:
        return [], "single_sample"
    if len({s.reward for s in samples}) == 1:
        return [], "equal_rewards"
    rng = prompt_rng(seed, record["id"])
    candidates, reason = strategy.pairs(samples, rng)
    if reason is not None:
        if reason not in REASONS:
            raise ValueError(f"strategy {type(strategy).__name__} gave unknown reason {reason!r}; use one of {REASONS}")
        return [], reason
    if not candidates:
        raise ValueError(f"strategy {type(strategy).__name__} returned neither pairs nor a reason")
    for chosen, rejected in candidates:
        if not chosen.reward > rejected.reward:
            raise ValueError(f"strategy {type(strategy).__name__} proposed chosen {chosen.index} "
                             f"(reward {chosen.reward}) over rejected {rejected.index} (reward {rejected.reward})")
    distinct = [(c, r) for c, r in candidates 
                if not is_near_identical(c, r, strategy.options.near_identical)]
    if not distinct:
        return [], "near_identical"
    return cap_pairs(distinct, strategy.max_pairs_per_prompt, rng), None


def _length_gap(pair: Candidate) -> int:
    return pair[0].words - pair[1].words


def balance_lengths(pairs: dict[str, list[Candidate]], max_mean_gap: float) -> dict[str, list[Candidate]]:
    """Drop the most length-biased pairs until the mean signed word gap is within ±max_mean_gap.

    The gap is chosen words − rejected words. While the mean is above the bound, the pair with
    the largest gap goes; while below −bound, the pair with the smallest. Ties: smaller margin
    first (it teaches least), then prompt id and indices, so the result never depends on input
    order. Returns the surviving pairs per prompt (prompts that lost all pairs map to []).
    """
    flat = [(pid, pair) for pid, plist in pairs.items() for pair in plist]

    def tie(item: tuple[str, Candidate]) -> tuple:
        pid, (chosen, rejected) = item
        return chosen.reward - rejected.reward, pid, chosen.index, rejected.index

    def key(item: tuple[str, Candidate]) -> tuple[str, int, int]:
        return (item[0], *_pair_order(item[1]))

    # One queue per direction, each consumed from the front; a pair dropped from one queue is
    # skipped when the other reaches it.
    queues = {True: iter(sorted(flat, key=lambda item: (-_length_gap(item[1]), *tie(item)))),
              False: iter(sorted(flat, key=lambda item: (_length_gap(item[1]), *tie(item))))}
    dropped: set[tuple[str, int, int]] = set()
    total, count = sum(_length_gap(pair) for _, pair in flat), len(flat)
    while count and abs(total / count) > max_mean_gap:
        victim = next(item for item in queues[total > 0] if key(item) not in dropped)
        dropped.add(key(victim))
        total, count = total - _length_gap(victim[1]), count - 1
    return {pid: [pair for pair in plist if key((pid, pair)) not in dropped] for pid, plist in pairs.items()}


# --- the whole set ------------------------------------------------------------------------

@dataclass
class PairResult:
    """The pairs of a whole set: rows, the ledger stage (counting prompts), stats, reasons."""

    rows: list[dict]
    stage: dict
    stats: dict
    reasons: dict[str, str]  # prompt id -> why it has no pairs
    conversational: bool


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _row_length_gap(row: dict) -> int:
    return len(answer_text(row["chosen"]).split()) - len(answer_text(row["rejected"]).split())


def pair_stats(rows: list[dict], n_prompts: int) -> dict:
    """Summary numbers for summary.json: counts, mean margin and rewards, pairs per prompt."""
    per_prompt = Counter(Counter(row["prompt_id"] for row in rows).values())
    return {
        "prompts": n_prompts,
        "prompts_with_pairs": sum(per_prompt.values()),
        "pairs": len(rows),
        "mean_margin": _mean([row["margin"] for row in rows]),
        "mean_chosen_reward": _mean([row["chosen_reward"] for row in rows]),
        "mean_rejected_reward": _mean([row["rejected_reward"] for row in rows]),
        "mean_length_gap_words": _mean([float(_row_length_gap(row)) for row in rows]),
        "pairs_per_prompt": {str(n): per_prompt[n] for n in sorted(per_prompt)},
    }


def build_pairs(records: list[dict], strategy: dict, seed: int) -> PairResult:
    """Pairs for every scored record, with each prompt kept or dropped for one reason.

    ``strategy`` is the pairing config block (``type`` plus strategy and shared keys). Rows
    come in input prompt order, then by chosen index, then rejected index. When any prompt is
    chat messages, every row is conversational (a string prompt becomes one user turn), since a
    dataset needs one format; when any pair has images, every row's prompt is chat turns in
    content parts (:func:`vision_chat`, TRL's vision format), for the same reason.
    """
    chooser = STRATEGIES.build(strategy, "pairing")
    settings = chooser.options
    seed = seed if settings.seed is None else settings.seed
    ids = [record["id"] for record in records]
    repeated = sorted(pid for pid, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValueError(f"pairs: prompt ids must be unique, repeated: {repeated[:5]}")
    by_prompt: dict[str, list[Candidate]] = {}
    reasons: dict[str, str] = {}
    for record in records:
        try:
            found, reason = prompt_pairs(record, chooser, seed)
        except ValueError as err:
            raise ValueError(f"prompt {record['id']!r}: {err}") from err
        if reason is None:
            by_prompt[record["id"]] = found
        else:
            reasons[record["id"]] = reason
    if settings.length_balance:
        by_prompt = balance_lengths(by_prompt, settings.max_mean_length_gap)
        reasons.update({pid: "length_balance" for pid, plist in by_prompt.items() if not plist})
    paired = [record for record in records if by_prompt.get(record["id"])]
    parts = any(record_images(record) for record in paired)
    conversational = parts or any(isinstance(record["prompt"], list) for record in records)
    rows = []
    for record in paired:
        try:
            rows.extend(pair_row(record, pair, conversational, parts) for pair in by_prompt[record["id"]])
        except ValueError as err:  # the prompt places some of its images but not all
            raise ValueError(f"prompt {record['id']!r}: {err}") from err
    check_rows(rows)
    counts = Counter(reasons.values())
    kept = len(records) - len(reasons)
    stats = {**pair_stats(rows, len(records)), "strategy": {"type": chooser.type, **settings.to_dict()}, "seed": seed}
    return PairResult(rows=rows, stage=ledger_stage(len(records), kept, {r: counts[r] for r in REASONS if counts[r]}),
                      stats=stats, reasons={pid: reasons[pid] for pid in ids if pid in reasons},
                      conversational=conversational)



# Registers the strategies (one module each).
from .all_pairs import AllPairs  # noqa: E402,F401
from .best_vs_worst import BestVsWorst  # noqa: E402,F401
from .rlaifv import RlaifV  # noqa: E402,F401
