"""DPO chosen/rejected pairs from scored rollouts, by a registered pairing strategy.

One scored record per prompt comes in (``rewards/scored.jsonl``); preference pairs in TRL's
format go out. The work is split the way Data-Juicer splits ops from the executor:

* a **strategy** (``type:`` in the config, one small class registered with ``@register``) looks
  at one prompt's usable samples and proposes candidate (chosen, rejected) pairs, or says in one
  word why it has none;
* **shared post-processing** (``PairSettings``), the same for every strategy: drop near-identical
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
import inspect
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import combinations
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .io import atomic_path, write_jsonl
from .ledger import stage as ledger_stage
from .registry import Registry

# Why a prompt produced no pairs, in the order the steps run (also the order in the ledger).
REASONS = ("no_samples", "single_sample", "equal_rewards", "below_margin", "rank_disagreement",
           "word_distance", "near_identical", "length_balance")

# Keys of the pairing config block that belong to PairSettings rather than to the strategy.
SHARED_KEYS = ("near_identical", "length_balance", "max_mean_length_gap", "seed")

LLAMAFACTORY_FILE = "pairs_llamafactory.jsonl"
IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's placeholder; it needs one per image in the prompt
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"}


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


class PairStrategy:
    """A pairing strategy: ``pairs`` proposes (chosen, rejected) candidates for one prompt.

    ``pairs`` gets at least two usable samples whose rewards are not all equal (build_pairs
    handles the other cases) and returns the candidates, or ``([], reason)`` with a reason from
    ``REASONS``. Every candidate must have chosen.reward > rejected.reward. ``rng`` is the
    prompt's seeded rng, for strategies whose choice is itself random. The per-prompt cap
    (``max_pairs_per_prompt``) is applied afterwards, by the shared post-processing, so that it
    samples only among pairs that survive the near-identical check.
    """

    max_pairs_per_prompt: int | None = None

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """Candidate pairs for one prompt, or a reason when there are none."""
        raise NotImplementedError


STRATEGIES = Registry("pairing")
register = STRATEGIES.register


def _check_cap(value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"max_pairs_per_prompt must be null or an integer >= 1, found {value!r}")
    return value


@register("best_vs_worst")
class BestVsWorst(PairStrategy):
    """One pair per prompt: the highest-reward sample against the lowest-reward one.

    Ties go to the lowest sample index on both ends, so the choice is deterministic without the
    rng. Takes no config keys.
    """

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """The (best, worst) pair, or ``equal_rewards`` when every reward is the same."""
        best = min(samples, key=lambda s: (-s.reward, s.index))
        worst = min(samples, key=lambda s: (s.reward, s.index))
        if best.reward == worst.reward:
            return [], "equal_rewards"
        return [(best, worst)], None


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

    def __init__(self, min_margin: float = 0.0, max_pairs_per_prompt: int | None = None) -> None:
        if not _is_number(min_margin) or min_margin < 0:
            raise ValueError(f"all_pairs: min_margin must be a number >= 0, found {min_margin!r}")
        self.min_margin = float(min_margin)
        self.max_pairs_per_prompt = _check_cap(max_pairs_per_prompt)

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """All ordered pairs whose margin reaches ``min_margin``, or ``below_margin``."""
        ordered = [(a, b) if a.reward > b.reward else (b, a)
                   for a, b in combinations(samples, 2) if a.reward != b.reward]
        kept = [(c, r) for c, r in ordered if _at_least(c.reward - r.reward, self.min_margin)]
        return (kept, None) if kept else ([], "below_margin")


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
    """

    def __init__(self, rank: int = 3, rank_keys: list[str] | None = None, distance: int = 25,
                 max_pairs_per_prompt: int | None = 3) -> None:
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rlaifv: rank must be an integer >= 1, found {rank!r}")
        if not _is_number(distance) or distance <= 0:
            raise ValueError(f"rlaifv: distance must be a number > 0, found {distance!r}")
        keys = list(rank_keys or [])
        if not all(isinstance(k, str) for k in keys):
            raise ValueError(f"rlaifv: rank_keys must be a list of strings, found {rank_keys!r}")
        self.rank = rank
        self.rank_keys = keys
        self.distance = distance
        self.max_pairs_per_prompt = _check_cap(max_pairs_per_prompt)

    @staticmethod
    def _value(sample: Scored, key: str | None) -> float:
        if key is None:
            return sample.reward
        value = sample.rewards.get(key)
        if not _is_number(value):
            raise ValueError(f"rlaifv: rank key {key!r} of sample {sample.index} should be a number, found "
                             f"{value!r} (its rewards have keys {sorted(sample.rewards)})")
        return float(value)

    def _top_and_bottom(self, samples: list[Scored]) -> tuple[set[int], set[int]]:
        """Indices in the top / bottom ``k`` of every ranking (ties: lower index ranks higher)."""
        k = min(self.rank, len(samples) // 2)
        top: set[int] | None = None
        bottom: set[int] | None = None
        for key in self.rank_keys or [None]:
            order = sorted(samples, key=lambda s: (-self._value(s, key), s.index))
            these_top = {s.index for s in order[:k]}
            these_bottom = {s.index for s in order[len(order) - k:]}
            top = these_top if top is None else top & these_top
            bottom = these_bottom if bottom is None else bottom & these_bottom
        return top or set(), bottom or set()

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """Ranked chosen × rejected pairs within ``distance`` words, or why there are none."""
        top, bottom = self._top_and_bottom(samples)
        chosen = [s for s in samples if s.index in top]
        rejected = [s for s in samples if s.index in bottom]
        ranked = [(c, r) for c in chosen for r in rejected if c.reward > r.reward]
        if not ranked:
            return [], "rank_disagreement"
        close = [(c, r) for c, r in ranked if abs(c.words - r.words) < self.distance]
        return (close, None) if close else ([], "word_distance")


def make_strategy(config: dict) -> PairStrategy:
    """The strategy named by ``config["type"]``, built from its own keys (shared keys skipped)."""
    name = config.get("type")
    cls = STRATEGIES.lookup(name, "pairing")
    own = {k: v for k, v in config.items() if k != "type" and k not in SHARED_KEYS}
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(own) - set(accepted))
    if unknown:
        raise ValueError(f"pairing type {name!r} does not take {unknown}; it takes {accepted} "
                         f"plus the shared keys {list(SHARED_KEYS)}")
    return cls(**own)


