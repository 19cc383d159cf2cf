"""Issue 12: gke_node_pool against what the real Container API v1 does, run against the GKE simulator in-process.

The module's ContainerClient talks to ``localcluster.gke_api.Api`` through a transport that calls ``Api.handle``
(no HTTP, no Kubernetes cluster: pools have no Nodes), so the same behaviour is checked on both sides.
"""
import time

import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_reconciler as rec
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_spec as spec
from ansible_collections.llm_serving.gke.plugins.module_utils import tpu_topology as topo
from ansible_collections.llm_serving.gke.plugins.filter.tpu_topology_error import FilterModule

from tests.gke_sim_inprocess import CLUSTER_PATH as BASE
from tests.gke_sim_inprocess import call, make_api
from tests.unit.plugins.module_utils.fake_gke import FakeGke, api_error


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path)


class SimTransport:
    """``transport(method, url, body)`` for ContainerClient, answered by the in-process simulator."""

    def __init__(self, api):
        self.api = api
        self.calls = []

    def __call__(self, method, url, body):
        path = url.split("://", 1)[-1]
        path = path[path.index("/"):]
        self.calls.append((method, path, body))
        return call(self.api, method, path, body)

    def writes(self):
        return [(m, p) for m, p, _b in self.calls if m != "GET"]


def sim_client(api, timeout=60):
    transport = SimTransport(api)
    client = gkc.ContainerClient(transport, "proj", "europe-west4-a", "c1", endpoint="http://gke",
                                 compute_endpoint="http://gce", timeout=timeout, initial_delay=0.01, max_delay=0.05,
                                 poll_interval=0.01, max_poll_interval=0.05)
    return client, transport


def params(**overrides):
    base = {
        "project": "proj", "location": "europe-west4-a", "cluster": "c1", "name": "cpu", "state": "present",
        "machine_type": "e2-standard-4", "accelerator": None, "tpu_topology": None, "spot": None,
        "autoscaling": None, "initial_node_count": None, "node_count": None, "node_locations": None,
        "labels": None, "taints": None, "disk_size_gb": None, "disk_type": None, "image_type": None,
        "service_account": None, "oauth_scopes": None, "recreate": False, "wait": True, "timeout": 60,
    }
    base.update(overrides)
    return base


def run(api, p, check_mode=False):
    client, transport = sim_client(api)
    return rec.NodePoolReconciler(client, p, check_mode=check_mode).run(), transport


def wait_done(api, operation):
    for _attempt in range(500):
        _status, op = call(api, "GET", f"/v1/projects/proj/locations/europe-west4-a/operations/{operation['name']}")
        if op["status"] == "DONE":
            return op
        time.sleep(0.01)
    raise AssertionError(f"operation {operation['name']} never finished")


# Item 1: "another operation is running" is retried whatever its wording ----------------------------------------

WORDINGS = [
    "Cluster is running incompatible operation operation-1533161820212-e0451fc6.",
    "Operation operation-1596064640049-1b03e177 is currently upgrading cluster c1. Please wait and try again once "
    "it is done.",
    "Operation operation-1533161820212-e0451fc6 is currently creating a node pool for cluster c1. Please wait and "
    "try again once it is done.",
    "Operation operation-1 is currently deleting a node pool for cluster c1. Please wait and try again once it is "
    "done.",
    "",
]


@pytest.mark.parametrize("message", WORDINGS)
def test_any_400_failed_precondition_is_in_progress(message):
    assert errs.classify(400, "FAILED_PRECONDITION", message) == "in_progress"


