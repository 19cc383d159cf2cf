"""inference_benchmark module: the result says where its throughput and latency were measured."""
import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llm_serving.gke.plugins.module_utils import inference_load
from ansible_collections.llm_serving.gke.plugins.modules import inference_benchmark


class Exit(Exception):
    def __init__(self, kind, result):
        super().__init__(result.get("msg", ""))
        self.kind = kind
        self.result = result


@pytest.fixture(autouse=True)
def no_exit_no_load(monkeypatch):
    """exit_json/fail_json raise; the load generator returns a fixed result instead of sending requests."""
    from ansible.module_utils.basic import AnsibleModule

    def exit_json(self, **result):
        raise Exit("exit", result)

    def fail_json(self, msg, **result):
        raise Exit("fail", dict(result, msg=msg))

    monkeypatch.setattr(AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(AnsibleModule, "fail_json", fail_json)
    step = {"concurrency": 1, "requests": 3, "requests_per_s": 12.5}
    monkeypatch.setattr(inference_load, "run", lambda config: {
        "steps": [step], "summary": {"requests": 3, "max_requests_per_s": 12.5}, "records": []})


def run_module(**args):
    with patch_module_args(dict({"base_url": "http://127.0.0.1:1", "model": "m"}, **args)), \
            pytest.raises(Exit) as exc:
        inference_benchmark.main()
    return exc.value


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
