"""The ``divide_conquer`` reward: RLAIF-V's divide-and-conquer feedback, each claim of an answer checked
against the image.

RLAIF-V (``utils/llama3_8b_inference.py``, ``minicpm-llama3-v-25/minicpmv_autocheck.py``,
``utils/pair_construction.py``) scores a model's answer about an image in three steps, done here
with the same prompts, truncation, decoding settings, parsing and acceptance rule:

1. **split**: a language model rewrites the question and the answer into self-contained facts
   (``SPLIT_PROMPT``, the whole prompt cut to its first 300 space-separated words, temperature 0.2,
   top_p 0.9, 256 new tokens); its reply is read as a ``- fact`` list (:func:`read_list`);
2. **question**: a language model turns the facts into general yes/no questions that keep their
   negations (``QUESTION_PROMPT``, same decoding); each gets " Please answer yes or no.", paired
   with its fact in order (a reply with fewer lines drops the facts left over, as upstream's zip);
3. **label**: a vision-language model is shown the image and each question; from the softmax of
   its first answer token over the whole vocabulary, a claim is accepted when P(yes) + P(Yes) >
   P(no) + P(No) (a tie rejects).

The answer's reward is accepted − claims, minus its rejected claims (0 is best). An answer from
which no claim is read gets ``no_claims`` (default: no value, so pairing leaves it out; upstream
drops such answers too). Every fact, question, probability and verdict is kept in the details.

Where each model runs: ``split`` and ``question`` are any engine (``hf``: a local model;
``openai``: given endpoints or launched servers); the labeller is a local VLM (first-token
probabilities from its logits) or an OpenAI-compatible endpoint that returns ``top_logprobs`` (a
word outside them counts 0). Upstream's labeller prompt has no generation prompt after the question
(MiniCPM-Llama3-V's template); here the model's chat template adds its own, so its first token is
the answer's.

Every split, question list and probability is cached per answer in ``context.cache_dir`` (the
reward shard's folder beside its partial file), appended as it is computed, so a killed shard
resumes without asking any model again for what it had, and writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..chat_client import api_key, post_chat
from ..engines import ENGINES, Prompt, Sampling, make_engine
from ..engines.base import EngineBlock
from ..engines.openai import request_messages
from ..images import image_digest
from ..records import content_text, prompt_messages as record_prompt_messages, record_images
from ..spec import Options, option
from .base import Reward, RewardOptions, Scores, register

log = logging.getLogger("juicebox")

SPLIT_PROMPT = (
    "You are an expert in extracting facts from the given question-answer pair for an image. Your task is to "
    "extract and rewrite the facts mentioned in the question-answer pair into self-contained sentences. Exclude "
    "opinions or subjective statements.\n\nYou should present your result in the following format:\n### Facts:\n"
    "- {Extracted fact 1}\n- {Extracted fact 2}\n- ...\n\n### Question-answer pair:\nQuestion: ")
QUESTION_PROMPT = (
    "You are an expert at modifying a given declarative sentence into a general question sentence. Your task is "
    "to modify the given declarative sentences one by one into a general question form. Do not change tenses or "
    "add extra content.\n    If the given declarative sentence contains not, no or negative meaning words, you "
    "need to check the modified general interrogative sentence to make sure that the generated general question "
    "sentence retains words with not , no or negative meaning words.\n\nYou should present your result in the "
    "following format:\n### Modified sentences:\n- {Modified sentence 1}\n- {Modified sentence 2}\n- ...\n\n"
    "### Declarative sentences:")
YES_NO_SUFFIX = " Please answer yes or no."
YES, NO = ("yes", "Yes"), ("no", "No")


def split_prompt(question: str, answer: str, max_words: int) -> str:
    """RLAIF-V's split prompt of a question and answer, cut to its first ``max_words`` space-separated words."""
    content = SPLIT_PROMPT + question + "\nAnswer: " + answer
    return " ".join(content.split(" ")[:max_words])


def question_prompt(facts: list[str]) -> str:
    """RLAIF-V's prompt turning facts into general questions."""
    return QUESTION_PROMPT + "".join(f"\n- {fact}\n" for fact in facts)


