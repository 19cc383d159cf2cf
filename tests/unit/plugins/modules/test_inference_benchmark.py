"""inference_benchmark module: the result says where its throughput and latency were measured."""
import json

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load
from ansible_collections.llm_serving.gke.plugins.modules import inference_benchmark
from tests.unit.plugins.modules.module_exit import patch_exits, run_main


@pytest.fixture(autouse=True)
def no_load(monkeypatch):
    """exit_json/fail_json raise; the load generator returns a fixed result instead of sending requests."""
    patch_exits(monkeypatch)
    step = {"concurrency": 1, "requests": 3, "requests_per_s": 12.5}
    monkeypatch.setattr(inference_load, "run", lambda config: {
        "steps": [step], "summary": {"requests": 3, "max_requests_per_s": 12.5}, "records": []})


def run_module(**args):
    return run_main(inference_benchmark.main, dict({"base_url": "http://127.0.0.1:1", "model": "m"}, **args))


def test_local_simulator_is_named_in_the_result():
    result = run_module(measured_on="local-simulator")
    assert result.kind == "exit", result.result
    summary = result.result["summary"]
    assert summary["measured_on"] == "local-simulator"
    assert "local simulator" in summary["measured_on_text"] and "not GKE" in summary["measured_on_text"]
    assert summary["overall"]["max_requests_per_s"] == 12.5
    assert "measured_on" not in summary["config"] or summary["config"]["measured_on"] == "local-simulator"


def test_gke_is_named_in_the_result():
    summary = run_module(measured_on="gke").result["summary"]
    assert summary["measured_on"] == "gke" and summary["measured_on_text"] == "measured on GKE"


def test_without_measured_on_the_result_says_the_source_is_not_stated():
    summary = run_module().result["summary"]
    assert summary["measured_on"] == "unstated"
    assert "not stated" in summary["measured_on_text"] and "GKE figure" in summary["measured_on_text"]


def test_unknown_measured_on_is_refused_naming_the_option():
    result = run_module(measured_on="laptop")
    assert result.kind == "fail" and "measured_on" in result.result["msg"] and "laptop" in result.result["msg"]


def test_output_file_carries_the_source(tmp_path):
    path = tmp_path / "bench.json"
    run_module(measured_on="local-simulator", output_file=str(path))
    written = json.loads(path.read_text())
    assert written["measured_on"] == "local-simulator" and "local simulator" in written["measured_on_text"]
