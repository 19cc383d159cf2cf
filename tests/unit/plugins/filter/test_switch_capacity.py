"""switch_capacity filter (plugins/module_utils/switch_plan.py): nodes and quota of a pattern switch, on the
catalog's own patterns (p1-tpu 1 node, p3-tpu 3 nodes in the same TPU pool, p3-gpu 3 T4 nodes)."""
import copy
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.llm_serving.gke.plugins.filter.switch_capacity import switch_capacity

ROOT = Path(__file__).resolve().parents[4]
CATALOG = yaml.safe_load((ROOT / "roles" / "pattern" / "defaults" / "main.yml").read_text())["pattern_catalog"]


def pattern(name, **changes):
    resolved = copy.deepcopy(CATALOG[name])
    resolved["name"] = name
    for key, value in changes.items():
        if isinstance(value, dict):
            resolved[key] = {**resolved[key], **value}
        else:
            resolved[key] = value
    return resolved


def quota(available, limit=32.0, metric="TPU_V6E_SLICE", per_node=4.0):
    """The accelerator entry of a gce_region_quota result (nodes=0: needed 0)."""
    return {"changed": False, "fits": True, "unchecked": [], "required": [
        {"kind": "accelerator", "metric": metric, "resource": "tpu-v6e-slice", "per_node": per_node, "needed": 0.0,
         "limit": limit, "usage": limit - available, "available": available},
        {"kind": "cpu", "metric": "CPUS", "resource": "ct6e-standard-4t", "per_node": 180.0, "needed": 0.0,
         "limit": 1000.0, "usage": 0.0, "available": 1000.0}]}


def test_p1_to_p3_tpu_same_pool_needs_four_nodes_and_raises_the_max():
    plan = switch_capacity(pattern("p3-tpu"), pattern("p1-tpu"), False, 1, 1, quota(28.0), None)
    assert plan["same_pool"] and plan["pool"] == "tpu-v6e-pool"
    assert (plan["new_nodes"], plan["old_nodes_in_pool"], plan["needed_nodes"]) == (3, 1, 4)
    assert (plan["normal_max"], plan["raised_max"]) == (3, 4)
    assert plan["quota_checked"] and plan["quota_metric"] == "TPU_V6E_SLICE"
    assert plan["quota_needed"] == 12 and plan["quota_available"] == 28
    assert plan["both_fit"] and plan["new_alone_fits"] and plan["problems"] == []


def test_quota_too_small_for_the_overlap_but_enough_alone():
    plan = switch_capacity(pattern("p3-tpu"), pattern("p1-tpu"), False, 1, 1, quota(8.0), None,
                           to_name="p3-tpu", from_name="p1-tpu")
    assert not plan["both_fit"] and plan["new_alone_fits"]
    assert plan["problems"] == ["running both needs 12 more TPU_V6E_SLICE (3 new node(s) x 4) but the region has 8 "
                                "available (limit 32, usage 24)"]


def test_switch_max_nodes_limits_the_overlap_and_names_both_patterns():
    plan = switch_capacity(pattern("p3-tpu"), pattern("p1-tpu"), False, 1, 1, quota(28.0), 3,
                           to_name="p3-tpu", from_name="p1-tpu")
    assert not plan["both_fit"] and plan["new_alone_fits"]
    assert plan["problems"] == ["running both needs 4 node(s) in pool tpu-v6e-pool (3 for p3-tpu + 1 still used by "
                                "p1-tpu) but switch_max_nodes is 3"]
    assert not switch_capacity(pattern("p3-tpu"), pattern("p1-tpu"), False, 1, 1, None, 2)["new_alone_fits"]


def test_same_llmisvc_keeps_no_old_nodes():
    plan = switch_capacity(pattern("p1-tpu"), pattern("p1-tpu"), True, 1, 1, quota(0.0), None)
    assert (plan["old_nodes_in_pool"], plan["needed_nodes"], plan["quota_needed"]) == (0, 1, 0)
    assert plan["both_fit"]


def test_other_pool_with_the_same_accelerator_frees_its_quota_with_downtime():
    other = pattern("p1-tpu", nodepool={"name": "tpu-old-pool"})
    plan = switch_capacity(pattern("p3-tpu"), other, False, 0, 2, quota(4.0), None)
    assert not plan["same_pool"] and plan["old_nodes_in_pool"] == 0
    assert plan["quota_freed_by_old"] == 8 and plan["quota_needed"] == 12
    assert not plan["both_fit"] and plan["new_alone_fits"]  # 12 <= 4 available + 8 freed


def test_gpu_switch_counts_one_t4_per_node():
    plan = switch_capacity(pattern("p3-gpu"), pattern("p3-gpu", llmisvc_name="old-gpu"), False, 3, 3,
                           quota(2.0, limit=16.0, metric="NVIDIA_T4_GPUS", per_node=1.0), None)
    assert (plan["needed_nodes"], plan["quota_needed"]) == (6, 3)
    assert not plan["both_fit"] and "3 more NVIDIA_T4_GPUS (3 new node(s) x 1)" in plan["problems"][0]


@pytest.mark.parametrize(("quota_result", "check", "note"), [
    (None, False, "quota not checked: switch_check_quota=false"),
    ({"skipped": True}, True, "quota not checked: the region was not read"),
    ({"failed": True, "msg": "Region 'x' does not exist"}, True,
     "quota not checked: the region read failed (Region 'x' does not exist)"),
    ({"required": [], "unchecked": [{"kind": "accelerator", "metric": "TPU_V6E_SLICE",
                                     "reason": "the region lists no quota metric TPU_V6E_SLICE"}]}, True,
     "quota not checked: the region lists no quota metric TPU_V6E_SLICE (set switch_quota_metric)"),
])
def test_unchecked_quota_says_why_and_does_not_block(quota_result, check, note):
    plan = switch_capacity(pattern("p3-tpu"), pattern("p1-tpu"), False, 1, 1, quota_result, None, check_quota=check)
    assert not plan["quota_checked"] and plan["quota_note"] == note
    assert plan["quota_metric"] == "TPU_V6E_SLICE" and plan["both_fit"]


def test_spot_pool_names_the_preemptible_metric_when_unchecked():
    plan = switch_capacity(pattern("p3-gpu", nodepool={"spot": True}), pattern("p3-gpu"), True, 0, 0, None, None,
                           check_quota=False)
    assert plan["quota_metric"] == "PREEMPTIBLE_NVIDIA_T4_GPUS"


def test_input_that_is_not_a_pattern_is_refused_naming_it():
    with pytest.raises(AnsibleFilterError, match="from_pattern must be a resolved pattern"):
        switch_capacity(pattern("p3-tpu"), "p1-tpu")
    with pytest.raises(AnsibleFilterError, match="switch_capacity: replicas must be an integer"):
        switch_capacity(pattern("p3-tpu", replicas="three"), pattern("p1-tpu"))