@pytest.mark.parametrize("message", WORDINGS)
def test_simulator_in_progress_fault_takes_any_wording_and_module_retries_it(api, message):
    fault = {"method": "POST", "path_regex": "nodePools$", "fault": "in_progress", "message": message, "times": 2}
    assert call(api, "POST", "/_sim/faults", fault)[0] == 200
    status, payload = call(api, "POST", f"{BASE}/nodePools",
                           {"nodePool": {"name": "x", "config": {"machineType": "e2-medium"}}})
    assert status == 400 and payload["error"]["status"] == "FAILED_PRECONDITION"
    assert payload["error"]["message"] == message
    assert payload["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.RequestInfo"
    result, transport = run(api, params())
    assert result["changed"] and [r["reason"] for r in result["retries"]] == ["in_progress"]
    assert [r["status"] for r in result["retries"]] == [400]
    assert call(api, "GET", f"{BASE}/nodePools/cpu")[1]["status"] == "RUNNING"


def test_second_write_during_an_operation_is_failed_precondition_and_is_retried(api):
    _status, op = call(api, "POST", f"{BASE}/nodePools",
                       {"nodePool": {"name": "busy", "config": {"machineType": "e2-medium"}}})
    status, payload = call(api, "POST", f"{BASE}/nodePools/default-pool:setSize", {"nodeCount": 3})
    assert (status, payload["error"]["status"]) == (400, "FAILED_PRECONDITION")
    result, _transport = run(api, params())  # create while "busy" is being created: retried until it is done
    assert result["changed"] and "error" not in wait_done(api, op)
    assert call(api, "GET", f"{BASE}/nodePools/cpu")[0] == 200


def test_update_waits_until_the_pool_is_at_rest_before_writing(api):
    """Terraform waits for a resting pool status before an update (containerNodePoolAwaitRestingState)."""
    _status, op = call(api, "POST", f"{BASE}/nodePools/default-pool:setSize", {"nodeCount": 3})
    assert call(api, "GET", f"{BASE}/nodePools/default-pool")[1]["status"] == "RECONCILING"
    result, transport = run(api, params(name="default-pool", machine_type=None, labels={"tier": "cpu"}))
    assert result["changed"] and result["retries"] == []  # no write was sent while the pool was busy
    pool_reads = [s for s in transport.calls if s[0] == "GET" and s[1].endswith("/nodePools/default-pool")]
    assert len(pool_reads) >= 2
    assert call(api, "GET", f"{BASE}/nodePools/default-pool")[1]["config"]["labels"] == {"tier": "cpu"}
    assert "error" not in wait_done(api, op)


def test_pool_that_never_comes_to_rest_times_out_naming_it():
    fake = FakeGke()
    fake.add_pool({"name": "p", "config": {"machineType": "n1-standard-4"}})
    fake.pools["p"]["status"] = "RECONCILING"
    clock = {"now": 0.0}
    client = gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", timeout=30,
                                 clock=lambda: clock["now"], sleep=lambda s: clock.__setitem__("now", clock["now"] + s))
    with pytest.raises(errs.GkeError) as err:
        rec.NodePoolReconciler(client, params(name="p", machine_type="n1-standard-4", project="p1",
                                              labels={"a": "b"})).run()
    assert err.value.kind == "timeout" and "'p'" in err.value.message and "RECONCILING" in err.value.message
    assert fake.writes() == []


def test_permanent_failed_precondition_is_reported_at_timeout_with_the_api_text():
    fake = FakeGke()
    fake.script("POST", "nodePools$", *api_error(400, "FAILED_PRECONDITION", "Operation operation-7 is currently "
                                                 "upgrading cluster c1. Please wait and try again once it is done."),
                times=1000)
    clock = {"now": 0.0}
    client = gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", timeout=60,
                                 clock=lambda: clock["now"], sleep=lambda s: clock.__setitem__("now", clock["now"] + s))
    with pytest.raises(errs.GkeError) as err:
        rec.NodePoolReconciler(client, params(machine_type="n1-standard-4", project="p1")).run()
    assert err.value.kind == "in_progress" and "operation-7 is currently upgrading" in err.value.message


# Item 3: setAutoscaling replaces the whole setting -------------------------------------------------------------

def discovery_schema(name):
    from localcluster.gke_validation import schemas
    return schemas()[name]["properties"]


