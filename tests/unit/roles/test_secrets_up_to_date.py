"""roles/secrets publishes secrets_up_to_date, and playbooks/deploy_pattern.yml skips its second run of the role
(the one that writes) when the pre-flight's check-mode run found everything up to date.

No cluster: the role runs from copies of llm_serving.gke and kubernetes.core (symlinks) whose k8s_read, k8s and
k8s_info are stand-ins that answer from a JSON file and log every call (module, check mode, object), so the test
sees which reads and writes each step made.
"""
import base64
import json
from pathlib import Path

import ansible_collections.kubernetes.core as kubernetes_core
import pytest
import yaml

from tests.unit.once_per_session import once_per_session

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "hf_unit_token"
AUTH = {"auths": {"registry.example.com": {"auth": base64.b64encode(b"robot:pw").decode()}}}
LABELS = {"app.kubernetes.io/managed-by": "llm_serving.gke"}

# Stand-ins with the argument names the role passes: objects from $FAKE_K8S_STATE ("<kind>/<namespace>/<name>"),
# one JSON line per call (per query for k8s_read) appended to $FAKE_K8S_LOG.
FAKE_MODULE = '''#!/usr/bin/python
import json
import os

from ansible.module_utils.basic import AnsibleModule

SPECS = {
    "k8s_read": dict(queries=dict(type="list", elements="dict", required=True), served_kinds=dict(type="dict")),
    "k8s": dict(state=dict(type="str", default="present"), definition=dict(type="dict"), kind=dict(type="str"),
                name=dict(type="str"), namespace=dict(type="str"), force=dict(type="bool", default=False)),
    "k8s_info": dict(kind=dict(type="str", required=True), name=dict(type="str"), namespace=dict(type="str")),
}
NAME = %r


def main():
    module = AnsibleModule(argument_spec=SPECS[NAME], supports_check_mode=True)
    params = module.params
    with open(os.environ["FAKE_K8S_STATE"]) as fh:
        state = json.load(fh)
    queries = params["queries"] if NAME == "k8s_read" else [params.get("definition") or params]
    results = []
    with open(os.environ["FAKE_K8S_LOG"], "a") as fh:
        for query in queries:
            meta = query.get("metadata") or query
            key = "/".join([query["kind"], meta.get("namespace") or "", meta.get("name") or ""])
            fh.write(json.dumps([NAME, module.check_mode, params.get("state"), key]) + "\\n")
            results.append({"item": query, "resources": [state[key]] if key in state else [], "api_found": True})
    if NAME == "k8s":
        module.exit_json(changed=True)
    if NAME == "k8s_info":
        module.exit_json(changed=False, resources=results[0]["resources"], api_found=True)
    module.exit_json(changed=False, results=results)


if __name__ == "__main__":
    main()
'''


def _secret(namespace, name, secret_type, key, value, labels=None):
    return {"apiVersion": "v1", "kind": "Secret", "type": secret_type,
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS if labels is None else labels},
            "data": {key: base64.b64encode(value.encode()).decode()}}


