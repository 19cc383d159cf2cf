"""Unit tests of request building, per-field diff, error classification, retries and reconciliation."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_reconciler as rec
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_spec as spec
from ansible_collections.llm_serving.gke.plugins.module_utils import tpu_topology as topo

from tests.unit.plugins.module_utils.fake_gke import FakeGke, api_error

POOLS = "nodePools$"


def params(**overrides):
    base = {
        "project": "p1", "location": "europe-west4-a", "cluster": "c1", "name": "gpu-t4-pool", "state": "present",
        "machine_type": "n1-standard-4", "accelerator": None, "tpu_topology": None, "spot": None,
        "autoscaling": None, "initial_node_count": None, "node_count": None, "node_locations": None,
        "labels": None, "taints": None, "disk_size_gb": None, "disk_type": None, "image_type": None,
        "service_account": None, "oauth_scopes": None, "recreate": False, "wait": True, "timeout": 600,
    }
    base.update(overrides)
    return base


def t4_params(**overrides):
    values = {"accelerator": {"type": "nvidia-tesla-t4", "count": 1, "gpu_driver_version": "DEFAULT"},
              "autoscaling": {"enabled": True, "min_node_count": 0, "max_node_count": 5, "location_policy": None}}
    values.update(overrides)
    return params(**values)


def tpu_params(**overrides):
    values = {"name": "tpu-v6e-pool", "machine_type": "ct6e-standard-4t", "initial_node_count": 1,
              "taints": ["google.com/tpu=present:NoSchedule"],
              "labels": {"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice"},
              "autoscaling": {"enabled": True, "min_node_count": 0, "max_node_count": 3, "location_policy": None}}
    values.update(overrides)
    return params(**values)


class Clock:
    """Fake monotonic clock; sleep advances it and records the delays."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(fake, timeout=600, clock=None):
    clock = clock or Clock()
    return gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", compute_endpoint="http://gce",
                              timeout=timeout, clock=clock, sleep=clock.sleep), clock


def reconcile(fake, p, check_mode=False, timeout=600):
    client, clock = client_for(fake, timeout)
    return rec.NodePoolReconciler(client, p, check_mode=check_mode).run(), clock


# Request building --------------------------------------------------------------------------------------------------

