"""The ``given`` pairing strategy: preference pairs that come with the data, so DPO trains with no rollouts."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..spec import option
from .base import Candidate, PairingOptions, PairStrategy, Scored, register


@register("given")
class Given(PairStrategy):
    """The pairs a record brings: its ``pos_answers`` and ``neg_answers`` (ReaL's ``rw_pair`` kind:
    two lists of equal length, paired one to one), read from the record or, as a source's fields
    beyond the canonical ones land, from its ``meta``.

    An experiment whose pairing is ``given`` samples nothing: round 1's pairs are made from its
    processed records (its sources, through the pool and Data-Juicer's recipe like any others),
    and DPO trains on them; it has no rollouts or rewards, and one DPO round. A pair's chosen
    answer gets reward 1 and its rejected answer 0 (the data gives an order, not rewards). A
    record without the two lists gives no pair (``no_samples`` in the ledger); lists of unequal
    length, or answers that are not text, are an error naming the record.
    """

    @dataclass(frozen=True)
    class Options(PairingOptions):
        """given keys."""

        chosen_field: str = option("pos_answers", "The record (or meta) field listing the preferred answers.")
        rejected_field: str = option("neg_answers", "The record (or meta) field listing the answers they beat.")
        max_pairs_per_prompt: int | None = option(None, "At most this many of a record's pairs, a seeded sample "
                                                  "(null: all).", minimum=1)

    def _field(self, record: dict, name: str):
        value = record.get(name)
        return (record.get("meta") or {}).get(name) if value is None else value

    def samples(self, record: dict) -> list[Scored]:
        """The record's given answers: chosen ones at even indices (reward 1), rejected at odd (0)."""
        chosen = self._field(record, self.options.chosen_field)
        rejected = self._field(record, self.options.rejected_field)
        if chosen is None and rejected is None:
            return []
        if not isinstance(chosen, list) or not isinstance(rejected, list) or len(chosen) != len(rejected):
            raise ValueError(f"{self.options.chosen_field} and {self.options.rejected_field} must be lists of equal "
                             f"length (paired one to one), found {chosen!r:.60} and {rejected!r:.60}")
        if not all(isinstance(text, str) and text.strip() for text in chosen + rejected):
            raise ValueError(f"every answer of {self.options.chosen_field} and {self.options.rejected_field} must be "
                             "non-empty text")
        out = []
        for k, (good, bad) in enumerate(zip(chosen, rejected)):
            out += [Scored(2 * k, good, 1.0, {}), Scored(2 * k + 1, bad, 0.0, {})]
        return out

    def pairs(self, samples: list[Scored], rng: random.Random) -> tuple[list[Candidate], str | None]:
        """Each given pair, in order."""
        return [(samples[i], samples[i + 1]) for i in range(0, len(samples), 2)], None
