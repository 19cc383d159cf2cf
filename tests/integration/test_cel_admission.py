"""The local API server refuses what GKE's refuses: the CRDs' CEL rules, enforced by localcluster.cel_webhook.

Objects are sent with server-side dry-run where that exercises the same admission path (the webhook declares
sideEffects None), so the module creates one namespace and one HTTPRoute only.
"""
import json
import subprocess
import uuid

import pytest
import yaml
from kubernetes.dynamic.exceptions import DynamicApiError

from localcluster.cluster import Cluster, cel_summary

DENIED = 'admission webhook "cel.localcluster.llm-serving-gke.io" denied the request: '
PATH_MESSAGE = ("value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']")
TIMEOUT_MESSAGE = "backendRequest timeout cannot be longer than request timeout"

pytestmark = pytest.mark.cluster


def _route(namespace, name="r", path="/v1", timeouts=None, filters=None):
    rule = {"matches": [{"path": {"type": "PathPrefix", "value": path}}],
            "backendRefs": [{"name": "svc", "port": 8000}]}
    if timeouts:
        rule["timeouts"] = timeouts
    if filters:
        rule["filters"] = filters
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": "inference-gateway", "namespace": "opendatahub"}], "rules": [rule]}}


def _kubectl(env, *args, stdin=None):
    return subprocess.run(["kubectl", "--kubeconfig", env["KUBECONFIG"], *args], input=stdin, capture_output=True,
                          text=True, check=False, timeout=120)


@pytest.fixture(scope="module")
def namespace(k8s, local_cluster):
    name = f"t-cel-{uuid.uuid4().hex[:6]}"
    namespaces = k8s.resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"metadata": {"name": name}})
    yield name
    namespaces.delete(name=name)


def test_status_counts_every_rule_as_evaluated(local_cluster):
    # What `status` reads (cluster.cel_summary) and the component's own state, without its health probes.
    cluster = Cluster(log=lambda *_: None)
    cel = cel_summary(cluster.paths.root)
    assert cel["registered"] is True
    assert cel["unevaluable"] == 0 and cel["evaluated"] == cel["rules"] > 600
    assert cluster.sup.is_running("cel_webhook") and (cluster.paths.ready / "cel_webhook").exists()


def test_kubectl_create_refused_with_the_rules_messages_and_valid_one_admitted(local_cluster, namespace):
    bad = _route(namespace, "bad", path="v1", timeouts={"request": "10s", "backendRequest": "30s"},
                 filters=[{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}])
    proc = _kubectl(local_cluster, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad))
    # kubectl prints the causes, as it does for kube-apiserver's own CEL refusals on GKE (it shortens long ones).
    assert proc.returncode != 0
    assert proc.stderr.startswith('The HTTPRoute "bad" is invalid: \n')
    assert '* spec.rules[0].matches[0].path: Invalid value: "object": value must be an absolute' in proc.stderr
    assert f'* spec.rules[0].timeouts: Invalid value: "object": {TIMEOUT_MESSAGE}' in proc.stderr
    assert ('* spec.rules[0]: Invalid value: "object": RequestRedirect filter must not be used together with '
            "backendRefs") in proc.stderr
    good = _route(namespace, "good", timeouts={"request": "30s", "backendRequest": "10s"})
    proc = _kubectl(local_cluster, "apply", "-f", "-", stdin=yaml.safe_dump(good))
    assert proc.returncode == 0, proc.stderr
    assert "httproute.gateway.networking.k8s.io/good created" in proc.stdout


def test_update_refused_when_it_breaks_a_rule(local_cluster, namespace):
    good = _route(namespace, "upd", timeouts={"request": "30s", "backendRequest": "10s"})
    assert _kubectl(local_cluster, "apply", "-f", "-", stdin=yaml.safe_dump(good)).returncode == 0
    patch = json.dumps({"spec": {"rules": [
        {**good["spec"]["rules"][0], "timeouts": {"request": "5s", "backendRequest": "10s"}}]}})
    proc = _kubectl(local_cluster, "-n", namespace, "patch", "httproute", "upd", "--type=merge", "-p", patch)
    assert proc.returncode != 0
    assert (f'The HTTPRoute "upd" is invalid: spec.rules[0].timeouts: Invalid value: "object": {TIMEOUT_MESSAGE}'
            in proc.stderr)
    proc = _kubectl(local_cluster, "-n", namespace, "label", "httproute", "upd", "team=ml")
    assert proc.returncode == 0, proc.stderr


