"""tests/run_suite.py: the figures `make test` prints at its end."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import run_suite  # noqa: E402


def test_busy_fraction_is_the_busy_share_of_the_jiffies_between_two_readings():
    assert run_suite.busy_fraction((100, 400), (250, 600)) == pytest.approx(0.75)
    assert run_suite.busy_fraction(None, (1, 2)) is None
    assert run_suite.busy_fraction((5, 10), (5, 10)) is None  # no time passed: no figure, not 0 %


def test_cpu_jiffies_reads_proc_stat():
    busy, total = run_suite.cpu_jiffies()
    assert 0 <= busy <= total and total > 0


def test_junit_cases_give_time_nodeid_and_outcome(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.a" name="t1" time="1.5"/>'
        '<testcase classname="tests.a" name="t2" time="2"><failure message="x"/></testcase>'
        '<testcase classname="tests.b" name="t3" time="0"><skipped/></testcase>'
        '</testsuite></testsuites>')
    cases = run_suite.junit_cases([xml, tmp_path / "missing.xml"])
    assert cases == [(1.5, "tests.a::t1", "passed"), (2.0, "tests.a::t2", "failed"), (0.0, "tests.b::t3", "skipped")]


def test_stage_cpu_seconds_come_from_the_stage_process_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(run_suite, "ROOT", tmp_path)
    monkeypatch.setattr(run_suite, "LOG_DIR", tmp_path)
    (tmp_path / "Makefile").write_text("burn:\n\t@python3 -c 'sum(range(3_000_000))'\nfail:\n\t@exit 3\n")
    stage = run_suite.Stage("burn", "burn")
    assert run_suite.run_stage(stage, {"PATH": "/usr/bin:/bin"}) is True
    assert stage.status == "passed" and stage.cpu_seconds > 0 and stage.seconds >= stage.cpu_seconds / 4
    failing = run_suite.Stage("fail", "fail")
    assert run_suite.run_stage(failing, {"PATH": "/usr/bin:/bin"}) is False
    assert failing.status.startswith("FAILED (rc=2)")  # make's own status when a recipe fails


def test_pct_and_fmt():
    assert run_suite.pct(None) == "n/a" and run_suite.pct(0.456) == "46%"
    assert run_suite.fmt(125.25) == "2m05.2s"