def test_simulator_set_autoscaling_replaces_the_whole_setting(api):
    _status, op = call(api, "POST", f"{BASE}/nodePools/default-pool:setAutoscaling", {"autoscaling": {
        "enabled": True, "minNodeCount": 2, "maxNodeCount": 4, "locationPolicy": "ANY"}})
    wait_done(api, op)
    _status, op = call(api, "POST", f"{BASE}/nodePools/default-pool:setAutoscaling",
                       {"autoscaling": {"enabled": True, "maxNodeCount": 6}})
    wait_done(api, op)
    autoscaling = call(api, "GET", f"{BASE}/nodePools/default-pool")[1]["autoscaling"]
    assert autoscaling == {"enabled": True, "maxNodeCount": 6, "locationPolicy": "BALANCED"}  # min 0: omitted


def test_changing_only_max_keeps_min_and_location_policy_on_gke(api):
    _status, op = call(api, "POST", f"{BASE}/nodePools/default-pool:setAutoscaling", {"autoscaling": {
        "enabled": True, "minNodeCount": 2, "maxNodeCount": 4, "locationPolicy": "ANY"}})
    wait_done(api, op)
    only_max = {"enabled": True, "min_node_count": None, "max_node_count": 6, "location_policy": None}
    result, transport = run(api, params(name="default-pool", machine_type=None, autoscaling=only_max))
    assert result["changed"]
    sent = [b for m, p, b in transport.calls if p.endswith(":setAutoscaling")]
    assert sent == [{"autoscaling": {"enabled": True, "minNodeCount": 2, "maxNodeCount": 6, "locationPolicy": "ANY"}}]
    assert set(sent[0]["autoscaling"]) <= set(discovery_schema("NodePoolAutoscaling"))
    autoscaling = call(api, "GET", f"{BASE}/nodePools/default-pool")[1]["autoscaling"]
    assert autoscaling == {"enabled": True, "minNodeCount": 2, "maxNodeCount": 6, "locationPolicy": "ANY"}
    again, _transport = run(api, params(name="default-pool", machine_type=None, autoscaling=only_max))
    assert not again["changed"]


def test_enabling_autoscaling_with_only_max_sends_no_stale_values():
    body = spec.autoscaling_body({"enabled": True, "min_node_count": None, "max_node_count": 3,
                                  "location_policy": None}, {"enabled": False})
    assert body == {"enabled": True, "maxNodeCount": 3}


# Item 2: sizes are per zone --------------------------------------------------------------------------------------

def two_zone_pool(api, size=2):
    _status, op = call(api, "POST", f"{BASE}/nodePools", {"nodePool": {
        "name": "multi", "initialNodeCount": size, "locations": ["europe-west4-a", "europe-west4-b"],
        "autoscaling": {"enabled": False}, "config": {"machineType": "e2-standard-4"}}})
    wait_done(api, op)
    return call(api, "GET", f"{BASE}/nodePools/multi")[1]


def test_simulator_serves_one_zonal_mig_per_pool_zone_with_its_target_size(api):
    pool = two_zone_pool(api)
    assert len(pool["instanceGroupUrls"]) == 2
    for url in pool["instanceGroupUrls"]:
        path = url[url.index("/compute/v1/"):]
        status, igm = call(api, "GET", path)
        assert status == 200 and igm["kind"] == "compute#instanceGroupManager" and igm["targetSize"] == 2
        assert path.endswith(igm["name"]) and igm["zone"].endswith(path.split("/zones/")[1].split("/")[0])
    status, listing = call(api, "GET", "/compute/v1/projects/proj/zones/europe-west4-b/instanceGroupManagers")
    assert status == 200 and [i["targetSize"] for i in listing["items"]] == [2]
    status, _body = call(api, "GET", "/compute/v1/projects/proj/zones/europe-west4-b/instanceGroupManagers/nope-grp")
    assert status == 404


