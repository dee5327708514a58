"""Scoring primitives shared by rewards and benchmarks: math answers, captions, CIs, pass@k.

Design:

* **Math** is judged by math-verify only (``parse`` + ``verify``), so a reward and a benchmark
  agree on what "correct" means. Gold answers are reduced to their final answer first
  (``#### N`` for GSM8K, the last ``\\boxed{}`` for MATH) and parsed as LaTeX; predictions are
  parsed with math-verify's default extraction (last ``\\boxed{}``, else last expression), except
  that a prediction holding a GSM8K ``#### N`` line is judged on ``N`` (models fine-tuned on
  GSM8K answer that way, and the last number of such a text would be the right one anyway
  only by luck). math-verify's timeouts use ``signal.alarm``, which only works in the main
  thread: we keep them there and switch them off elsewhere, so scoring works in worker threads
  too. Nothing a model writes makes these functions raise: garbage is simply not correct.
* **Captions** are scored with pycocoevalcap exactly as COCO does (PTB tokenizer, BLEU-1..4,
  METEOR, ROUGE-L, CIDEr; no SPICE, which downloads models). Both Java tools are started once per
  call, and METEOR's process is always ended before returning.
* **Confidence intervals** are percentile bootstraps over items with a seeded numpy generator, so
  the same inputs and seed always give the same interval.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from typing import Any, Callable, Hashable, Sequence

import numpy as np

log = logging.getLogger("juicebox")

# The caption metrics, in the order they are reported.
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr")
# Stand-ins for empty text: the PTB tokenizer drops empty lines (misaligning every caption after
# them) and METEOR hangs on an empty hypothesis. Two different words, so that an empty prediction
# never "matches" an empty reference.
EMPTY_PREDICTION = "emptyprediction"
EMPTY_REFERENCE = "emptyreference"
# Seconds math-verify may spend parsing or comparing one answer (main thread only, see module doc).
MATH_TIMEOUT_S = 5

_GSM8K_ANSWER = re.compile(r"####\s*(.*)")
_PLAIN_NUMBER = re.compile(r"[-+]?\$?\s*[\d,]*\.?\d+")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


# --- math --------------------------------------------------------------------------------

def _gsm8k_final(text: str) -> str | None:
    """The text after the last ``####`` (to the end of that line, final period dropped), commas
    and ``$`` removed from plain numbers; None if there is no ``####``."""
    matches = _GSM8K_ANSWER.findall(text)
    if not matches:
        return None
    # A sentence-final period ("#### 72.") is not part of the answer.
    answer = matches[-1].strip().rstrip(".").strip()
    if _PLAIN_NUMBER.fullmatch(answer):
        # "1,000" and "$1,000" are thousands separators and currency, not a tuple.
        answer = answer.replace(",", "").replace("$", "").replace(" ", "")
    return answer


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces kept; None if none
    is closed."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for pos in range(start, len(text)):
            if text[pos] == "{":
                depth += 1
            elif text[pos] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:pos].strip()
    return None


def gold_answer_math(text: str) -> str:
    """The final answer of a gold solution: GSM8K ``#### N`` → ``N`` (commas dropped), else the
    last ``\\boxed{}`` of a MATH solution, else the whole text stripped."""
    gsm8k = _gsm8k_final(text)
    if gsm8k is not None:
        return gsm8k
    boxed = last_boxed(text)
    return boxed if boxed is not None else text.strip()


def extract_prediction_math(text: str) -> str:
    """What of a model output is judged: ``N`` if it has a GSM8K ``#### N`` line, else the whole
    text (math-verify then takes the last ``\\boxed{}`` or, failing that, the last expression)."""
    gsm8k = _gsm8k_final(text)
    return gsm8k if gsm8k else text


def _math_timeout() -> int | None:
    # signal.alarm raises outside the main thread; there we run without math-verify's timeout.
    return MATH_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


# Every sample of an item is judged against the same gold: parse it once (sympy objects are immutable).
@functools.lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> tuple:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    timeout = _math_timeout()
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    # A bare gold ("72", "\frac{1}{2}") has no math delimiters; wrapping it makes LaTeX extraction apply.
    text = gold if "$" in gold or "\\(" in gold or "\\[" in gold else f"${gold}$"
    parsed = parse(text, extraction_config=configs, parsing_timeout=timeout)
    return tuple(parsed or parse(gold, extraction_config=configs, parsing_timeout=timeout))