def read_list(reply: str) -> list[str]:
    """RLAIF-V's ``get_facts``: the lines of a reply, without empty lines and ``###`` headings, each
    without its first character (the ``-``) and stripped; lines left empty are dropped."""
    items = []
    for line in reply.strip().split("\n"):
        if line == "" or "###" in line:
            continue
        item = line[1:].strip()
        if item:
            items.append(item)
    return items


def accepted(p_yes: float, p_no: float) -> bool:
    """RLAIF-V's rule: a claim stands when P(yes) + P(Yes) > P(no) + P(No)."""
    return p_yes > p_no


@dataclass(frozen=True)
class WriterOptions(Options):
    """A model that writes (divide_conquer's split and question models)."""

    model: str = option(help="A local model directory (engine hf), or the served model name (engine openai).")
    engine: EngineBlock = option({"type": "hf"}, "How it is run: {type: hf | openai, ...the engine's keys} "
                                 "(docs/config.md, \"Engines\").")

    def check(self) -> None:
        """The engine block is a valid engine."""
        ENGINES.parse(self.engine, "engine")


@dataclass(frozen=True)
class LabellerOptions(Options):
    """The vision-language model that answers each claim's yes/no question from the image."""

    model: str = option(help="A local VLM directory, or the served model name at `endpoint`.")
    endpoint: str | None = option(None, "Base URL of an OpenAI-compatible server that returns logprobs "
                                  "(null: load `model` locally and read its logits).")
    api_key_env: str | None = option(None, "Environment variable holding the endpoint's API key (never logged).")
    top_logprobs: int = option(20, "Endpoint: the first token's top_logprobs asked for.", minimum=1)
    batch_size: int = option(16, "Local: questions per forward pass.", minimum=1)
    timeout: float = option(120.0, "Endpoint: seconds per request.", exclusive_minimum=0)
    retries: int = option(3, "Endpoint: retries of a failed request (connection errors, timeouts, HTTP 408/409/"
                          "425/429/5xx).", minimum=0)