def test_node_count_of_a_two_zone_pool_is_read_per_zone(api):
    two_zone_pool(api, size=2)
    p = params(name="multi", machine_type=None, autoscaling={"enabled": False}, node_count=2)
    result, transport = run(api, p)
    assert not result["changed"] and result.get("changes") == []
    assert list(transport.writes()) == []
    assert len([c for c in transport.calls if "/instanceGroupManagers/" in c[1]]) == 2
    result, transport = run(api, dict(p, node_count=3))
    assert result["changed"] and result["changes"][0]["before"] == 2
    sent = [b for m, path, b in transport.calls if path.endswith(":setSize")]
    assert sent == [{"nodeCount": 3}]
    client, _transport = sim_client(api)
    sizes = client.zone_sizes(call(api, "GET", f"{BASE}/nodePools/multi")[1])
    assert sizes == {"europe-west4-a": 3, "europe-west4-b": 3}


def test_uneven_zones_are_a_change_showing_each_zone():
    fake = FakeGke()
    pool = fake.add_pool({"name": "p", "config": {"machineType": "n1-standard-4"}})
    base = pool["instanceGroupUrls"][0].rsplit("/zones/", 1)[0]
    pool["instanceGroupUrls"] = [f"{base}/zones/europe-west4-a/instanceGroupManagers/gke-c1-p-a-grp",
                                 f"{base}/zones/europe-west4-b/instanceGroupManagers/gke-c1-p-b-grp"]
    sizes = {"gke-c1-p-a-grp": 2, "gke-c1-p-b-grp": 1}
    fake.route = lambda method, path, body, orig=fake.route: (
        (200, {"targetSize": sizes[path.rsplit("/", 1)[1]]}) if "/instanceGroupManagers/" in path
        else orig(method, path, body))
    client = gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke")
    assert client.current_size(pool) == {"europe-west4-a": 2, "europe-west4-b": 1}
    view = spec.current_view(pool, client.current_size(pool))
    changes = spec.compute_diff({"node_count": 2}, view)
    assert changes and changes[0]["verb"] == "setSize"


# Item 5: error states and errors as GKE reports them -----------------------------------------------------------

def test_operation_error_is_a_google_rpc_status_read_by_code():
    fake = FakeGke()
    fake.op_error = {"code": 9, "message": "Node pool is not in a state that allows the update.",
                     "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": "0x1"}]}
    client = gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", sleep=lambda s: None)
    with pytest.raises(errs.GkeError) as err:
        rec.NodePoolReconciler(client, params(machine_type="n1-standard-4", project="p1")).run()
    assert err.value.kind == "api" and "FAILED_PRECONDITION (code 9)" in err.value.message
    assert "not in a state that allows the update" in err.value.message and "'cpu'" in err.value.message
    assert set(fake.op_error) <= set(discovery_schema("Status"))


def test_stockout_in_operation_error_code_8_is_a_stockout():
    fake = FakeGke()
    fake.op_error = {"code": 8, "message": "Google Compute Engine: Not all instances running in IGM after 35m0.5s. "
                     "Expected 1, running 0, transitioning 1. Current errors: [GCE_STOCKOUT]: Instance 'gke-x' "
                     "creation failed: The zone 'projects/p1/zones/europe-west4-a' does not have enough resources "
                     "available to fulfill the request."}
    client = gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", sleep=lambda s: None)
    with pytest.raises(errs.GkeError) as err:
        rec.NodePoolReconciler(client, params(machine_type="n1-standard-4", project="p1")).run()
    assert err.value.kind == "stockout" and "europe-west4-a" in err.value.message


def test_status_message_without_error_is_not_a_failure():
    """statusMessage is deprecated ("Use the field error instead"); a DONE operation without error succeeded."""
    client = gkc.ContainerClient(FakeGke(), "p1", "europe-west4-a", "c1", endpoint="http://gke")
    done = {"name": "operation-1", "status": "DONE", "statusMessage": "Insufficient regional quota (old text)"}
    assert client.wait(done, {"name": "p"}) == done


@pytest.mark.parametrize("status", ["RUNNING_WITH_ERROR", "ERROR"])
def test_pool_in_an_error_state_is_refused_without_recreate(status):
    fake = FakeGke()
    fake.add_pool({"name": "p", "config": {"machineType": "n1-standard-4"}})
    fake.pools["p"].update(status=status, conditions=[{"code": "GCE_STOCKOUT", "message": "zone short",
                                                       "canonicalCode": "RESOURCE_EXHAUSTED"}])
    client = gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", sleep=lambda s: None)
    with pytest.raises(errs.GkeError) as err:
        rec.NodePoolReconciler(client, params(name="p", machine_type="n1-standard-4", project="p1")).run()
    assert status in err.value.message and "zone short" in err.value.message
    assert "recreate: true" in err.value.message and fake.writes() == []


