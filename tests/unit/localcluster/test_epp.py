"""The gateway's endpoint picker: the EPP profile KServe v0.20 injects for ``scheduler: {}``.

kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go (schedulerConfigText): queue-scorer 2,
kv-cache-utilization-scorer 2, prefix-cache-scorer 3, no-hit-lru-scorer 2, max-score-picker.
"""
import pytest

from localcluster.epp import (KSERVE_DEFAULT_WEIGHTS, KV_USAGE_METRIC, WAITING_METRIC, NoHitLRU, PrefixAwarePicker,
                              PrefixIndex, RoundRobin, parse_metrics, prompt_text, weights_from_config)
from localcluster.tokens import block_hashes, tokenize

SYSTEM = " ".join(f"rule{i}" for i in range(200))  # ~200 tokens: 12 full blocks shared by every request


def test_requests_sharing_a_prefix_stick_to_one_endpoint():
    picker = PrefixAwarePicker()
    endpoints = ["a", "b", "c"]
    first, matched, total = picker.pick(endpoints, SYSTEM + " question one", {})
    assert matched == 0 and total > 10
    for question in ("two", "three", "four"):
        chosen, matched, _ = picker.pick(endpoints, f"{SYSTEM} question {question}", {})
        assert chosen == first
        assert matched >= 12


def test_weights_are_kserves_default_profile():
    assert KSERVE_DEFAULT_WEIGHTS == {"prefix-cache-scorer": 3.0, "queue-scorer": 2.0,
                                      "kv-cache-utilization-scorer": 2.0, "no-hit-lru-scorer": 2.0}
    assert PrefixAwarePicker().weights == KSERVE_DEFAULT_WEIGHTS
    with pytest.raises(ValueError, match="unknown scorer.*load-aware-scorer"):
        PrefixAwarePicker(weights={"load-aware-scorer": 1.0})


def test_cold_prefixes_spread_by_no_hit_lru():
    # Distinct prefixes with equal metrics: only no-hit-lru separates the endpoints (never used first).
    picker = PrefixAwarePicker()
    endpoints = ["a", "b", "c"]
    chosen = [picker.pick(endpoints, f"tenant {group} " + SYSTEM)[0] for group in range(3)]
    assert sorted(chosen) == endpoints
    assert list(picker.no_hit_lru.lru) == chosen


def test_no_hit_lru_scores_like_llm_d():
    # llm-d/llm-d-inference-scheduler pkg/plugins/scorer/no_hit_lru.go
    lru = NoHitLRU()
    assert lru.scores(["a", "b", "c"], cold=True) == {"a": 1.0, "b": 0.5, "c": 0.0}
    lru.used_for_cold("a")
    assert lru.scores(["a", "b", "c"], cold=True) == {"b": 1.0, "c": 0.5, "a": 0.0}
    lru.used_for_cold("b")
    lru.used_for_cold("c")
    assert lru.scores(["a", "b", "c"], cold=True) == {"a": 1.0, "b": 0.5, "c": 0.0}  # a is the oldest
    assert lru.scores(["a", "b", "c"], cold=False) == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert lru.scores(["z"], cold=True) == {"z": 1.0}


def test_prefix_hit_against_queue_and_kv_cache():
    picker = PrefixAwarePicker()
    picker.index.record("a", block_hashes(tokenize(SYSTEM)))
    hashes = block_hashes(tokenize(SYSTEM + " tail"))
    busy = {"a": {WAITING_METRIC: 3, KV_USAGE_METRIC: 0.3}, "b": {WAITING_METRIC: 0, KV_USAGE_METRIC: 0.0}}
    per_scorer, cold = picker.scorer_scores(["a", "b"], hashes, busy)
    assert not cold
    assert per_scorer["queue-scorer"] == {"a": 0.0, "b": 1.0}
    assert per_scorer["kv-cache-utilization-scorer"] == pytest.approx({"a": 0.7, "b": 1.0})
    assert per_scorer["no-hit-lru-scorer"] == {"a": 0.5, "b": 0.5}
    assert picker.pick(["a", "b"], SYSTEM + " tail", busy)[0] == "a"  # 3*0.9+0+1.4+1 > 0+2+2+1
    # A nearly full KV cache outweighs the prefix (prefix 3 < queue 2 + kv-cache 2): the hit is lost.
    full = {"a": {WAITING_METRIC: 3, KV_USAGE_METRIC: 0.9}, "b": {}}
    assert picker.pick(["a", "b"], SYSTEM + " tail", full)[0] == "b"


def test_ties_rotate():
    picker = PrefixAwarePicker(weights={"queue-scorer": 1.0})
    chosen = {picker.pick(["a", "b", "c"], "short")[0] for _ in range(3)}
    assert chosen == {"a", "b", "c"}


def test_parse_metrics_reads_the_scorer_inputs():
    text = ("# HELP vllm:num_requests_waiting x\n# TYPE vllm:num_requests_waiting gauge\n"
            'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
            'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\n')
    assert parse_metrics(text) == {WAITING_METRIC: 2.0, KV_USAGE_METRIC: 0.25}


def test_index_is_lru_bounded_per_endpoint():
    index = PrefixIndex(capacity=4)
    index.record("a", ["h1", "h2", "h3"])
    index.record("a", ["h4", "h5"])
    assert len(index.blocks["a"]) == 4
    assert index.matched_blocks("a", ["h1", "h2"]) == 0  # the oldest block was evicted
    assert index.matched_blocks("a", ["h2", "h3", "h4"]) == 3


def test_index_forgets_endpoints_that_left():
    index = PrefixIndex()
    index.record("a", ["h1"])
    index.record("b", ["h1"])
    index.forget_missing({"b"})
    assert set(index.blocks) == {"b"}


def test_prompt_text_reads_completions_and_chat():
    assert prompt_text("/v1/completions", {"prompt": "hello"}) == "hello"
    assert prompt_text("/v1/completions", {"prompt": ["a", "b"]}) == "a b"
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    assert prompt_text("/v1/chat/completions", chat) == "system: be brief\nuser: hi"
    assert prompt_text("/v1/completions", None) == ""


def test_round_robin_rotates():
    rotation = RoundRobin()
    assert [rotation.pick(["a", "b", "c"]) for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    with pytest.raises(ValueError):
        rotation.pick([])


def test_weights_from_kserves_default_config_text():
    from localcluster.kserve_controller import DEFAULT_SCHEDULER_CONFIG
    assert weights_from_config(DEFAULT_SCHEDULER_CONFIG) == (KSERVE_DEFAULT_WEIGHTS, [])
    load_only = {"plugins": [{"type": "queue-scorer"}, {"type": "kv-cache-utilization-scorer", "name": "kv"},
                             {"type": "load-aware-scorer"}, {"type": "max-score-picker"}],
                 "schedulingProfiles": [{"name": "default", "plugins": [
                     {"pluginRef": "queue-scorer", "weight": 2}, {"pluginRef": "kv"},
                     {"pluginRef": "load-aware-scorer", "weight": 5}, {"pluginRef": "max-score-picker"}]}]}
    # a scorer without weight counts 1; scorers the simulation lacks are reported, not guessed
    assert weights_from_config(load_only) == ({"queue-scorer": 2.0, "kv-cache-utilization-scorer": 1.0},
                                              ["load-aware-scorer"])
