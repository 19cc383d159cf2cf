"""Capacity arithmetic (plugins/module_utils/capacity.py) and its filters."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.capacity import FilterModule, nodes_needed, pool_capacity
from ansible_collections.llm_serving.gke.plugins.filter.capacity import replicas_per_node as rpn_filter
from ansible_collections.llm_serving.gke.plugins.module_utils import capacity

T4 = {"replicas": 3, "accelerator_count": 1, "nodepool": {"max_node_count": 3},
      "accelerator": {"per_node_count": 1, "resource_name": "nvidia.com/gpu"}}
V6E = {"replicas": 3, "accelerator_count": 4, "nodepool": {"max_node_count": 3},
       "accelerator": {"per_node_count": 4, "resource_name": "google.com/tpu"}}
L4X4 = {"replicas": 5, "accelerator_count": 2, "nodepool": {"max_node_count": 2},
        "accelerator": {"per_node_count": 4, "resource_name": "nvidia.com/gpu"}}


def node(units, resource="nvidia.com/gpu"):
    return {"metadata": {"name": "n"}, "status": {"allocatable": {resource: str(units), "cpu": "4"}}}


def test_registered_under_their_names():
    assert FilterModule().filters() == {"replicas_per_node": rpn_filter, "nodes_needed": nodes_needed,
                                        "pool_capacity": pool_capacity}


@pytest.mark.parametrize(("per_node", "count", "expected"), [(1, 1, 1), (4, 4, 1), (4, 2, 2), (8, 3, 2), (1, 2, 1),
                                                             (4, 0, 4)])
def test_replicas_per_node_is_at_least_one(per_node, count, expected):
    assert capacity.replicas_per_node(per_node, count) == expected


def test_replicas_per_node_without_floor_is_zero_for_a_replica_larger_than_a_node():
    assert capacity.replicas_per_node(1, 2, floor_one=False) == 0


@pytest.mark.parametrize(("replicas", "per_node", "count", "expected"),
                         [(0, 1, 1, 0), (3, 1, 1, 3), (3, 4, 4, 3), (5, 4, 2, 3), (4, 4, 2, 2), (1, 8, 1, 1),
                          ("3", "4", "2", 2), (-1, 1, 1, 0)])
def test_nodes_needed_rounds_up(replicas, per_node, count, expected):
    assert capacity.nodes_needed(replicas, per_node, count) == expected


@pytest.mark.parametrize("bad", [None, "x", True, [1]])
def test_non_integer_input_names_the_input(bad):
    with pytest.raises(capacity.CapacityError, match="replicas must be an integer"):
        capacity.nodes_needed(bad, 1, 1)


def test_nodes_needed_filter_reads_the_pattern_and_takes_a_replicas_override():
    assert nodes_needed(T4) == 3
    assert nodes_needed(L4X4) == 3
    assert nodes_needed(L4X4, replicas=8) == 4
    assert rpn_filter(L4X4) == 2
    assert capacity.pattern_nodes_needed(V6E, replicas=1) == 1


def test_filters_refuse_a_pattern_without_accelerator():
    with pytest.raises(AnsibleFilterError, match="nodes_needed: the pattern has no accelerator.per_node_count"):
        nodes_needed({"replicas": 1})
    with pytest.raises(AnsibleFilterError, match="must be a pattern"):
        rpn_filter("p3-gpu")
    with pytest.raises(AnsibleFilterError, match="nodes_needed: replicas must be an integer"):
        nodes_needed(T4, replicas="many")


def test_pool_capacity_counts_allocatable_now_plus_nodes_autoscaling_may_add():
    result = pool_capacity([node(4), node(3)], L4X4, max_nodes=4)
    # 4//2 + 3//2 = 3 now; 2 more nodes x 2 per node
    assert result == {"capacity": 7, "fit_now": 3, "nodes_now": 2, "max_nodes": 4, "per_node": 2}


def test_pool_capacity_defaults_to_the_pattern_max_and_ignores_nodes_without_the_resource():
    result = pool_capacity([node(1), node(0), {"status": {"allocatable": {"cpu": "4"}}}, {}], T4)
    assert result["capacity"] == 1
    assert result["nodes_now"] == 4


def test_pool_capacity_of_an_empty_pool_is_max_nodes_times_per_node():
    assert pool_capacity([], V6E)["capacity"] == 3
    assert pool_capacity(None, T4, max_nodes=0)["capacity"] == 0


def test_pool_capacity_of_a_replica_larger_than_a_node_is_what_fits_now():
    big = dict(T4, accelerator_count=2)
    assert pool_capacity([node(2)], big, max_nodes=5) == {"capacity": 1, "fit_now": 1, "nodes_now": 1,
                                                          "max_nodes": 5, "per_node": 0}


def test_pool_capacity_needs_a_resource_name():
    with pytest.raises(AnsibleFilterError, match="accelerator.resource_name"):
        pool_capacity([], {"accelerator": {"per_node_count": 1}})
    with pytest.raises(AnsibleFilterError, match="max_nodes must be an integer"):
        pool_capacity([], T4, max_nodes="lots")
