"""The nodepool role against the local cluster: simulated GKE API for the pool, real kube-apiserver for its Nodes."""
import uuid

import pytest
import yaml

from cluster_state import accepted_writes, writes

pytestmark = pytest.mark.cluster

TPU_V6E_4 = {
    "machine_type": "ct6e-standard-4t", "accelerator_type": "tpu-v6e-slice", "accelerator_count": 4,
    "taints": [{"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}],
    "labels": {"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice", "cloud.google.com/gke-tpu-topology": "2x2"},
}
T4 = {"machine_type": "n1-standard-4", "accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1,
      "gpu_driver_version": "default", "taints": [], "labels": {}}


@pytest.fixture
def role_play(tmp_path, run_playbook, local_cluster):
    """Apply the role (tasks_from main, or start + a task + finish) with the given nodepool_* variables."""
    base = {
        "nodepool_project": local_cluster["GCP_PROJECT"], "nodepool_location": local_cluster["GKE_LOCATION"],
        "nodepool_cluster": local_cluster["GKE_CLUSTER"], "nodepool_api_endpoint": local_cluster["GKE_API_ENDPOINT"],
        "nodepool_timeout": 300, "nodepool_nodes_timeout": 300, "nodepool_nodes_poll": 1,
    }

    def play(variables, check=False, background=False):
        if background:
            tasks = [
                {"name": "Start the node pool", "ansible.builtin.include_role": {
                    "name": "llm_serving.gke.nodepool", "tasks_from": "start"}},
                {"name": "Do other work meanwhile", "ansible.builtin.debug": {"msg": "other roles run here"}},
                {"name": "Finish the node pool", "ansible.builtin.include_role": {
                    "name": "llm_serving.gke.nodepool", "tasks_from": "finish"}},
            ]
        else:
            tasks = [{"name": "Apply the nodepool role", "ansible.builtin.include_role": {
                "name": "llm_serving.gke.nodepool"}}]
        playbook = [{"name": "nodepool role integration", "hosts": "localhost", "gather_facts": False,
                     "tasks": tasks}]
        path = tmp_path / f"role-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        return run_playbook(path, {**base, **variables}, check=check,
                            env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})

    return play


def pool_nodes(k8s, name):
    nodes = k8s.resources.get(api_version="v1", kind="Node")
    return nodes.get(label_selector=f"cloud.google.com/gke-nodepool={name}").items


def is_ready(node):
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def test_tpu_pool_lifecycle_present_scale_up_scaled_to_zero_absent(gke_sim, pool_name, role_play, k8s):
    # min 1: the simulated autoscaler removes empty nodes above the minimum after 12 s (10 min x time scale)
    variables = {"nodepool_name": pool_name, "nodepool_profile": TPU_V6E_4, "nodepool_replicas": 1,
                 "nodepool_min_node_count": 1}
    created = role_play(variables)
    assert created.rc == 0 and created.changed >= 1, created.stdout
    nodes = pool_nodes(k8s, pool_name)
    assert len(nodes) == 1 and is_ready(nodes[0])
    assert nodes[0].metadata.labels["cloud.google.com/gke-tpu-accelerator"] == "tpu-v6e-slice"
    assert nodes[0].status.allocatable["google.com/tpu"] == "4"
    assert {"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"} in [
        {"key": t.key, "value": t.value, "effect": t.effect} for t in nodes[0].spec.taints]
    assert "placementPolicy" not in gke_sim.pool(pool_name)  # single-host slice: no topology sent

    again = role_play(variables)
    assert again.rc == 0 and again.changed == 0, again.stdout

    mark = gke_sim.requests_for(pool_name)
    scaled = role_play({**variables, "nodepool_replicas": 3})
    assert scaled.rc == 0 and scaled.changed == 1, scaled.stdout
    assert accepted_writes(gke_sim.requests_for(pool_name, mark)) == [("POST", f"{pool_name}:setAutoscaling", 200)]
    assert gke_sim.pool(pool_name)["autoscaling"]["maxNodeCount"] == 3

    to_zero = {"nodepool_name": pool_name, "nodepool_state": "scaled_to_zero"}
    zero = role_play(to_zero)
    assert zero.rc == 0 and zero.changed >= 1, zero.stdout
    assert pool_nodes(k8s, pool_name) == []
    assert not gke_sim.pool(pool_name)["autoscaling"].get("enabled")
    zero_again = role_play(to_zero)
    assert zero_again.rc == 0 and zero_again.changed == 0, zero_again.stdout

    gone = role_play({"nodepool_name": pool_name, "nodepool_state": "absent"})
    assert gone.rc == 0 and gone.changed == 1, gone.stdout
    assert gke_sim.pool(pool_name) is None


def test_start_and_finish_run_the_pool_in_the_background(gke_sim, pool_name, role_play, k8s):
    result = role_play({"nodepool_name": pool_name, "nodepool_profile": T4, "nodepool_replicas": 1,
                        "nodepool_min_node_count": 1}, background=True)
    assert result.rc == 0, result.stdout
    assert "other roles run here" in result.stdout
    assert result.stdout.index("Start the node pool") < result.stdout.index("Finish the node pool")
    pool = gke_sim.pool(pool_name)
    assert pool["config"]["accelerators"][0]["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "DEFAULT"
    nodes = pool_nodes(k8s, pool_name)
    assert len(nodes) == 1 and is_ready(nodes[0])


def test_check_mode_writes_nothing(gke_sim, pool_name, role_play):
    result = role_play({"nodepool_name": pool_name, "nodepool_profile": T4, "nodepool_replicas": 3}, check=True)
    assert result.rc == 0 and result.changed >= 1, result.stdout
    assert writes(gke_sim.requests_for(pool_name)) == []
    assert gke_sim.pool(pool_name) is None


@pytest.mark.parametrize("overrides, expected", [
    ({"nodepool_profile": {**TPU_V6E_4, "tpu_topology": "2x2x1"}}, "nodepool_profile.tpu_topology"),
    ({"nodepool_replicas": 3, "nodepool_max_node_count": 2}, "nodepool_max_node_count"),
    ({"nodepool_profile": {**TPU_V6E_4, "machine_type": "ct5lp-hightpu-4t"}},
     "do not offer machine type 'ct5lp-hightpu-4t' (nodepool_profile.machine_type)"),
    ({"nodepool_cluster": "t-np-no-such-cluster"}, "does not exist"),
    ({"nodepool_profile": {**T4, "gpu_driver_version": "newest"}}, "nodepool_profile.gpu_driver_version"),
    ({"nodepool_profile": {"accelerator_type": "nvidia-tesla-t4"}}, "nodepool_profile.machine_type is required"),
    ({"nodepool_name": "Bad_Name"}, "nodepool_name must be a GKE node pool name"),
])
def test_bad_input_fails_before_any_write_naming_the_variable(gke_sim, pool_name, role_play, overrides, expected):
    variables = {"nodepool_name": pool_name, "nodepool_profile": TPU_V6E_4, "nodepool_replicas": 1, **overrides}
    result = role_play(variables)
    assert result.rc != 0 and expected in result.stdout, result.stdout
    assert writes(gke_sim.requests_for(variables["nodepool_name"])) == []
