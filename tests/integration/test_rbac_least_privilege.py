"""The pattern playbooks run with a ServiceAccount bound only to the roles of docs/rbac/.

The manifests of docs/rbac/ are applied as written, with names moved to this test's own namespaces
(ServiceAccount in t-rbac-sa, workload namespace t-rbac, cluster-scoped objects prefixed t-rbac-), so
that the test never touches a real installation of them. A full deploy_pattern3_gpu.yml and teardown.yml
then run with a kubeconfig holding only that ServiceAccount's token (the GKE API keeps the simulator's
token), with preflight.yml and verify.yml in between, and the same token is refused outside the roles.
"""
import base64
import time
from pathlib import Path

import cluster_state
import pytest
import requests
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
RBAC_DIR = ROOT / "docs" / "rbac"

DOC_SA_NAMESPACE = "llm-serving-automation"
DOC_WORKLOAD_NAMESPACE = "llm-d-inference-scheduling"
SA_NAMESPACE = "t-rbac-sa"
WORKLOAD_NAMESPACE = "t-rbac"
PREFIX = "t-rbac-"
LLMISVC_NAME = "t-rbac-gpu"
POOL_NAME = "t-rbac-t4"
PATTERN_OVERRIDES = {"namespace": WORKLOAD_NAMESPACE, "llmisvc_name": LLMISVC_NAME, "nodepool": {"name": POOL_NAME}}


# ---------------------------------------------------------------- docs/rbac -> this test's names

def _rename_namespace(name):
    return {DOC_SA_NAMESPACE: SA_NAMESPACE, DOC_WORKLOAD_NAMESPACE: WORKLOAD_NAMESPACE}.get(name, name)


def _relocated(doc):
    """A docs/rbac object moved to this test's namespaces and t-rbac- names (rules untouched)."""
    meta = doc["metadata"]
    kind = doc["kind"]
    if kind == "Namespace":
        meta["name"] = _rename_namespace(meta["name"])
    elif kind == "ServiceAccount":
        meta["namespace"] = _rename_namespace(meta["namespace"])
    else:  # ClusterRole, ClusterRoleBinding, RoleBinding
        meta["name"] = PREFIX + meta["name"]
        if "namespace" in meta:
            meta["namespace"] = _rename_namespace(meta["namespace"])
        if "roleRef" in doc:
            doc["roleRef"]["name"] = PREFIX + doc["roleRef"]["name"]
        for subject in doc.get("subjects", []):
            subject["namespace"] = _rename_namespace(subject["namespace"])
    return doc


def rbac_objects():
    """Every object of docs/rbac/*.yaml, in apply order (namespaces and roles before bindings)."""
    order = {"Namespace": 0, "ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 3, "RoleBinding": 3}
    docs = [doc for path in sorted(RBAC_DIR.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return sorted((_relocated(doc) for doc in docs), key=lambda doc: order[doc["kind"]])


# ---------------------------------------------------------------- cluster helpers

def _delete(k8s, obj, wait=False):
    args = (obj["apiVersion"], obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
    cluster_state.delete_if_present(k8s, *args)
    while wait and cluster_state.exists(k8s, *args):
        time.sleep(2)


def _service_account_token(core, deadline=120):
    """The token the 1.20 token controller puts into the ServiceAccount's Secret."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        account = core.read_namespaced_service_account("llm-serving-gke", SA_NAMESPACE)
        for ref in account.secrets or []:
            secret = core.read_namespaced_secret(ref.name, SA_NAMESPACE)
            if secret.type == "kubernetes.io/service-account-token" and (secret.data or {}).get("token"):
                return base64.b64decode(secret.data["token"]).decode()
        time.sleep(1)
    raise AssertionError(f"no token Secret for ServiceAccount {SA_NAMESPACE}/llm-serving-gke after {deadline}s")


def _kubeconfig_with_token(admin_kubeconfig, token):
    """The admin kubeconfig's cluster (server, CA) with the ServiceAccount token as the only user."""
    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    cluster = admin["clusters"][0]
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "llm-serving-gke", "user": {"token": token}}],
        "contexts": [{"name": "llm-serving-gke", "context": {"cluster": cluster["name"], "user": "llm-serving-gke"}}],
        "current-context": "llm-serving-gke",
    }


def _delete_node_pool(env, name):
    """Remove the test's node pool directly through the (simulated) GKE API if a failed run left it."""
    url = (f"{env['GKE_API_ENDPOINT']}/v1/projects/{env['GCP_PROJECT']}/locations/{env['GKE_LOCATION']}"
           f"/clusters/{env['GKE_CLUSTER']}/nodePools/{name}")
    headers = {"Authorization": f"Bearer {env['GCP_ACCESS_TOKEN']}"}
    if requests.get(url, headers=headers, timeout=30).status_code == 200:
        requests.delete(url, headers=headers, timeout=30)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def rbac_identity(local_cluster, k8s, k8s_api_client, tmp_path_factory):
    """Apply docs/rbac/ (relocated), yield {'kubeconfig': path, 'api_client': client with the SA token}."""
    objects = rbac_objects()
    workload_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WORKLOAD_NAMESPACE}}
    for obj in [workload_ns] + list(reversed(objects)):  # leftovers of an interrupted run
        _delete(k8s, obj, wait=obj["kind"] == "Namespace")
    for obj in objects:
        k8s.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).create(
            body=obj, namespace=obj["metadata"].get("namespace"))

    token = _service_account_token(kube_client.CoreV1Api(k8s_api_client))
    kubeconfig = tmp_path_factory.mktemp("rbac") / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(_kubeconfig_with_token(local_cluster["KUBECONFIG"], token)))
    kubeconfig.chmod(0o600)
    yield {"kubeconfig": str(kubeconfig), "api_client": kube_config.new_client_from_config(str(kubeconfig))}

    _delete_node_pool(local_cluster, POOL_NAME)
    for obj in reversed(objects):
        _delete(k8s, obj, wait=obj["kind"] == "Namespace")