def math_judge(prediction: str, gold: str) -> tuple[bool, str | None]:
    """Judge one prediction against a gold answer; return (correct, what was extracted).

    ``gold`` may be a final answer ("72", "\\frac{1}{2}") or a whole GSM8K/MATH solution, which
    is reduced with ``gold_answer_math`` first. Never raises: an unparseable or pathological
    prediction is (False, None).
    """
    from math_verify import parse, verify

    if not isinstance(prediction, str) or not prediction.strip():
        return False, None
    try:
        timeout = _math_timeout()
        gold_parsed = list(_parse_gold(gold_answer_math(str(gold))))
        pred_parsed = parse(extract_prediction_math(prediction), parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False, str(pred_parsed[-1]) if pred_parsed else None
        correct = bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
        return correct, str(pred_parsed[-1])
    except Exception as err:  # math-verify and sympy raise many types on odd input; none is the caller's fault
        log.debug("math_judge: %s on prediction %.80r", type(err).__name__, prediction)
        return False, None


def math_correct(prediction: str, gold: str) -> bool:
    """True if math-verify finds ``prediction`` equal to ``gold`` (see ``math_judge``)."""
    return math_judge(prediction, gold)[0]


# --- captions ----------------------------------------------------------------------------

def _one_line(text: Any) -> str:
    # The tokenizer works line by line and METEOR reads one line per hypothesis: any line break
    # (including Unicode ones Java honours) would misalign every caption after it.
    return " ".join(str(text).split()) if text is not None else ""


def _tokenize(predictions: dict, references: dict) -> tuple[dict, dict]:
    """PTB-tokenize predictions and references in one Java run; empty results get placeholders."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    captions: dict[tuple, list[dict]] = {}
    for key, text in predictions.items():
        captions[("pred", key)] = [{"caption": _one_line(text) or EMPTY_PREDICTION}]
    for key, refs in references.items():
        captions[("ref", key)] = [{"caption": _one_line(r) or EMPTY_REFERENCE} for r in refs]
    tokens = PTBTokenizer().tokenize(captions)
    if any(len(tokens.get(key, ())) != len(value) for key, value in captions.items()):
        raise RuntimeError("PTB tokenizer returned a different number of captions than it was given")
    # Punctuation-only text ("...") is empty once the tokenizer drops punctuation.
    res = {key: [tokens[("pred", key)][0] or EMPTY_PREDICTION] for key in predictions}
    gts = {key: [t or EMPTY_REFERENCE for t in tokens[("ref", key)]] for key in references}
    return res, gts


def bleu_bootstrap_ci(predictions: dict[Hashable, str], references: dict[Hashable, list[str]], seed: int,
                      n_resamples: int = 1000, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of corpus BLEU-1..4, recomputed on each resampled item set.

    Corpus BLEU pools n-gram counts over items, so the mean of per-item BLEU is not it and an
    interval of that mean need not contain it; this recomputes the corpus statistic instead
    (pure Python, a few seconds for 1000 resamples of a few hundred items).
    """
    from pycocoevalcap.bleu.bleu import Bleu

    res, gts = _tokenize(predictions, references)
    keys = list(res)
    draws = []

    def corpus(ids: list) -> list[float]:
        sample_res = {(k, j): res[k] for j, k in enumerate(ids)}
        sample_gts = {(k, j): gts[k] for j, k in enumerate(ids)}
        return Bleu(4).compute_score(sample_gts, sample_res, verbose=0)[0]

    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        draws.append(corpus([keys[i] for i in rng.integers(0, len(keys), size=len(keys))]))
    table = np.asarray(draws)
    return {f"BLEU-{n + 1}": (float(np.quantile(table[:, n], alpha / 2)), float(np.quantile(table[:, n], 1 - alpha / 2)))
            for n in range(4)}


def _close_meteor(meteor: Any) -> None:
    """End METEOR's Java process now instead of whenever the object is garbage-collected."""
    process = meteor.meteor_p
    with meteor.lock:
        if process.stdin and not process.stdin.closed:
            process.stdin.close()
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream and not stream.closed:
                stream.close()


def caption_scores(predictions: dict[Hashable, str],
                   references: dict[Hashable, list[str]]) -> tuple[dict[str, float], dict[Hashable, dict[str, float]]]:
    """COCO caption metrics of one prediction per item: (corpus scores, per-item scores).

    Corpus BLEU and METEOR pool statistics over all items (they are not means of the per-item
    values); corpus ROUGE_L and CIDEr are the means of the per-item values. CIDEr weights n-grams
    by IDF computed over the references of the items scored together, so it depends on the set:
    a single item gives a degenerate CIDEr of 0 (every n-gram occurs in "all" documents).
    Empty predictions or references are replaced by placeholder words (see ``EMPTY_PREDICTION``).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    if set(predictions) != set(references):
        missing = sorted(map(str, set(references) ^ set(predictions)))[:5]
        raise ValueError(f"caption_scores: predictions and references cover different items (e.g. {missing})")
    if not predictions:
        raise ValueError("caption_scores: no items to score")
    empty_refs = [key for key, refs in references.items() if not refs]
    if empty_refs:
        raise ValueError(f"caption_scores: items without references: {sorted(map(str, empty_refs))[:5]}")
    # METEOR's JVM takes seconds to load its paraphrase table: start it before tokenizing.
    meteor = Meteor()
    try:
        res, gts = _tokenize(predictions, references)
        keys = list(res)
        gts = {key: gts[key] for key in keys}  # every scorer iterates gts' keys: fix one order
        bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
        meteor_corpus, meteor_items = meteor.compute_score(gts, res)
    finally:
        _close_meteor(meteor)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    cider, cider_items = Cider().compute_score(gts, res)
    corpus = dict(zip(CAPTION_METRICS, [*bleu, meteor_corpus, rouge, cider]))
    columns = [*bleu_items, meteor_items, rouge_items, cider_items]
    per_item = {key: {name: float(col[i]) for name, col in zip(CAPTION_METRICS, columns)}
                for i, key in enumerate(keys)}
    return {name: float(value) for name, value in corpus.items()}, per_item


# --- intervals and estimators ------------------------------------------------------------

def bootstrap_ci(values: Sequence[float], seed: int, n_resamples: int = 1000,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling items), seeded."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_ci: no values")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci_fn(ids: Sequence[Hashable], fn: Callable[[list], float], seed: int,
                    n_resamples: int = 1000, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of any corpus statistic ``fn(ids)`` over resampled item sets.

    ``fn`` receives a list of ids drawn with replacement (so it sees duplicates) and must
    recompute the statistic from them; use it for metrics that are not means of items.
    """
    pool = list(ids)
    if not pool:
        raise ValueError("bootstrap_ci_fn: no ids")
    rng = np.random.default_rng(seed)
    stats = [fn([pool[i] for i in rng.integers(0, len(pool), size=len(pool))]) for _ in range(n_resamples)]
    low, high = np.quantile(np.asarray(stats, dtype=float), [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: 1 - C(n-c, k) / C(n, k)
    (Chen et al. 2021)."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
