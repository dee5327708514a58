"""Report figures: which reward values are plotted, and figures from edge-case inputs."""

from juicebox.plots import plot_benchmark, plot_margins, reward_values


def sample(reward, **rewards):
    return {"reward": reward, "rewards": rewards}


def test_reward_values_per_task_and_reward_with_failures_kept_as_none():
    records = [
        {"task": "math", "samples": [sample(1.0, verifier_math=1.0), sample(None, verifier_math=None)]},
        {"task": "caption", "samples": [sample(0.7, cider=0.5, judge=0.2), sample(None)]},
    ]
    assert reward_values(records) == {
        ("math", "verifier_math"): [1.0, None],
        ("caption", "cider"): [0.5],
        ("caption", "judge"): [0.2],
        ("caption", "reward"): [0.7],  # the weighted sum only where a task has several values
    }


def test_no_pairs_and_a_benchmark_one_experiment_lacks_still_give_figures(tmp_path):
    plot_margins([], "no pairs", tmp_path / "margins.png")
    result = {"n": 3, "metrics": {"pass@1": 0.5}, "ci95": {"pass@1": [0.2, 0.8]}}
    figure = {"pass@1": {"value": 0.5, "ci95": [0.2, 0.8], "se": 0.1, "mde": 0.28, "points": [0.4, 0.6]}}
    summary = {"experiments": {"a": {"benchmarks": {"m": {"base": result, "dpo": result}}},
                               "b": {"benchmarks": {}}},
               "replicates": {"a": {"members": ["a", "a-rep2"], "benchmarks": {"m": {"base": figure, "dpo": figure}}},
                              "b": {"members": ["b"], "benchmarks": {}}}}
    plot_benchmark(summary, "m", tmp_path / "m.png")
    assert (tmp_path / "margins.png").stat().st_size > 0 and (tmp_path / "m.png").stat().st_size > 0
