"""The simulated cluster-autoscaler with the real scheduler: scale-up for pending pods, events, scale-down."""
import uuid

import pytest
from kubernetes.client import CoreV1Api, V1DeleteOptions
from kubernetes.client.exceptions import ApiException
from test_gke_sim_nodepools import gke, pool_nodes, t4_pool, wait_for  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def autoscaled_pool(gke):  # noqa: F811 - pytest fixture injection
    """A T4 pool with no nodes and autoscaling 0..2, tainted so that only these tests' pods go there."""
    name = f"t-gkesim-as-{uuid.uuid4().hex[:5]}"
    body = dict(t4_pool(name, 0), autoscaling={"enabled": True, "minNodeCount": 0, "maxNodeCount": 2})
    _unused, op = gke.create(body)
    assert "error" not in op
    yield name
    gke.delete(name)


@pytest.fixture
def namespace(k8s_api_client):
    core = CoreV1Api(k8s_api_client)
    name = f"t-gkesim-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    for pod in core.list_namespaced_pod(name).items:
        core.delete_namespaced_pod(pod.metadata.name, name, body=V1DeleteOptions(grace_period_seconds=0))
    core.delete_namespace(name)


def gpu_pod(name, pool, resource="nvidia.com/gpu"):
    return {"metadata": {"name": name},
            "spec": {"nodeSelector": {"cloud.google.com/gke-nodepool": pool},
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"},
                                     {"key": "t-gkesim", "operator": "Equal", "value": pool}],
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.9",
                                     "resources": {"requests": {"cpu": "500m", resource: "1"},
                                                   "limits": {resource: "1"}}}]}}


def pod_events(core, namespace, pod, reason):
    return [e for e in core.list_namespaced_event(namespace).items
            if e.involved_object.name == pod and e.reason == reason]


def delete_pod(core, namespace, name):
    try:
        core.delete_namespaced_pod(name, namespace, body=V1DeleteOptions(grace_period_seconds=0))
    except ApiException as error:
        if error.status != 404:
            raise


def test_pending_gpu_pod_scales_the_pool_up_then_down(autoscaled_pool, namespace, k8s_api_client):
    core = CoreV1Api(k8s_api_client)
    core.create_namespaced_pod(namespace, gpu_pod("needs-gpu", autoscaled_pool))

    [event] = wait_for(lambda: pod_events(core, namespace, "needs-gpu", "TriggeredScaleUp"), what="TriggeredScaleUp")
    assert event.source.component == "cluster-autoscaler"
    assert event.message.startswith("pod triggered scale-up: [{https://www.googleapis.com/compute/v1/projects/")
    assert event.message.endswith(" 0->1 (max: 2)}]") and "instanceGroups/gke-" in event.message

    node_name = wait_for(lambda: core.read_namespaced_pod("needs-gpu", namespace).spec.node_name,
                         what="the scheduler to bind the pod")
    assert [n.metadata.name for n in pool_nodes(core, autoscaled_pool)] == [node_name]

    delete_pod(core, namespace, "needs-gpu")
    wait_for(lambda: not pool_nodes(core, autoscaled_pool), timeout=180, what="scale-down of the empty node")
    removed = [e for e in core.list_namespaced_event("default").items
               if e.involved_object.name == node_name and e.reason == "ScaleDown"]
    assert removed and removed[0].source.component == "cluster-autoscaler"


def test_pod_no_pool_can_host_gets_not_triggered_scale_up(autoscaled_pool, namespace, k8s_api_client):
    core = CoreV1Api(k8s_api_client)
    core.create_namespaced_pod(namespace, gpu_pod("needs-tpu", autoscaled_pool, resource="google.com/tpu"))
    [event] = wait_for(lambda: pod_events(core, namespace, "needs-tpu", "NotTriggerScaleUp"),
                       what="NotTriggerScaleUp")
    assert event.message.startswith("pod didn't trigger scale-up: ")
    assert "Insufficient google.com/tpu" in event.message
    assert not pod_events(core, namespace, "needs-tpu", "TriggeredScaleUp")
    assert pool_nodes(core, autoscaled_pool) == []


def test_stockout_during_scale_up_is_reported_and_retried_after_backoff(gke, autoscaled_pool, namespace,  # noqa: F811
                                                                       k8s_api_client):
    core = CoreV1Api(k8s_api_client)
    wait_for(lambda: not pool_nodes(core, autoscaled_pool), timeout=180, what="an empty pool")
    gke.fault(method="SCALE_UP", path_regex=f"nodePools/{autoscaled_pool}$", fault="stockout")
    core.create_namespaced_pod(namespace, gpu_pod("unlucky", autoscaled_pool))

    [failed] = wait_for(lambda: pod_events(core, namespace, "unlucky", "FailedScaleUp"), what="FailedScaleUp")
    assert failed.type == "Warning"
    assert failed.message == (f"Node scale up in zones {gke.env['GKE_LOCATION']} associated with this pod failed: "
                              "GCE out of resources. Pod is at risk of not being scheduled.")
    # The fault was used up: after the node group's backoff the autoscaler tries again and succeeds.
    wait_for(lambda: core.read_namespaced_pod("unlucky", namespace).spec.node_name, timeout=180,
             what="the retried scale-up")
    delete_pod(core, namespace, "unlucky")