def test_transition_rule_on_update(local_cluster):
    # GatewayClass.spec.controllerName is immutable (`self == oldSelf`): refused on update, never on create.
    patch = json.dumps({"spec": {"controllerName": "example.com/other"}})
    proc = _kubectl(local_cluster, "patch", "gatewayclass", "gke-l7-rilb", "--type=merge", "--dry-run=server",
                    "-p", patch)
    assert proc.returncode != 0
    assert ('The GatewayClass "gke-l7-rilb" is invalid: spec.controllerName: Invalid value: "string": '
            "Value is immutable") in proc.stderr
    new = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
           "metadata": {"name": f"t-cel-{uuid.uuid4().hex[:6]}"}, "spec": {"controllerName": "example.com/other"}}
    proc = _kubectl(local_cluster, "create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(new))
    assert proc.returncode == 0, proc.stderr


def _refused(k8s, doc, namespace):
    resource = k8s.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    with pytest.raises(DynamicApiError) as err:
        resource.create(body=doc, namespace=namespace, dry_run="All")
    status = json.loads(err.value.body)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith(f'{DENIED}{doc["kind"]}.{doc["apiVersion"].split("/")[0]} '
                                        f'"{doc["metadata"]["name"]}" is invalid: ')
    return status


def test_gateway_inference_pool_and_llmisvc_route(k8s, namespace):
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "g", "namespace": namespace},
               "spec": {"gatewayClassName": "gke-l7-rilb",
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                       "tls": {"mode": "Terminate", "certificateRefs": [{"name": "c"}]}}]}}
    status = _refused(k8s, gateway, namespace)
    assert [(c["field"], c["message"]) for c in status["details"]["causes"]] == [
        ("spec.listeners", "Invalid value: \"array\": tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")]
    pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "m"}}, "targetPorts": [{"number": 8000}, {"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}
    status = _refused(k8s, pool, namespace)
    assert status["message"].endswith('"p" is invalid: spec.targetPorts: Invalid value: "array": '
                                      "port number must be unique")
    route_spec = _route(namespace, path="/a/../b", timeouts={"request": "5s", "backendRequest": "10s"})["spec"]
    llmisvc = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "LLMInferenceService",
               "metadata": {"name": "m", "namespace": namespace},
               "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-3B-Instruct"},
                        "router": {"route": {"http": {"spec": route_spec}}}}}
    status = _refused(k8s, llmisvc, namespace)
    assert sorted(c["field"] for c in status["details"]["causes"]) == [
        "spec.router.route.http.spec.rules[0].matches[0].path", "spec.router.route.http.spec.rules[0].timeouts"]
    assert "must not contain '/../' when type one of ['Exact', 'PathPrefix']" in status["message"]


APPLY = """
- name: Apply an HTTPRoute the way the collection's roles apply manifests
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Apply with the collection's module (roles/llmisvc/tasks/apply.yml)
      llm_serving.gke.k8s_apply:
        definitions: ["{{ route }}"]
        field_manager: llm_serving.gke
"""


def test_collection_apply_fails_with_the_rule_message(run_playbook, namespace, tmp_path):
    playbook = tmp_path / "apply.yml"
    playbook.write_text(APPLY)
    bad = _route(namespace, "via-ansible", path="v1")
    result = run_playbook(playbook, extra_vars={"route": bad})
    # One task (each costs seconds of CPU); kubernetes.core.k8s gives the same Status (checked by hand).
    assert result.rc != 0 and result.failed == 1, result.stdout[-2000:]
    assert PATH_MESSAGE in result.stdout
    assert "denied the request: HTTPRoute.gateway.networking.k8s.io" in result.stdout
    assert '"field":"spec.rules[0].matches[0].path"' in result.stdout  # the module quotes the server's Status
