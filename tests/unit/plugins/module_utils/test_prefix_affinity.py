"""prefix_affinity: fresh prefixes, per-request attribution, affinity and the round-robin comparison."""
import random

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_http, inference_metrics
from ansible_collections.llm_serving.gke.plugins.module_utils import prefix_affinity as pa

REPLICAS = ["http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"]
PREFIX, QUESTION = 256, 24  # tokens: a hit covers the prefix, a query the whole prompt


def config(**options):
    return pa.build_config("http://gw/ns/svc", "m", REPLICAS, **options)


def test_every_run_gets_fresh_prefixes_and_a_shuffled_order():
    first, second = pa.workload(config()), pa.workload(config())
    assert {p.split(":")[0] for _g, p in first}.isdisjoint({p.split(":")[0] for _g, p in second})
    groups = [g for g, _p in first]
    assert len(groups) == 8 * 4 and sorted(set(groups)) == list(range(8))
    assert groups != sorted(groups)  # not one group after another


@pytest.mark.parametrize("options, message", [
    ({"requests_per_group": 1}, "requests_per_group must be a whole number >= 2"),
    ({"prefix_groups": 0}, "prefix_groups must be a whole number >= 1"),
    ({"shared_prefix_tokens": 16}, "shared_prefix_tokens must be longer than one 16-token KV block"),
    ({"max_tokens": 0}, "max_tokens must be a whole number >= 1"),
])
def test_bad_settings_name_the_option(options, message):
    with pytest.raises(pa.AffinityConfigError, match=message):
        config(**options)


def test_no_metrics_urls_is_refused():
    with pytest.raises(pa.AffinityConfigError, match="metrics_urls is empty"):
        pa.build_config("http://gw", "m", [])


def simulate(order, route):
    """Records as a cluster would produce them: route(index, group) -> replica; a replica hits a prefix it saw."""
    seen, records = set(), []
    for index, group in enumerate(order):
        url = route(index, group)
        hit = (url, group) in seen
        seen.add((url, group))
        records.append({"group": group, "ok": True, "error": None, "replica": url,
                        "hit_tokens": PREFIX if hit else 0, "query_tokens": PREFIX + QUESTION})
    return records


# 24 groups (8 per replica), 4 requests each, shuffled as the check sends them (a fixed cycle of 24 would align
# with a 3-replica round robin and give it perfect affinity).
ORDER = [g for _round in range(4) for g in range(24)]
random.Random(1).shuffle(ORDER)


def test_prefix_aware_routing_beats_the_computed_round_robin():
    summary = pa.analyse(simulate(ORDER, lambda i, g: REPLICAS[g % 3]), REPLICAS)
    assert summary["hit_rate"] == pytest.approx(summary["best_hit_rate"])
    assert summary["round_robin_hit_rate"] < summary["hit_rate"]
    assert summary["best_hit_rate"] == pytest.approx(72 * PREFIX / (96 * (PREFIX + QUESTION)))
    assert summary["mean_group_affinity"] == 1.0
    assert all(info["replica_count"] == 1 for info in summary["groups"].values())
    assert summary["replica_request_sum"] == summary["requests"] == 96
    assert {url: len(s["groups"]) for url, s in summary["replicas"].items()} == {url: 8 for url in REPLICAS}


def test_round_robin_routing_gets_exactly_the_computed_round_robin_rate():
    summary = pa.analyse(simulate(ORDER, lambda i, g: REPLICAS[i % 3]), REPLICAS)
    assert summary["hit_rate"] == pytest.approx(summary["round_robin_hit_rate"])
    assert summary["hit_rate"] < summary["best_hit_rate"]
    assert summary["mean_group_affinity"] < 0.6
    for stats in summary["replicas"].values():  # each replica's own counters
        assert stats["hit_rate"] == pytest.approx(stats["prefix_cache_hits"] / stats["prefix_cache_queries"])


def test_unattributed_requests_are_counted_and_not_given_to_a_replica():
    records = simulate(ORDER[:6], lambda i, g: REPLICAS[0])
    records[2]["replica"] = None
    summary = pa.analyse(records, REPLICAS)
    assert summary["unattributed_requests"] == 1 and summary["replica_request_sum"] == 5


def test_v0_engine_without_token_counters_uses_request_terms():
    records = simulate(ORDER, lambda i, g: REPLICAS[g % 3])
    for record in records:
        record["hit_tokens"] = record["query_tokens"] = None
    summary = pa.analyse(records, REPLICAS, gauges={url: 0.4 for url in REPLICAS})
    assert summary["hit_rate_basis"] == "requests"
    assert summary["hit_rate"] == pytest.approx(72 / 96) == summary["best_hit_rate"]
    assert summary["round_robin_hit_rate"] == pytest.approx(summary["round_robin_hit_rate_requests"])
    assert all(s["hit_rate"] == 0.4 and s["hit_rate_since_start"] for s in summary["replicas"].values())


def test_run_check_attributes_each_request_from_the_replica_counters(monkeypatch):
    """A fake cluster: a prefix-aware router, replicas whose counters move when a request finishes."""
    counters = {url: {"requests": 0.0, "prefix_cache_hits": 0.0, "prefix_cache_queries": 0.0} for url in REPLICAS}
    owner, seen = {}, set()

    async def send_request(pool, cfg, prompt, index, clock_zero):
        key = prompt.split(" Question")[0]
        url = owner.setdefault(key, REPLICAS[len(owner) % 3])
        counters[url]["requests"] += 1
        counters[url]["prefix_cache_queries"] += PREFIX + QUESTION
        counters[url]["prefix_cache_hits"] += PREFIX if (url, key) in seen else 0
        seen.add((url, key))
        return {"ok": True, "error": None}

    async def scrape_replicas(cfg):
        return {url: dict(values) for url, values in counters.items()}

    class Pool:
        def __init__(self, cfg):
            pass

        def close(self):
            pass

    monkeypatch.setattr(inference_http, "send_request", send_request)
    monkeypatch.setattr(inference_metrics, "scrape_replicas", scrape_replicas)
    monkeypatch.setattr(inference_http, "ConnectionPool", Pool)
    result = pa.run(config(prefix_groups=24, requests_per_group=4))
    summary = result["summary"]
    assert summary["requests"] == summary["replica_request_sum"] == 96 and summary["unattributed_requests"] == 0
    assert summary["hit_rate"] == pytest.approx(summary["best_hit_rate"])
    assert summary["hit_rate"] > summary["round_robin_hit_rate"]


def test_requests_generate_one_token_by_default():
    # The hit is decided on the prompt when vLLM schedules it (vllm/v1/core/kv_cache_manager.py
    # record_prefix_cache_stats): more generated tokens only make the check slower.
    assert config()["max_tokens"] == 1
    assert config(max_tokens=8)["max_tokens"] == 8