# --- shared post-processing ---------------------------------------------------------------

@dataclass(frozen=True)
class PairSettings:
    """Settings every strategy shares, from the same pairing config block.

    ``near_identical``: drop a pair whose texts have a similarity ratio >= this (null: only
    pairs identical after normalisation are dropped, which always happens). ``length_balance``
    with ``max_mean_length_gap``: see ``balance_lengths``. ``seed``: the pairing seed; a
    ``seed`` key in the block overrides the seed passed to ``build_pairs``.
    """

    near_identical: float | None = 0.95
    length_balance: bool = False
    max_mean_length_gap: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.near_identical is not None and not (_is_number(self.near_identical)
                                                    and 0 <= self.near_identical <= 1):
            raise ValueError(f"pairing: near_identical must be null or in [0, 1], found {self.near_identical!r}")
        if not isinstance(self.length_balance, bool):
            raise ValueError(f"pairing: length_balance must be true or false, found {self.length_balance!r}")
        if not _is_number(self.max_mean_length_gap) or self.max_mean_length_gap < 0:
            raise ValueError(f"pairing: max_mean_length_gap must be a number >= 0, found "
                             f"{self.max_mean_length_gap!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"pairing: seed must be an integer, found {self.seed!r}")

    @classmethod
    def from_config(cls, config: dict, seed: int) -> PairSettings:
        """Build from the pairing config block; ``seed`` is used unless the block sets one."""
        defaults = cls()
        return cls(near_identical=config.get("near_identical", defaults.near_identical),
                   length_balance=config.get("length_balance", defaults.length_balance),
                   max_mean_length_gap=config.get("max_mean_length_gap", defaults.max_mean_length_gap),
                   seed=config.get("seed", seed))

    def is_near_identical(self, chosen: Scored, rejected: Scored) -> bool:
        """Whether the two texts are too alike to teach a preference."""
        a, b = chosen.normalised, rejected.normalised
        if a == b:
            return True
        if self.near_identical is None:
            return False
        # The cheap upper bounds rule out most pairs before the quadratic ratio.
        # autojunk=False: with it, characters frequent in a long text count as junk and the ratio
        # of two near-copies comes out far too low.
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        return (matcher.real_quick_ratio() >= self.near_identical and matcher.quick_ratio() >= self.near_identical
                and matcher.ratio() >= self.near_identical)


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


def prompt_pairs(record: dict, strategy: PairStrategy, settings: PairSettings) -> tuple[list[Candidate], str | None]:
    """One prompt's pairs before length balancing, or the reason it has none."""
    samples = usable_samples(record)
    if not samples:
        return [], "no_samples"
    if len(samples) == 1:
        return [], "single_sample"
    if len({s.reward for s in samples}) == 1:
        return [], "equal_rewards"
    rng = prompt_rng(settings.seed, record["id"])
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
    distinct = [(c, r) for c, r in candidates if not settings.is_near_identical(c, r)]
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


# --- rows and the whole set ---------------------------------------------------------------

def _messages(prompt: str | list[dict]) -> list[dict]:
    """Chat messages with only role and content (what the parquet schema holds)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def pair_row(record: dict, pair: Candidate, conversational: bool) -> dict:
    """One TRL preference row: prompt/chosen/rejected plus ids, rewards, margin and images."""
    chosen, rejected = pair
    if conversational:
        prompt: Any = _messages(record["prompt"])
        chosen_col: Any = [{"role": "assistant", "content": chosen.text}]
        rejected_col: Any = [{"role": "assistant", "content": rejected.text}]
    else:
        prompt, chosen_col, rejected_col = record["prompt"], chosen.text, rejected.text
    return {
        "id": f"{record['id']}:{chosen.index}-{rejected.index}",
        "prompt_id": record["id"],
        "task": record.get("task"),
        "prompt": prompt,
        "chosen": chosen_col,
        "rejected": rejected_col,
        "chosen_reward": chosen.reward,
        "rejected_reward": rejected.reward,
        "margin": chosen.reward - rejected.reward,
        "chosen_index": chosen.index,
        "rejected_index": rejected.index,
        "images": list(record.get("images") or []),
    }


def _answer_text(answer: str | list[dict]) -> str:
    """The text of a chosen/rejected column, plain or one assistant message."""
    return answer if isinstance(answer, str) else answer[0]["content"]


def check_rows(rows: list[dict]) -> None:
    """Raise unless every row prefers a strictly better-rewarded answer (the pairs' guarantee)."""
    for row in rows:
        if not (row["chosen_reward"] > row["rejected_reward"] and row["margin"] > 0):
            raise ValueError(f"pair {row['id']}: chosen reward {row['chosen_reward']} is not above "
                             f"rejected reward {row['rejected_reward']}")


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
    return len(_answer_text(row["chosen"]).split()) - len(_answer_text(row["rejected"]).split())


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
    dataset needs one format.
    """
    settings = PairSettings.from_config(strategy, seed)
    chooser = make_strategy(strategy)
    ids = [record["id"] for record in records]
    repeated = sorted(pid for pid, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValueError(f"pairs: prompt ids must be unique, repeated: {repeated[:5]}")
    by_prompt: dict[str, list[Candidate]] = {}
    reasons: dict[str, str] = {}
    for record in records:
        try:
            found, reason = prompt_pairs(record, chooser, settings)
        except ValueError as err:
            raise ValueError(f"prompt {record['id']!r}: {err}") from err
        if reason is None:
            by_prompt[record["id"]] = found
        else:
            reasons[record["id"]] = reason
    if settings.length_balance:
        by_prompt = balance_lengths(by_prompt, settings.max_mean_length_gap)
        reasons.update({pid: "length_balance" for pid, plist in by_prompt.items() if not plist})
    conversational = any(isinstance(record["prompt"], list) for record in records)
    rows = [pair_row(record, pair, conversational) for record in records for pair in by_prompt.get(record["id"], [])]
    check_rows(rows)
    counts = Counter(reasons.values())
    kept = len(records) - len(reasons)
    stats = {**pair_stats(rows, len(records)), "strategy": dict(strategy), "settings": asdict(settings)}
    return PairResult(rows=rows, stage=ledger_stage(len(records), kept, {r: counts[r] for r in REASONS if counts[r]}),
                      stats=stats, reasons={pid: reasons[pid] for pid in ids if pid in reasons},
                      conversational=conversational)


# --- writers ------------------------------------------------------------------------------

_CHAT = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def pairs_schema(conversational: bool) -> pa.Schema:
    """The parquet schema of the rows; chat columns are list<struct<role, content>>."""
    text = _CHAT if conversational else pa.string()
    return pa.schema([("id", pa.string()), ("prompt_id", pa.string()), ("task", pa.string()),
                      ("prompt", text), ("chosen", text), ("rejected", text),
                      ("chosen_reward", pa.float64()), ("rejected_reward", pa.float64()), ("margin", pa.float64()),
                      ("chosen_index", pa.int64()), ("rejected_index", pa.int64()),
                      ("images", pa.list_(pa.string()))])


def write_pairs(rows: list[dict], parquet_path: str | Path, jsonl_path: str | Path,
                conversational: bool | None = None) -> None:
    """Write the rows as parquet and JSONL, both atomically, after checking the reward order.

    ``conversational`` defaults to the form of the first row (plain strings when there are no
    rows); pass ``PairResult.conversational`` to get the right schema for an empty set.
    """
    check_rows(rows)
    if conversational is None:
        conversational = bool(rows) and isinstance(rows[0]["prompt"], list)
    schema = pairs_schema(conversational)
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(parquet_path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    write_jsonl(jsonl_path, rows)


def needs_sharegpt(rows: list[dict], conversational: bool) -> bool:
    """Whether LLaMA-Factory needs the sharegpt file: chat prompts, or images to place in the text."""
    return conversational or any(row["images"] for row in rows)


def _sharegpt_turns(row: dict) -> list[dict]:
    """The prompt as sharegpt turns; <image> placeholders added so there is one per image."""
    turns = []
    for message in _messages(row["prompt"]):
        if message["role"] not in SHAREGPT_ROLES:
            raise ValueError(f"pair {row['id']}: role {message['role']!r} has no sharegpt tag; "
                             f"expected one of {list(SHAREGPT_ROLES)}")
        turns.append({"from": SHAREGPT_ROLES[message["role"]], "value": message["content"]})
    body = turns[1:] if turns and turns[0]["from"] == "system" else turns
    expected = ["human" if k % 2 == 0 else "gpt" for k in range(len(body))]
    if [t["from"] for t in body] != expected or len(body) % 2 == 0:
        raise ValueError(f"pair {row['id']}: LLaMA-Factory ranking data needs turns alternating user/assistant "
                         f"from a user turn to a user turn, found {[t['from'] for t in body]}")
    missing = len(row["images"]) - sum(t["value"].count(IMAGE_PLACEHOLDER) for t in body)
    if missing > 0:
        body[0]["value"] = IMAGE_PLACEHOLDER * missing + body[0]["value"]
    return turns


def llamafactory_rows(rows: list[dict]) -> list[dict]:
    """Rows in LLaMA-Factory's sharegpt ranking form: conversations, chosen/rejected gpt turns."""
    out = []
    for row in rows:
        entry = {"id": row["id"], "conversations": _sharegpt_turns(row),
                 "chosen": {"from": "gpt", "value": _answer_text(row["chosen"])},
                 "rejected": {"from": "gpt", "value": _answer_text(row["rejected"])}}
        if row["images"]:
            entry["images"] = list(row["images"])
        out.append(entry)
    return out


def write_llamafactory(rows: list[dict], path: str | Path) -> int:
    """Write ``pairs_llamafactory.jsonl`` (sharegpt form) atomically; return the row count."""
    check_rows(rows)
    return write_jsonl(path, llamafactory_rows(rows))


def dataset_info(name: str, file_name: str, conversational: bool, images: bool = False) -> dict:
    """LLaMA-Factory's ``dataset_info.json`` entry for the pairs.

    Plain prompts: alpaca style over ``pairs.jsonl`` (prompt/chosen/rejected strings). Chat
    prompts: sharegpt style over the file from ``write_llamafactory``. ``images`` adds the
    images column (LLaMA-Factory then needs <image> placeholders: use the sharegpt file).
    """
    if conversational:
        entry = {"file_name": file_name, "formatting": "sharegpt", "ranking": True,
                 "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
                 "tags": dict(SHAREGPT_TAGS)}
    else:
        entry = {"file_name": file_name, "ranking": True,
                 "columns": {"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}}
    if images:
        entry["columns"]["images"] = "images"
    return {name: entry}
