"""Unit tests of node pool reconciliation: create, converge, recreate, delete, check mode."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_spec as spec

from tests.unit.plugins.module_utils.fake_gke import FakeGke
from tests.unit.plugins.module_utils.gke_test_params import params, reconcile, t4_params, tpu_params


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
