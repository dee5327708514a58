"""DeepVision's re-judge: what math-verify marks wrong goes to an LLM judge, and the cases it judges
correct are counted back (``eval_scripts/evaluation/mathverify_judge.py`` exports the rows scored
<= 0.5, ``gpt5-mini-judge_prompt.md`` holds the prompt; their README: "use GPT-5-mini as a
secondary judge to catch false negatives from rule-based matching").

The prompt is DeepVision's ``JUDGE_PROMPT_TEMPLATE``, filled as its doubled braces say
(``str.format``: its ``frac{{3}}{{5}}`` reads ``frac{3}{5}``) with the question, the gold answer
and the answer math-verify extracted (the whole answer when it extracted nothing). The judge must
reply with one word; upstream publishes no code that reads the reply, so here its first word,
stripped of punctuation and case, decides: "correct" flips the sample, "incorrect" does not, and
anything else is counted as ``unparsed`` and flips nothing. (A substring test for "Correct" would
also match "Incorrect".) The math benchmarks (``rejudge:`` of a ``math`` benchmark) and the
``verifier_math`` reward (its ``rejudge:``) use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .chat_client import api_key, post_chat
from .spec import Options, option

JUDGE_PROMPT_TEMPLATE = """You are a strict answer evaluator.
You will receive:
1. A problem description.
2. The correct answer (ground truth) given as a label or exact value.
3. The model's predicted answer
Your task:
- Decide whether the model's predicted answer is equivalent to the correct answer.
- For mathematical expressions, check equivalence:
    * Fractions can be equivalent if numerator/denominator are scaled equally.
    * Expressions like 3/5, \\frac{{3}}{{5}}, 0.6 are considered equivalent.
    * For symbolic answers, treat trivial reorderings as equal if mathematically identical.
    * Ignore obvious format differences (spaces, LaTeX vs plain text).
- For multiple-choice questions, check if the model's choice letter matches the ground truth letter, OR if its value matches the correct option's value.
- Be careful: do NOT mark as correct if the value is only similar in magnitude but not exactly the same mathematically.
- If no valid answer is present, mark "Incorrect".
You must reply with only one word: "Correct" or "Incorrect".
Question:
{question}
Standard Answer:
{gdt}
Model Answer:
{box_answer}
"""  # noqa: E501 (DeepVision's text, line for line)

_FIRST_WORD = re.compile(r"[A-Za-z]+")


def parse_verdict(reply: str) -> bool | None:
    """True for a reply whose first word is "correct", False for "incorrect" (any case, punctuation
    around it ignored), None for anything else."""
    match = _FIRST_WORD.search(reply or "")
    word = match.group(0).lower() if match else ""
    return {"correct": True, "incorrect": False}.get(word)


@dataclass(frozen=True)
class RejudgeOptions(Options):
    """The judge that re-reads what math-verify marks wrong (DeepVision's re-judge)."""

    endpoint: str = option(help="Base URL of an OpenAI-compatible server (/v1/chat/completions is appended).")
    model: str = option(help="The served model name (DeepVision used GPT-5-mini).")
    api_key_env: str | None = option(None, "Environment variable holding the API key (never logged or written).")
    template: str = option(JUDGE_PROMPT_TEMPLATE, "The judge prompt, with {question}, {gdt} and {box_answer} "
                           "(default: DeepVision's).")
    max_tokens: int = option(8, "Tokens of the judge's reply.", minimum=1)
    timeout: float = option(120.0, "Seconds per request.", exclusive_minimum=0)
    retries: int = option(3, "Retries of a failed request, with exponential backoff.", minimum=0)

    def check(self) -> None:
        """The template fills."""
        try:
            self.template.format(question="", gdt="", box_answer="")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"template must use {{question}}, {{gdt}} and {{box_answer}} (literal braces doubled): "
                             f"{err}") from err


class Rejudge:
    """Asks the judge about one answer at a time."""

    def __init__(self, options: RejudgeOptions) -> None:
        self.options = options
        self.key = api_key(options.api_key_env, "rejudge")

    def judge(self, question: str, gold: str, answer: str) -> dict:
        """{"verdict": True | False | None, "reply": the judge's text}."""
        prompt = self.options.template.format(question=question, gdt=gold, box_answer=answer)
        body = {"model": self.options.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.options.max_tokens, "temperature": 0.0}
        reply = post_chat(self.options.endpoint, body, self.key, self.options.timeout, self.options.retries)
        text = ((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        return {"verdict": parse_verdict(text), "reply": text.strip()}
