"""Fixtures of the role unit tests: run a role's task files in a one-play playbook on localhost (no cluster)."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

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


@pytest.fixture
def ansible_playbook(tmp_path):
    """run(play, *args, env=None): ansible-playbook on localhost with this checkout's collection; play is a list
    of plays (dicts, written as JSON, which is YAML) or YAML text. Returns the CompletedProcess."""
    def run(play, *args, env=None):
        path = tmp_path / "play.yml"
        path.write_text(play if isinstance(play, str) else json.dumps(play, indent=1))
        environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1",
                       **(env or {}))
        return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(path), *args],
                              capture_output=True, text=True, env=environ, cwd=ROOT, timeout=300, check=False)
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
