"""The pairs of a whole set of scored records: each prompt's candidates from the strategy, then the
post-processing every strategy shares (near-identical pairs dropped, the per-prompt cap, length
balancing), the rows in TRL's format and the ledger stage (see :mod:`juicebox.pairs`).
"""

from __future__ import annotations

import difflib
import random
from collections import Counter
from dataclasses import dataclass

from ..ledger import stage as ledger_stage
from ..records import record_images
from .base import REASONS, STRATEGIES, Candidate, PairStrategy, Scored
from .formats import answer_text, check_rows, pair_row

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
    samples = strategy.samples(record)
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
    if strategy.options.drop_duplicates:
        seen: set[tuple[str, str]] = set()
        distinct = [pair for pair in sorted(distinct, key=_pair_order)
                    if (pair[0].text, pair[1].text) not in seen and not seen.add((pair[0].text, pair[1].text))]
    return cap_pairs(distinct, strategy.max_pairs_per_prompt, rng), None


def cap_per_image(by_prompt: dict[str, list[Candidate]], records: list[dict], cap: int,
                  seed: int) -> dict[str, list[Candidate]]:
    """At most ``cap`` pairs over the prompts that show the same images (a seeded sample, the same
    whatever the input order); prompts without images are not capped."""
    groups: dict[tuple[str, ...], list[tuple[str, Candidate]]] = {}
    for record in records:
        images = tuple(record_images(record))
        if images and record["id"] in by_prompt:
            groups.setdefault(images, []).extend((record["id"], pair) for pair in by_prompt[record["id"]])
    out = {pid: list(pairs) for pid, pairs in by_prompt.items()}
    for images, pairs in groups.items():
        if len(pairs) <= cap:
            continue
        ordered = sorted(pairs, key=lambda item: (item[0], *_pair_order(item[1])))
        kept = {(pid, *_pair_order(pair))
                for pid, pair in random.Random(f"{seed}:{'|'.join(images)}").sample(ordered, cap)}
        for pid in {pid for pid, _ in pairs}:
            out[pid] = [pair for pair in out[pid] if (pid, *_pair_order(pair)) in kept]
    return out


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
        "chosen_longer": sum(_row_length_gap(row) > 0 for row in rows),
        "rejected_longer": sum(_row_length_gap(row) < 0 for row in rows),
        "same_length": sum(_row_length_gap(row) == 0 for row in rows),
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
    if settings.max_pairs_per_image is not None:
        by_prompt = cap_per_image(by_prompt, records, settings.max_pairs_per_image, seed)
        reasons.update({pid: "image_cap" for pid, plist in by_prompt.items() if not plist})
    if settings.length_balance:
        by_prompt = balance_lengths(by_prompt, settings.max_mean_length_gap)
        reasons.update({pid: "length_balance" for pid, plist in by_prompt.items()
                        if not plist and pid not in reasons})
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
    balance = {key: stats[key] for key in ("pairs", "mean_length_gap_words", "chosen_longer", "rejected_longer",
                                           "same_length")}
    return PairResult(rows=rows, stage=ledger_stage(len(records), kept, {r: counts[r] for r in REASONS if counts[r]},
                                                    about=balance),
                      stats=stats, reasons={pid: reasons[pid] for pid in ids if pid in reasons},
                      conversational=conversational)
