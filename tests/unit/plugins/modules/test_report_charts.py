"""report_charts module: SVG files beside the report, created directory, check mode, missing pygal, bad data."""
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
