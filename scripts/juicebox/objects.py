"""Objects a text mentions, read against a vocabulary of object names and their synonyms (CHAIR's
synonyms file), and how a text's objects compare with an image's annotated ones: one reader for the
``chair`` benchmark and the ``object_grounding`` reward."""

from __future__ import annotations

import re
from pathlib import Path


class VocabularyError(ValueError):
    """A synonyms file that cannot be read; the message names the file and line."""


_WORD = re.compile(r"[a-z]+")


def read_synonyms(path: str | Path) -> dict[tuple[str, ...], str]:
    """CHAIR's synonyms file (``data/synonyms.txt`` of LisaAnne/Hallucination) → {the words of a
    name: its canonical object}.

    Format: one object per line, ``object, synonym, synonym, ...``, the canonical object first;
    a name may have several words ("teddy bear"); names are lower-cased; blank lines are skipped.
    A name given on two lines for two objects is an error naming both lines.
    """
    names: dict[tuple[str, ...], tuple[str, int]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise VocabularyError(f"cannot read the synonyms file {path}: {err}") from err
    for lineno, line in enumerate(lines, start=1):
        entries = [entry.strip() for entry in line.split(",") if entry.strip()]
        if not entries:
            continue
        keys = [tuple(_WORD.findall(entry.lower())) for entry in entries]
        if not all(keys):
            raise VocabularyError(f"{path}:{lineno}: a name without letters in {line.strip()!r}")
        canonical = " ".join(keys[0])
        for key in keys:
            if key in names and names[key][0] != canonical:
                raise VocabularyError(f"{path}:{lineno}: {' '.join(key)!r} names {canonical!r} here and "
                                     f"{names[key][0]!r} on line {names[key][1]}")
            names.setdefault(key, (canonical, lineno))
    if not names:
        raise VocabularyError(f"{path}: no objects in the synonyms file")
    return {key: canonical for key, (canonical, _) in names.items()}


class ObjectVocabulary:
    """The objects a synonyms file names, and the objects a text mentions.

    A text is read as lower-case words (runs of a-z; anything else separates words). A word the
    vocabulary does not hold as written is read as its singular when that is a vocabulary word:
    without a final -s ("circles" → "circle"), without -es ("boxes" → "box") or with -ies as -y
    ("ponies" → "pony"), tried in that order. The words are then matched to names from left to
    right, the longest name first ("hot dog" before "dog"), and each match gives its canonical
    object. CHAIR's hand-made rules for COCO ("baby bird" is a bird, not a person; "toilet seat"
    is no chair) and its lemmatiser are not used: only the synonyms file decides.
    """

    def __init__(self, names: dict[tuple[str, ...], str]):
        self.names = names
        self.words = {word for name in names for word in name}
        self.longest = max(len(name) for name in names)

    def singular(self, word: str) -> str:
        """The word, or its singular when only that is a vocabulary word (see the class doc)."""
        if word in self.words:
            return word
        candidates = []
        if word.endswith("s"):
            candidates.append(word[:-1])
        if word.endswith("es"):
            candidates.append(word[:-2])
        if word.endswith("ies"):
            candidates.append(word[:-3] + "y")
        return next((candidate for candidate in candidates if candidate in self.words), word)

    def tokens(self, text: str) -> list[str]:
        """The text's words, each in the form the vocabulary holds."""
        return [self.singular(word) for word in _WORD.findall(text.lower())]

    def mentioned(self, text: str) -> list[str]:
        """The canonical objects the text mentions, each once, in order of first mention."""
        words, found, i = self.tokens(text), [], 0
        while i < len(words):
            for size in range(min(self.longest, len(words) - i), 0, -1):
                canonical = self.names.get(tuple(words[i:i + size]))
                if canonical is not None:
                    if canonical not in found:
                        found.append(canonical)
                    i += size
                    break
            else:
                i += 1
        return found

    def grounding(self, text: str, annotated: set[str]) -> dict[str, list[str]]:
        """The canonical objects ``text`` mentions, those of them not among ``annotated`` (canonical
        names: hallucinated) and those among them (covered), each in order of first mention."""
        mentioned = self.mentioned(text)
        return {"mentioned": mentioned, "hallucinated": [name for name in mentioned if name not in annotated],
                "covered": [name for name in mentioned if name in annotated]}

    def canonical(self, name: str) -> str | None:
        """The canonical object ``name`` (an object or one of its synonyms) names, or None."""
        return self.names.get(tuple(self.tokens(name)))