def test_simulator_partial_stockout_on_resize_is_running_with_error_and_module_reports_it(api):
    """setSize that hits a stockout: the operation ends with error code 8, the pool is RUNNING_WITH_ERROR."""
    _status, op = call(api, "POST", f"{BASE}/nodePools",
                       {"nodePool": {"name": "cpu", "initialNodeCount": 1, "config": {"machineType": "e2-standard-4"}}})
    wait_done(api, op)
    api.sim.fleet = None
    record = api.sim.state["pools"]["cpu"]
    fault = {"method": "POST", "path_regex": "cpu:setSize$", "fault": "stockout"}
    assert call(api, "POST", "/_sim/faults", fault)[0] == 200
    # No Kubernetes here: the node controller that would fail the VMs is played by hand.
    original = api.sim.wait_for_pool

    def failing(pool, timeout_real_seconds=7200):
        if record.get("provision_fault"):
            fault_taken = api.sim.take_provision_fault(pool, "europe-west4-a")
            api.sim.provision_failed(pool, "europe-west4-a", fault_taken, 1)
        return original(pool, timeout_real_seconds)

    api.sim.wait_for_pool = failing
    with pytest.raises(errs.GkeError) as err:
        run(api, params(autoscaling={"enabled": False}, node_count=2))
    assert err.value.kind == "stockout" and "GCE_STOCKOUT" in err.value.message
    operation = err.value.details["operation"]
    assert operation["error"]["code"] == 8 and "status" not in operation["error"]
    pool = call(api, "GET", f"{BASE}/nodePools/cpu")[1]
    assert pool["status"] == "RUNNING_WITH_ERROR" and pool["conditions"][0]["code"] == "GCE_STOCKOUT"
    with pytest.raises(errs.GkeError, match="RUNNING_WITH_ERROR"):
        run(api, params(autoscaling={"enabled": False}, node_count=2))


# Item 6: TPU topology facts, one table ----------------------------------------------------------------------------

def tpu(**overrides):
    values = {"name": "tpu", "machine_type": "ct6e-standard-4t", "initial_node_count": 1,
              "autoscaling": {"enabled": True, "min_node_count": 0, "max_node_count": 3, "location_policy": None}}
    values.update(overrides)
    return params(**values)


def test_own_single_host_topology_is_accepted_and_the_same_as_unset():
    """Google's v6e table lists 2x2 as the topology of ct6e-standard-4t (https://cloud.google.com/tpu/docs/v6e)."""
    spec.validate_params(tpu(tpu_topology="2x2"))
    body = spec.build_node_pool(tpu(tpu_topology="2x2"))
    assert "placementPolicy" not in body
    for reported in ({}, {"placementPolicy": {"tpuTopology": "2x2"}}):  # whether or not GKE reports it
        current = spec.current_view(dict(reported, config={"machineType": "ct6e-standard-4t"}))
        changes = spec.compute_diff(spec.desired_view(tpu(tpu_topology="2x2")), current)
        assert [c for c in changes if c["field"] == "tpu_topology"] == []
    for machine, own in (("ct6e-standard-1t", "1x1"), ("ct6e-standard-8t", "2x4"), ("ct5p-hightpu-4t", "2x2x1"),
                         ("tpu7x-standard-4t", "2x2x1")):
        topo.validate_tpu(machine, own, max_node_count=3)


@pytest.mark.parametrize(("machine", "topology", "text"), [
    ("ct6e-standard-4t", "2x2x1", "not a TPU v6e slice shape"),
    ("ct6e-standard-8t", "4x4", "forms no multi-host slices"),
    ("ct5p-hightpu-4t", "4x4", "3-D shapes"),
    ("tpu7x-standard-4t", "2x2x2", "workload policy"),
])
def test_shapes_the_generation_does_not_have_are_refused(machine, topology, text):
    with pytest.raises(errs.GkeError) as err:
        topo.validate_tpu(machine, topology)
    assert text in err.value.message and "tpu_topology" in err.value.message