def _as_service_account(rbac_identity, report_dir):
    """extra vars and environment that leave the ServiceAccount kubeconfig as the only Kubernetes identity."""
    extra_vars = {
        "llm_serving_kubeconfig": rbac_identity["kubeconfig"],
        "llm_serving_report_dir": str(report_dir),
        "pattern_overrides": PATTERN_OVERRIDES,
    }
    env = {"KUBECONFIG": rbac_identity["kubeconfig"], "K8S_AUTH_KUBECONFIG": rbac_identity["kubeconfig"]}
    return extra_vars, env


# ---------------------------------------------------------------- tests

def test_token_is_refused_outside_the_roles(rbac_identity):
    core = kube_client.CoreV1Api(rbac_identity["api_client"])
    refused = {
        "read Secrets in kube-system": lambda: core.list_namespaced_secret("kube-system"),
        "read another Secret in the pull secret source namespace":
            lambda: core.list_namespaced_secret("cert-manager"),
        "list Secrets in the workload namespace (only get by name)":
            lambda: core.list_namespaced_secret(WORKLOAD_NAMESPACE),
        "delete a Node": lambda: core.delete_node(core.list_node().items[0].metadata.name, dry_run="All"),
        "create a namespace": lambda: core.create_namespace(
            {"metadata": {"name": "t-rbac-not-allowed"}}, dry_run="All"),
        "create a Pod in the workload namespace": lambda: core.create_namespaced_pod(
            WORKLOAD_NAMESPACE, {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}},
            dry_run="All"),
        "read the ServiceAccount's own token Secret": lambda: core.list_namespaced_secret(SA_NAMESPACE),
    }
    allowed = []
    for what, call in refused.items():
        try:
            call()
        except ApiException as exc:
            assert exc.status == 403, f"{what}: expected 403, got {exc.status} {exc.reason}"
            continue
        allowed.append(what)
    assert not allowed, f"the ServiceAccount token was allowed to: {allowed}"
    # ...while what the roles grant works with the same token.
    assert core.read_namespaced_secret("redhat-pull-secret", "cert-manager").type == "kubernetes.io/dockerconfigjson"
    assert core.list_node().items


def test_deploy_check_and_teardown_with_the_least_privilege_token(rbac_identity, run_playbook, k8s, local_cluster,
                                                                  tmp_path):
    extra_vars, env = _as_service_account(rbac_identity, tmp_path)

    # The verification's reads run below in verify.yml with the same token; its benchmark and cache check talk
    # to the gateway and the pods, not to the API server, so the deploy leaves them out (deploy_verification).
    deploy = run_playbook("playbooks/deploy_pattern3_gpu.yml", {**extra_vars, "deploy_verification": False},
                          env=env)
    assert deploy.rc == 0 and deploy.failed == 0, deploy.stdout[-6000:] + deploy.stderr[-2000:]
    assert "Forbidden" not in deploy.stdout

    llmisvc = k8s.resources.get(api_version="serving.kserve.io/v1alpha1", kind="LLMInferenceService").get(
        name=LLMISVC_NAME, namespace=WORKLOAD_NAMESPACE)
    ready = [c for c in llmisvc.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"

    # The read-only playbooks with the same token.
    for playbook in ("playbooks/preflight.yml", "playbooks/verify.yml"):
        checks = run_playbook(playbook, {**extra_vars, "pattern_name": "p3-gpu", "verification_benchmark": False},
                              env=env)
        assert checks.rc == 0 and checks.failed == 0, playbook + checks.stdout[-6000:] + checks.stderr[-2000:]
        if playbook.endswith("preflight.yml"):
            assert checks.changed == 0, checks.stdout[-6000:]

    teardown = run_playbook("playbooks/teardown.yml",
                            {**extra_vars, "pattern_name": "p3-gpu", "teardown_delete_pools": True}, env=env)
    assert teardown.rc == 0 and teardown.failed == 0, teardown.stdout[-6000:] + teardown.stderr[-2000:]
    llmisvcs = k8s.resources.get(api_version="serving.kserve.io/v1alpha1", kind="LLMInferenceService")
    assert not llmisvcs.get(namespace=WORKLOAD_NAMESPACE).items
    nodes = k8s.resources.get(api_version="v1", kind="Node").get(
        label_selector=f"cloud.google.com/gke-nodepool={POOL_NAME}")
    assert not nodes.items