@register("divide_conquer")
class DivideConquer(Reward):
    """Minus the number of an answer's claims its image does not support, by RLAIF-V's divide and
    conquer (see the module doc)."""

    runs_model = True

    @dataclass(frozen=True)
    class Options(RewardOptions):
        """divide_conquer keys."""

        split: WriterOptions = option(help="The model that splits a question and answer into facts.")
        question: WriterOptions | None = option(None, "The model that turns facts into yes/no questions "
                                                "(null: the split model).")
        labeller: LabellerOptions = option(help="The VLM that accepts or rejects each claim from the image.")
        max_words: int = option(300, "The split prompt is cut to this many space-separated words (RLAIF-V: 300).",
                                minimum=1)
        temperature: float = option(0.2, "Split and question sampling temperature (RLAIF-V: 0.2).", minimum=0)
        top_p: float = option(0.9, "Split and question top_p (RLAIF-V: 0.9).", exclusive_minimum=0, maximum=1)
        max_tokens: int = option(256, "Split and question new tokens (RLAIF-V: 256).", minimum=1)
        no_claims: float | None = option(None, "The reward of an answer from which no claim is read (null: no "
                                         "value; pairing leaves it out).")

    def __init__(self, options: Options, context=None) -> None:
        super().__init__(options, context)
        self.cache = AnswerCache(Path(self.context.cache_dir) / f"divide_conquer-{self.options.name or 'default'}"
                                 ".jsonl" if self.context.cache_dir else None)
        self._labeller = None

    def settings(self) -> dict:
        o = self.options
        return {"split": o.split.to_dict(), "question": (o.question or o.split).to_dict(),
                "labeller": {k: v for k, v in o.labeller.to_dict().items() if k != "api_key_env"},
                "max_words": o.max_words, "temperature": o.temperature, "top_p": o.top_p,
                "max_tokens": o.max_tokens, "no_claims": o.no_claims}

    # --- the three steps, each over every answer at once --------------------------------------

    def score_applicable(self, records: list[dict]) -> Scores:
        """Split, question and label every answer (what the cache holds is not asked again)."""
        answers = {}  # key -> (record, sample text)
        keys: list[list[str | None]] = []
        for record in records:
            images = record_images(record)
            row = []
            for sample in record.get("samples") or []:
                if not images:
                    row.append(None)
                    continue
                key = self.answer_key(record, images, sample.get("text") or "")
                answers[key] = (record, sample.get("text") or "")
                row.append(key)
            keys.append(row)
        facts = self.write("facts", {key: split_prompt(question_text(record), text, self.options.max_words)
                                     for key, (record, text) in answers.items()}, self.options.split)
        asked = {key: question_prompt(found) for key, found in facts.items() if found}
        changed = self.write("questions", asked, self.options.question or self.options.split)
        claims = {key: [{"fact": fact, "question": f"{question}{YES_NO_SUFFIX}"}
                        for fact, question in zip(facts[key], changed.get(key, []))] for key in answers}
        self.label(claims, answers)
        out: Scores = []
        for record, row in zip(records, keys):
            out.append([(None, {"reason": "divide_conquer checks claims against the image; the record has none"})
                        if key is None else self.verdict(claims[key]) for key in row])
        return out

    def answer_key(self, record: dict, images: list[str], text: str) -> str:
        """The cache key of an answer: the reward's settings, the question, the images' bytes and the answer."""
        digest = [image_digest(image) for image in images]
        blob = json.dumps([self.settings(), question_text(record), digest, text], sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]

    def write(self, stage: str, prompts: dict[str, str], writer: WriterOptions) -> dict[str, list[str]]:
        """Each prompt's reply as a list (:func:`read_list`), from the cache or the writer model."""
        out = {key: self.cache.get(stage, key) for key in prompts if self.cache.get(stage, key) is not None}
        todo = [Prompt(key, [{"role": "user", "content": text}]) for key, text in prompts.items() if key not in out]
        if not todo:
            return out
        sampling = Sampling(n=1, temperature=self.options.temperature, top_p=self.options.top_p,
                            max_tokens=self.options.max_tokens, seed=self.context.seed)
        engine = make_engine(writer.engine, writer.model, None, sampling, threads=self.context.threads,
                             log_dir=str(Path(self.context.log_dir or "results/logs") / f"servers-{stage}"),
                             where=f"{self.type}.{stage}")
        try:
            def on_done(prompt: Prompt, samples: list[dict]) -> None:
                out[prompt.id] = read_list(samples[0]["text"])
                self.cache.put(stage, prompt.id, out[prompt.id])

            start = time.monotonic()
            engine.run(todo, on_done)
            log.info("divide_conquer %s: %d prompt(s) in %.1f s", stage, len(todo), time.monotonic() - start)
        finally:
            engine.close()
        return out

    def label(self, claims: dict[str, list[dict]], answers: dict[str, tuple[dict, str]]) -> None:
        """P(yes) and P(no) of every claim's question, from the cache or the labeller, in place."""
        todo = []
        for key, items in claims.items():
            cached = self.cache.get("labels", key)
            if cached is not None:
                for claim, (p_yes, p_no) in zip(items, cached):
                    claim.update(p_yes=p_yes, p_no=p_no)
            elif items:
                todo.append(key)
        if not todo:
            return
        if self._labeller is None:
            self._labeller = (EndpointLabeller if self.options.labeller.endpoint else LocalLabeller)(
                self.options.labeller, self.context)
        for key in todo:
            images = record_images(answers[key][0])
            probs = self._labeller.probabilities([claim["question"] for claim in claims[key]], images)
            for claim, (p_yes, p_no) in zip(claims[key], probs):
                claim.update(p_yes=p_yes, p_no=p_no)
            self.cache.put("labels", key, probs)

    def verdict(self, claims: list[dict]) -> tuple[float | None, dict]:
        """The answer's reward (accepted − claims) and its details."""
        for claim in claims:
            claim["accepted"] = accepted(claim["p_yes"], claim["p_no"])
        rejected = sum(not claim["accepted"] for claim in claims)
        details = {"claims": claims, "n_claims": len(claims), "n_rejected": rejected}
        if not claims:
            if self.options.no_claims is None:
                return None, {**details, "reason": "no claim was read from the answer"}
            return self.options.no_claims, details
        return float(-rejected), details

    def close(self) -> None:
        """Release the labeller's model."""
        self._labeller = None


