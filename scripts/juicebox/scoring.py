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
  the same inputs and seed always give the same interval. Every figure is computed from sums of
  per-item statistics (``figures``), so each resample recomputes the figure itself, corpus BLEU
  and METEOR included: an interval is of the reported figure, and brackets it.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterator, Mapping, Sequence

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


def caption_scores(predictions: dict[Hashable, str], references: dict[Hashable, list[str]]
                   ) -> tuple[dict[str, float], dict[Hashable, dict[str, float]], dict[Hashable, dict[str, float]]]:
    """COCO caption metrics of one prediction per item: (corpus scores, per-item scores, per-item
    statistics).

    Corpus BLEU and METEOR pool statistics over all items (they are not means of the per-item
    values); corpus ROUGE_L and CIDEr are the means of the per-item values. The per-item
    statistics (``caption_figures``) are the additive sufficient statistics of all seven corpus
    figures: BLEU's clipped n-gram matches, n-gram counts, hypothesis length and closest
    reference length; METEOR's per-segment matches by stage, function words, chunks and
    lengths; the per-item ROUGE_L and CIDEr. ``caption_figures`` of their sums equals
    pycocoevalcap's corpus scores (checked here on every call). CIDEr weights n-grams by IDF
    computed over the references of the items scored together, so it depends on the set: a
    single item gives a degenerate CIDEr of 0 (every n-gram occurs in "all" documents); the
    statistics keep the IDF of the whole benchmark.
    Empty predictions or references are replaced by placeholder words (see ``EMPTY_PREDICTION``).
    """
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
        bleu, bleu_items, bleu_stats = _bleu(gts, res)
        meteor_corpus, meteor_items, meteor_stats = _meteor(meteor, gts, res)
    finally:
        _close_meteor(meteor)
    rouge, rouge_items = Rouge().compute_score(gts, res)
    cider, cider_items = Cider().compute_score(gts, res)
    corpus = {name: float(value) for name, value in zip(CAPTION_METRICS, [*bleu, meteor_corpus, rouge, cider])}
    columns = [*bleu_items, meteor_items, rouge_items, cider_items]
    per_item = {key: {name: float(col[i]) for name, col in zip(CAPTION_METRICS, columns)}
                for i, key in enumerate(keys)}
    stats = {key: {"items": 1.0, **bleu_stats[i], **meteor_stats[i], "ROUGE_L": float(rouge_items[i]),
                   "CIDEr": float(cider_items[i])} for i, key in enumerate(keys)}
    recomputed = figure_values(list(stats.values()), caption_figures)
    wrong = {name: (corpus[name], value) for name, value in recomputed.items()
             if not math.isclose(corpus[name], value, rel_tol=1e-9, abs_tol=1e-12)}
    if wrong:
        raise RuntimeError(f"caption_scores: the corpus figures recomputed from the per-item statistics differ from "
                           f"pycocoevalcap's (pycocoevalcap, recomputed): {wrong}")
    return corpus, per_item, stats