def test_tpu_pool_request_has_no_topology_no_accelerator_and_api_taints():
    body = spec.build_node_pool(tpu_params())
    assert body["config"]["machineType"] == "ct6e-standard-4t"
    assert "placementPolicy" not in body and "accelerators" not in body["config"]
    assert body["config"]["taints"] == [{"key": "google.com/tpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert body["autoscaling"] == {"enabled": True, "minNodeCount": 0, "maxNodeCount": 3}
    assert body["initialNodeCount"] == 1


def test_gpu_pool_request_carries_count_as_int64_string_and_driver_version():
    body = spec.build_node_pool(t4_params(spot=True))
    assert body["config"]["accelerators"] == [{
        "acceleratorType": "nvidia-tesla-t4", "acceleratorCount": "1",
        "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}]
    assert body["config"]["spot"] is True


def test_multi_host_topology_goes_into_placement_policy():
    body = spec.build_node_pool(tpu_params(tpu_topology="4x4", autoscaling={"enabled": True, "min_node_count": 0,
                                                                          "max_node_count": 4}))
    assert body["placementPolicy"] == {"tpuTopology": "4x4"}


def test_initial_node_count_defaults_to_min_then_one():
    assert spec.build_node_pool(t4_params())["initialNodeCount"] == 1
    p = t4_params(autoscaling={"enabled": True, "min_node_count": 2, "max_node_count": 5})
    assert spec.build_node_pool(p)["initialNodeCount"] == 2


# Validation -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("topology", ["2x2x1", "1x1", "3x3"])
def test_topology_ct6e_does_not_have_is_refused_naming_the_option(topology):
    with pytest.raises(errs.GkeError) as err:
        spec.validate_params(tpu_params(tpu_topology=topology))
    assert err.value.kind == "invalid"
    assert "tpu_topology" in err.value.message and "single-host topology is 2x2" in err.value.message


def test_multi_host_pool_is_exactly_one_slice():
    with pytest.raises(errs.GkeError, match="max_node_count must be 4"):
        spec.validate_params(tpu_params(tpu_topology="4x4"))  # max_node_count 3
    spec.validate_params(tpu_params(tpu_topology="4x4", autoscaling={"enabled": True, "min_node_count": 0,
                                                                   "max_node_count": 4}))


def test_topology_option_name_is_the_callers():
    with pytest.raises(errs.GkeError, match="nodepool_profile.tpu_topology"):
        topo.validate_tpu("ct6e-standard-4t", "2x2x1", option="nodepool_profile.tpu_topology")


def test_tpu_accelerator_and_bad_autoscaling_are_refused():
    with pytest.raises(errs.GkeError, match="TPU chips come with the machine type"):
        spec.validate_params(params(accelerator={"type": "tpu-v6e-slice", "count": 4}))
    with pytest.raises(errs.GkeError, match="min_node_count .3. is greater"):
        spec.validate_params(params(autoscaling={"enabled": True, "min_node_count": 3, "max_node_count": 1}))


@pytest.mark.parametrize("taint, expected", [
    ("google.com/tpu=present:NoSchedule", {"key": "google.com/tpu", "value": "present", "effect": "NO_SCHEDULE"}),
    ("dedicated:NoExecute", {"key": "dedicated", "value": "", "effect": "NO_EXECUTE"}),
    ({"key": "a", "value": "b", "effect": "PREFER_NO_SCHEDULE"}, {"key": "a", "value": "b",
                                                                  "effect": "PREFER_NO_SCHEDULE"}),
])
def test_parse_taint_accepts_kubectl_and_api_forms(taint, expected):
    assert spec.parse_taint(taint) == expected


def test_parse_taint_rejects_unknown_effect():
    with pytest.raises(errs.GkeError, match="effect 'Sometimes'"):
        spec.parse_taint("a=b:Sometimes")


# Diff ---------------------------------------------------------------------------------------------------------------

def stored(p):
    fake = FakeGke()
    return fake.add_pool(spec.build_node_pool(p))


def test_same_pool_with_server_defaults_has_no_difference():
    for p in (t4_params(), tpu_params()):
        assert spec.compute_diff(spec.desired_view(p), spec.current_view(stored(p))) == []


def test_max_nodes_change_goes_through_set_autoscaling():
    pool = stored(t4_params(autoscaling={"enabled": True, "min_node_count": 0, "max_node_count": 1}))
    changes = spec.compute_diff(spec.desired_view(t4_params()), spec.current_view(pool))
    assert [(c["field"], c["verb"]) for c in changes] == [("autoscaling", "setAutoscaling")]
    assert changes[0]["before"]["max_node_count"] == 1 and changes[0]["after"]["max_node_count"] == 5


def test_immutable_fields_are_marked_recreate():
    pool = stored(t4_params())
    p = t4_params(machine_type="n1-standard-8", spot=True, accelerator={"type": "nvidia-l4", "count": 1,
                                                                        "gpu_driver_version": None})
    fields = {c["field"]: c["verb"] for c in spec.compute_diff(spec.desired_view(p), spec.current_view(pool))}
    assert fields == {"machine_type": "update", "spot": "recreate", "accelerator": "update"}  # issue 12 item 4


def test_unset_driver_version_is_not_compared():
    pool = stored(t4_params())
    p = t4_params(accelerator={"type": "nvidia-tesla-t4", "count": 1, "gpu_driver_version": None})
    assert spec.compute_diff(spec.desired_view(p), spec.current_view(pool)) == []


def test_gke_managed_labels_and_taints_are_kept_and_ignored():
    pool = stored(t4_params(labels={"team": "a"}))
    pool["config"]["labels"]["cloud.google.com/gke-accelerator"] = "nvidia-tesla-t4"
    pool["config"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    p = t4_params(labels={"team": "a"}, taints=[])
    assert spec.compute_diff(spec.desired_view(p), spec.current_view(pool)) == []
    p = t4_params(labels={"team": "b"}, taints=["x=y:NoSchedule"])
    desired, current = spec.desired_view(p), spec.current_view(pool)
    assert {c["field"] for c in spec.compute_diff(desired, current)} == {"labels", "taints"}
    assert spec.update_body("labels", desired, current) == {
        "labels": {"labels": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4", "team": "b"}}}
    assert spec.update_body("taints", desired, current)["taints"]["taints"] == [
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"},
        {"key": "x", "value": "y", "effect": "NO_SCHEDULE"}]


def test_disabling_autoscaling_only_compares_enabled():
    pool = stored(t4_params())
    p = t4_params(autoscaling={"enabled": False, "min_node_count": None, "max_node_count": None})
    changes = spec.compute_diff(spec.desired_view(p), spec.current_view(pool))
    assert [c["field"] for c in changes] == ["autoscaling"]
    assert spec.autoscaling_body(p["autoscaling"]) == {"enabled": False}


# Errors ---------------------------------------------------------------------------------------------------------------

STOCKOUT = ("Google Compute Engine: Not all instances running in IGM after 35m. Expected 1, running 0, "
            "transitioning 1. Current errors: [GCE_STOCKOUT]: Instance 'gke-x' creation failed: The zone "
            "'projects/p1/zones/europe-west4-a' does not have enough resources available to fulfill the request.")
QUOTA = ('Insufficient regional quota to satisfy request: resource "TPU_V6E": request requires \'12.0\' and is short '
         "'8.0'. project has a quota of '4.0' with '4.0' available.")


@pytest.mark.parametrize("status, api_status, message, kind", [
    (None, "", STOCKOUT, "stockout"),
    (403, "PERMISSION_DENIED", QUOTA, "quota"),
    (400, "FAILED_PRECONDITION", "Cluster is running incompatible operation operation-17", "in_progress"),
    (429, "RESOURCE_EXHAUSTED", "hits the concurrent operations quota 5", "in_progress"),
    (429, "RESOURCE_EXHAUSTED", "Too many requests", "retry"),
    (503, "UNAVAILABLE", "backend unavailable", "retry"),
    (400, "INVALID_ARGUMENT", "Could not find TPU topology 2x2x1", "fatal"),
])
def test_classify(status, api_status, message, kind):
    assert errs.classify(status, api_status, message) == kind


def test_stockout_and_quota_messages_name_zone_resource_and_what_to_try():
    ctx = {"name": "tpu-v6e-pool", "machine_type": "ct6e-standard-4t", "location": "europe-west4", "project": "p1"}
    message = errs.stockout_message(STOCKOUT, ctx)
    assert "europe-west4-a" in message and "ct6e-standard-4t" in message
    assert "spot: true" in message and "another zone" in message and "smaller pool" in message
    message = errs.quota_message(QUOTA, ctx)
    assert "TPU_V6E" in message and "p1" in message and "smaller pool" in message


# Client: retries and operations -------------------------------------------------------------------------------------

def test_429_and_503_are_retried_with_growing_jittered_delays():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(429, "RESOURCE_EXHAUSTED", "Too many requests"))
    fake.script("POST", POOLS, *api_error(503, "UNAVAILABLE", "try again"))
    result, clock = reconcile(fake, t4_params())
    assert result["changed"] and "gpu-t4-pool" in fake.pools
    assert [r["status"] for r in result["retries"]] == [429, 503]
    assert len([s for s in clock.sleeps if s <= 1.0]) >= 1


def test_network_errors_are_retried():
    fake = FakeGke()
    fake.script("GET", "nodePools/gpu-t4-pool$", 0, ConnectionError("connection reset"))
    result, _unused = reconcile(fake, t4_params())
    assert result["retries"][0]["reason"] == "retry" and result["changed"]


def test_quota_fails_fast_without_retry():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(403, "PERMISSION_DENIED", QUOTA))
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params())
    assert err.value.kind == "quota" and "TPU_V6E" in err.value.message
    assert len([c for c in fake.calls if c[0] == "POST"]) == 1


def test_synchronous_stockout_fails_fast():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(503, "UNAVAILABLE", STOCKOUT))
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params())
    assert err.value.kind == "stockout" and "europe-west4-a" in err.value.message


def test_operation_error_stockout_is_reported():
    fake = FakeGke()
    fake.op_error = {"code": 9, "message": STOCKOUT}
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, tpu_params())
    assert err.value.kind == "stockout" and "ct6e-standard-4t" in err.value.message


def test_deprecated_conditions_alone_are_not_read_the_operation_error_is():
    """Operation.nodepoolConditions is deprecated ("Use field error instead"): only operation.error fails a task."""
    fake = FakeGke()
    fake.op_conditions = [{"code": "GCE_STOCKOUT", "message": STOCKOUT}]
    result, _unused = reconcile(fake, tpu_params())
    assert result["changed"] and "tpu-v6e-pool" in fake.pools


def test_operation_in_progress_is_retried_then_reported_at_timeout():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(400, "FAILED_PRECONDITION", "Cluster is running incompatible operation"),
                times=1000)
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params(), timeout=120)
    assert err.value.kind == "in_progress" and "c1" in err.value.message
    assert len([c for c in fake.calls if c[0] == "POST"]) > 2


