"""Unit tests of node pool request building, validation and per-field diff (gke_node_pool_spec)."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_spec as spec

from tests.unit.plugins.module_utils.gke_test_params import params, stored, t4_params, tpu_params


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
