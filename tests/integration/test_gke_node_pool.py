"""gke_node_pool against the simulated GKE API of the local cluster, run through ansible-playbook.

The simulator is shared by every test session: pools are named ``t-np-<random>``, request-log assertions only
look at requests for those pools, and every pool is deleted at the end.
"""
import re
import time
import uuid

import pytest
import requests
import yaml

pytestmark = pytest.mark.cluster


class Simulator:
    """Admin endpoints of localcluster.gke_api: faults and the request log."""

    def __init__(self, env):
        self.base = env["GKE_API_ENDPOINT"].rstrip("/")
        self.headers = {"Authorization": f"Bearer {env['GCP_ACCESS_TOKEN']}"}
        self.pools_path = (f"/v1/projects/{env['GCP_PROJECT']}/locations/{env['GKE_LOCATION']}/clusters/"
                           f"{env['GKE_CLUSTER']}/nodePools")

    def fault(self, fault, method="POST", path_regex="nodePools$", times=1, body_regex=None):
        spec = {"method": method, "path_regex": path_regex, "fault": fault, "times": times}
        if body_regex:  # a create names its pool only in the body; other sessions create pools at the same time
            spec["body_regex"] = body_regex
        requests.post(f"{self.base}/_sim/faults", json=spec, headers=self.headers, timeout=10).raise_for_status()

    def log(self):
        response = requests.get(f"{self.base}/_sim/requests", headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()["requests"]

    def requests_for(self, pool, since=None):
        """(method, last path segment, status) of the requests that concern ``pool``; with ``since`` (an earlier
        result of this method) only the newer ones. The log is shared and other sessions may clear it, so
        positions are not used."""
        found = []
        for entry in self.log():
            body = entry.get("body") or {}
            named = isinstance(body, dict) and (body.get("nodePool") or {}).get("name") == pool
            if f"/nodePools/{pool}" in entry["path"] or (entry["path"].endswith("/nodePools") and named):
                found.append((entry["method"], entry["path"].rsplit("/", 1)[-1], entry["status"]))
        if since and found[:len(since)] == since:
            return found[len(since):]
        return found

    def pool(self, name):
        response = requests.get(f"{self.base}{self.pools_path}/{name}", headers=self.headers, timeout=10)
        return response.json() if response.status_code == 200 else None

    def delete_pool(self, name, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = requests.delete(f"{self.base}{self.pools_path}/{name}", headers=self.headers, timeout=10)
            if response.status_code == 404:
                return
            time.sleep(1)  # accepted, or another operation runs: poll until the pool is gone
        raise AssertionError(f"node pool {name} was not deleted within {timeout}s; delete it by hand")


def writes(entries):
    return [e for e in entries if e[0] != "GET"]


def accepted_writes(entries):
    """Writes GKE accepted. Other sessions share the simulated cluster, and GKE runs one operation per cluster,
    so a write may first get 400 FAILED_PRECONDITION (retried by the module); those are checked apart."""
    rejected = [e for e in writes(entries) if e[2] >= 400]
    assert all(e[2] == 400 for e in rejected), rejected
    return [e for e in writes(entries) if e[2] < 400]


@pytest.fixture
def sim(local_cluster):
    return Simulator(local_cluster)


@pytest.fixture
def pool_name(sim):
    name = f"t-np-{uuid.uuid4().hex[:8]}"
    yield name
    sim.delete_pool(name)


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


def test_create_is_idempotent_scales_through_set_autoscaling_and_deletes(sim, pool_name, module_play):
    created = module_play(t4_pool(pool_name))
    assert created.rc == 0 and created.changed == 1, created.stdout
    pool = sim.pool(pool_name)
    assert pool["config"]["accelerators"][0]["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "DEFAULT"
    assert pool["config"]["taints"] == [{"key": "dedicated", "value": "t-np", "effect": "NO_SCHEDULE"}]

    again = module_play(t4_pool(pool_name))
    assert again.rc == 0 and again.changed == 0, again.stdout

    mark = sim.requests_for(pool_name)
    scaled = module_play(t4_pool(pool_name, autoscaling={"min_node_count": 0, "max_node_count": 3}))
    assert scaled.rc == 0 and scaled.changed == 1, scaled.stdout
    assert accepted_writes(sim.requests_for(pool_name, mark)) == [("POST", f"{pool_name}:setAutoscaling", 200)]
    assert sim.pool(pool_name)["autoscaling"]["maxNodeCount"] == 3

    deleted = module_play({"name": pool_name, "state": "absent"}, {"name": pool_name, "state": "absent"})
    assert deleted.rc == 0 and deleted.changed == 1, deleted.stdout
    assert sim.pool(pool_name) is None


def test_labels_and_taints_go_through_update(sim, pool_name, module_play):
    assert module_play(cpu_pool(pool_name)).rc == 0
    mark = sim.requests_for(pool_name)
    result = module_play(cpu_pool(pool_name, labels={"team": "other"}, taints=["x=y:NoExecute"]))
    assert result.rc == 0 and result.changed == 1, result.stdout
    assert accepted_writes(sim.requests_for(pool_name, mark)) == [("PUT", pool_name, 200), ("PUT", pool_name, 200)]
    config = sim.pool(pool_name)["config"]
    assert config["labels"] == {"team": "other"}
    assert config["taints"] == [{"key": "x", "value": "y", "effect": "NO_EXECUTE"}]


def test_check_mode_sends_no_write(sim, pool_name, module_play):
    mark = sim.requests_for(pool_name)
    result = module_play(t4_pool(pool_name), check=True, diff=True)
    assert result.rc == 0 and result.changed == 1, result.stdout
    assert writes(sim.requests_for(pool_name, mark)) == []
    assert sim.pool(pool_name) is None
    assert "nvidia-tesla-t4" in result.stdout  # the diff shows the pool to be created


def test_stockout_fails_fast_naming_zone_machine_and_what_to_try(sim, pool_name, module_play, local_cluster):
    sim.fault("stockout", body_regex=pool_name)
    result = module_play(t4_pool(pool_name))
    assert result.rc != 0
    assert "GCE_STOCKOUT" in result.stdout and local_cluster["GKE_LOCATION"] in result.stdout
    assert "n1-standard-4 with 1 x nvidia-tesla-t4" in result.stdout
    assert "spot: true" in result.stdout and "another zone" in result.stdout and "smaller pool" in result.stdout
    assert '"error_kind": "stockout"' in result.stdout


def test_quota_fails_fast_without_retry(sim, pool_name, module_play):
    mark = sim.requests_for(pool_name)
    sim.fault("quota", body_regex=pool_name)
    result = module_play(t4_pool(pool_name))
    assert result.rc != 0 and '"error_kind": "quota"' in result.stdout, result.stdout
    assert "Not enough quota" in result.stdout and "smaller pool" in result.stdout
    assert writes(sim.requests_for(pool_name, mark)) == [("POST", "nodePools", 403)]


def test_429_503_and_operation_in_progress_are_retried(sim, pool_name, module_play):
    assert module_play(cpu_pool(pool_name)).rc == 0
    mark = sim.requests_for(pool_name)
    for fault in ("http_429", "http_503", "in_progress"):  # on this pool's path only: the simulator is shared
        sim.fault(fault, path_regex=f"nodePools/{pool_name}:setAutoscaling$")
    result = module_play(cpu_pool(pool_name, autoscaling={"min_node_count": 0, "max_node_count": 2}))
    assert result.rc == 0 and result.changed == 1, result.stdout
    statuses = [e[2] for e in writes(sim.requests_for(pool_name, mark))]
    assert statuses[:3] == [429, 503, 400] and statuses[-1] == 200, statuses
    assert set(statuses[3:-1]) <= {400}, statuses  # a busy shared cluster may add in-progress retries
    assert sim.pool(pool_name)["autoscaling"]["maxNodeCount"] == 2


def test_immutable_change_is_refused_and_recreate_replaces_the_pool(sim, pool_name, module_play):
    # spot is immutable on GKE (machine type changes go through nodePools.update in place, see the unit tests).
    assert module_play(cpu_pool(pool_name)).rc == 0
    mark = sim.requests_for(pool_name)
    refused = module_play(cpu_pool(pool_name, spot=True))
    assert refused.rc != 0 and re.search(r"spot: \w+ -> True", refused.stdout), refused.stdout[-3000:]
    assert "recreate: true" in refused.stdout and '"error_kind": "immutable"' in refused.stdout
    assert writes(sim.requests_for(pool_name, mark)) == []

    recreated = module_play(cpu_pool(pool_name, spot=True, recreate=True))
    assert recreated.rc == 0 and recreated.changed == 1, recreated.stdout
    assert [e[0] for e in accepted_writes(sim.requests_for(pool_name, mark))] == ["DELETE", "POST"]
    assert sim.pool(pool_name)["config"]["spot"] is True


def test_tpu_topology_on_single_host_pool_is_refused_before_any_call(sim, pool_name, module_play):
    mark = sim.requests_for(pool_name)
    result = module_play({"name": pool_name, "machine_type": "ct6e-standard-4t", "tpu_topology": "2x2x1"})
    assert result.rc != 0 and "tpu_topology" in result.stdout and "single-host" in result.stdout
    assert sim.requests_for(pool_name, mark) == []
