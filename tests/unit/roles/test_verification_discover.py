"""roles/verification discover.yml against a fake Kubernetes API server (no cluster): one k8s_read run reads the
llmisvc and its workload pods, and while fewer pods are Ready than the llmisvc's spec.replicas (a readiness probe
that timed out under load hides a serving replica until the kubelet probes again) the pods are listed again, a
bounded number of times; the replicas found vs expected reach verification_result."""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")

NS, NAME = "ns", "demo"


def _resource(name, kind, namespaced=True):
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": ["get", "list", "watch"]}


GROUPS = {"serving.kserve.io": ("v1alpha1", [_resource("llminferenceservices", "LLMInferenceService")]),
          "apps": ("v1", [_resource("deployments", "Deployment")]),
          "gateway.networking.k8s.io": ("v1", [_resource("gateways", "Gateway"), _resource("httproutes", "HTTPRoute")])}


def _pod(index, ready):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{NAME}-kserve-{index}", "namespace": NS},
            "spec": {"containers": [{"name": "main", "readinessProbe": {"periodSeconds": 10}}]},
            "status": {"phase": "Running", "podIP": f"10.0.0.{index}",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def run_play(plays, tmp):
    path = tmp / "play.yml"
    path.write_text(json.dumps(plays, indent=1))
    environ = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", str(path)], capture_output=True,
                          text=True, env=environ, cwd=ROOT, timeout=300, check=False)


class FakeApi(BaseHTTPRequestHandler):
    """Discovery, the llmisvc (spec.replicas 2), its Deployment and its pods: the pod lists answer from
    ``server.pod_lists`` in turn (the last one repeats)."""

    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's name)
        server, url = self.server, urlparse(self.path)
        path = url.path.rstrip("/")
        server.requests.append(self.path)
        if path == "/version":
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
        if path == "/api":
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [{"groupVersion": f"{group}/{version}", "version": version}],
                 "preferredVersion": {"groupVersion": f"{group}/{version}", "version": version}}
                for group, (version, _resources) in GROUPS.items()]})
        if path == "/api/v1":
            return self._send(200, {"kind": "APIResourceList", "groupVersion": "v1",
                                    "resources": [_resource("pods", "Pod")]})
        for group, (version, resources) in GROUPS.items():
            if path == f"/apis/{group}/{version}":
                return self._send(200, {"kind": "APIResourceList", "groupVersion": f"{group}/{version}",
                                        "resources": resources})
        if path == f"/apis/serving.kserve.io/v1alpha1/namespaces/{NS}/llminferenceservices/{NAME}":
            return self._send(200, {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "LLMInferenceService",
                                    "metadata": {"name": NAME, "namespace": NS}, "spec": {"replicas": 2},
                                    "status": {"url": f"http://127.0.0.1:1/{NS}/{NAME}"}})
        if path == f"/apis/apps/v1/namespaces/{NS}/deployments":
            return self._send(200, {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {},
                                    "items": [{"metadata": {"name": f"{NAME}-kserve", "namespace": NS},
                                               "status": {"replicas": 2, "readyReplicas": 2}}]})
        if path == f"/api/v1/namespaces/{NS}/pods":
            assert "app.kubernetes.io/name=demo" in parse_qs(url.query).get("labelSelector", [""])[0]
            pods = server.pod_lists[min(server.pod_calls, len(server.pod_lists) - 1)]
            server.pod_calls += 1
            return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods})
        return self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                "code": 404, "message": f"{path} not found"})


def _start(pod_lists, tmp):
    """A fake API server answering the pod lists ``pod_lists`` in turn, and a kubeconfig for it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    server.pod_lists, server.pod_calls, server.requests = pod_lists, 0, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    kubeconfig = tmp / f"kubeconfig-{port}"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
    return server, kubeconfig


DISCOVER = {"name": "llm_serving.gke.verification", "tasks_from": "discover"}


def _play(kubeconfig, out, retries):
    return {"name": f"Discover with {out.stem}", "hosts": "localhost", "gather_facts": False,
            "module_defaults": {"group/llm_serving.gke.k8s": {"kubeconfig": str(kubeconfig)}},
            "vars": {"verification_llmisvc_name": NAME, "verification_namespace": NS, "verification_model_name": "m",
                     "verification_scheduler_enabled": False, "verification_pod_ready_retries": retries,
                     "verification_probe_period_scale": 0.01},
            "tasks": [{"name": "Discover", "ansible.builtin.include_role": DISCOVER},
                      {"name": "Write what was found", "ansible.builtin.copy": {
                          "dest": str(out), "mode": "0600",
                          "content": "{{ {'ips': __verification_pod_ips, 'url': __verification_url,"
                                     " 'replicas': __verification_replicas | default(none)} | to_json }}"}}]}


ONE_HIDDEN = [_pod(1, True), _pod(2, False)]
BOTH_READY = [_pod(1, True), _pod(2, True)]


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """Both cases as two plays of one ansible-playbook run (one start instead of two): case -> (server, found)."""
    tmp = tmp_path_factory.mktemp("verification-discover")
    cases = {"hidden_once": (_start([ONE_HIDDEN, BOTH_READY], tmp), 3), "hidden_always": (_start([ONE_HIDDEN], tmp), 2)}
    try:
        proc = run_play([_play(kubeconfig, tmp / f"{case}.json", retries)
                         for case, ((_server, kubeconfig), retries) in cases.items()], tmp)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    finally:
        for (server, _kubeconfig), _retries in cases.values():
            server.shutdown()
            server.server_close()
    return {case: (server, json.loads((tmp / f"{case}.json").read_text()))
            for case, ((server, _kubeconfig), _retries) in cases.items()}


def test_a_replica_hidden_by_a_readiness_probe_is_found_by_listing_again(found):
    server, result = found["hidden_once"]
    assert result["ips"] == ["10.0.0.1", "10.0.0.2"]
    assert result["url"] == f"http://127.0.0.1:1/{NS}/{NAME}"
    assert server.pod_calls == 2
    assert {k: int(v) for k, v in result["replicas"].items()} == {"ready": 2, "expected": 2, "listed": 2,
                                                                  "relists": 1}


def test_listing_again_is_bounded_and_the_shortfall_is_reported(found):
    server, result = found["hidden_always"]
    assert result["ips"] == ["10.0.0.1"]
    assert server.pod_calls == 3  # the first list and verification_pod_ready_retries (2) more
    assert {k: int(v) for k, v in result["replicas"].items()} == {"ready": 1, "expected": 2, "listed": 2,
                                                                  "relists": 2}