def test_operation_wait_times_out_with_operation_name():
    fake = FakeGke()
    running = {"name": "operation-9", "status": "RUNNING", "operationType": "CREATE_NODE_POOL"}
    fake.operations["operation-9"] = running
    fake.read_operation = lambda name: (200, dict(running))  # never finishes
    client, clock = client_for(fake, timeout=30)
    with pytest.raises(errs.GkeError) as err:
        client.wait(dict(running), {"name": "p"})
    assert err.value.kind == "timeout" and "operation-9" in err.value.message
    assert clock.now >= 30


# Reconciliation ----------------------------------------------------------------------------------------------------

def test_create_then_second_run_is_a_no_op():
    fake = FakeGke()
    first, _unused = reconcile(fake, tpu_params())
    assert first["changed"] and [o["verb"] for o in first["operations"]] == ["create"]
    assert first["operations"][0]["status"] == "DONE"
    assert first["node_pool"]["config"]["machineType"] == "ct6e-standard-4t"
    fake.calls.clear()
    second, _unused = reconcile(fake, tpu_params())
    assert not second["changed"] and second["operations"] == [] and fake.writes() == []


def test_check_mode_sends_no_write_and_predicts_the_change():
    fake = FakeGke()
    result, _unused = reconcile(fake, t4_params(), check_mode=True)
    assert result["changed"] and fake.writes() == []
    assert result["diff"]["before"] == {} and result["diff"]["after"]["machine_type"] == "n1-standard-4"
    fake.add_pool(spec.build_node_pool(t4_params(autoscaling={"enabled": True, "min_node_count": 0,
                                                            "max_node_count": 1})))
    result, _unused = reconcile(fake, t4_params(), check_mode=True)
    assert result["changed"] and fake.writes() == []
    assert result["diff"]["before"]["autoscaling"]["max_node_count"] == 1
    assert result["diff"]["after"]["autoscaling"]["max_node_count"] == 5