def _bleu(gts: dict, res: dict) -> tuple[list[float], list[list[float]], list[dict[str, float]]]:
    """pycocoevalcap's BLEU-1..4 (``Bleu(4)``: option "closest"), per-item scores, and each item's
    statistics: hypothesis length, closest reference length, n-gram counts and clipped matches."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=4)
    for key in gts:
        scorer += (res[key][0], gts[key])
    corpus, per_item = scorer.compute_score(option="closest", verbose=0)
    stats = []
    for comps in scorer.ctest:
        testlen = comps["testlen"]
        closest = min((abs(length - testlen), length) for length in comps["reflen"])[1]
        stats.append({"bleu_testlen": float(testlen), "bleu_reflen": float(closest),
                      **{f"bleu_guess_{n + 1}": float(comps["guess"][n]) for n in range(4)},
                      **{f"bleu_correct_{n + 1}": float(comps["correct"][n]) for n in range(4)}})
    return corpus, per_item, stats


# METEOR 1.5's statistics line for one segment, field by field (MeteorStats.toString), and the
# parameters of its English default task, which pycocoevalcap runs (`-l en -norm`): alpha, beta,
# gamma, delta and the weights of the exact, stem, synonym and paraphrase stages.
METEOR_STAGES = 4
METEOR_FIELDS = ("test_length", "reference_length", "test_function_words", "reference_function_words",
                 *(f"{side}_{kind}_{stage}" for stage in range(1, METEOR_STAGES + 1)
                   for side, kind in (("test", "content"), ("reference", "content"), ("test", "function"),
                                      ("reference", "function"))),
                 "chunks", "test_word_matches", "reference_word_matches")
METEOR_PARAMETERS = {"alpha": 0.85, "beta": 0.2, "gamma": 0.6, "delta": 0.75}
METEOR_WEIGHTS = (1.0, 0.6, 0.8, 0.6)


def _meteor(meteor: Any, gts: dict, res: dict) -> tuple[float, list[float], list[dict[str, float]]]:
    """pycocoevalcap's METEOR (the same SCORE and EVAL exchange with its Java process), per-segment
    scores, and each segment's statistics line as named fields (``METEOR_FIELDS``)."""
    with meteor.lock:
        lines = []
        for key in gts:
            hypothesis = res[key][0].replace("|||", "").replace("  ", " ")
            meteor.meteor_p.stdin.write(f"SCORE ||| {' ||| '.join(gts[key])} ||| {hypothesis}\n".encode())
            meteor.meteor_p.stdin.flush()
            lines.append(meteor.meteor_p.stdout.readline().decode().strip())
        meteor.meteor_p.stdin.write(("EVAL ||| " + " ||| ".join(lines) + "\n").encode())
        meteor.meteor_p.stdin.flush()
        per_item = [float(meteor.meteor_p.stdout.readline().strip()) for _ in lines]
        corpus = float(meteor.meteor_p.stdout.readline().strip())
    stats = []
    for line in lines:
        values = line.split()
        if len(values) != len(METEOR_FIELDS):
            raise RuntimeError(f"METEOR returned {len(values)} statistics for a segment, expected "
                               f"{len(METEOR_FIELDS)}: {line!r:.200}")
        segment = {name: float(value) for name, value in zip(METEOR_FIELDS, values)}
        if _meteor_exact(segment):
            # MeteorStats.addStats leaves out the one chunk of an exact match when it sums segments.
            segment["chunks"] = 0.0
        stats.append({f"meteor_{name}": value for name, value in segment.items()})
    return corpus, per_item, stats


def _meteor_exact(t: Mapping[str, Any]) -> Any:
    """Every word of both sides matched, in one chunk: METEOR's case without fragmentation."""
    return ((t["test_word_matches"] == t["test_length"]) & (t["reference_word_matches"] == t["reference_length"])
            & (t["chunks"] == 1))