def test_multi_host_shapes_from_the_v6e_table_are_one_slice_per_pool():
    topo.validate_tpu("ct6e-standard-4t", "2x4", max_node_count=2)  # 8 chips on 2 VMs
    topo.validate_tpu("ct6e-standard-4t", "16x16", max_node_count=64)
    topo.validate_tpu("ct5p-hightpu-4t", "2x2x2", max_node_count=2)
    with pytest.raises(errs.GkeError, match="max_node_count must be 4"):
        topo.validate_tpu("ct6e-standard-4t", "4x4", max_node_count=3)


def test_one_table_has_current_types_and_the_role_has_none():
    from pathlib import Path
    import yaml
    assert topo.TPU_MACHINE_TYPES["tpu7x-standard-4t"]["chips"] == 4
    assert topo.TPU_CHIPS_PER_VM["ct6e-standard-4t"] == 4
    root = Path(topo.__file__).resolve().parents[2]
    role_vars = yaml.safe_load((root / "roles/nodepool/vars/main.yml").read_text())
    assert not any("tpu" in key for key in role_vars)
    assert "llm_serving.gke.tpu_topology_error" in (root / "roles/nodepool/tasks/validate.yml").read_text()


def test_role_filter_uses_the_module_table():
    check = FilterModule().filters()["tpu_topology_error"]
    assert check("2x2", "ct6e-standard-4t", "nodepool_profile.tpu_topology", 3) == ""
    assert check("", "ct6e-standard-4t") == ""
    message = check("2x2x1", "ct6e-standard-4t", "nodepool_profile.tpu_topology", "3")
    assert message.startswith("nodepool_profile.tpu_topology: '2x2x1'")
    assert "max_node_count must be 4" in check("4x4", "ct6e-standard-4t", "nodepool_profile.tpu_topology", 3)


def test_simulator_accepts_the_own_topology_and_knows_tpu7x(api):
    from localcluster import gke_catalog
    assert gke_catalog.TPU_TOPOLOGIES["tpu7x-standard-4t"] == ("2x2x1",)
    status, op = call(api, "POST", f"{BASE}/nodePools", {"nodePool": {
        "name": "v6e", "initialNodeCount": 1, "placementPolicy": {"tpuTopology": "2x2"},
        "autoscaling": {"enabled": True, "minNodeCount": 0, "maxNodeCount": 1},
        "config": {"machineType": "ct6e-standard-4t"}}})
    assert status == 200, op
    wait_done(api, op)


# Item 4: in place where GKE allows it (nodePools.update, surge upgrade) --------------------------------------------

class FakeFleet:
    """Stands in for localcluster.nodes.Fleet without Kubernetes: converged() reconciles synchronously and logs
    ("create", node, machine type) / ("remove", node) so the order of a surge upgrade can be checked."""

    def __init__(self, sim):
        self.sim = sim
        self.nodes = {}  # name -> {"pool", "zone", "machine"}
        self.deleting = set()
        self.events = []
        self.max_live = 0

    def pool_nodes(self, pool, zone=None):
        return [{"metadata": {"name": n, "labels": {"topology.kubernetes.io/zone": v["zone"]}}}
                for n, v in sorted(self.nodes.items()) if v["pool"] == pool and zone in (None, v["zone"])]

    def remove_node(self, name, autoscaler=False):
        self.deleting.add(name)

    def converged(self, pool, targets):
        for name in sorted(self.deleting):
            self.nodes.pop(name, None)
            self.events.append(("remove", name))
        self.deleting.clear()
        for zone, target in targets.items():
            live = [n for n, v in self.nodes.items() if v["pool"] == pool and v["zone"] == zone]
            missing = target - len(live)
            if missing > 0:
                fault = self.sim.take_provision_fault(pool, zone)
                if fault:
                    self.sim.provision_failed(pool, zone, fault, missing)
                    return False
                machine = self.sim.state["pools"][pool]["api"]["config"]["machineType"]
                for _attempt in range(missing):
                    name = f"{pool}-{len(self.events)}"
                    self.nodes[name] = {"pool": pool, "zone": zone, "machine": machine}
                    self.events.append(("create", name, machine))
            self.max_live = max(self.max_live, len([v for v in self.nodes.values() if v["pool"] == pool]))
        return True


