"""Rewards: a registry from ``type:`` to a class that scores every sample of every prompt.

A reward config is a list of specs; each names a registered type, an optional ``name`` (default:
the type), a ``weight`` (default 1.0), the ``tasks`` it applies to (default per type) and the
type's own keys::

    rewards:
      - {type: verifier_math, weight: 1.0}
      - {type: dpo_implicit, weight: 0.1, variant: sum}

Every reward class takes its config keys as keyword arguments with defaults (plus ``context``,
the paths and resources of the run, see :class:`RewardContext`) and answers
``score(records) -> [[(value, details), ...] per sample] per record``. ``value`` is a float, or
None when the reward does not apply to the record's task or could not be computed; ``details``
then holds a ``reason``. Each reward scores all the records it is given in one call (rewards
such as CIDEr depend on the whole scored set, and model rewards batch across prompts).

:class:`CombinedReward` runs every reward of a config and writes, on every sample:

* ``reward``: Σ weight·value over the rewards that apply to the sample's task, or None when none
  applies or when one that applies gave None (a failed reward is never counted as 0: pairing
  then leaves the sample out instead of ranking it on a made-up value);
* ``rewards``: {name: value} of the rewards that apply, plus ``<name>.<key>`` for the extra
  values a reward exposes for ranking (``rank_keys``, e.g. ``dpo_implicit.avg``);
* ``details``: {name: details}; ``reward_reason``: why ``reward`` is None (else None).

Types (one module each): ``verifier_math``, ``math_steps``, ``object_grounding``, ``short_answer``,
``reference_caption``, ``dpo_implicit``, ``reward_model``, ``judge``, ``divide_conquer``, ``python``.

Records with images: ``dpo_implicit`` shows them to vision-language models (and refuses them
for a text-only model), ``judge`` sends them to the judge as data URLs, ``reward_model`` (a
text-only sequence classifier) refuses them by name; none scores an answer as if its image were
not there.
"""

# Each type's module registers it (each imports only light things at the top).
from . import (divide_conquer, dpo_implicit, judge, math_steps, object_grounding, python_function,  # noqa: F401
               reference_caption, reward_model, short_answer, verifier_math)
from .base import (REWARDS, CombinedReward, Reward, RewardContext, RewardOptions, Scores, check_names, make_reward,
                   prompt_messages, register, reward_name, without_gold_answer)
from .dpo_implicit import answer_logprobs

__all__ = ["REWARDS", "CombinedReward", "Reward", "RewardContext", "RewardOptions", "Scores", "answer_logprobs",
           "check_names", "make_reward", "prompt_messages", "register", "reward_name", "without_gold_answer"]
