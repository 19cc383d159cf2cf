"""The GKE simulator's HTTP layer without a Kubernetes cluster (node pools then have no Nodes)."""
import time

import pytest

from localcluster.gke_api import Api, Simulator
from tests.gke_sim_inprocess import call, make_api

BASE = "/v1/projects/proj/locations/europe-west4-a/clusters/c1"
LEGACY = "/v1/projects/proj/zones/europe-west4-a/clusters/c1"


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path)


def wait_done(api, operation):
    for _ in range(200):
        status, op = call(api, "GET", f"/v1/projects/proj/locations/europe-west4-a/operations/{operation['name']}")
        assert status == 200
        if op["status"] == "DONE":
            return op
        time.sleep(0.01)
    raise AssertionError(f"operation {operation['name']} never finished")


def test_missing_or_wrong_token_is_401_in_google_format(api):
    status, payload = call(api, "GET", BASE, headers={})
    assert status == 401 and payload["error"]["status"] == "UNAUTHENTICATED"
    assert payload["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    status, _ = call(api, "GET", BASE, headers={"Authorization": "Bearer other"})
    assert status == 401


def test_cluster_reports_gateway_api_and_default_pool(api):
    status, cluster = call(api, "GET", BASE)
    assert status == 200
    assert cluster["networkConfig"]["gatewayApiConfig"] == {"channel": "CHANNEL_STANDARD"}
    assert cluster["addonsConfig"]["httpLoadBalancing"] == {}
    assert cluster["currentMasterVersion"].startswith("1.34.")
    assert [p["name"] for p in cluster["nodePools"]] == ["default-pool"]
    assert cluster["nodePools"][0]["config"]["machineType"] == "n1-standard-4"


def test_create_pool_operation_runs_then_is_done_and_pool_is_running(api):
    status, op = call(api, "POST", f"{BASE}/nodePools", {"nodePool": {
        "name": "gpu", "initialNodeCount": 1, "config": {"machineType": "n1-standard-4", "accelerators": [
            {"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": "1"}]}}})
    assert status == 200 and op["operationType"] == "CREATE_NODE_POOL" and op["status"] == "RUNNING"
    assert op["targetLink"].endswith("/clusters/c1/nodePools/gpu") and op["selfLink"].startswith("http://sim/v1/")
    done = wait_done(api, op)
    assert "error" not in done and done["endTime"] >= done["startTime"]
    status, pool = call(api, "GET", f"{LEGACY}/nodePools/gpu")
    assert status == 200 and pool["status"] == "RUNNING"
    assert pool["config"]["resourceLabels"] == {"goog-gke-node-pool-provisioning-model": "on-demand"}


def test_second_write_while_an_operation_runs_is_failed_precondition(api):
    _, op = call(api, "POST", f"{BASE}/nodePools", {"nodePool": {"name": "a", "config": {"machineType": "e2-medium"}}})
    status, payload = call(api, "POST", f"{BASE}/nodePools/default-pool:setSize", {"nodeCount": 3})
    assert status == 400 and payload["error"]["status"] == "FAILED_PRECONDITION"
    assert payload["error"]["message"] == f"Cluster is running incompatible operation {op['name']}."
    wait_done(api, op)


def test_unknown_machine_type_in_zone_is_400_naming_it(api):
    status, payload = call(api, "POST", f"{BASE}/nodePools",
                           {"nodePool": {"name": "x", "config": {"machineType": "a3-ultragpu-8g"}}})
    assert status == 400 and payload["error"]["status"] == "INVALID_ARGUMENT"
    assert "a3-ultragpu-8g" in payload["error"]["message"]


def test_autoscaling_and_size_verbs_in_both_url_forms(api):
    status, op = call(api, "POST", f"{BASE}/nodePools/default-pool:setAutoscaling",
                      {"autoscaling": {"enabled": True, "minNodeCount": 1, "maxNodeCount": 6}})
    assert status == 200 and op["operationType"] == "UPDATE_CLUSTER"
    wait_done(api, op)
    status, op = call(api, "POST", f"{LEGACY}/nodePools/default-pool/setSize", {"nodeCount": 3})
    assert status == 200 and op["operationType"] == "SET_NODE_POOL_SIZE"
    wait_done(api, op)
    _, pool = call(api, "GET", f"{BASE}/nodePools/default-pool")
    assert pool["autoscaling"] == {"enabled": True, "minNodeCount": 1, "maxNodeCount": 6,
                                   "locationPolicy": "BALANCED"}


def test_update_with_a_nodepool_body_is_rejected_like_gke(api):
    status, payload = call(api, "PUT", f"{BASE}/nodePools/default-pool", {"nodePool": {"name": "default-pool"}})
    assert status == 400 and 'Unknown name "nodePool"' in payload["error"]["message"]


def test_update_labels_and_taints(api):
    status, op = call(api, "PUT", f"{BASE}/nodePools/default-pool",
                      {"labels": {"labels": {"tier": "cpu"}},
                       "taints": {"taints": [{"key": "k", "value": "v", "effect": "NO_EXECUTE"}]}})
    assert status == 200 and op["operationType"] == "UPGRADE_NODES"
    wait_done(api, op)
    _, pool = call(api, "GET", f"{BASE}/nodePools/default-pool")
    assert pool["config"]["labels"] == {"tier": "cpu"}
    assert pool["config"]["taints"] == [{"key": "k", "value": "v", "effect": "NO_EXECUTE"}]


@pytest.mark.parametrize(("fault", "status", "rpc_status"), [
    ("in_progress", 400, "FAILED_PRECONDITION"), ("http_429", 429, "RESOURCE_EXHAUSTED"),
    ("http_503", 503, "UNAVAILABLE"), ("quota", 403, "PERMISSION_DENIED")])
def test_injected_faults_answer_like_gke_and_are_consumed(api, fault, status, rpc_status):
    assert call(api, "POST", "/_sim/faults", {"method": "POST", "path_regex": "nodePools$", "fault": fault})[0] == 200
    t4 = [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}]
    body = {"nodePool": {"name": "t4", "initialNodeCount": 3,
                         "config": {"machineType": "n1-standard-4", "accelerators": t4}}}
    answer, payload = call(api, "POST", f"{BASE}/nodePools", body)
    assert (answer, payload["error"]["status"]) == (status, rpc_status)
    if fault == "quota":
        assert payload["error"]["message"].startswith(
            "Insufficient regional quota to satisfy request: resource \"NVIDIA_T4_GPUS\": request requires '3.0'")
    answer, op = call(api, "POST", f"{BASE}/nodePools", body)  # times defaults to 1
    assert answer == 200
    wait_done(api, op)


