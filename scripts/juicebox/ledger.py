"""The ledger: per stage, how many records came in, were kept, dropped (by op or reason), rejected.

Each rule writes the counts of its own stage; the ledger rule assembles them in pipeline order
and refuses to write a ledger that does not add up:

* within a stage: ``in + sum(added) == kept + sum(dropped) + rejected`` (``added`` appears only
  for pool steps that create records, such as ``duplicate``; without it the rule is the plain
  ``in == kept + dropped + rejected``);
* across stages: a stage's ``in`` equals the previous stage's ``kept``.

The ``training`` section has one entry per training (``sft``, ``dpo``) in the same form, counting
rows (SFT examples, DPO pairs): with a vision-language model, a row whose prompt alone (image
tokens included) exceeds ``max_length`` is dropped as ``prompt_over_max_length``, and
``truncated`` counts rows whose answer was cut to fit (``max_length`` never cuts image tokens).
For a text model TRL itself cuts rows from their end; the ledger has no count for that (null).

With DPO rounds, ``rounds`` has a section per later round (``"2"``, ...), each with its own
``stages`` (rollouts, rewards, pairs: its rollouts' ``in`` is the processed stage's ``kept`` again)
and ``training`` (its DPO), checked the same way.
"""

from __future__ import annotations

from typing import Any


class LedgerError(ValueError):
    """The counts of the stages do not add up."""


def stage(n_in: int, kept: int, dropped: dict[str, int] | None = None, rejected: int = 0,
          added: dict[str, int] | None = None, about: dict[str, Any] | None = None) -> dict[str, Any]:
    """One stage's entry, in the ledger's key order; ``about``: figures of what the stage made (the
    pairs' length balance), not counted in the sums."""
    entry: dict[str, Any] = {"in": n_in, "kept": kept, "dropped": dict(dropped or {}), "rejected": rejected}
    if added:
        entry["added"] = dict(added)
    if about:
        entry["about"] = dict(about)
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


def training_entry(summary: dict) -> dict:
    """A training's ledger entry from its ``summary.json`` (SFT: ``examples``, DPO: ``pairs``)."""
    rows = summary["examples"] if "examples" in summary else summary["pairs"]
    skipped = summary.get("skipped", 0)
    entry = stage(rows, rows - skipped, {"prompt_over_max_length": skipped} if skipped else {})
    entry["truncated"] = summary.get("truncated")
    return entry


def _check_training(training: dict, where: str = "") -> None:
    for name, entry in training.items():
        if entry["in"] != entry["kept"] + sum(entry["dropped"].values()) + entry["rejected"]:
            raise LedgerError(f"{where}training {name!r}: in {entry['in']} != kept {entry['kept']} + dropped "
                              f"{sum(entry['dropped'].values())} + rejected {entry['rejected']}")


def assemble(stages: list[tuple[str, dict]], training: dict[str, dict] | None = None,
             rounds: dict[int, tuple[list[tuple[str, dict]], dict[str, dict]]] | None = None) -> dict:
    """The ledger from (stage name, entry) pairs in pipeline order and the training entries, checked;
    ``rounds``: per later DPO round, its (stage name, entry) pairs and training entries."""
    ledger = {"stages": dict(stages), "training": dict(training or {})}
    check(ledger)
    _check_training(ledger["training"])
    if rounds:
        processed = ledger["stages"]["process"]["kept"]
        ledger["rounds"] = {}
        for r, (round_stages, round_training) in rounds.items():
            section = {"stages": dict(round_stages), "training": dict(round_training)}
            try:
                check(section)
            except LedgerError as err:
                raise LedgerError(f"round {r}: {err}") from err
            first = next(iter(section["stages"]))
            if section["stages"][first]["in"] != processed:
                raise LedgerError(f"round {r}: stage {first!r}: in {section['stages'][first]['in']} != kept "
                                  f"{processed} of the process stage")
            _check_training(section["training"], f"round {r}: ")
            ledger["rounds"][str(r)] = section
    return ledger
