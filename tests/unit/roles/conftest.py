"""Fixtures of the role unit tests: run a role's task files in a one-play playbook on localhost (no cluster)."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.unit.once_per_session import once_per_session

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")

# What the verification role's discover and smoke task files set before evaluate/report run.
VERIFICATION_SCAFFOLD = {
    "verification_llmisvc_name": "demo",
    "verification_namespace": "ns",
    "verification_model_name": "m",
    "__verification_url": "http://127.0.0.1:1/ns/demo",
    "__verification_url_source": "status.url",
    "__verification_pod_ips": [],
    "__verification_checks": [{"name": "models", "passed": True, "expected": "listed", "measured": "listed"}],
}


def _ansible_playbook(directory, play, *args, env=None):
    """ansible-playbook on localhost with this checkout's collection, the play written to directory/play.yml."""
    path = directory / "play.yml"
    path.write_text(play if isinstance(play, str) else json.dumps(play, indent=1))
    environ = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"), "ANSIBLE_NOCOLOR": "1",
               **(env or {})}
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(path), *args],
                          capture_output=True, text=True, env=environ, cwd=ROOT, timeout=300, check=False)


@pytest.fixture
def ansible_playbook(tmp_path):
    """run(play, *args, env=None): ansible-playbook on localhost with this checkout's collection; play is a list
    of plays (dicts, written as JSON, which is YAML) or YAML text. Returns the CompletedProcess."""
    def run(play, *args, env=None):
        return _ansible_playbook(tmp_path, play, *args, env=env)
    return run


@pytest.fixture(scope="session")
def ansible_playbook_in():
    """run(directory, play, *args, env=None): as ansible_playbook, with the play written to directory (for
    module- or session-scoped fixtures)."""
    return _ansible_playbook


# The play of role_cases: case.yml once per case (loop_var `case`), then the `results` fact as JSON.
CASES_PLAY = [{"name": "Run each case", "hosts": "localhost", "gather_facts": False, "tasks": [
    {"name": "Run one case", "ansible.builtin.include_tasks": "case.yml", "loop": "{{ cases }}",
     "loop_control": {"loop_var": "case"}},
    {"name": "Write the results",
     "ansible.builtin.copy": {"content": "{{ results | to_json }}", "dest": "{{ out }}", "mode": "0600"}},
]}]


@pytest.fixture(scope="session")
def role_cases(tmp_path_factory):
    """run(name, case_tasks, cases): all cases of a test module in one ansible-playbook run (one start instead of
    one per case), once per session also under xdist (once_per_session). case_tasks (YAML text) runs once per case
    with the case as `case` and adds its outcome to the `results` fact (a dict, usually keyed by case.id); cases
    is a list of JSON values. Returns `results`; fails the tests using it when the playbook fails."""
    def run(name, case_tasks, cases):
        def produce(directory):
            (directory / "case.yml").write_text(case_tasks)
            (directory / "vars.json").write_text(json.dumps({"cases": cases, "out": str(directory / "out.json")}))
            proc = _ansible_playbook(directory, CASES_PLAY, "-e", f"@{directory}/vars.json")
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
            return json.loads((directory / "out.json").read_text())
        return once_per_session(tmp_path_factory, name, produce)
    return run


@pytest.fixture
def verification_report(tmp_path, ansible_playbook):
    """run(play_vars, *args, env=None, tasks=('evaluate', 'report')): the verification role's task files with
    recorded results in play vars on top of VERIFICATION_SCAFFOLD. Returns proc, report (JSON), markdown and
    dir (the report directory); fails the test when the playbook fails."""
    reports = tmp_path / "reports"

    def run(play_vars, *args, env=None, tasks=("evaluate", "report")):
        play = [{"hosts": "localhost", "gather_facts": False, "vars": {**VERIFICATION_SCAFFOLD, **play_vars},
                 "tasks": [{"ansible.builtin.include_role": {"name": "llm_serving.gke.verification",
                                                              "tasks_from": "{{ item }}"},
                            "loop": list(tasks)}]}]
        proc = ansible_playbook(play, "-e", f"verification_report_dir={reports}", *args, env=env)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        json_files = sorted(reports.glob("*.json"))
        md_files = sorted(reports.glob("*.md"))
        return SimpleNamespace(proc=proc, dir=reports,
                               report=json.loads(json_files[-1].read_text()) if json_files else None,
                               markdown=md_files[-1].read_text() if md_files else None)
    return run
