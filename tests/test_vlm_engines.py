"""Rollout engines on the tiny VLM: the ``hf`` engine and the ``openai`` engine over a real
``transformers serve`` on localhost answer prompts with images, and their answers depend on the
image; a text model refuses image prompts by name; the max_prompt_tokens filter counts image
tokens; ``vllm serve``'s arguments for images and LoRA ranks (built, not run: no vLLM here)."""

import json

import pytest

from test_engines import STARTUP_TIMEOUT, collect, hf_engine, model_dir  # noqa: F401 (model_dir: a fixture)
from juicebox.engines import Prompt, Sampling, make_engine, servers
from juicebox.engines.hf import PromptEncoder
from juicebox.engines.openai import request_messages
from juicebox.images import image_data_url
from juicebox.rollouts import too_long

QUESTION = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What colour is the shape?"}]
# With a fixed seed the same prompt and image give the same answers, another image others: the
# untrained VLM's logits move with the image by about their own spread (solid colours move them
# most), which at temperature 0.3 changes what is drawn; at 1 the same random draws mostly pick
# the same tokens whatever the image.
SAMPLING = Sampling(n=6, temperature=0.3, max_tokens=12, seed=11)
N_SAMPLES = list(range(SAMPLING.n))


@pytest.fixture(scope="module")
def solid_images(tmp_path_factory) -> dict[str, str]:
    """Three 32 px images of one colour each: red, blue, green."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("solid")
    paths = {colour: str(folder / f"{colour}.png") for colour in ("red", "blue", "green")}
    for colour, path in paths.items():
        Image.new("RGB", (32, 32), colour).save(path)
    return paths


def look(image: str, pid: str = "look") -> Prompt:
    """The colour question about one image."""
    return Prompt(pid, QUESTION, [image])


def answers_by_image(engine, images: dict[str, str]) -> dict[str, list[str]]:
    """The engine's answers to the same prompt (same id, so same seed) with each image, in its own run."""
    return {name: [a["text"] for a in collect(engine, [look(path)])[0]["look"]] for name, path in images.items()}


def assert_answers_depend_on_the_image(engine, images: dict[str, str]) -> None:
    """Same image, same answers; each other image, other answers (an engine that lost the image
    would give the same answers three times)."""
    first = answers_by_image(engine, images)
    assert answers_by_image(engine, {"red": images["red"]})["red"] == first["red"]
    assert first["red"] != first["blue"] and first["blue"] != first["green"] and first["green"] != first["red"], first


def mixed_prompts(shape_images: dict[str, str]) -> list[Prompt]:
    """A text-only prompt, a one-image prompt, and two images placed by ``<image>`` in the text."""
    return [Prompt("text", [{"role": "user", "content": "Describe a red circle."}]),
            look(shape_images["red_circle"], "one"),
            Prompt("two", [{"role": "user", "content": "<image> or <image>: which is blue?"}],
                   [shape_images["red_circle"], shape_images["blue_square"]])]


@pytest.mark.train
def test_hf_engine_answers_image_prompts_from_the_image(tiny_vlm, shape_images, solid_images):
    engine = hf_engine(tiny_vlm, SAMPLING, batch_size=2)
    samples, calls = collect(engine, mixed_prompts(shape_images))
    assert sorted(calls) == ["one", "text", "two"] and set(calls.values()) == {1}
    assert all([a["index"] for a in answers] == N_SAMPLES for answers in samples.values())
    plain = hf_engine(tiny_vlm, SAMPLING, batch_size=2)
    plain.shares_prefill = False  # every prompt and its images prefilled n times: the same answers
    assert engine.shares_prefill and collect(plain, mixed_prompts(shape_images))[0] == samples
    assert_answers_depend_on_the_image(engine, solid_images)


@pytest.mark.train
def test_prompt_length_counts_image_tokens_and_the_filter_uses_it(tiny_vlm, shape_images):
    encoder = PromptEncoder.load(tiny_vlm)
    text_only, with_image = Prompt("t", QUESTION), look(shape_images["red_circle"])
    image_tokens = encoder.length(with_image) - encoder.length(text_only)
    assert image_tokens >= 16  # the tiny VLM's 16 image tokens (and the part's newline), not one <image>
    records = [{"id": "t", "prompt": QUESTION[1]["content"]},
               {"id": "look", "prompt": QUESTION[1]["content"], "images": [shape_images["red_circle"]]}]
    limit = encoder.length(Prompt("t", QUESTION[1:])) + 1
    assert too_long(records, tiny_vlm, None, limit) == {"look"}  # only the image makes it too long


