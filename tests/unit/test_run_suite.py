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
        '<testcase classname="tests.a" name="t1" time="1.5">'
        '<properties><property name="cpu_seconds" value="3.5"/></properties></testcase>'
        '<testcase classname="tests.a" name="t2" time="2"><failure message="x"/></testcase>'
        '<testcase classname="tests.b" name="t3" time="0"><skipped/></testcase>'
        '</testsuite></testsuites>')
    cases = run_suite.junit_cases([xml, tmp_path / "missing.xml"])
    assert cases == [(1.5, "tests.a::t1", "passed", 3.5), (2.0, "tests.a::t2", "failed", None),
                     (0.0, "tests.b::t3", "skipped", None)]


def test_cpu_seconds_of_each_test_reach_the_junit_xml_and_the_summary(tmp_path, capsys):
    """tests/conftest.py records each test's CPU (with the processes it waited for); run_suite lists the top."""
    import subprocess

    (tmp_path / "test_burn.py").write_text(
        "import subprocess, sys\n"
        "def test_burns_in_a_child():\n"
        "    subprocess.run([sys.executable, '-c', 'import sys, time; sum(range(80_000_000)); '\n"
        "                    'open(sys.argv[1], \"w\").write(str(time.process_time()))', 'child_cpu'], check=True)\n"
        "def test_idle():\n"
        "    pass\n")
    suite_conftest = Path(run_suite.__file__).parent / "conftest.py"
    (tmp_path / "conftest.py").write_text(
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('suite_conftest', {str(suite_conftest)!r})\n"
        "suite = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(suite)\n"
        "pytest_runtest_setup = suite.pytest_runtest_setup\n"
        "pytest_runtest_makereport = suite.pytest_runtest_makereport\n")
    xml = tmp_path / "r.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                    str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    cpu = {nodeid.rsplit("::", 1)[-1]: seconds for _t, nodeid, _o, seconds in run_suite.junit_cases([xml])}
    # The child's own CPU-seconds, as it measured them, are in its test's figure (rounded to 0.1 s). An idle test
    # is not held to a fixed bound: on a saturated 2-core CI machine it once read 0.2 s (cause not pinned down; the
    # last test's teardown also tears down the session), so it is held to half of the child's figure instead.
    child_cpu = float((tmp_path / "child_cpu").read_text())
    assert child_cpu > 0.5
    assert cpu["test_burns_in_a_child"] >= child_cpu - 0.05
    assert cpu["test_idle"] < child_cpu / 2
    run_suite.print_cpu_users(run_suite.junit_cases([xml]))
    out = capsys.readouterr().out
    assert out.index("test_burns_in_a_child") < out.index("test_idle") and "by module: test_burn" in out


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


def test_a_stage_waits_for_cluster_up_and_for_the_stages_named_in_after(monkeypatch):
    import threading
    import time

    order = []

    def fake_run_stage(stage, env):
        order.append(("start", stage.name))
        time.sleep(0.2 if stage.name == "slow" else 0.01)
        order.append(("end", stage.name))
        stage.status = "passed"
        return True

    monkeypatch.setattr(run_suite, "run_stage", fake_run_stage)
    lanes = {"a": [run_suite.Stage("up", "cluster-up"), run_suite.Stage("x", "x", needs_cluster=True),
                   run_suite.Stage("y", "y", needs_cluster=True, after=("slow", "left-out"))],
             "b": [run_suite.Stage("slow", "slow", needs_cluster=True)]}
    ended = {stage.name: threading.Event() for stages in lanes.values() for stage in stages}
    cluster = run_suite.ClusterState(will_start=True)
    threads = [threading.Thread(target=run_suite.run_lane, args=(stages, {}, [], cluster, ended))
               for stages in lanes.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order.index(("end", "up")) < order.index(("start", "slow"))
    assert order.index(("end", "slow")) < order.index(("start", "y"))  # "left-out" (not in this run) not awaited
    assert order.index(("start", "x")) < order.index(("end", "slow"))  # x did not wait for the other lane


def test_molecule_scenarios_run_side_by_side_and_integration_after_both():
    stages = {stage.name: (lane, stage) for lane, lane_stages in run_suite.LANES.items() for stage in lane_stages}
    assert stages["molecule default"][0] != stages["molecule switch"][0]
    lane, integration = stages["integration"]
    assert lane == stages["molecule default"][0] and "molecule switch" in integration.after


def test_serial_integration_tests_run_before_anything_else_uses_the_cluster():
    """They restart the API server and change the cluster's add-ons: first after cluster-up, before both scenarios."""
    stages = {stage.name: (lane, stage) for lane, lane_stages in run_suite.LANES.items() for stage in lane_stages}
    lane, serial = stages["integration serial"]
    order = [stage.name for stage in run_suite.LANES[lane]]
    assert order.index("cluster-up") + 1 == order.index("integration serial") < order.index("molecule default")
    assert "integration serial" in stages["molecule switch"][1].after
    assert serial.target == "integration-serial" and stages["integration"][1].target == "integration-parallel"
