"""Issue 17 item 2: a deployment whose nodes do not fit the region's quota is refused before any write.

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

import pytest
import requests
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

NAME = "t-quota-l4"
METRIC = "NVIDIA_L4_GPUS"
DEFAULT_LIMIT = 16.0  # localcluster/gke_api.py DEFAULT_QUOTA_LIMITS
# p3-gpu moved to L4 (g2-standard-4 has one L4) with its own names; 3 replicas need 3 nodes = 3 L4 GPUs.
OVERRIDES = {
    "llmisvc_name": NAME, "namespace": NAME, "machine_type": "g2-standard-4", "accelerator_type": "nvidia-l4",
    "accelerator": {"type": "nvidia-l4", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}},
    "nodepool": {"name": NAME},
}


class Sim:
    def __init__(self, env):
        self.base = env["GKE_API_ENDPOINT"]
        self.headers = {"Authorization": f"Bearer {env['GCP_ACCESS_TOKEN']}"}
        self.region_url = f"{self.base}/compute/v1/projects/{env['GCP_PROJECT']}/regions/europe-west4"

    def quota(self, metric):
        quotas = requests.get(self.region_url, headers=self.headers, timeout=30).json()["quotas"]
        return next(q for q in quotas if q["metric"] == metric)

    def set_limit(self, metric, limit):
        reply = requests.post(f"{self.base}/_sim/quotas", headers=self.headers, json={metric: limit}, timeout=30)
        assert reply.status_code == 200, reply.text

    def writes_naming(self, name, since):
        log = requests.get(f"{self.base}/_sim/requests", headers=self.headers, timeout=30).json()["requests"]
        pattern = re.compile(rf"(^|[^-a-zA-Z0-9_]){re.escape(name)}($|[^-a-zA-Z0-9_])")
        return [f"{r['method']} {r['path']}" for r in log
                if r["method"] in {"POST", "PUT", "PATCH", "DELETE"} and _log_time(r["time"]) >= since
                and (pattern.search(r["path"]) or pattern.search(json.dumps(r.get("body"))))]


def _log_time(text):
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", text.rstrip("Z"))
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC)


def _exists(k8s, api_version, kind, name, namespace=None):
    try:
        k8s.resources.get(api_version=api_version, kind=kind).get(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_too_little_accelerator_quota_is_refused_before_any_write(local_cluster, run_playbook, k8s):
    sim = Sim(local_cluster)
    usage = sim.quota(METRIC)["usage"]
    started = datetime.now(UTC)
    sim.set_limit(METRIC, usage + 1)  # one L4 left; the pattern needs three
    try:
        result = run_playbook("playbooks/deploy_pattern.yml",
                              {"pattern_name": "p3-gpu", "pattern_overrides": OVERRIDES}, timeout=600)
    finally:
        sim.set_limit(METRIC, DEFAULT_LIMIT)
    assert result.rc != 0, result.stdout[-3000:]
    output = re.sub(r"\s+", " ", result.stdout)
    assert "Not enough regional quota in europe-west4" in output, result.stdout[-3000:]
    assert f"for pattern p3-gpu (3 replica(s)), node pool {NAME}" in output
    assert f"{METRIC} needs 3 (1 per node of nvidia-l4), 1 available" in output
    time.sleep(1)  # the request log's clock and ours: let a write in flight land before reading the log
    assert sim.writes_naming(NAME, started) == []
    assert not _exists(k8s, "v1", "Namespace", NAME)
    assert not _exists(k8s, "serving.kserve.io/v1alpha1", "LLMInferenceService", NAME, NAME)
