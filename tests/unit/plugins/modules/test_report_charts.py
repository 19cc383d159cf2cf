"""report_charts module: SVG files beside the report, created directory, check mode, missing pygal, bad data."""
import json
import os

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import charts
from ansible_collections.llm_serving.gke.plugins.modules import report_charts
from tests.chart_svg import read_chart
from tests.unit.plugins.modules.module_exit import patch_exits, run_main

MATRIX = [{"pattern": "p3-gpu", "book": "seed-2026-02", "daily_usd": 21.3, "per_million_usd": None}]


@pytest.fixture(autouse=True)
def no_exit(monkeypatch):
    patch_exits(monkeypatch)


def run_module(**args):
    return run_main(report_charts.main, args)


def test_cost_charts_are_written_into_a_new_report_directory(tmp_path):
    dest = tmp_path / "reports" / "new"
    result = run_module(report_type="cost", data=MATRIX, dest=str(dest), basename="cost-report")
    assert result.kind == "exit", result.result
    assert result.result["changed"] is True
    assert [c["file"] for c in result.result["charts"]] == ["cost-report-daily.svg"]
    assert result.result["library"].startswith("pygal 3.")
    assert read_chart(str(dest / "cost-report-daily.svg"))["series"] == {"seed-2026-02": {"p3-gpu": "21.30"}}
    again = run_module(report_type="cost", data=MATRIX, dest=str(dest), basename="cost-report")
    assert again.result["changed"] is False


def test_check_mode_writes_nothing(tmp_path):
    dest = tmp_path / "reports"
    result = run_module(report_type="cost", data=MATRIX, dest=str(dest), basename="cost-report",
                        _ansible_check_mode=True)
    assert result.kind == "exit" and result.result["changed"] is True
    assert result.result["charts"][0]["path"] == str(dest / "cost-report-daily.svg")
    assert not dest.exists()


def test_without_pygal_no_chart_and_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(charts, "pygal", None)
    result = run_module(report_type="verification", data={"measured_on": "gke"}, dest=str(tmp_path),
                        basename="verification-x")
    assert result.kind == "exit"
    assert result.result["charts"] == [] and result.result["library"] is None
    assert any("pygal is not installed" in w and "text charts" in w for w in result.result["warnings"])
    assert os.listdir(tmp_path) == []


def test_data_that_cannot_be_charted_fails_naming_the_field(tmp_path):
    result = run_module(report_type="cost", data=[{"pattern": "p1", "book": "b"}], dest=str(tmp_path),
                        basename="cost-report")
    assert result.kind == "fail"
    assert result.result["msg"] == "report_charts (cost report): cost matrix row 0 has no daily_usd"


def test_a_basename_with_a_slash_is_refused(tmp_path):
    result = run_module(report_type="cost", data=MATRIX, dest=str(tmp_path), basename="../cost")
    assert result.kind == "fail" and "basename" in result.result["msg"] and "'../cost'" in result.result["msg"]


def test_the_json_report_is_written_in_the_same_run_with_the_chart_paths(tmp_path):
    data = {"llmisvc": "demo", "benchmark": None, "cache": None, "checks": [], "passed": True}
    path = tmp_path / "verification-demo.json"
    result = run_module(report_type="verification", data=data, dest=str(tmp_path), basename="verification-demo",
                        json_report=str(path))
    assert result.kind == "exit", result.result
    assert result.result["json_report"] == str(path) and result.result["changed"] is True
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "llmisvc": "demo"' in text
    assert json.loads(text) == dict(data, report_charts=[c["path"] for c in result.result["charts"]])
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    again = run_module(report_type="verification", data=data, dest=str(tmp_path), basename="verification-demo",
                       json_report=str(path))
    assert again.result["changed"] is False


def test_json_report_in_check_mode_and_of_no_dict(tmp_path):
    path = tmp_path / "r.json"
    result = run_module(report_type="verification", data={"passed": True}, dest=str(tmp_path), basename="r",
                        json_report=str(path), _ansible_check_mode=True)
    assert result.kind == "exit" and result.result["changed"] is True and not path.exists()
    refused = run_module(report_type="cost", data=MATRIX, dest=str(tmp_path), basename="r", json_report=str(path))
    assert refused.kind == "fail" and refused.result["msg"] == "json_report needs data to be a dict (the " \
                                                               "verification_result), got list"
