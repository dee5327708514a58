"""ReaL's dataset kinds (juicebox.real_kinds): prompt, prompt_answer and rw_pair rows as ReaL's
quickstart dataset reads them, from canonical records and from the pairs' TRL rows."""

from juicebox.pairs import build_pairs
from juicebox.real_kinds import prompt_answer_rows, prompt_rows, rw_pair_rows
from juicebox.train import sft_examples

RECORDS = [{"id": "m1", "task": "math", "prompt": "What is 2 plus 3?", "answer": "5", "references": []},
           {"id": "c1", "task": "caption", "prompt": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "<image>\nDescribe."}],
            "references": ["A red circle.", "A circle."], "images": ["results/x/pool/images/a.png"]},
           {"id": "n1", "task": "vqa", "prompt": "Colour?", "references": []}]  # nothing to train towards


def test_prompt_and_prompt_answer_rows():
    assert prompt_rows(RECORDS) == [
        {"id": "m1", "prompt": "What is 2 plus 3?"},
        {"id": "c1", "prompt": "Be brief.\n<image>\nDescribe.", "images": ["results/x/pool/images/a.png"]},
        {"id": "n1", "prompt": "Colour?"}]
    examples = sft_examples(RECORDS, None)
    assert prompt_answer_rows([r for r, _ in examples], [t for _, t in examples]) == [
        {"id": "m1", "prompt": "What is 2 plus 3?", "answer": "5"},
        {"id": "c1", "prompt": "Be brief.\n<image>\nDescribe.", "answer": "A red circle.",
         "images": ["results/x/pool/images/a.png"]}]
    assert [r["id"] for r, _ in sft_examples(RECORDS, ["math"])] == ["m1"]


def test_rw_pair_rows_pair_one_to_one_per_prompt():
    scored = {"id": "m1", "task": "math", "prompt": [{"role": "user", "content": "What is 2 plus 3?"}],
              "answer": "5", "samples": [{"index": 0, "text": "5", "reward": 1.0},
                                         {"index": 1, "text": "6", "reward": 0.0},
                                         {"index": 2, "text": "four", "reward": 0.0}]}
    rows = build_pairs([scored], {"type": "all_pairs"}, 0).rows
    assert rw_pair_rows(rows) == [{"id": "m1", "prompt": "What is 2 plus 3?", "pos_answers": ["5", "5"],
                                   "neg_answers": ["6", "four"]}]
