"""roles/llmisvc wait.yml: the wait runs in the background and the play shows where the deployment is.

Issue 11 item 9: a TPU start takes 5 to 20 minutes and the play used to be silent until the wait ended. The role
now starts llm_serving.gke.llmisvc_wait with async, prints the line of its progress file at least every
llmisvc_wait_report_interval seconds, and registers the module's result (with its timeline) as llmisvc_result.
Runs the role's real task files with a stand-in llmisvc_wait module (no cluster) that writes two progress reports.
"""
import json
import os
import subprocess

import pytest

from tests.unit.once_per_session import once_per_session

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

FAKE_MODULE = '''#!/usr/bin/python
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

LINES = [
    "tpu after 0s: nodes ready 0 of 1 needed (1 being added); pods 1: 1 scaling-up",
    "tpu after 6s: nodes ready 1 of 1 needed; pods 1: 1 starting",
]


def main():
    module = AnsibleModule(argument_spec=dict(
        name=dict(), namespace=dict(), api_version=dict(), timeout=dict(type="int"),
        progress_deadline=dict(type="int"), require_rollout=dict(type="bool"), require_url=dict(type="bool"),
        fail_fast=dict(type="bool"), progress_file=dict(type="path"), progress_interval=dict(type="int")),
        supports_check_mode=True)
    if module.check_mode:
        # As the real module: judge the state once, without waiting and without a progress file.
        ready = module.params["namespace"] == "ready-now"
        module.exit_json(changed=False, ready=ready, outcome="ready" if ready else "pending",
                         timeline=[{"type": "Ready", "status": str(ready)}], progress=[])
    progress = []
    for line in LINES:
        progress.append({"line": line})
        with open(module.params["progress_file"] + ".tmp", "w") as handle:
            json.dump({"line": line}, handle)
        os.replace(module.params["progress_file"] + ".tmp", module.params["progress_file"])
        time.sleep(float(os.environ.get("FAKE_STEP", "6")))
    timeline = [{"type": "Ready", "status": "True"}]
    if module.params["namespace"] == "broken":
        module.fail_json(msg="tpu not ready: pod tpu-1: ImagePullBackOff (hint: check the image)", ready=False,
                         outcome="failed", timeline=timeline, progress=progress)
    module.exit_json(changed=False, ready=True, outcome="ready", timeline=timeline, progress=progress)


main()
'''

PLAY = """
- name: Wait with progress ({namespace})
  hosts: localhost
  gather_facts: false
  vars:
    namespace: {namespace}
    llmisvc_pattern: {{llmisvc_name: tpu, namespace: "{{{{ namespace }}}}"}}
    llmisvc_wait_report_interval: 2
  tasks:
    - name: Start from no result (facts of the previous play stay on the host)
      ansible.builtin.set_fact:
        failed_msg: ""
        llmisvc_result: {{}}
    - name: Wait
      block:
        - name: Run the role's wait
          ansible.builtin.include_role:
            name: llm_serving.gke.llmisvc
            tasks_from: wait
      rescue:
        - name: Note the failure
          ansible.builtin.set_fact:
            failed_msg: "{{{{ ansible_failed_result.msg }}}}"
    - name: Write the result
      ansible.builtin.copy:
        content: "{{{{ {{'result': llmisvc_result, 'failed_msg': failed_msg}} | to_json }}}}"
        dest: "{{{{ out }}}}/{namespace}.json"
        mode: "0600"
"""
NAMESPACES = ("ok", "broken", "ready-now")


def _collection(tmp_path):
    root = tmp_path / "collections" / "ansible_collections" / "llm_serving" / "gke"
    (root / "plugins" / "modules").mkdir(parents=True)
    for name in ("roles", "meta", "galaxy.yml"):
        os.symlink(os.path.join(ROOT, name), root / name)
    (root / "plugins" / "modules" / "llmisvc_wait.py").write_text(FAKE_MODULE)
    return tmp_path / "collections"


def _run_all(tmp_path):
    # The three cases as plays of one ansible-playbook run (one start instead of three). A fake wait of 2 x 3 s
    # still outlasts a report round (llmisvc_wait_report_interval 2), so a progress line is read while it runs.
    collections = _collection(tmp_path)
    (tmp_path / "play.yml").write_text("".join(PLAY.format(namespace=namespace) for namespace in NAMESPACES))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_ROLES_PATH=str(tmp_path),
               FAKE_STEP="3")
    proc = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
         str(tmp_path / "play.yml"), "-e", f"out={tmp_path}",
         "-e", f"ansible_python_interpreter={os.path.join(ROOT, '.venv', 'bin', 'python')}"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # The output of each play: from its PLAY line to the next one.
    plays = proc.stdout.split("PLAY [Wait with progress (")[1:]
    assert [play.split(")", 1)[0] for play in plays] == list(NAMESPACES), proc.stdout[-3000:]
    return {namespace: (play, json.loads((tmp_path / f"{namespace}.json").read_text()))
            for namespace, play in zip(NAMESPACES, plays, strict=True)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return once_per_session(tmp_path_factory, "llmisvc-wait-progress", _run_all)


def test_progress_is_shown_while_waiting_and_the_result_keeps_the_timeline(runs):
    stdout, out = runs["ok"]
    assert "Progress of tpu" in stdout
    shown = [line for line in ("tpu after 0s: nodes ready 0 of 1 needed (1 being added)",
                               "tpu after 6s: nodes ready 1 of 1 needed; pods 1: 1 starting") if line in stdout]
    assert shown, stdout[-3000:]
    result = out["result"]
    assert result["ready"] is True and result["outcome"] == "ready"
    assert result["timeline"] == [{"type": "Ready", "status": "True"}]
    assert [p["line"] for p in result["progress"]][-1].startswith("tpu after 6s")
    assert out["failed_msg"] == ""


def test_a_failed_wait_fails_the_play_with_the_modules_message(runs):
    _stdout, out = runs["broken"]
    assert out["failed_msg"] == "tpu not ready: pod tpu-1: ImagePullBackOff (hint: check the image)"
    assert out["result"]["outcome"] == "failed" and out["result"]["timeline"]


def test_an_llmisvc_ready_already_needs_no_background_wait(runs):
    stdout, out = runs["ready-now"]
    assert "Progress of tpu" not in stdout
    assert "ansible_job_id" not in out["result"]  # the module's own result, not an async job's
    assert out["result"]["ready"] is True and out["result"]["outcome"] == "ready"
    assert out["failed_msg"] == ""


def test_reports_come_at_least_every_30_seconds():
    import yaml

    with open(os.path.join(ROOT, "roles", "llmisvc", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    # Measured on a controller at load 12: the four polling tasks take 9-13 s per round; 10 + 15 < 30 s.
    assert 0 < defaults["llmisvc_wait_report_interval"] <= 15
    with open(os.path.join(ROOT, "roles", "llmisvc", "tasks", "apply.yml")) as handle:
        assert "include_tasks: wait.yml" in handle.read()
    with open(os.path.join(ROOT, "playbooks", "deploy_pattern.yml")) as handle:
        assert "tasks_from: wait" in handle.read()