def bleu_figures(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Corpus BLEU-1..4 from summed statistics, as pycocoevalcap's ``BleuScorer.compute_score``:
    the geometric mean of (matches + 1e-15) / (counts + 1e-9) up to n, times the brevity penalty
    exp(1 − 1 / ratio) when hypothesis length / reference length < 1."""
    tiny, small = 1e-15, 1e-9
    ratio_ = (totals["bleu_testlen"] + tiny) / (totals["bleu_reflen"] + small)
    penalty = np.where(ratio_ < 1, np.exp(1 - 1 / ratio_), 1.0)
    out, product = {}, 1.0
    for n in range(1, 5):
        product = product * (totals[f"bleu_correct_{n}"] + tiny) / (totals[f"bleu_guess_{n}"] + small)
        out[f"BLEU-{n}"] = product ** (1 / n) * penalty
    return out


def meteor_figure(totals: Mapping[str, np.ndarray]) -> np.ndarray:
    """METEOR 1.5's score of summed segment statistics (``MeteorScorer.computeMetrics``): weighted
    precision and recall over content and function words, their harmonic mean weighted by alpha,
    times 1 − gamma · fragmentation^beta, fragmentation = chunks / mean matched words (0 for an
    exact match in one chunk, whose chunk the sums leave out, as ``MeteorStats.addStats``); 0
    where nothing matches."""
    t = {name: totals[f"meteor_{name}"] for name in METEOR_FIELDS}
    alpha, beta, gamma, delta = (METEOR_PARAMETERS[k] for k in ("alpha", "beta", "gamma", "delta"))

    def weighted(side: str) -> np.ndarray:
        return sum(weight * (delta * t[f"{side}_content_{stage}"] + (1 - delta) * t[f"{side}_function_{stage}"])
                   for stage, weight in enumerate(METEOR_WEIGHTS, start=1))

    def length(side: str) -> np.ndarray:
        words, function = t[f"{side}_length"], t[f"{side}_function_words"]
        return delta * (words - function) + (1 - delta) * function

    precision, recall = ratio(weighted("test"), length("test")), ratio(weighted("reference"), length("reference"))
    f_mean = ratio(precision * recall, alpha * precision + (1 - alpha) * recall)
    matched = (t["test_word_matches"] + t["reference_word_matches"]) / 2
    fragmentation = np.where(_meteor_exact(t), 0.0, ratio(t["chunks"], matched))
    return f_mean * (1 - gamma * fragmentation ** beta)


def caption_figures(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The seven corpus caption figures of summed per-item statistics (``caption_scores``)."""
    return {**bleu_figures(totals), "METEOR": meteor_figure(totals),
            "ROUGE_L": ratio(totals["ROUGE_L"], totals["items"]), "CIDEr": ratio(totals["CIDEr"], totals["items"])}


# --- intervals: figures of additive per-item statistics ------------------------------------
#
# Every benchmark figure is a function of SUMS of per-item statistics: a mean is (sum of values,
# number of items), POPE's figures are confusion counts, CHAIR's ratios object counts, corpus
# BLEU clipped n-gram counts and lengths, corpus METEOR its matches, chunks and lengths. The
# reported figure is ``figures`` of the sums over all items, and every bootstrap resample is
# ``figures`` of the sums over the resampled items: the interval is of the figure itself.

Figures = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
# Interval ends within this (relative) distance of their figure are rounding noise of a
# statistic that hardly varies: they are set to the figure.
ROUNDING = 1e-12


def stat_table(stats: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Per-item statistics (one dict per item, the same keys in each) → key → (items,) array."""
    if not stats:
        raise ValueError("stat_table: no items")
    keys = list(stats[0])
    if any(set(row) != set(keys) for row in stats):
        raise ValueError("stat_table: items have different statistics")
    return {key: np.asarray([float(row[key]) for row in stats]) for key in keys}


# Resample counts are made in blocks of at most this many cells, so memory stays bounded for
# benchmarks of hundreds of thousands of items.
BLOCK_CELLS = 20_000_000


def resample_counts(n: int, seed: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Blocks of rows (resamples × ``n``), ``n_resamples`` rows in all: how often each of ``n``
    items is drawn in a bootstrap resample of ``n`` draws with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    rows = max(1, BLOCK_CELLS // max(n, 1))
    for start in range(0, n_resamples, rows):
        size = min(rows, n_resamples - start)
        draws = rng.integers(0, n, size=(size, n))
        flat = (draws + n * np.arange(size)[:, None]).ravel()
        yield np.bincount(flat, minlength=n * size).reshape(size, n).astype(float)


def figure_values(stats: Sequence[Mapping[str, float]], figures: Figures) -> dict[str, float]:
    """The figures of the items' summed statistics."""
    table = stat_table(stats)
    return {name: float(value[0]) for name, value in
            figures({key: np.asarray([column.sum()]) for key, column in table.items()}).items()}


def _resampled(table: dict[str, np.ndarray], blocks: Iterator[np.ndarray], figures: Figures) -> dict[str, np.ndarray]:
    parts = [figures({key: counts @ column for key, column in table.items()}) for counts in blocks]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _interval(draws: np.ndarray, point: float, alpha: float) -> tuple[float, float]:
    low, high = (float(x) for x in np.quantile(draws, [alpha / 2, 1 - alpha / 2]))
    noise = ROUNDING * max(1.0, abs(point))
    return (point if abs(low - point) <= noise else low), (point if abs(high - point) <= noise else high)


def bootstrap_figures(stats: Sequence[Mapping[str, float]], figures: Figures, seed: int, n_resamples: int = 1000,
                      alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of each figure: ``figures`` of the summed statistics of
    every resample of the items (seeded: the same inputs and seed give the same intervals)."""
    table = stat_table(stats)
    point = figure_values(stats, figures)
    draws = _resampled(table, resample_counts(len(stats), seed, n_resamples), figures)
    return {name: _interval(draws[name], point[name], alpha) for name in point}


def paired_bootstrap_figures(stats_a: Sequence[Mapping[str, float]], stats_b: Sequence[Mapping[str, float]],
                             figures: Figures, seed: int, n_resamples: int = 1000,
                             alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Paired percentile bootstrap intervals of figure(a) − figure(b) over the same items (position
    i of both lists is one item): each resample draws the same items for both sides."""
    if len(stats_a) != len(stats_b):
        raise ValueError("paired_bootstrap_figures: the two sides have different numbers of items")
    point_a, point_b = figure_values(stats_a, figures), figure_values(stats_b, figures)
    draws_a = _resampled(stat_table(stats_a), resample_counts(len(stats_a), seed, n_resamples), figures)
    draws_b = _resampled(stat_table(stats_b), resample_counts(len(stats_b), seed, n_resamples), figures)
    return {name: _interval(draws_a[name] - draws_b[name], point_a[name] - point_b[name], alpha)
            for name in point_a if name in point_b}


# z_{1-alpha/2} + z_{power} for alpha 0.05 and power 0.8: an effect this many standard errors
# away from 0 is detected (its interval clear of 0) four times in five.
MDE_Z = 1.959964 + 0.841621


@dataclass(frozen=True)
class TwoLevel:
    """A figure over replicates and items: its value (of the pooled statistics), percentile interval
    from the two-level bootstrap, the bootstrap standard error and the smallest effect an interval
    this wide detects with power 0.8 (``MDE_Z`` standard errors)."""

    value: float
    ci95: tuple[float, float]
    se: float
    mde: float


def _replicate_table(stats: Sequence[Sequence[Mapping[str, float]]]) -> dict[str, np.ndarray]:
    """stats[r][i] (replicate r's statistics of item i) → key → (replicates, items) array."""
    if not stats or len({len(rep) for rep in stats}) != 1:
        raise ValueError("two-level bootstrap: every replicate needs the same items, in the same order")
    tables = [stat_table(rep) for rep in stats]
    if any(set(t) != set(tables[0]) for t in tables):
        raise ValueError("two-level bootstrap: replicates have different statistics")
    return {key: np.stack([t[key] for t in tables]) for key in tables[0]}


def _two_level_draws(table: dict[str, np.ndarray], figures: Figures, seed: int,
                     n_resamples: int) -> dict[str, np.ndarray]:
    """Each figure of ``n_resamples`` two-level resamples: replicates drawn with replacement, then
    items drawn with replacement (the same items for every replicate drawn: they are one benchmark)."""
    replicates, items = next(iter(table.values())).shape
    rng = np.random.default_rng(seed)
    rep_counts = rng.multinomial(replicates, [1 / replicates] * replicates, size=n_resamples).astype(float)
    item_counts = rng.multinomial(items, [1 / items] * items, size=n_resamples).astype(float)
    totals = {key: np.einsum("br,ri,bi->b", rep_counts, column, item_counts) for key, column in table.items()}
    return figures(totals)


def two_level_bootstrap(stats: Sequence[Sequence[Mapping[str, float]]], figures: Figures, seed: int,
                        n_resamples: int = 2000, alpha: float = 0.05,
                        minus: Sequence[Sequence[Mapping[str, float]]] | None = None) -> dict[str, TwoLevel]:
    """Each figure over R training replicates of the same I items, with an interval covering both
    sources of noise: every resample draws R replicates with replacement, then I items with
    replacement, and takes the figures of the summed statistics. With ``minus`` (the other side of a
    paired comparison, the same replicates and items: dpo − sft of each replicate, or two experiments'
    replicates paired by seed), each resample draws the same replicates and items for both sides and
    the figure is the difference. With one replicate this is the item bootstrap."""
    table = _replicate_table(stats)
    draws = _two_level_draws(table, figures, seed, n_resamples)
    point = {name: float(value[0]) for name, value in
             figures({key: np.asarray([column.sum()]) for key, column in table.items()}).items()}
    if minus is not None:
        other = _replicate_table(minus)
        if next(iter(other.values())).shape != next(iter(table.values())).shape:
            raise ValueError("two-level bootstrap: the two sides have different replicates or items")
        other_draws = _two_level_draws(other, figures, seed, n_resamples)
        other_point = figures({key: np.asarray([column.sum()]) for key, column in other.items()})
        draws = {name: draws[name] - other_draws[name] for name in draws if name in other_draws}
        point = {name: point[name] - float(other_point[name][0]) for name in draws}
    out = {}
    for name, values in draws.items():
        se = float(np.std(values))
        out[name] = TwoLevel(point[name], _interval(values, point[name], alpha), se, MDE_Z * se)
    return out


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape),
                     where=denominator != 0)


def mean_figures(totals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Means over items: every statistic but ``items`` (1 per item) divided by ``items``."""
    return {key: ratio(value, totals["items"]) for key, value in totals.items() if key != "items"}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: 1 - C(n-c, k) / C(n, k)
    (Chen et al. 2021)."""
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)
