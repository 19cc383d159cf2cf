"""The local control plane behaves like a real cluster: authentication, RBAC, controllers, scheduler."""
import base64
import contextlib
import uuid
from pathlib import Path

import polling
import pytest
import requests
import yaml
from kubernetes.dynamic.exceptions import NotFoundError

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def server(local_cluster):
    """(server URL, CA bundle path) of the API server, from the kubeconfig tests are given."""
    kubeconfig = yaml.safe_load(Path(local_cluster["KUBECONFIG"]).read_text())
    cluster = kubeconfig["clusters"][0]["cluster"]
    if "certificate-authority-data" not in cluster:
        pytest.skip("external cluster without an embedded CA: raw HTTPS checks do not apply")
    ca_path = f"{local_cluster['LOCALCLUSTER_STATE_DIR']}/pki/ca.crt"
    return cluster["server"], ca_path


@pytest.fixture
def namespace(k8s):
    name = f"t-lc-cp-{uuid.uuid4().hex[:6]}"
    namespaces = k8s.resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFoundError):
        namespaces.delete(name=name)


def test_anonymous_request_is_forbidden(server):
    url, ca = server
    response = requests.get(f"{url}/api/v1/namespaces/kube-system/secrets", verify=ca, timeout=10)
    assert response.status_code == 403
    assert 'User "system:anonymous" cannot list resource "secrets"' in response.json()["message"]


def test_unknown_token_is_unauthorized(server):
    url, ca = server
    response = requests.get(f"{url}/api/v1/namespaces", verify=ca, timeout=10,
                            headers={"Authorization": "Bearer not-a-token-of-this-cluster"})
    assert response.status_code == 401


def test_service_account_token_is_issued_and_rbac_applies(k8s, server, namespace):
    url, ca = server
    k8s.resources.get(api_version="v1", kind="ServiceAccount").create(
        body={"metadata": {"name": "reader"}}, namespace=namespace)
    secrets = k8s.resources.get(api_version="v1", kind="Secret")

    def issued_token():  # the token controller of kube-controller-manager signs it with the SA key
        for item in secrets.get(namespace=namespace).items:
            if item.type == "kubernetes.io/service-account-token" and \
                    item.metadata.annotations["kubernetes.io/service-account.name"] == "reader" and item.data:
                return base64.b64decode(item.data.token).decode()
        return None

    token = polling.wait_for(issued_token, 60, what="a token of ServiceAccount reader from kube-controller-manager")
    pods_url = f"{url}/api/v1/namespaces/{namespace}/pods"
    headers = {"Authorization": f"Bearer {token}"}
    denied = requests.get(pods_url, headers=headers, verify=ca, timeout=10)
    assert denied.status_code == 403
    assert f"system:serviceaccount:{namespace}:reader" in denied.json()["message"]

    k8s.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="Role").create(namespace=namespace, body={
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    k8s.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding").create(
        namespace=namespace, body={
            "metadata": {"name": "reader-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    polling.wait_for(lambda: requests.get(pods_url, headers=headers, verify=ca, timeout=10).status_code == 200, 30,
                     what="the RoleBinding to grant the ServiceAccount access")


def test_deleted_namespace_is_finalized(k8s):
    name = f"t-lc-cp-del-{uuid.uuid4().hex[:6]}"
    namespaces = k8s.resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"metadata": {"name": name}})
    k8s.resources.get(api_version="v1", kind="ConfigMap").create(
        namespace=name, body={"metadata": {"name": "content"}, "data": {"a": "b"}})
    namespaces.delete(name=name)

    def gone():
        try:
            namespaces.get(name=name)
        except NotFoundError:
            return True
        return False

    polling.wait_for(gone, 90, what=f"namespace {name} to be finalized (is kube-controller-manager running?)")


def test_deployment_gets_a_replicaset_and_pod(k8s):
    replicasets = k8s.resources.get(api_version="apps/v1", kind="ReplicaSet")
    selector = "control-plane=llmisvc-controller-manager"
    owned = polling.wait_for(lambda: replicasets.get(namespace="kserve", label_selector=selector).items, 60,
                             what="a ReplicaSet of llmisvc-controller-manager")
    assert owned[0].metadata.ownerReferences[0].name == "llmisvc-controller-manager"
    pods = k8s.resources.get(api_version="v1", kind="Pod")
    polling.wait_for(lambda: pods.get(namespace="kserve", label_selector=selector).items, 60,
                     what="a pod of llmisvc-controller-manager")


def test_cpu_pod_is_bound_to_a_default_pool_node_by_the_scheduler(k8s, namespace):
    nodes = k8s.resources.get(api_version="v1", kind="Node")
    selector = "cloud.google.com/gke-nodepool=default-pool"
    default_pool = polling.wait_for(lambda: nodes.get(label_selector=selector).items, 60,
                                    what="default-pool Nodes from the gke_api simulator (is it running?)")
    pods = k8s.resources.get(api_version="v1", kind="Pod")
    pods.create(namespace=namespace, body={
        "metadata": {"name": "cpu-only"},
        "spec": {"containers": [{"name": "main", "image": "registry.access.redhat.com/ubi9/ubi-minimal:latest",
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}})
    bound = polling.wait_for(lambda: pods.get(name="cpu-only", namespace=namespace).spec.nodeName, 60,
                             what="the scheduler to bind pod cpu-only")
    assert bound in {node.metadata.name for node in default_pool}
    conditions = {c.type: c.status for c in pods.get(name="cpu-only", namespace=namespace).status.conditions}
    assert conditions.get("PodScheduled") == "True"
    # The scheduler binds first and records the event afterwards through client-go's asynchronous event
    # broadcaster (k8s.io/client-go/tools/events), so under load the event can arrive after the binding: wait for it.
    events = polling.wait_for(lambda: k8s.resources.get(api_version="v1", kind="Event").get(
        namespace=namespace, field_selector="involvedObject.name=cpu-only,reason=Scheduled").items, 30,
        what="the Scheduled event of pod cpu-only after its binding")
    reporters = {events[0].reportingComponent, (events[0].source or {}).get("component")}
    assert "default-scheduler" in reporters