def _state():
    """Namespace "ready": both Secrets as the role writes them; "stale": hf-token holds another token; "new" does
    not exist. The pull secret source is the role's default cert-manager/redhat-pull-secret."""
    state = {"Secret/cert-manager/redhat-pull-secret": _secret(
        "cert-manager", "redhat-pull-secret", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", json.dumps(AUTH),
        labels={"app.kubernetes.io/managed-by": "Helm"})}
    for namespace, token in (("ready", TOKEN), ("stale", "hf_old")):
        state[f"Namespace//{namespace}"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        state[f"Secret/{namespace}/redhat-pull-secret"] = _secret(
            namespace, "redhat-pull-secret", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", json.dumps(AUTH))
        state[f"Secret/{namespace}/hf-token"] = _secret(namespace, "hf-token", "Opaque", "HF_TOKEN", token)
    return state


def _overlay(real, dest, fakes):
    """dest: symlinks to the collection at real, with plugins/modules/<name>.py of each name in fakes replaced."""
    modules = dest / "plugins" / "modules"
    modules.mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name != "plugins" and not entry.name.startswith("."):
            (dest / entry.name).symlink_to(entry)
    for entry in (real / "plugins").iterdir():
        if entry.name != "modules":
            (dest / "plugins" / entry.name).symlink_to(entry)
    for entry in (real / "plugins" / "modules").iterdir():
        if entry.stem not in fakes:
            (modules / entry.name).symlink_to(entry)
    for name in fakes:
        (modules / f"{name}.py").write_text(FAKE_MODULE % name)


def _deploy_secrets_task():
    """The task of playbooks/deploy_pattern.yml that includes the secrets role (searched through its blocks)."""
    def tasks(items):
        for task in items:
            yield task
            for key in ("block", "rescue", "always"):
                yield from tasks(task.get(key, []))
    play = yaml.safe_load((ROOT / "playbooks" / "deploy_pattern.yml").read_text())[0]
    found = [t for t in tasks(play["tasks"])
             if (t.get("ansible.builtin.include_role") or {}).get("name") == "llm_serving.gke.secrets"]
    assert len(found) == 1, found
    return found[0]


def _preflight(namespace):
    """The pre-flight's check-mode run of the role (playbooks/tasks/preflight.yml), then the published fact."""
    role = {"ansible.builtin.include_role": {"name": "llm_serving.gke.secrets"},
            "vars": {"secrets_namespaces": [namespace]}}
    record = {"facts": "{{ facts | default({}) | combine({namespace: secrets_up_to_date}) }}"}
    return [{"name": f"Pre-flight {namespace}", "check_mode": True, "block": [role]},
            {"name": f"Record {namespace}", "vars": {"namespace": namespace}, "ansible.builtin.set_fact": record}]


def _deploy(namespace):
    task = _deploy_secrets_task()
    return [{**task, "name": f"{task['name']} - {namespace}", "vars": {"secrets_namespaces": [namespace]}}]


def _run(tmp, ansible_playbook_in):
    collections = tmp / "collections" / "ansible_collections"
    _overlay(ROOT, collections / "llm_serving" / "gke", ["k8s_read"])
    _overlay(Path(kubernetes_core.__path__[0]), collections / "kubernetes" / "core", ["k8s", "k8s_info"])
    (tmp / "state.json").write_text(json.dumps(_state()))
    log = tmp / "calls.log"
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"secrets_hf_token": TOKEN},
             "tasks": [*_preflight("new"), *_preflight("stale"), *_deploy("stale"), *_preflight("ready"),
                       *_deploy("ready"),
                       {"ansible.builtin.copy": {"content": "{{ facts | to_json }}", "dest": str(tmp / "facts.json"),
                                                 "mode": "0600"}}]}]
    proc = ansible_playbook_in(tmp, play, env={"ANSIBLE_COLLECTIONS_PATH": str(tmp / "collections"),
                                               "FAKE_K8S_STATE": str(tmp / "state.json"), "FAKE_K8S_LOG": str(log)})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return json.loads((tmp / "facts.json").read_text()), calls, proc.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory, ansible_playbook_in):
    # One playbook run for the module's tests, also when xdist workers share them.
    facts, calls, stdout = once_per_session(tmp_path_factory, "secrets-up-to-date",
                                            lambda tmp: _run(tmp, ansible_playbook_in))
    return facts, [tuple(call) for call in calls], stdout


def test_the_fact_is_true_only_when_nothing_would_be_written(run):
    facts, _calls, _stdout = run
    # "new": the namespace does not exist; "stale": hf-token holds another token.
    assert facts == {"new": False, "stale": False, "ready": True}


def _reads(namespace):
    return [("k8s_read", True, None, key) for key in (
        f"Namespace//{namespace}", f"Secret/{namespace}/redhat-pull-secret", f"Secret/{namespace}/hf-token",
        "Secret/cert-manager/redhat-pull-secret")]


def test_the_deploy_writes_only_after_a_preflight_that_found_changes(run):
    _facts, calls, stdout = run
    assert calls == [
        *_reads("new"),  # pre-flight "new": reads, the namespace creation in check mode, its read-back
        ("k8s", True, "present", "Namespace//new"), ("k8s_info", True, None, "Namespace//new"),
        *_reads("stale"), ("k8s", True, "present", "Secret/stale/hf-token"),  # pre-flight "stale"
        # deploy_pattern.yml's task after it: the role runs again and writes the Secret that differs
        *[(name, False, *rest) for name, _check_mode, *rest in _reads("stale")],
        ("k8s", False, "present", "Secret/stale/hf-token"),
        *_reads("ready"),  # pre-flight "ready"; deploy_pattern.yml's task after it makes no call at all
    ]
    task = f"TASK [{_deploy_secrets_task()['name']} - ready]"
    assert stdout.split(task, 1)[1].split("TASK [", 1)[0].strip(" *\n").startswith("skipping"), stdout[-3000:]


def test_deploy_pattern_reads_only_the_published_fact():
    assert "secrets_up_to_date" in _deploy_secrets_task()["when"]
    assert "__secrets_" not in (ROOT / "playbooks" / "deploy_pattern.yml").read_text()
    assert "`secrets_up_to_date`" in (ROOT / "roles" / "secrets" / "README.md").read_text()
    assert "C(secrets_up_to_date)" in (ROOT / "roles" / "secrets" / "meta" / "argument_specs.yml").read_text()
