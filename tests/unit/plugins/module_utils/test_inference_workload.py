"""Benchmark options and prompts (inference_workload)."""
import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_workload as workload


def config(url, **overrides):
    options = {"base_url": url, "model": "m", "warmup_seconds": 0, "duration_seconds": 0,
               "max_requests_per_step": 20}
    options.update(overrides)
    return workload.build_config(**options)


def test_prompt_sources():
    cfg = config("http://x", workload="shared_prefix", shared_prefix_tokens=40, prefix_groups=2)
    prompts = workload.PromptSource(cfg)
    generated = [prompts.next_prompt() for _unused in range(40)]
    prefixes = {prompt.split(" Question")[0] for prompt in generated}
    assert len(prefixes) == 2
    assert all(len(prefix.split()) > workload.KV_BLOCK_TOKENS for prefix in prefixes)
    assert len(set(generated)) == 40  # the question after the prefix is unique
    distinct = workload.PromptSource(config("http://x"))
    a, b = distinct.next_prompt(), distinct.next_prompt()
    assert a.split()[:2] != b.split()[:2]


@pytest.mark.parametrize("overrides, message", [
    ({"workload": "shared_prefix", "shared_prefix_tokens": 16}, "shared_prefix_tokens must be longer than one 16"),
    ({"concurrency": [0]}, "concurrency entries must be positive integers"),
    ({"load_model": "poisson", "request_rates": []}, "request_rates must list at least one step"),
    ({"load_model": "closed"}, "load_model must be one of"),
    ({"base_url": "127.0.0.1:8000"}, "base_url must start with http"),
    ({"max_requests_per_step": None, "duration_seconds": 0}, "set duration_seconds or max_requests_per_step"),
    ({"max_tokens": True}, "max_tokens must be a positive whole number"),
    ({"warmup_seconds": -1}, "warmup_seconds must be a non-negative number"),
])
def test_bad_settings_name_the_option(overrides, message):
    with pytest.raises(workload.BenchmarkConfigError, match=message):
        config("http://127.0.0.1:1", **overrides)
