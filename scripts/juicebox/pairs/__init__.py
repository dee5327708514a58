"""DPO chosen/rejected pairs from scored rollouts, by a registered pairing strategy.

One scored record per prompt comes in (``rewards/scored.jsonl``); preference pairs in TRL's
format go out. The work is split the way Data-Juicer splits ops from the executor:

* a **strategy** (``type:`` in the config, one small class registered with ``@register``) looks
  at one prompt's usable samples and proposes candidate (chosen, rejected) pairs, or says in one
  word why it has none;
* **shared post-processing** (``PairingOptions``, keys every strategy takes), the same for every
  strategy: drop near-identical pairs, cap the pairs per prompt with a seeded sample, then
  (optionally) balance word lengths across the whole set.

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

# Each strategy's module registers it.
from . import all_pairs, best_vs_worst, given, rlaifv  # noqa: F401
from .all_pairs import AllPairs
from .base import REASONS, STRATEGIES, Candidate, PairingOptions, PairStrategy, Scored, register, usable_samples
from .best_vs_worst import BestVsWorst
from .build import (PairResult, balance_lengths, build_pairs, cap_pairs, is_near_identical, pair_stats, prompt_pairs,
                    prompt_rng)
from .formats import (LLAMAFACTORY_FILE, SHAREGPT_TAGS, answer_text, check_rows, dataset_info, llamafactory_rows,
                      needs_sharegpt, pair_row, write_llamafactory, write_pairs)
from .rlaifv import RlaifV

__all__ = ["LLAMAFACTORY_FILE", "REASONS", "SHAREGPT_TAGS", "STRATEGIES", "AllPairs", "BestVsWorst", "Candidate",
           "PairResult", "PairStrategy", "PairingOptions", "RlaifV", "Scored", "answer_text", "balance_lengths",
           "build_pairs", "cap_pairs", "check_rows", "dataset_info", "is_near_identical", "llamafactory_rows",
           "needs_sharegpt", "pair_row", "pair_stats", "prompt_pairs", "prompt_rng", "register", "usable_samples",
           "write_llamafactory", "write_pairs"]