def fleet_pool(api, size=2):
    fleet = FakeFleet(api.sim)
    api.sim.fleet = fleet
    _status, op = call(api, "POST", f"{BASE}/nodePools",
                       {"nodePool": {"name": "cpu", "initialNodeCount": size,
                                     "config": {"machineType": "e2-standard-4"}}})
    wait_done(api, op)
    fleet.events.clear()
    fleet.max_live = size
    return fleet


def test_machine_type_change_is_one_in_place_update_that_replaces_every_node_by_surge(api):
    fleet = fleet_pool(api)
    old = set(fleet.nodes)
    result, transport = run(api, params(machine_type="e2-standard-8", disk_size_gb=200))
    assert result["changed"] and not result.get("recreated")
    assert {c["field"]: (c["verb"], c.get("replaces_nodes")) for c in result["changes"]} == {
        "machine_type": ("update", True), "disk_size_gb": ("update", True)}
    puts = [b for m, p, b in transport.calls if m == "PUT"]
    assert puts == [{"machineType": "e2-standard-8", "diskSizeGb": "200"}]  # one surge upgrade, not two
    assert [w[0] for w in transport.writes()] == ["PUT"]  # no DELETE + POST
    # Surge: every old node is removed only after a new node was created; never fewer than 2 nodes serve.
    for name in old:
        removed_at = fleet.events.index(("remove", name))
        assert any(e[0] == "create" and e[2] == "e2-standard-8" for e in fleet.events[:removed_at])
    assert fleet.max_live == 3 and {v["machine"] for v in fleet.nodes.values()} == {"e2-standard-8"}
    assert len(fleet.nodes) == 2
    assert call(api, "GET", f"{BASE}/nodePools/cpu")[1]["config"]["machineType"] == "e2-standard-8"


def test_stockout_during_the_surge_leaves_the_old_nodes_serving(api):
    fleet = fleet_pool(api)
    old = dict(fleet.nodes)
    fault = {"method": "PUT", "path_regex": "nodePools/cpu$", "fault": "stockout"}
    assert call(api, "POST", "/_sim/faults", fault)[0] == 200
    with pytest.raises(errs.GkeError) as err:
        run(api, params(machine_type="e2-standard-8"))
    assert err.value.kind == "stockout" and err.value.details["operation"]["error"]["code"] == 8
    assert fleet.nodes == old  # both old nodes still serve
    pool = call(api, "GET", f"{BASE}/nodePools/cpu")[1]
    assert pool["status"] == "RUNNING_WITH_ERROR"


def test_really_immutable_fields_still_need_recreate(api):
    fleet_pool(api)
    with pytest.raises(errs.GkeError) as err:
        run(api, params(spot=True))
    assert err.value.kind == "immutable" and "spot" in err.value.message


def test_tpu_to_gpu_machine_type_is_a_recreate():
    changes = spec.compute_diff(spec.desired_view(params(machine_type="n1-standard-4")),
                                spec.current_view({"config": {"machineType": "ct6e-standard-4t"}}))
    assert [(c["field"], c["verb"]) for c in changes] == [("machine_type", "recreate")]


# Item 7: capacity the way TPU and GPU users get it (reservations, fallback zones) ----------------------------------

