"""Charts of the Markdown reports: the SVG files plot the report's own numbers, with its labels."""
import math
from pathlib import Path

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import charts
from tests.chart_svg import read_chart

VERIFICATION = {
    "measured_on": "local-simulator",
    "benchmark": {"steps": [
        {"concurrency": 1, "requests_per_s": 12.5, "e2e_ms": {"p95": 80.0}, "ttft_ms": {"p95": 20.25}},
        {"concurrency": 8, "requests_per_s": 41.237, "e2e_ms": {"p95": 180.46}, "ttft_ms": {"p95": None}},
        {"request_rate": 2, "requests_per_s": 2.0, "e2e_ms": {"p95": 75.0}, "ttft_ms": {"p95": 19.0}},
    ]},
    "cache": {"replicas": {"http://10.0.0.2:8000": {"request_share": 0.375, "hit_rate": 0.6931},
                           "http://10.0.0.1:8000": {"request_share": 0.625, "hit_rate": None}},
              "hit_rate": 0.6931, "round_robin_hit_rate": 0.2412, "best_hit_rate": 0.75},
}
MATRIX = [
    {"pattern": "p1-tpu", "book": "seed-2026-02", "daily_usd": 133.02, "per_million_usd": None},
    {"pattern": "p1-tpu", "book": "gcp-on-demand-europe-west4", "daily_usd": 295.16, "per_million_usd": None},
    {"pattern": "p3-gpu", "book": "seed-2026-02", "daily_usd": 21.3, "per_million_usd": 1.234,
     "throughput_measured_on": "local-simulator"},
    {"pattern": "p3-gpu", "book": "gcp-on-demand-europe-west4", "daily_usd": 1051.56, "per_million_usd": 3.5,
     "throughput_measured_on": "local-simulator"},
]


def draw(tmp_path, specs, basename="report"):
    written, changed = charts.write_charts(specs, str(tmp_path), basename)
    return {c["name"]: read_chart(c["path"]) for c in written}, written, changed


def test_verification_charts_plot_the_reports_numbers(tmp_path):
    drawn, written, changed = draw(tmp_path, charts.verification_specs(VERIFICATION), "verification-demo-T")
    assert changed
    assert [c["file"] for c in written] == [
        f"verification-demo-T-{n}.svg" for n in ("throughput", "latency", "replicas", "hit-rates")]
    throughput = drawn["throughput"]
    assert throughput["x_labels"] == ["c=1", "c=8", "rate=2/s"]
    assert throughput["series"] == {"req/s": {"c=1": "12.50", "c=8": "41.24", "rate=2/s": "2.00"}}
    assert "local simulator, not GKE" in throughput["title"]
    latency = drawn["latency"]
    assert latency["series"]["E2E p95"] == {"c=1": "80.0", "c=8": "180.5", "rate=2/s": "75.0"}
    assert latency["series"]["TTFT p95"] == {"c=1": "20.2", "rate=2/s": "19.0"}  # c=8 has no TTFT: no bar
    replicas = drawn["replicas"]
    assert replicas["x_labels"] == ["10.0.0.1:8000", "10.0.0.2:8000"]  # the table's order (sorted URLs)
    assert replicas["series"]["request share"] == {"10.0.0.1:8000": "62.5", "10.0.0.2:8000": "37.5"}
    assert replicas["series"]["hit rate"] == {"10.0.0.2:8000": "69.3"}
    assert drawn["hit-rates"]["series"]["hit rate"] == {"measured": "69.3", "round robin": "24.1",
                                                        "best possible": "75.0"}


def test_rewriting_the_same_report_changes_no_file(tmp_path):
    specs = charts.verification_specs(VERIFICATION)
    _drawn, written, _changed = draw(tmp_path, specs)
    before = {c["path"]: Path(c["path"]).read_text() for c in written}
    assert all("<!--Generated with pygal" in text and "uuid" not in text for text in before.values())
    _drawn, _written, changed = draw(tmp_path, specs)
    assert not changed
    assert before == {c["path"]: Path(c["path"]).read_text() for c in written}


def test_charts_only_for_the_data_a_report_has():
    assert charts.verification_specs({"measured_on": "gke", "benchmark": None, "cache": None}) == []
    only_cache = {"cache": {"replicas": {"http://a:1": {"request_share": 1.0, "hit_rate": 0.5}}}}
    assert [s["name"] for s in charts.verification_specs(only_cache)] == ["replicas"]


def test_cost_charts_group_by_pattern_with_one_series_per_book(tmp_path):
    drawn, written, _changed = draw(tmp_path, charts.cost_specs(MATRIX), "cost-report")
    assert [c["file"] for c in written] == ["cost-report-daily.svg", "cost-report-per-million.svg"]
    daily = drawn["daily"]
    assert daily["x_labels"] == ["p1-tpu", "p3-gpu"]
    assert daily["legend"] == ["seed-2026-02", "gcp-on-demand-europe-west4"]
    assert daily["series"]["seed-2026-02"] == {"p1-tpu": "133.02", "p3-gpu": "21.30"}
    assert daily["series"]["gcp-on-demand-europe-west4"] == {"p1-tpu": "295.16", "p3-gpu": "1,051.56"}
    per_million = drawn["per-million"]
    assert "SIMULATED throughput" in per_million["title"] and "local simulator" in per_million["title"]
    assert per_million["series"]["seed-2026-02"] == {"p3-gpu": "1.23"}


def test_no_per_million_chart_without_a_measured_throughput():
    rows = [dict(row, per_million_usd=None) for row in MATRIX]
    assert [s["name"] for s in charts.cost_specs(rows)] == ["daily"]
    assert charts.cost_specs([]) == []


@pytest.mark.parametrize("bad, message", [
    ({"benchmark": {"steps": [{"concurrency": 1, "requests_per_s": math.nan}]}},
     "benchmark.steps[0].requests_per_s must be a finite number"),
    ({"benchmark": {"steps": [{"concurrency": 1, "requests_per_s": "fast"}]}},
     "benchmark.steps[0].requests_per_s must be a number or null, got 'fast'"),
    ({"benchmark": {"steps": [{"requests_per_s": 1}]}}, "has neither concurrency nor request_rate"),
    (["not", "a", "dict"], "data must be the verification_result dict, got list"),
])
def test_verification_data_that_cannot_be_charted_is_named(bad, message):
    with pytest.raises(charts.ChartDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        charts.verification_specs(bad)


@pytest.mark.parametrize("bad, message", [
    ({"pattern": "p1"}, "data must be the cost matrix"),
    ([{"pattern": "p1", "book": "b"}], "cost matrix row 0 has no daily_usd"),
    ([{"pattern": "p1", "book": "b", "daily_usd": math.inf}], "cost matrix p1/b daily_usd must be a finite number"),
])
def test_cost_data_that_cannot_be_charted_is_named(bad, message):
    with pytest.raises(charts.ChartDataError, match=message):
        charts.cost_specs(bad)
