"""`python -m localcluster` and the files it writes, as the collection and other tests consume them."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_KEYS = {"KUBECONFIG", "K8S_AUTH_KUBECONFIG", "GKE_API_ENDPOINT", "GCP_AUTH_KIND", "GCP_ACCESS_TOKEN",
                   "GCP_PROJECT", "GKE_LOCATION", "GKE_CLUSTER", "GATEWAY_ADDRESS", "HF_TOKEN",
                   "LOCALCLUSTER_TIME_SCALE"}

pytestmark = pytest.mark.cluster


def localcluster(*args):
    return subprocess.run([sys.executable, "-m", "localcluster", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=300)


def test_env_file_has_the_documented_keys_in_shell_and_ini_format(local_cluster):
    env_file = Path(local_cluster["LOCALCLUSTER_STATE_DIR"]) / "env"
    lines = env_file.read_text().splitlines()
    assert all(re.fullmatch(r"[A-Z0-9_]+=[^\"'\s]*", line) for line in lines), lines  # no quotes, no export
    assert set(local_cluster) >= DOCUMENTED_KEYS
    assert Path(local_cluster["KUBECONFIG"]).is_absolute() and Path(local_cluster["KUBECONFIG"]).is_file()
    assert local_cluster["K8S_AUTH_KUBECONFIG"] == local_cluster["KUBECONFIG"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", local_cluster["GKE_API_ENDPOINT"])
    assert local_cluster["GCP_AUTH_KIND"] == "accesstoken"
    assert (local_cluster["GKE_LOCATION"], local_cluster["GKE_CLUSTER"]) == ("europe-west4-a", "llm-serving-local")
    assert float(local_cluster["LOCALCLUSTER_TIME_SCALE"]) > 0
    assert local_cluster["HF_TOKEN"].startswith("hf_") and len(local_cluster["GCP_ACCESS_TOKEN"]) > 20


def test_env_file_is_readable_by_ansible_ini_lookup(local_cluster, run_playbook, tmp_path):
    playbook = tmp_path / "read_env.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "read .localcluster/env", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "lookup", "ansible.builtin.assert": {"that": [
            "lookup('ansible.builtin.ini', 'GKE_CLUSTER', file=env_file, type='properties') == 'llm-serving-local'"]}}],
    }]))
    result = run_playbook(playbook, {"env_file": str(Path(local_cluster["LOCALCLUSTER_STATE_DIR"]) / "env")})
    assert result.rc == 0, result.stdout + result.stderr
    assert (result.ok, result.changed, result.failed) == (1, 0, 0)


def test_run_playbook_reaches_the_cluster_and_honours_check_mode(run_playbook, k8s, tmp_path):
    playbook = tmp_path / "configmap.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "configmap", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "configmap in kserve", "kubernetes.core.k8s": {
            "state": "present", "kubeconfig": "{{ lookup('ansible.builtin.env', 'KUBECONFIG') }}",
            "definition": {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "{{ cm_name }}", "namespace": "kserve"}, "data": {"a": "b"}}}}],
    }]))
    name = {"cm_name": f"t-lc-cli-{tmp_path.name[-8:].lower().replace('_', '-')}"}
    checked = run_playbook(playbook, name, check=True)
    assert (checked.rc, checked.changed) == (0, 1), checked.stdout
    try:
        first = run_playbook(playbook, name)
        second = run_playbook(playbook, name)
        assert (first.changed, second.changed, second.failed) == (1, 0, 0), second.stdout
    finally:
        configmaps = k8s.resources.get(api_version="v1", kind="ConfigMap")
        if configmaps.get(namespace="kserve", field_selector=f"metadata.name={name['cm_name']}").items:
            configmaps.delete(name=name["cm_name"], namespace="kserve")


def test_kubeconfig_uses_a_token_and_verifies_the_server(local_cluster):
    kubeconfig = yaml.safe_load(Path(local_cluster["KUBECONFIG"]).read_text())
    if kubeconfig["clusters"][0]["cluster"].get("server", "").startswith("https://127.0.0.1") is False:
        pytest.skip("external cluster")
    cluster = kubeconfig["clusters"][0]["cluster"]
    assert cluster["certificate-authority-data"] and not cluster.get("insecure-skip-tls-verify")
    assert kubeconfig["users"][0]["user"]["token"]


def test_status_reports_every_component_with_its_pid(local_cluster):
    result = localcluster("status", "--json")
    report = json.loads(result.stdout)
    names = [c["name"] for c in report["components"]]
    assert names[-4:] == ["gke_api", "node_agent", "kserve_controller", "gateway"]
    if report["mode"] == "local":
        control_plane = {c["name"]: c for c in report["components"][:4]}
        assert set(control_plane) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}
        assert all(c["alive"] and c["pid"] for c in control_plane.values() if c["present"])
    assert report["endpoints"]["gke-api"] == local_cluster["GKE_API_ENDPOINT"]


def test_up_again_restarts_nothing(local_cluster):
    before = json.loads(localcluster("status", "--json").stdout)
    result = localcluster("up")
    after = json.loads(localcluster("status", "--json").stdout)
    alive_before = {c["name"]: c["pid"] for c in before["components"] if c["alive"]}
    alive_after = {c["name"]: c["pid"] for c in after["components"] if c["alive"]}
    assert {k: alive_after.get(k) for k in alive_before} == alive_before, result.stdout + result.stderr
    assert "created" not in result.stdout and "replaced" not in result.stdout