def test_request_log_records_method_path_status(api):
    call(api, "GET", f"{BASE}/nodePools/missing")
    _, log = call(api, "GET", "/_sim/requests")
    assert log["requests"][-1]["method"] == "GET" and log["requests"][-1]["status"] == 404
    assert log["requests"][-1]["path"].endswith("/nodePools/missing")
    call(api, "DELETE", "/_sim/requests")
    assert call(api, "GET", "/_sim/requests")[1] == {"requests": []}


def test_compute_reads_for_preflight(api):
    status, machine = call(api, "GET", "/compute/v1/projects/proj/zones/europe-west4-a/machineTypes/ct6e-standard-4t")
    assert status == 200 and machine["guestCpus"] == 180
    status, payload = call(api, "GET", "/compute/v1/projects/proj/zones/us-south1-a/machineTypes/ct6e-standard-4t")
    assert status == 404 and payload["error"]["errors"][0]["reason"] == "notFound"
    status, _ = call(api, "GET", "/compute/v1/projects/proj/zones/us-south1-a/acceleratorTypes/nvidia-tesla-t4")
    assert status == 404


def test_state_survives_a_restart(api, tmp_path):
    body = {"nodePool": {"name": "kept", "config": {"machineType": "e2-medium"}}}
    _, op = call(api, "POST", f"{BASE}/nodePools", body)
    wait_done(api, op)
    settings = api.sim.settings
    again = Api(Simulator(settings))
    status, pool = call(again, "GET", f"{BASE}/nodePools/kept")
    assert status == 200 and pool["status"] == "RUNNING"


def test_regional_quota_is_enforced_and_readable(api):
    assert call(api, "POST", "/_sim/quotas", {"NVIDIA_T4_GPUS": 2})[0] == 200
    t4 = [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}]
    body = {"nodePool": {"name": "t4", "initialNodeCount": 3, "config": {"machineType": "n1-standard-4",
                                                                         "accelerators": t4}}}
    status, payload = call(api, "POST", f"{BASE}/nodePools", body)
    assert status == 403 and payload["error"]["status"] == "PERMISSION_DENIED"
    assert "resource \"NVIDIA_T4_GPUS\": request requires '3.0' and is short '1.0'. project has a quota of " \
           "'2.0' with '2.0' available." in payload["error"]["message"]
    body["nodePool"]["initialNodeCount"] = 2
    status, op = call(api, "POST", f"{BASE}/nodePools", body)
    assert status == 200
    wait_done(api, op)
    status, region = call(api, "GET", "/compute/v1/projects/proj/regions/europe-west4")
    quotas = {q["metric"]: q for q in region["quotas"]}
    assert status == 200 and quotas["NVIDIA_T4_GPUS"] == {"metric": "NVIDIA_T4_GPUS", "limit": 2.0, "usage": 2.0}
    assert quotas["CPUS"]["usage"] == 16.0  # default-pool 2 x 4 + t4 2 x 4
    status, payload = call(api, "POST", f"{BASE}/nodePools/t4:setSize", {"nodeCount": 3})
    assert status == 403 and "NVIDIA_T4_GPUS" in payload["error"]["message"]


@pytest.mark.parametrize(("update", "text"), [
    ({"spot": True}, 'Unknown name "spot"'),
    ({"placementPolicy": {"tpuTopology": "2x2"}}, 'Unknown name "placementPolicy"'),
    ({"machineType": "ct6e-standard-4t"}, "between TPU and non-TPU"),
    ({}, "at least one field"),
])
def test_fields_that_cannot_change_are_refused_by_update(api, update, text):
    status, payload = call(api, "PUT", f"{BASE}/nodePools/default-pool", update)
    assert status == 400 and text in payload["error"]["message"]


def test_cluster_update_switches_the_gateway_api_channel(api):
    status, op = call(api, "PUT", BASE, {"update": {"desiredGatewayApiConfig": {"channel": "CHANNEL_DISABLED"}}})
    assert status == 200 and op["operationType"] == "UPDATE_CLUSTER"
    wait_done(api, op)
    _, cluster = call(api, "GET", BASE)
    assert cluster["networkConfig"]["gatewayApiConfig"] == {"channel": "CHANNEL_DISABLED"}
    assert cluster["status"] == "RUNNING"


def test_an_operation_running_at_a_restart_is_finished_by_the_next_process(api):
    api.sim.scale = 1.0  # the first process would need 30 s: it "dies" before finishing
    body = {"nodePool": {"name": "late", "config": {"machineType": "e2-medium"}}}
    _, op = call(api, "POST", f"{BASE}/nodePools", body)
    again = Api(Simulator(api.sim.settings))
    again.sim.resume_operations()
    done = wait_done(again, op)
    assert "error" not in done
    assert call(again, "GET", f"{BASE}/nodePools/late")[1]["status"] == "RUNNING"
