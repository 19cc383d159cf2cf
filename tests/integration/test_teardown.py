"""playbooks/teardown.yml on the local cluster: a node pool shared with a deployed pattern is kept, a pattern list is
required, and the run ends with what still bills.

Lean: no pattern is deployed. The other pattern's LLMInferenceService (p3-tpu, 0 replicas) is created directly and
every pattern is moved (pattern_overrides) to a namespace and a CPU node pool of this test, so nothing shared with
other tests is touched. That a pool nobody else uses is scaled down once, at the last given pattern, is unit-tested
(tests/unit/plugins/filter/test_teardown_plan.py); the scale-down itself by the RBAC and molecule teardowns.
"""
import time
import uuid

import pytest
import requests
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from cluster_state import GkeSim, writes

pytestmark = pytest.mark.cluster

PLAYBOOK = "playbooks/teardown.yml"


def _create_pool(sim, name, timeout=300):
    """A CPU pool with autoscaling 0..1 and no node, created through the simulated GKE API (GKE runs one operation
    per cluster: a 400 FAILED_PRECONDITION while another session's operation runs is retried)."""
    body = {"nodePool": {"name": name, "initialNodeCount": 0, "config": {"machineType": "n1-standard-4"},
                         "autoscaling": {"enabled": True, "minNodeCount": 0, "maxNodeCount": 1}}}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = requests.post(sim.pools_url, json=body, headers=sim.headers, timeout=10)
        if response.status_code < 300:
            break
        assert response.status_code == 400, response.text
        time.sleep(1)
    while time.monotonic() < deadline:
        pool = sim.pool(name)
        if pool and pool.get("status") == "RUNNING":
            return pool
        time.sleep(0.5)
    raise AssertionError(f"node pool {name} did not become RUNNING")


@pytest.fixture
def shared(local_cluster, k8s_api_client, k8s):
    suffix = uuid.uuid4().hex[:6]
    namespace, pool = f"t-td-{suffix}", f"t-td-{suffix}"
    sim = GkeSim(local_cluster)
    core = CoreV1Api(k8s_api_client)
    core.create_namespace({"metadata": {"name": namespace}})
    _create_pool(sim, pool)
    yield {"namespace": namespace, "pool": pool, "sim": sim,
           "overrides": {"namespace": namespace, "nodepool": {"name": pool}}}
    sim.delete_pool(pool)
    try:
        core.delete_namespace(namespace)
    except ApiException as err:
        if err.status != 404:
            raise


def _other_pattern_llmisvc(k8s, namespace):
    api = k8s.resources.get(api_version="serving.kserve.io/v1alpha1", kind="LLMInferenceService")
    api.create(namespace=namespace, body={
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "LLMInferenceService",
        "metadata": {"name": "qwen2-3b-pattern3", "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": "llm_serving.gke",
                                "llm-serving.gke/pattern": "p3-tpu"}},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-3B-Instruct", "name": "Qwen/Qwen2.5-3B-Instruct"},
                 "replicas": 0},
    })


def test_shared_pool_is_kept_for_the_other_pattern_and_reported(run_playbook, shared, k8s):
    namespace, pool, sim = shared["namespace"], shared["pool"], shared["sim"]
    _other_pattern_llmisvc(k8s, namespace)
    before = sim.requests_for(pool)

    first = run_playbook(PLAYBOOK, {"teardown_patterns": ["p1-tpu"], "pattern_overrides": shared["overrides"]})
    assert first.rc == 0, first.stdout[-4000:] + first.stderr[-2000:]
    report = " ".join(first.stdout.split())  # the callback wraps long lines
    assert writes(sim.requests_for(pool, since=before)) == []  # the pool is left as it is
    assert sim.pool(pool)["autoscaling"]["enabled"] is True
    assert "Scale to zero node pool" not in first.stdout
    assert (f"Node pool {pool}: KEPT as it is, still used by {namespace}/qwen2-3b-pattern3 (pattern p3-tpu, "
            "0 replica(s), 0 node(s))") in report
    assert "kubectl delete gateway inference-gateway -n opendatahub" in report
    assert "gcloud container node-pools list --cluster llm-serving-local" in report  # default-pool and others
    assert "gcloud container clusters delete llm-serving-local" in report


def test_no_pattern_given_is_refused_before_any_change(run_playbook):
    result = run_playbook(PLAYBOOK)
    assert result.rc != 0
    out = result.stdout + result.stderr
    assert "teardown_patterns is empty" in out and "choices: p1-tpu, p3-gpu, p3-tpu" in out, out[-3000:]
    assert "Tear down each pattern" not in out
