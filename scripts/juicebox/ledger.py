"""The ledger: per stage, how many records came in, were kept, dropped (by op or reason), rejected.

Each rule writes the counts of its own stage; the ledger rule assembles them in pipeline order
and refuses to write a ledger that does not add up:

* within a stage: ``in + sum(added) == kept + sum(dropped) + rejected`` (``added`` appears only
  for pool steps that create records, such as ``duplicate``; without it the rule is the plain
  ``in == kept + dropped + rejected``);
* across stages: a stage's ``in`` equals the previous stage's ``kept``.
"""

from __future__ import annotations

from typing import Any


class LedgerError(ValueError):
    """The counts of the stages do not add up."""


def stage(n_in: int, kept: int, dropped: dict[str, int] | None = None, rejected: int = 0,
          added: dict[str, int] | None = None) -> dict[str, Any]:
    """One stage's entry, in the ledger's key order."""
    entry: dict[str, Any] = {"in": n_in, "kept": kept, "dropped": dict(dropped or {}), "rejected": rejected}
    if added:
        entry["added"] = dict(added)
    return entry


def check(ledger: dict) -> None:
    """Raise ``LedgerError`` naming the stage whose counts do not add up."""
    previous = None
    for name, entry in ledger["stages"].items():
        added = sum(entry.get("added", {}).values())
        dropped = sum(entry["dropped"].values())
        if entry["in"] + added != entry["kept"] + dropped + entry["rejected"]:
            raise LedgerError(
                f"stage {name!r}: in {entry['in']} + added {added} != kept {entry['kept']} + dropped {dropped} "
                f"+ rejected {entry['rejected']}")
        if previous is not None and entry["in"] != ledger["stages"][previous]["kept"]:
            raise LedgerError(f"stage {name!r}: in {entry['in']} != kept {ledger['stages'][previous]['kept']} "
                              f"of the previous stage {previous!r}")
        previous = name


def assemble(stages: list[tuple[str, dict]]) -> dict:
    """The ledger from (stage name, entry) pairs in pipeline order, checked."""
    ledger = {"stages": dict(stages)}
    check(ledger)
    return ledger