def test_existing_pool_max_nodes_uses_set_autoscaling_only():
    fake = FakeGke()
    fake.add_pool(spec.build_node_pool(t4_params(autoscaling={"enabled": True, "min_node_count": 0,
                                                            "max_node_count": 1})))
    result = reconcile(fake, t4_params(autoscaling={"enabled": True, "min_node_count": 0, "max_node_count": 3}))[0]
    assert fake.writes() == [("POST", "/v1/projects/p1/locations/europe-west4-a/clusters/c1/nodePools/"
                                      "gpu-t4-pool:setAutoscaling")]
    body = [b for m, p, b in fake.calls if p.endswith(":setAutoscaling")][0]
    assert body == {"autoscaling": {"enabled": True, "minNodeCount": 0, "maxNodeCount": 3}}
    assert result["node_pool"]["autoscaling"]["maxNodeCount"] == 3


def test_labels_and_size_use_update_and_set_size_in_order():
    fake = FakeGke()
    fake.add_pool(spec.build_node_pool(t4_params()), size=2)
    result, _unused = reconcile(fake, t4_params(labels={"team": "ml"}, node_count=0,
                                                autoscaling={"enabled": False}))
    assert [o["verb"] for o in result["operations"]] == ["update", "setAutoscaling", "setSize"]
    assert fake.sizes["gpu-t4-pool"] == 0
    fake.calls.clear()
    again, _unused = reconcile(fake, t4_params(labels={"team": "ml"}, node_count=0, autoscaling={"enabled": False}))
    assert not again["changed"] and fake.writes() == []


def test_immutable_change_is_refused_before_any_write():
    fake = FakeGke()
    fake.add_pool(spec.build_node_pool(t4_params()))
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params(spot=True))
    assert err.value.kind == "immutable" and "spot" in err.value.message
    assert "recreate: true" in err.value.message and fake.writes() == []


def test_recreate_deletes_then_creates():
    fake = FakeGke()
    fake.add_pool(spec.build_node_pool(t4_params()))
    result, _unused = reconcile(fake, t4_params(spot=True, recreate=True))
    assert [o["verb"] for o in result["operations"]] == ["delete", "create"]
    assert fake.pools["gpu-t4-pool"]["config"]["spot"] is True and result["recreated"]


def test_pool_in_error_state_needs_recreate():
    fake = FakeGke()
    fake.add_pool(spec.build_node_pool(t4_params()))["status"] = "ERROR"
    with pytest.raises(errs.GkeError, match="status ERROR"):
        reconcile(fake, t4_params())


def test_absent_deletes_and_is_idempotent():
    fake = FakeGke()
    fake.add_pool(spec.build_node_pool(t4_params()))
    result, _unused = reconcile(fake, params(state="absent", machine_type=None))
    assert result["changed"] and [o["verb"] for o in result["operations"]] == ["delete"]
    again, _unused = reconcile(fake, params(state="absent", machine_type=None))
    assert not again["changed"]


def test_wait_false_leaves_the_operation_running():
    fake = FakeGke()
    result, _unused = reconcile(fake, t4_params(wait=False))
    assert result["operations"][0]["status"] == "RUNNING"
    assert not [c for c in fake.calls if "operations" in c[1]]


def test_cluster_facts_reads_gateway_channel_from_either_place():
    assert gkc.cluster_facts({"networkConfig": {"gatewayApiConfig": {"channel": "CHANNEL_STANDARD"}}})[
        "gateway_api_enabled"]
    assert gkc.cluster_facts({"addonsConfig": {"gatewayApiConfig": {"channel": "CHANNEL_STANDARD"}}})[
        "gateway_api_enabled"]
    assert not gkc.cluster_facts({})["gateway_api_enabled"]
