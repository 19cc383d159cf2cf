"""The simulated GKE API driven by Google's own API client: node pools become Kubernetes Nodes; faults.

The client is google-api-python-client built from the real Container API v1 discovery document, pointed at
the simulator, so requests and error parsing are exactly those of a program talking to GKE.
"""
import time
import uuid

import google.oauth2.credentials
import polling
import pytest
import requests
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from kubernetes.client import CoordinationV1Api, CoreV1Api

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def gke(local_cluster):
    credentials = google.oauth2.credentials.Credentials(local_cluster["GCP_ACCESS_TOKEN"])
    service = build("container", "v1", credentials=credentials, static_discovery=True, cache_discovery=False,
                    client_options={"api_endpoint": local_cluster["GKE_API_ENDPOINT"] + "/"})
    return Gke(service, local_cluster)


class Gke:
    def __init__(self, service, env):
        self.service = service
        self.env = env
        self.cluster = (f"projects/{env['GCP_PROJECT']}/locations/{env['GKE_LOCATION']}/"
                        f"clusters/{env['GKE_CLUSTER']}")
        self.pools = service.projects().locations().clusters().nodePools()
        self.admin = requests.Session()
        self.admin.headers["Authorization"] = f"Bearer {env['GCP_ACCESS_TOKEN']}"

    def operation(self, op):
        name = f"projects/{self.env['GCP_PROJECT']}/locations/{self.env['GKE_LOCATION']}/operations/{op['name']}"
        return self.service.projects().locations().operations().get(name=name).execute()

    def write(self, request_factory, timeout=120):
        """Send a mutating request, retrying while another operation runs on the shared cluster."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return request_factory().execute()
            except HttpError as error:
                if error.status_code != 400 or "incompatible operation" not in str(error) \
                        or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait(self, op, timeout=180):
        """Poll the operation until DONE; returns (statuses seen, final operation)."""
        seen, deadline = [op["status"]], time.monotonic() + timeout
        while op["status"] != "DONE":
            assert time.monotonic() < deadline, f"operation {op['name']} still {op['status']}"
            time.sleep(0.2)
            op = self.operation(op)
            seen.append(op["status"])
        return seen, op

    def create(self, pool):
        return self.wait(self.write(lambda: self.pools.create(parent=self.cluster, body={"nodePool": pool})))

    def delete(self, name):
        try:
            op = self.write(lambda: self.pools.delete(name=f"{self.cluster}/nodePools/{name}"))
        except HttpError as error:
            if error.status_code == 404:
                return
            raise
        self.wait(op)

    def fault(self, **spec):
        response = self.admin.post(f"{self.env['GKE_API_ENDPOINT']}/_sim/faults", json=spec, timeout=10)
        response.raise_for_status()

    def requests_log(self):
        return self.admin.get(f"{self.env['GKE_API_ENDPOINT']}/_sim/requests", timeout=10).json()["requests"]


def pool_nodes(core, pool):
    return core.list_node(label_selector=f"cloud.google.com/gke-nodepool={pool}").items


def wait_for(predicate, timeout=120, interval=0.3, what="condition"):
    return polling.wait_for(predicate, timeout=timeout, interval=interval, what=what)


@pytest.fixture
def pool_name(gke):
    name = f"t-gkesim-{uuid.uuid4().hex[:6]}"
    yield name
    gke.delete(name)


def t4_pool(name, count):
    return {"name": name, "initialNodeCount": count,
            "config": {"machineType": "n1-standard-4", "labels": {"t-gkesim": name},
                       "taints": [{"key": "t-gkesim", "value": name, "effect": "NO_SCHEDULE"}],
                       "accelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": "1",
                                         "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}]}}


def test_gpu_pool_lifecycle_materialises_gke_nodes(gke, pool_name, k8s_api_client):
    core = CoreV1Api(k8s_api_client)
    statuses, op = gke.create(t4_pool(pool_name, 2))
    assert statuses[0] == "RUNNING" and statuses[-1] == "DONE" and "error" not in op
    assert op["operationType"] == "CREATE_NODE_POOL" and op["targetLink"].endswith(f"/nodePools/{pool_name}")

    pool = gke.pools.get(name=f"{gke.cluster}/nodePools/{pool_name}").execute()
    assert pool["status"] == "RUNNING"
    created = pool_nodes(core, pool_name)
    assert len(created) == 2
    for node in created:
        labels = node.metadata.labels
        assert node.metadata.name.startswith(f"gke-{gke.env['GKE_CLUSTER'][:20]}-{pool_name[:15]}-")
        assert labels["cloud.google.com/gke-accelerator"] == "nvidia-tesla-t4"
        assert labels["node.kubernetes.io/instance-type"] == "n1-standard-4"
        assert labels["topology.kubernetes.io/zone"] == gke.env["GKE_LOCATION"]
        assert labels["t-gkesim"] == pool_name
        taints = {(t.key, t.value, t.effect) for t in node.spec.taints}
        assert {("nvidia.com/gpu", "present", "NoSchedule"), ("t-gkesim", pool_name, "NoSchedule")} <= taints
        assert node.status.allocatable["nvidia.com/gpu"] == "1"
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        lease = CoordinationV1Api(k8s_api_client).read_namespaced_lease(node.metadata.name, "kube-node-lease")
        assert lease.spec.holder_identity == node.metadata.name

    _unused, op = gke.wait(gke.write(lambda: gke.pools.setSize(name=f"{gke.cluster}/nodePools/{pool_name}",
                                                               body={"nodeCount": 1})))
    assert op["operationType"] == "SET_NODE_POOL_SIZE" and "error" not in op
    assert len(pool_nodes(core, pool_name)) == 1

    _unused, op = gke.wait(gke.write(lambda: gke.pools.update(
        name=f"{gke.cluster}/nodePools/{pool_name}", body={"labels": {"labels": {"t-gkesim": "relabelled"}}})))
    assert "error" not in op
    assert pool_nodes(core, pool_name)[0].metadata.labels["t-gkesim"] == "relabelled"

    gke.delete(pool_name)
    assert pool_nodes(core, pool_name) == []
    with pytest.raises(HttpError) as missing:
        gke.pools.get(name=f"{gke.cluster}/nodePools/{pool_name}").execute()
    assert missing.value.status_code == 404


def test_tpu_pool_nodes_offer_four_chips(gke, pool_name, k8s_api_client):
    _unused, op = gke.create({"name": pool_name, "initialNodeCount": 1, "config": {"machineType": "ct6e-standard-4t"},
                              "autoscaling": {"enabled": True, "minNodeCount": 1, "maxNodeCount": 3}})
    assert "error" not in op
    [node] = pool_nodes(CoreV1Api(k8s_api_client), pool_name)
    assert node.metadata.labels["cloud.google.com/gke-tpu-accelerator"] == "tpu-v6e-slice"
    assert node.metadata.labels["cloud.google.com/gke-tpu-topology"] == "2x2"
    assert node.status.allocatable["google.com/tpu"] == "4"
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("google.com/tpu", "present", "NoSchedule")]


def test_invalid_pools_are_refused_before_anything_is_written(gke, pool_name):
    cases = [
        ({"name": pool_name, "config": {"machineType": "ct6e-standard-4t"}, "locations": ["europe-west4-c"]},
         "Machine type with name 'ct6e-standard-4t' does not exist in zone 'europe-west4-c'"),
        ({"name": pool_name, "config": {"machineType": "ct6e-standard-4t"}, "initialNodeCount": 1,
          "placementPolicy": {"tpuTopology": "2x2x1"}},
         "Could not find TPU topology 2x2x1 for machine type ct6e-standard-4t"),
        ({"name": pool_name, "config": {"machineType": "ct6e-standard-4t"}, "placementPolicy": {"tpuTopology": "2x2x1"},
          "autoscaling": {"enabled": True, "minNodeCount": 0, "maxNodeCount": 3}},
         'Maximum node count 3 is not a valid size of TPU pod slice with topology "2x2x1"'),
    ]
    for body, message in cases:
        with pytest.raises(HttpError) as refused:
            gke.pools.create(parent=gke.cluster, body={"nodePool": body}).execute()
        assert refused.value.status_code == 400 and message in refused.value.reason
    with pytest.raises(HttpError) as missing:
        gke.pools.get(name=f"{gke.cluster}/nodePools/{pool_name}").execute()
    assert missing.value.status_code == 404


@pytest.mark.parametrize(("fault", "status", "text"), [
    ("in_progress", 400, "Cluster is running incompatible operation"),
    ("http_429", 429, "concurrent operations quota"),
    ("http_503", 503, "unavailable"),
    ("quota", 403, "Insufficient regional quota to satisfy request: resource \"NVIDIA_T4_GPUS\""),
])
def test_injected_write_faults(gke, pool_name, fault, status, text):
    gke.fault(method="POST", path_regex="nodePools$", body_regex=pool_name, fault=fault)
    with pytest.raises(HttpError) as refused:
        gke.pools.create(parent=gke.cluster, body={"nodePool": t4_pool(pool_name, 2)}).execute()
    assert refused.value.status_code == status and text in str(refused.value)
    logged = [r for r in gke.requests_log() if r["method"] == "POST" and pool_name in str(r["body"])]
    assert [r["status"] for r in logged] == [status]
    with pytest.raises(HttpError):  # nothing was created
        gke.pools.get(name=f"{gke.cluster}/nodePools/{pool_name}").execute()


def test_stockout_fails_the_create_operation_like_gke(gke, pool_name, k8s_api_client):
    gke.fault(method="POST", path_regex="nodePools$", body_regex=pool_name, fault="stockout")
    _unused, op = gke.create(t4_pool(pool_name, 1))
    assert op["error"]["code"] == 8
    for marker in ("GCE_STOCKOUT", "ZONE_RESOURCE_POOL_EXHAUSTED", gke.env["GKE_LOCATION"], "n1-standard-4"):
        assert marker in op["error"]["message"]
    assert op["nodepoolConditions"][0]["code"] == "GCE_STOCKOUT"
    pool = gke.pools.get(name=f"{gke.cluster}/nodePools/{pool_name}").execute()
    assert pool["status"] == "ERROR" and "GCE_STOCKOUT" in pool["statusMessage"]
    assert pool_nodes(CoreV1Api(k8s_api_client), pool_name) == []


def test_set_size_drains_pods_before_removing_the_node(gke, pool_name, k8s_api_client):
    core = CoreV1Api(k8s_api_client)
    _unused, op = gke.create({"name": pool_name, "initialNodeCount": 1, "config": {"machineType": "e2-standard-4"}})
    assert "error" not in op
    [node] = pool_nodes(core, pool_name)
    namespace = pool_name
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        core.create_namespaced_pod(namespace, {"metadata": {"name": "resident"}, "spec": {
            "nodeName": node.metadata.name,
            "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9"}]}})
        _unused, op = gke.wait(gke.write(lambda: gke.pools.setSize(name=f"{gke.cluster}/nodePools/{pool_name}",
                                                                   body={"nodeCount": 0})))
        assert "error" not in op
        assert pool_nodes(core, pool_name) == []
        remaining = [p for p in core.list_namespaced_pod(namespace).items if not p.metadata.deletion_timestamp]
        assert remaining == []  # evicted before the node went away
    finally:
        core.delete_namespace(namespace)
