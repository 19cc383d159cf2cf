"""Statistics of benchmark records (inference_stats)."""
import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_stats as stats


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 90) == pytest.approx(4.6)
    assert stats.percentile(values, 99) == pytest.approx(4.96)
    assert stats.percentile([7.0], 95) == 7.0
    assert stats.percentile([], 50) is None


def test_distribution_in_milliseconds():
    dist = stats.distribution_ms([0.1, 0.2, None, 0.3])
    assert dist["count"] == 3
    assert dist["p50"] == pytest.approx(200.0) and dist["mean"] == pytest.approx(200.0)
    assert dist["min"] == pytest.approx(100.0) and dist["max"] == pytest.approx(300.0)


def test_summary_of_records_uses_successes_for_throughput():
    records = [
        {"ok": True, "start_s": 0.0, "e2e_s": 1.0, "ttft_s": 0.1, "itl_s": [0.3, 0.3, 0.3], "output_tokens": 4,
         "error": None, "error_detail": None},
        {"ok": True, "start_s": 1.0, "e2e_s": 1.0, "ttft_s": 0.2, "itl_s": [0.2], "output_tokens": 2,
         "error": None, "error_detail": None},
        {"ok": False, "start_s": 0.5, "e2e_s": 0.1, "ttft_s": None, "itl_s": [], "output_tokens": 0,
         "error": "timeout", "error_detail": None},
    ]
    step = stats.summarize_step(records, {"concurrency": 2}, window_start=0.0)
    assert step["duration_s"] == pytest.approx(2.0)
    assert step["requests_per_s"] == pytest.approx(1.0)
    assert step["output_tokens_per_s"] == pytest.approx(3.0)
    assert step["success_rate"] == pytest.approx(2 / 3)
    assert step["tpot_ms"]["p50"] == pytest.approx(550.0)  # median of (1.0-0.1)/3=300 ms and (1.0-0.2)/1=800 ms
    assert step["errors"] == {"timeout": 1}
