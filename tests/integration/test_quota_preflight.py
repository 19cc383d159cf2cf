"""Issue 17 item 2: a deployment whose nodes do not fit the region's quota is refused before any write, and a
deployment that fails after writing ends with what exists, what it costs per hour and the exact teardown command.

The GKE simulator serves Compute regions.get with the project's regional quotas and lets tests set limits
(POST /_sim/quotas, localcluster/README.md). The case uses NVIDIA_L4_GPUS, which no other test deploys, so the
lowered limit cannot disturb tests running at the same time; its own names (t-quota-*) make "nothing was written"
provable on the shared cluster: the simulator's request log holds no write naming its node pool, and neither its
namespace nor its llmisvc exists afterwards.
"""
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import cluster_state
import pytest

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
NAME = "t-quota-l4"
METRIC = "NVIDIA_L4_GPUS"
DEFAULT_LIMIT = 16.0  # localcluster/gke_api.py DEFAULT_QUOTA_LIMITS
# p3-gpu moved to L4 (g2-standard-4 has one L4) with its own names; 3 replicas need 3 nodes = 3 L4 GPUs.
OVERRIDES = {
    "llmisvc_name": NAME, "namespace": NAME, "machine_type": "g2-standard-4", "accelerator_type": "nvidia-l4",
    "accelerator": {"type": "nvidia-l4", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}},
    "nodepool": {"name": NAME},
}


def test_too_little_accelerator_quota_is_refused_before_any_write(local_cluster, run_playbook, k8s):
    sim = cluster_state.GkeSim(local_cluster)
    usage = sim.quota(METRIC)["usage"]
    started = datetime.now(UTC)
    sim.set_quota_limit(METRIC, usage + 1)  # one L4 left; the pattern needs three
    try:
        result = run_playbook("playbooks/deploy_pattern.yml",
                              {"pattern_name": "p3-gpu", "pattern_overrides": OVERRIDES}, timeout=600)
    finally:
        sim.set_quota_limit(METRIC, DEFAULT_LIMIT)
    assert result.rc != 0, result.stdout[-3000:]
    output = re.sub(r"\s+", " ", result.stdout)
    assert "Not enough regional quota in europe-west4" in output, result.stdout[-3000:]
    assert f"for 3 new node(s) of pattern p3-gpu (3 replica(s)), node pool {NAME}:" in output
    assert f"{METRIC} needs 3 (1 per node of nvidia-l4), 1 available" in output
    time.sleep(1)  # the request log's clock and ours: let a write in flight land before reading the log
    assert sim.writes_naming(NAME, started) == []
    assert not cluster_state.exists(k8s, "v1", "Namespace", NAME)
    assert not cluster_state.exists(k8s, "serving.kserve.io/v1alpha1", "LLMInferenceService", NAME, NAME)


def test_failure_after_writes_lists_what_exists_its_cost_and_the_teardown_command(local_cluster, run_playbook, k8s):
    """The model download fails (hf://Qwen is no <owner>/<repo>: KServe's storage initializer refuses it), so the
    llmisvc wait fails after the node pool, namespace, Secrets and llmisvc were written. Default price book:
    T4 $0.3675 + n1-standard-4 $0.20917 = $0.58 per node-hour."""
    name = "t-fail-t4"  # p3-gpu (T4) with its own names, one replica
    overrides = {"llmisvc_name": name, "namespace": name, "nodepool": {"name": name}, "replicas": 1,
                 "model_uri": "hf://Qwen"}
    result = run_playbook("playbooks/deploy_pattern.yml",
                          {"pattern_name": "p3-gpu", "pattern_overrides": overrides, "llmisvc_wait_timeout": 30},
                          env=cluster_state.JSON_RESULTS, timeout=900)
    expected_extra = {"teardown_patterns": ["p3-gpu"], "pattern_overrides": overrides}
    command = (f"ansible-playbook -i {ROOT}/inventories/local playbooks/teardown.yml "
               f"-e '{json.dumps(expected_extra)}'")
    try:
        assert result.rc != 0, result.stdout[-3000:]
        report = re.sub(r"\s+", " ", cluster_state.failure_messages(result.stdout)[-1])
        assert report.startswith("Deploying p3-gpu failed after it had started writing - "), report
        match = re.search(rf"What exists now: node pool {name} \((\d+) node\(s\) now; the pattern needs 1\); "
                          rf"namespace {name} \(pull secret, Hugging Face token Secret\); "
                          rf"LLMInferenceService {name}/{name}\. ", report)
        assert match, report
        nodes = int(match.group(1))
        assert (f"Cost: ${nodes * 0.57667:.2f}/h for the {nodes} node(s) running now (price book "
                "gcp-on-demand-europe-west4, $0.58 per node-hour), $0.58/h once all 1 node(s) of the pattern run - "
                "the llmisvc asks for them") in report, report
        assert command in report, report
    finally:
        # The exact command from the report (its -e JSON parsed back), deleting the pool rather than scaling it.
        extra = json.loads(command.split(" -e ", 1)[1].strip("'"))
        teardown = run_playbook("playbooks/teardown.yml", {**extra, "teardown_delete_pools": True},
                                inventory=f"{ROOT}/inventories/local")
        cluster_state.delete_if_present(k8s, "v1", "Namespace", name)  # teardown keeps namespaces
    assert teardown.rc == 0, teardown.stdout[-3000:]
    assert not cluster_state.exists(k8s, "serving.kserve.io/v1alpha1", "LLMInferenceService", name, name)
