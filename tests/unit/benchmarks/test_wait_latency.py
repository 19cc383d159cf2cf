"""benchmarks/wait_latency.py: readiness at a random phase of k8s_info's polling, and the printed summary."""
import importlib.util
import statistics
from argparse import Namespace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "wait_latency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("wait_latency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offsets_make_a_5s_poller_wait_half_a_period_on_average(bench):
    # A waiter that polls every 5 s from t=0 sees readiness at offset o after ceil(o/5)*5 - o seconds.
    offsets = bench.readiness_offsets(4000, 10, seed=1)
    delays = [(-(-o // 5)) * 5 - o for o in offsets]
    assert statistics.fmean(delays) == pytest.approx(2.5, abs=0.15)
    assert min(offsets) >= 0 and max(offsets) < 10 and max(offsets) - min(offsets) > 9.9


def test_offsets_must_cover_one_polling_period(bench):
    with pytest.raises(ValueError, match="at least one polling period"):
        bench.readiness_offsets(20, 2, seed=1)


def test_percentiles_interpolate_like_numpy(bench):
    values = list(range(1, 21))  # 1..20
    assert bench.percentile(values, 0.5) == pytest.approx(10.5)
    assert bench.percentile(values, 0.95) == pytest.approx(19.05)
    assert bench.percentile([], 0.5) is None


def test_report_prints_mean_p50_p95_both_modules_ratio_and_requests_per_minute(bench):
    rounds = [{"llmisvc_wait": 0.02, "llmisvc_wait exit": 0.6, "k8s_info": 2.0 + i / 10, "k8s_info exit": 2.6 + i / 10}
              for i in range(20)]
    counts = {"llmisvc_wait": {"total": 12, "watch": 3, "after_10s": 2, "elapsed": 60.0},
              "k8s_info": {"total": 30, "watch": 0, "after_10s": 20, "elapsed": 60.0}}
    options = Namespace(spread_seconds=10.0, seed=7, wait_seconds=60)
    text = "\n".join(bench.report(rounds, [0.1, 9.8], counts, options))
    assert "20 rounds" in text and "U(0, 10 s)" in text and "seed 7" in text
    assert "llmisvc_wait  mean 0.02   p50 0.02   p95 0.02   (20 of 20 rounds)" in text
    assert "k8s_info      mean 2.95   p50 2.95   p95 3.80" in text
    assert "ratio k8s_info / llmisvc_wait: mean 147.5x, p50 147.5x, p95 190.2x" in text
    assert "llmisvc_wait    12.0 per minute" in text and "k8s_info        30.0 per minute" in text
    assert "steady state after the first 10 s: 24.0 per minute" in text
    assert "2.5x per minute overall" in text