@pytest.mark.train
def test_text_model_refuses_image_prompts_by_name(model_dir, shape_images):  # noqa: F811
    engine = hf_engine(model_dir, Sampling(max_tokens=4))
    done = []
    with pytest.raises(ValueError, match=rf"prompt look has 1 image\(s\), but model {model_dir} is a text-only model"):
        engine.run([Prompt("plain", QUESTION), look(shape_images["red_circle"])], lambda p, a: done.append(p.id))
    assert done == []  # refused before anything is generated, not answered without the image
    records = [{"id": "look", "prompt": "What colour is the shape?", "images": [shape_images["red_circle"]]}]
    with pytest.raises(ValueError, match=r"prompt look has 1 image\(s\), but model .* is a text-only model"):
        too_long(records, model_dir, None, 100)


def test_requests_carry_images_as_data_urls_where_the_prompt_places_them(shape_images):
    text_only = Prompt("text", QUESTION)
    assert request_messages(text_only) is QUESTION  # sent exactly as before
    red, blue = shape_images["red_circle"], shape_images["blue_square"]
    two = Prompt("two", [{"role": "user", "content": "Is <image> redder than <image>?"}], [red, blue])
    assert request_messages(two) == [{"role": "user", "content": [
        {"type": "text", "text": "Is "}, {"type": "image_url", "image_url": {"url": image_data_url(red)}},
        {"type": "text", "text": " redder than "}, {"type": "image_url", "image_url": {"url": image_data_url(blue)}},
        {"type": "text", "text": "?"}]}]
    assert image_data_url(red).startswith("data:image/png;base64,")
    # images a prompt does not place go before its first user turn's text
    first, user = request_messages(look(red))
    assert first == {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]}
    assert [p["type"] for p in user["content"]] == ["image_url", "text"]


@pytest.mark.server
def test_openai_engine_on_transformers_serve_answers_from_the_image(tiny_vlm, shape_images, solid_images, tmp_path):
    cfg = {"type": "openai", "launch": {"kind": "transformers", "startup_timeout": STARTUP_TIMEOUT},
           "concurrency": 1}  # one request at a time: each request's seed alone decides its answer
    engine = make_engine(cfg, tiny_vlm, None, SAMPLING, log_dir=str(tmp_path / "logs"))
    try:
        samples, calls = collect(engine, mixed_prompts(shape_images))
        assert sorted(calls) == ["one", "text", "two"]
        assert all([a["index"] for a in answers] == N_SAMPLES for answers in samples.values())
        assert_answers_depend_on_the_image(engine, solid_images)
    finally:
        engine.close()


def adapter_dir(tmp_path, r: int, rank_pattern: dict | None = None) -> str:
    """A folder holding only a PEFT adapter_config.json of rank ``r`` (what the launcher reads)."""
    folder = tmp_path / f"adapter-{r}-{len(rank_pattern or {})}"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "rank_pattern": rank_pattern or {}}))
    return str(folder)


@pytest.mark.train
def test_vllm_arguments_for_images_and_lora_rank(tiny_vlm, model_dir, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(servers, "visible_gpus", lambda: ["0"])

    def argv(model, adapter=None, extra=(), images=1):
        (cmd, _), = servers.server_commands("vllm", model, adapter, 1, 1, [8000], list(extra), images)
        return cmd

    def value(cmd, flag):
        return cmd[cmd.index(flag) + 1] if flag in cmd else None

    cmd = argv(tiny_vlm, images=3)
    assert json.loads(value(cmd, "--limit-mm-per-prompt")) == {"image": 3}
    assert value(cmd, "--max-lora-rank") is None  # no adapter
    assert value(argv(model_dir), "--limit-mm-per-prompt") is None  # a text model: vLLM refuses the flag

    # the smallest rank vLLM accepts (1, 8, 16, 32, 64, ...) that holds the adapter's largest rank
    for r, pattern, expected in [(1, None, "1"), (4, None, "8"), (16, None, "16"), (24, None, "32"),
                                 (8, {"q_proj": 40}, "64")]:
        cmd = argv(tiny_vlm, adapter_dir(tmp_path, r, pattern))
        assert value(cmd, "--max-lora-rank") == expected, (r, pattern)
        assert value(cmd, "--lora-modules").startswith("adapter=") and "--enable-lora" in cmd
    with pytest.raises(servers.ServerFailed, match=r"LoRA rank 600 is above the largest --max-lora-rank"):
        argv(tiny_vlm, adapter_dir(tmp_path, 600))
    # a rank given in extra_args wins; the image limit must be set by images_per_prompt
    cmd = argv(tiny_vlm, adapter_dir(tmp_path, 128, {"o": 1}), ["--max-lora-rank=256"])
    assert "--max-lora-rank" not in cmd and cmd[-1] == "--max-lora-rank=256"
    with pytest.raises(ValueError, match=r"set launch.images_per_prompt instead of passing --limit-mm-per-prompt"):
        make_engine({"type": "openai", "launch": {"kind": "vllm", "extra_args": ['--limit-mm-per-prompt={"image":2}']}},
                    tiny_vlm, None, Sampling())