def test_reservation_affinity_body_uses_the_api_fields_and_enum():
    schema = discovery_schema("ReservationAffinity")
    assert set(spec.RESERVATION_TYPES) <= set(schema["consumeReservationType"]["enum"])
    p = params(reservation_affinity={"consume_reservation_type": "SPECIFIC_RESERVATION", "key": None,
                                     "values": ["tpu-res"]})
    spec.validate_params(p)
    body = spec.build_node_pool(p)["config"]["reservationAffinity"]
    assert body == {"consumeReservationType": "SPECIFIC_RESERVATION", "key": "compute.googleapis.com/reservation-name",
                    "values": ["tpu-res"]}
    assert set(body) <= set(schema)
    with pytest.raises(errs.GkeError, match="reservation_affinity.values must name"):
        spec.validate_params(params(reservation_affinity={"consume_reservation_type": "SPECIFIC_RESERVATION"}))


def test_fallback_locations_must_be_zones_of_the_region():
    with pytest.raises(errs.GkeError, match="fallback_locations: 'us-central1-a' is not a zone of the cluster's"):
        spec.validate_params(params(fallback_locations=["us-central1-a"]))
    spec.validate_params(params(fallback_locations=["europe-west4-b", "europe-west4-c"]))


def test_stockout_hint_names_reservations_and_fallback():
    message = errs.stockout_message("GCE_STOCKOUT in zones/europe-west4-a", {"name": "p", "machine_type": "m"})
    assert "reservation_affinity" in message and "fallback_locations" in message


def test_create_hits_a_zone_stockout_and_falls_back_to_the_next_zone(api):
    fleet = FakeFleet(api.sim)
    api.sim.fleet = fleet
    for zone in ("europe-west4-a", "europe-west4-b"):
        assert call(api, "POST", "/_sim/stockouts", {"zone": zone, "machine_type": "e2-standard-4"})[0] == 200
    result, transport = run(api, params(initial_node_count=1,
                                        fallback_locations=["europe-west4-b", "europe-west4-c"]))
    report = result["capacity_fallback"]
    assert [t["zone"] for t in report["tried"]] == ["europe-west4-a", "europe-west4-b"]
    assert all("GCE_STOCKOUT" in t["error"] for t in report["tried"]) and report["used"] == "europe-west4-c"
    assert [o["verb"] for o in result["operations"]] == ["create", "delete", "create", "delete", "create"]
    pool = call(api, "GET", f"{BASE}/nodePools/cpu")[1]
    assert pool["locations"] == ["europe-west4-c"] and pool["status"] == "RUNNING"
    assert {v["zone"] for v in fleet.nodes.values()} == {"europe-west4-c"}


def test_without_fallback_the_stockout_is_reported(api):
    api.sim.fleet = FakeFleet(api.sim)
    call(api, "POST", "/_sim/stockouts", {"zone": "europe-west4-a"})
    with pytest.raises(errs.GkeError) as err:
        run(api, params(initial_node_count=1))
    assert err.value.kind == "stockout" and "europe-west4-a" in err.value.message


def test_a_consumed_reservation_gets_capacity_in_a_stocked_out_zone(api):
    fleet = FakeFleet(api.sim)
    api.sim.fleet = fleet
    call(api, "POST", "/_sim/stockouts", {"zone": "europe-west4-a"})
    reservation = {"name": "cpu-res", "zone": "europe-west4-a", "machine_type": "e2-standard-4", "count": 2}
    assert call(api, "POST", "/_sim/reservations", reservation)[0] == 200
    affinity = {"consume_reservation_type": "SPECIFIC_RESERVATION", "key": None, "values": ["cpu-res"]}
    result, _transport = run(api, params(initial_node_count=2, reservation_affinity=affinity))
    assert result["changed"] and len(fleet.nodes) == 2
    pool = call(api, "GET", f"{BASE}/nodePools/cpu")[1]
    assert pool["config"]["reservationAffinity"]["values"] == ["cpu-res"]
    again, _transport = run(api, params(initial_node_count=2, reservation_affinity=affinity))
    assert not again["changed"]


def test_specific_reservation_that_does_not_exist_is_refused_by_the_simulator(api):
    affinity = {"consume_reservation_type": "SPECIFIC_RESERVATION", "key": None, "values": ["nope"]}
    with pytest.raises(errs.GkeError) as err:
        run(api, params(reservation_affinity=affinity))
    assert err.value.status == 400 and "nope" in err.value.message
