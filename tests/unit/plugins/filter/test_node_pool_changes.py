"""node_pool_changes: what gke_node_pool would change, decided from a cluster read (None when only it can tell)."""
import pytest
from ansible._internal._templating._utils import Omit
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.node_pool_changes import node_pool_changes
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_spec as spec

from tests.unit.plugins.module_utils.gke_test_params import t4_params


def role_options(**overrides):
    """The options as the nodepool role's task hands them over: strings from templates, omitted ones as Omit."""
    options = {"project": "p1", "location": "europe-west4-a", "cluster": "c1", "name": "gpu-t4-pool",
               "machine_type": "n1-standard-4",
               "accelerator": {"type": "nvidia-tesla-t4", "count": "1", "gpu_driver_version": "DEFAULT"},
               "tpu_topology": Omit, "spot": "False",
               "autoscaling": {"enabled": True, "min_node_count": "0", "max_node_count": "5", "location_policy": Omit},
               "initial_node_count": "0", "node_locations": Omit, "labels": {}, "taints": [],
               "reservation_affinity": Omit, "fallback_locations": Omit, "recreate": "False", "wait": "True",
               "timeout": "2700", "api_endpoint": "http://127.0.0.1:18080", "compute_endpoint": "http://127.0.0.1:18080"}
    options.update(overrides)
    return options


def cluster_with(**pool_fields):
    """A cluster as clusters.get returns it, its pool built as the module would create it from t4_params."""
    pool = dict(spec.build_node_pool(t4_params(labels={}, taints=[], spot=False)), status="RUNNING",
                locations=["europe-west4-a"])
    pool.update(pool_fields)
    pools = [{"name": "default-pool", "status": "RUNNING"}, pool]
    return {"name": "c1", "location": "europe-west4-a", "nodePools": pools}


def test_a_pool_that_matches_needs_no_change():
    assert node_pool_changes(cluster_with(), role_options()) == []


def test_a_different_max_node_count_is_a_set_autoscaling_change():
    changes = node_pool_changes(cluster_with(), role_options(
        autoscaling={"enabled": True, "min_node_count": "0", "max_node_count": "7"}))
    assert [(c["field"], c["verb"]) for c in changes] == [("autoscaling", "setAutoscaling")]
    assert changes[0]["after"]["max_node_count"] == 7


def test_a_different_machine_type_is_reported_as_the_module_would():
    changes = node_pool_changes(cluster_with(), role_options(machine_type="n1-standard-8"))
    assert [(c["field"], c["verb"], c.get("replaces_nodes")) for c in changes] == [("machine_type", "update", True)]


@pytest.mark.parametrize("cluster, options", [
    ({"name": "c1", "nodePools": [{"name": "other", "status": "RUNNING"}]}, role_options()),  # pool missing
    (cluster_with(status="RECONCILING"), role_options()),  # the module waits for it first
    (cluster_with(status="RUNNING_WITH_ERROR"), role_options()),  # the module recreates or refuses
    (cluster_with(), role_options(node_count="2")),  # the current size needs the instance groups
    (cluster_with(), role_options(recreate="true")),
    (cluster_with(), role_options(state="absent")),
    (cluster_with(), role_options(spot="maybe")),  # the module refuses the option with its message
    (cluster_with(), role_options(autoscaling={"min_node_count": "3", "max_node_count": "1"})),
    (None, role_options()),
])
def test_only_the_module_can_decide(cluster, options):
    assert node_pool_changes(cluster, options) is None


def test_options_without_a_name_are_refused():
    with pytest.raises(AnsibleFilterError, match="the gke_node_pool options, with name"):
        node_pool_changes(cluster_with(), {"machine_type": "n1-standard-4"})