def question_text(record: dict) -> str:
    """The record's question as the split prompt quotes it: every turn's text, image placeholders out."""
    turns = [m for m in record_prompt_messages(record["prompt"]) if m.get("role") != "system"]
    return "\n".join(content_text(m.get("content")) for m in turns).replace("<image>", "").strip()


class AnswerCache:
    """Per-answer results of each step, appended to a JSONL file as they are computed (none: in memory)."""

    def __init__(self, path: Path | None):
        self.path, self.entries = path, {}
        if path is not None and path.exists():
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a kill: asked again
                        continue
                    self.entries[(entry["stage"], entry["key"])] = entry["value"]

    def get(self, stage: str, key: str):
        return self.entries.get((stage, key))

    def put(self, stage: str, key: str, value) -> None:
        self.entries[(stage, key)] = value
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"stage": stage, "key": key, "value": value}) + "\n")


class LocalLabeller:
    """A local VLM's first-token probabilities of yes/Yes and no/No after each question with the image."""

    def __init__(self, options: LabellerOptions, context) -> None:
        from ..engines.hf import PromptEncoder
        from ..models import load_model

        context.set_threads()
        self.options = options
        loaded = load_model(options.model, device=context.torch_device())
        if not loaded.vision:
            raise ValueError(f"divide_conquer: the labeller {options.model} is not a vision-language model")
        self.model, self.encoder = loaded.model, PromptEncoder(options.model, loaded.processing, True)
        tokenizer = self.encoder.tokenizer
        self.ids = {word: tokenizer.encode(word, add_special_tokens=False)[0] for word in YES + NO}

    def probabilities(self, questions: list[str], images: list[str]) -> list[tuple[float, float]]:
        import torch

        out = []
        for start in range(0, len(questions), self.options.batch_size):
            batch = questions[start:start + self.options.batch_size]
            texts = [self.encoder.render(Prompt("q", [{"role": "user", "content": q}], images)) for q in batch]
            encoded = self.encoder.encode(texts, [images] * len(batch)).to(self.model.device)
            with torch.inference_mode():
                logits = self.model(**encoded).logits[:, -1].float()
            probs = torch.softmax(logits, dim=-1)
            for row in probs:
                out.append((float(sum(row[self.ids[w]] for w in YES)), float(sum(row[self.ids[w]] for w in NO))))
        return out


class EndpointLabeller:
    """A served VLM's first-token probabilities, from the ``top_logprobs`` of a one-token greedy reply."""

    def __init__(self, options: LabellerOptions, context) -> None:
        self.options = options
        self.key = api_key(options.api_key_env, "divide_conquer labeller")

    def probabilities(self, questions: list[str], images: list[str]) -> list[tuple[float, float]]:
        return [self.one(question, images) for question in questions]

    def one(self, question: str, images: list[str]) -> tuple[float, float]:
        body = {"model": self.options.model, "max_tokens": 1, "temperature": 0.0, "logprobs": True,
                "top_logprobs": self.options.top_logprobs,
                "messages": request_messages(Prompt("q", [{"role": "user", "content": question}], images))}
        reply = post_chat(self.options.endpoint, body, self.key, self.options.timeout, self.options.retries)
        try:
            top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        except (KeyError, IndexError, TypeError) as err:
            raise RuntimeError(f"divide_conquer: {self.options.endpoint} returned no top_logprobs for the first "
                               f"token (the labeller endpoint must return logprobs): {str(reply)[:200]}") from err
        prob: dict[str, float] = {}
        for entry in top:
            prob[entry["token"]] = prob.get(entry["token"], 0.0) + math.exp(entry["logprob"])
        return sum(prob.get(w, 0.0) for w in YES), sum(prob.get(w, 0.0) for w in NO)
