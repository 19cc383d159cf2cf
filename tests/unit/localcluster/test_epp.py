"""The gateway's prefix-aware endpoint picker (llm-d prefix-cache + queue scorers)."""
import collections

import pytest

from localcluster.epp import PrefixAwarePicker, PrefixIndex, RoundRobin, prompt_text
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


def test_distinct_prefixes_spread_by_load():
    picker = PrefixAwarePicker()
    endpoints = ["a", "b", "c"]
    inflight = collections.Counter()
    for group in range(3):
        chosen, _, _ = picker.pick(endpoints, f"tenant {group} " + SYSTEM, dict(inflight))
        inflight[chosen] += 1
    assert sorted(inflight) == endpoints  # every new prefix went to the least loaded endpoint


def test_prefix_beats_moderate_load_but_not_every_load():
    picker = PrefixAwarePicker()
    picker.index.record("a", block_hashes(tokenize(SYSTEM)))
    chosen, _, _ = picker.pick(["a", "b"], SYSTEM + " tail", {"a": 3, "b": 0})
    assert chosen == "a"  # full prefix (score 2) beats an idle endpoint (score 1)
    scores = picker.scores(["a", "b"], block_hashes(tokenize("unrelated " * 40)), {"a": 3, "b": 0})
    assert scores["b"] > scores["a"]


def test_ties_go_to_the_least_loaded_endpoint():
    picker = PrefixAwarePicker(prefix_weight=1.0, queue_weight=0.0)
    chosen, _, _ = picker.pick(["a", "b", "c"], "short", {"a": 2, "b": 1, "c": 5})
    assert chosen == "b"


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
