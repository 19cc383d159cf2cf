"""Replica metrics (inference_metrics): Prometheus parsing, cache deltas, and the metric names the image's vLLM
exposes (V0 on a T4, V1 elsewhere)."""
import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_metrics as metrics
from tests.unit.vllm_sim_helpers import SHARED_PREFIX as SHARED
from tests.unit.vllm_sim_helpers import exposition, serve, sim_config


def _exposition(version, accelerator, argv, prompts):
    return exposition(serve(sim_config(argv, version, accelerator), prompts))


def test_v0_t4_replica_hit_rate_comes_from_the_v0_gauge():
    argv = ["--dtype=half", "--enable-prefix-caching", "--show-hidden-metrics-for-version=0.7"]
    before = {"r": metrics.replica_counters(metrics.parse_prometheus(
        _exposition("0.8.4", "nvidia-tesla-t4", argv, [])))}
    after = {"r": metrics.replica_counters(metrics.parse_prometheus(
        _exposition("0.8.4", "nvidia-tesla-t4", argv, [SHARED + " one", SHARED + " two"])))}
    assert after["r"]["prefix_cache_queries"] is None  # V0 has no token counters
    report = metrics.cache_report(before, after)
    assert report["hit_rate"] == pytest.approx(after["r"]["prefix_cache_hit_rate"])
    assert 0 < report["hit_rate"] < 1
    assert report["hit_rate_metric"].startswith("vllm:gpu_prefix_cache_hit_rate")


def test_v1_replica_hit_rate_still_comes_from_counter_deltas():
    before = {"r": metrics.replica_counters(metrics.parse_prometheus(_exposition("0.10.1.1", "tpu-v6e-slice", [], [])))}
    after = {"r": metrics.replica_counters(metrics.parse_prometheus(
        _exposition("0.10.1.1", "tpu-v6e-slice", [], [SHARED + " one", SHARED + " two"])))}
    report = metrics.cache_report(before, after)
    assert "prefix_cache_hit_rate" not in after["r"]
    assert report["hit_rate"] == pytest.approx(after["r"]["prefix_cache_hits"] / after["r"]["prefix_cache_queries"])
    assert report["hit_rate_metric"].startswith("vllm:prefix_cache_hits_total")


def test_metric_names_come_from_the_version_table():
    from ansible_collections.llm_serving.gke.plugins.module_utils import vllm_versions
    assert vllm_versions.METRIC_ROLES["prefix_cache_hit_rate"] == metrics.PREFIX_HIT_RATE_METRICS
    assert vllm_versions.metric_names("0.8.4", "nvidia-tesla-t4")["prefix_cache_hit_rate"] is None  # hidden
    assert vllm_versions.metric_names("0.12.0", "nvidia-tesla-t4")["kv_cache_usage"] == "vllm:kv_cache_usage_perc"


def test_prometheus_parsing_and_cache_deltas():
    text = (
        "# TYPE vllm:prefix_cache_hits_total counter\n"
        'vllm:prefix_cache_hits_total{engine="0"} 10\n'
        'vllm:prefix_cache_hits_total{engine="1"} 5\n'
        "vllm:prefix_cache_queries_total 100\n"
        'vllm:request_success_total{finished_reason="stop"} 3\n'
        "garbage line\n"
    )
    counters = metrics.replica_counters(metrics.parse_prometheus(text))
    assert counters == {"prefix_cache_hits": 15.0, "prefix_cache_queries": 100.0, "requests": 3.0}
    before = {"a": counters, "b": {"prefix_cache_hits": 0.0, "prefix_cache_queries": 0.0, "requests": 0.0}}
    after = {"a": {"prefix_cache_hits": 45.0, "prefix_cache_queries": 200.0, "requests": 9.0},
             "b": {"prefix_cache_hits": 10.0, "prefix_cache_queries": 100.0, "requests": 2.0}}
    report = metrics.cache_report(before, after)
    assert report["hit_rate"] == pytest.approx(40.0 / 200.0)
    assert report["replicas"]["a"]["hit_rate"] == pytest.approx(0.3)
    assert report["replicas"]["a"]["request_share"] == pytest.approx(0.75)
    assert report["replicas"]["b"]["request_share"] == pytest.approx(0.25)
