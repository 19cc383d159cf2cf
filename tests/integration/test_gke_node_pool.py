"""gke_node_pool against the simulated GKE API of the local cluster, run through ansible-playbook.

The simulator is shared by every test session: pools are named ``t-np-<random>``, request-log assertions only
look at requests for those pools, and every pool is deleted at the end.
"""
import re
import uuid

import pytest
from cluster_state import accepted_writes, writes
import yaml

pytestmark = pytest.mark.cluster


@pytest.fixture
def module_play(tmp_path, run_playbook):
    """Run one gke_node_pool task (plus an optional second) and return the PlaybookResult."""

    def play(*tasks, check=False, diff=False):
        defaults = {
            "location": "{{ lookup('env', 'GKE_LOCATION') }}",
            "cluster": "{{ lookup('env', 'GKE_CLUSTER') }}",
            "api_endpoint": "{{ lookup('env', 'GKE_API_ENDPOINT') }}",
            "compute_endpoint": "{{ lookup('env', 'GKE_API_ENDPOINT') }}",
            "timeout": 300,
        }
        playbook = [{
            "name": "gke_node_pool integration", "hosts": "localhost", "gather_facts": False,
            "module_defaults": {"llm_serving.gke.gke_node_pool": defaults},
            "tasks": [{"name": f"Node pool task {i}", "llm_serving.gke.gke_node_pool": task}
                      for i, task in enumerate(tasks)],
        }]
        path = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(playbook, sort_keys=False))
        # One-line JSON results, so that messages can be searched without YAML line folding.
        return run_playbook(path, check=check, diff=diff, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"})

    return play


def cpu_pool(name, **overrides):
    task = {"name": name, "machine_type": "n1-standard-4", "initial_node_count": 1,
            "autoscaling": {"min_node_count": 0, "max_node_count": 1}, "labels": {"team": "t-np"}}
    task.update(overrides)
    return task


def t4_pool(name, **overrides):
    return cpu_pool(name, accelerator={"type": "nvidia-tesla-t4", "count": 1, "gpu_driver_version": "DEFAULT"},
                    taints=["dedicated=t-np:NoSchedule"], **overrides)


def test_create_is_idempotent_scales_through_set_autoscaling_and_deletes(gke_sim, pool_name, module_play):
    created = module_play(t4_pool(pool_name))
    assert created.rc == 0 and created.changed == 1, created.stdout
    pool = gke_sim.pool(pool_name)
    assert pool["config"]["accelerators"][0]["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "DEFAULT"
    assert pool["config"]["taints"] == [{"key": "dedicated", "value": "t-np", "effect": "NO_SCHEDULE"}]

    again = module_play(t4_pool(pool_name))
    assert again.rc == 0 and again.changed == 0, again.stdout

    mark = gke_sim.requests_for(pool_name)
    scaled = module_play(t4_pool(pool_name, autoscaling={"min_node_count": 0, "max_node_count": 3}))
    assert scaled.rc == 0 and scaled.changed == 1, scaled.stdout
    assert accepted_writes(gke_sim.requests_for(pool_name, mark)) == [("POST", f"{pool_name}:setAutoscaling", 200)]
    assert gke_sim.pool(pool_name)["autoscaling"]["maxNodeCount"] == 3

    deleted = module_play({"name": pool_name, "state": "absent"}, {"name": pool_name, "state": "absent"})
    assert deleted.rc == 0 and deleted.changed == 1, deleted.stdout
    assert gke_sim.pool(pool_name) is None


def test_labels_and_taints_go_through_update(gke_sim, pool_name, module_play):
    assert module_play(cpu_pool(pool_name)).rc == 0
    mark = gke_sim.requests_for(pool_name)
    result = module_play(cpu_pool(pool_name, labels={"team": "other"}, taints=["x=y:NoExecute"]))
    assert result.rc == 0 and result.changed == 1, result.stdout
    assert accepted_writes(gke_sim.requests_for(pool_name, mark)) == [("PUT", pool_name, 200), ("PUT", pool_name, 200)]
    config = gke_sim.pool(pool_name)["config"]
    assert config["labels"] == {"team": "other"}
    assert config["taints"] == [{"key": "x", "value": "y", "effect": "NO_EXECUTE"}]


def test_check_mode_sends_no_write(gke_sim, pool_name, module_play):
    mark = gke_sim.requests_for(pool_name)
    result = module_play(t4_pool(pool_name), check=True, diff=True)
    assert result.rc == 0 and result.changed == 1, result.stdout
    assert writes(gke_sim.requests_for(pool_name, mark)) == []
    assert gke_sim.pool(pool_name) is None
    assert "nvidia-tesla-t4" in result.stdout  # the diff shows the pool to be created


def test_stockout_fails_fast_naming_zone_machine_and_what_to_try(gke_sim, pool_name, module_play, local_cluster):
    gke_sim.fault("stockout", body_regex=pool_name)
    result = module_play(t4_pool(pool_name))
    assert result.rc != 0
    assert "GCE_STOCKOUT" in result.stdout and local_cluster["GKE_LOCATION"] in result.stdout
    assert "n1-standard-4 with 1 x nvidia-tesla-t4" in result.stdout
    assert "spot: true" in result.stdout and "another zone" in result.stdout and "smaller pool" in result.stdout
    assert '"error_kind": "stockout"' in result.stdout


def test_quota_fails_fast_without_retry(gke_sim, pool_name, module_play):
    mark = gke_sim.requests_for(pool_name)
    gke_sim.fault("quota", body_regex=pool_name)
    result = module_play(t4_pool(pool_name))
    assert result.rc != 0 and '"error_kind": "quota"' in result.stdout, result.stdout
    assert "Not enough quota" in result.stdout and "smaller pool" in result.stdout
    assert writes(gke_sim.requests_for(pool_name, mark)) == [("POST", "nodePools", 403)]


def test_429_503_and_operation_in_progress_are_retried(gke_sim, pool_name, module_play):
    assert module_play(cpu_pool(pool_name)).rc == 0
    mark = gke_sim.requests_for(pool_name)
    for fault in ("http_429", "http_503", "in_progress"):  # on this pool's path only: the simulator is shared
        gke_sim.fault(fault, path_regex=f"nodePools/{pool_name}:setAutoscaling$")
    result = module_play(cpu_pool(pool_name, autoscaling={"min_node_count": 0, "max_node_count": 2}))
    assert result.rc == 0 and result.changed == 1, result.stdout
    statuses = [e[2] for e in writes(gke_sim.requests_for(pool_name, mark))]
    assert statuses[:3] == [429, 503, 400] and statuses[-1] == 200, statuses
    assert set(statuses[3:-1]) <= {400}, statuses  # a busy shared cluster may add in-progress retries
    assert gke_sim.pool(pool_name)["autoscaling"]["maxNodeCount"] == 2


def test_immutable_change_is_refused_and_recreate_replaces_the_pool(gke_sim, pool_name, module_play):
    # spot is immutable on GKE (machine type changes go through nodePools.update in place, see the unit tests).
    assert module_play(cpu_pool(pool_name)).rc == 0
    mark = gke_sim.requests_for(pool_name)
    refused = module_play(cpu_pool(pool_name, spot=True))
    assert refused.rc != 0 and re.search(r"spot: \w+ -> True", refused.stdout), refused.stdout[-3000:]
    assert "recreate: true" in refused.stdout and '"error_kind": "immutable"' in refused.stdout
    assert writes(gke_sim.requests_for(pool_name, mark)) == []

    recreated = module_play(cpu_pool(pool_name, spot=True, recreate=True))
    assert recreated.rc == 0 and recreated.changed == 1, recreated.stdout
    assert [e[0] for e in accepted_writes(gke_sim.requests_for(pool_name, mark))] == ["DELETE", "POST"]
    assert gke_sim.pool(pool_name)["config"]["spot"] is True


def test_tpu_topology_on_single_host_pool_is_refused_before_any_call(gke_sim, pool_name, module_play):
    mark = gke_sim.requests_for(pool_name)
    result = module_play({"name": pool_name, "machine_type": "ct6e-standard-4t", "tpu_topology": "2x2x1"})
    assert result.rc != 0 and "tpu_topology" in result.stdout and "single-host" in result.stdout
    assert gke_sim.requests_for(pool_name, mark) == []
