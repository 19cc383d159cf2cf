"""Bad input a user could plausibly type fails before any write, with a message naming the variable.

Each case runs a pattern playbook as users do (no --check) with -e overrides. Every case gets its own
workload namespace, llmisvc name and node pool name (t-bad-<case>), so that "nothing was written" is
provable on the shared cluster:
- GKE: the simulator's request log (GET /_sim/requests) holds no POST/PUT/PATCH/DELETE that names the
  case's node pool since the run started;
- Kubernetes: the case's namespace does not exist afterwards (and, for the Gateway case, the Gateway's
  namespace holds only the Gateway the test made).
"""
import copy
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import cluster_state
import pytest
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

GPU_PLAYBOOK = "playbooks/deploy_pattern3_gpu.yml"
TPU_PLAYBOOK = "playbooks/deploy_pattern1_tpu.yml"
GATEWAY_NAMESPACE = "t-bad-gw"
GLOBAL_GATEWAY = "t-bad-global-gw"


@dataclass
class Case:
    id: str
    expect: str  # regex the failure message must match: the variable the user got wrong
    overrides: dict = field(default_factory=dict)  # merged into pattern_overrides
    extra_vars: dict = field(default_factory=dict)
    playbook: str = GPU_PLAYBOOK
    xfail: str = ""

    @property
    def names(self):
        return "t-bad-" + self.id.replace("_", "-")[:30]


CASES = [
    Case("unknown_pattern", r"pattern_name 'p2-gpu' is not in the pattern catalog",
         extra_vars={"pattern_name": "p2-gpu"}),
    Case("replicas_zero", r"replicas", overrides={"replicas": 0}),
    Case("replicas_negative", r"replicas must be >= 0", overrides={"replicas": -1}),
    Case("replicas_not_a_number", r"replicas", overrides={"replicas": "three"}),
    Case("replicas_above_pool_max", r"nodepool\.max_node_count", overrides={"replicas": 9}),
    Case("unknown_pattern_key", r"unknown key replica\b", overrides={"replica": 2}),
    Case("accelerator_profile_inconsistent", r"accelerator\.type nvidia-tesla-t4 differs from accelerator_type",
         overrides={"accelerator_type": "nvidia-l4"}),
    Case("accelerator_not_in_catalog", r"accelerator.*nvidia-tesla-z100|nvidia-tesla-z100.*accelerator",
         overrides={"accelerator_type": "nvidia-tesla-z100", "accelerator": {"type": "nvidia-tesla-z100"}}),
    Case("accelerator_count_above_node", r"accelerator_count 2 must be between 1 and accelerator\.per_node_count",
         overrides={"accelerator_count": 2}),
    Case("gpu_driver_version_unknown", r"gpu_driver_version",
         overrides={"accelerator": {"gpu_driver_version": "newest"}}),
    Case("missing_hf_token", r"secrets_hf_token is empty", extra_vars={"llm_serving_hf_token": ""}),
    Case("missing_source_pull_secret", r"secrets_pull_secret_source_name",
         extra_vars={"secrets_pull_secret_source_name": "no-such-pull-secret"}),
    Case("global_gateway_class", r"gke-l7-global-external-managed",
         overrides={"gateway": {"name": GLOBAL_GATEWAY, "namespace": GATEWAY_NAMESPACE}}),
    Case("zone_without_machine_type", r"do not offer machine type 'ct6e-standard-4t'.*machine_type",
         extra_vars={"nodepool_node_locations": ["europe-west4-b"]}, playbook=TPU_PLAYBOOK),
    Case("machine_type_not_in_cluster_zone", r"machine_type", overrides={"machine_type": "ct5lp-hightpu-4t"},
         playbook=TPU_PLAYBOOK),
    Case("cluster_not_in_location", r"llm_serving_gcp_location|nodepool_location",
         extra_vars={"llm_serving_gcp_location": "us-central1-a"}),
    Case("malformed_model_uri", r"model_uri Qwen/Qwen2\.5-3B-Instruct needs a scheme",
         overrides={"model_uri": "Qwen/Qwen2.5-3B-Instruct"}),
    Case("model_name_empty", r"model_name must not be empty", overrides={"model_name": ""}),
    Case("tpu_topology_single_host_profile", r"nodepool_profile\.tpu_topology",
         extra_vars={"nodepool_profile": {"machine_type": "ct6e-standard-4t", "accelerator_type": "tpu-v6e-slice",
                                          "accelerator_count": 4, "tpu_topology": "2x2x1"}},
         playbook=TPU_PLAYBOOK),
    Case("tpu_topology_multi_host_in_pattern", r"tpu_topology",
         overrides={"accelerator": {"tpu_topology": "4x4",
                                    "node_selector": {"cloud.google.com/gke-tpu-topology": "4x4"},
                                    "node_labels": {"cloud.google.com/gke-tpu-topology": "4x4"}}},
         playbook=TPU_PLAYBOOK),
    Case("llmisvc_name_with_capitals", r"llmisvc_name Qwen-GPU must be a DNS label",
         overrides={"llmisvc_name": "Qwen-GPU"}),
    Case("namespace_not_dns_label", r"namespace LLM_Serving must be a DNS label",
         overrides={"namespace": "LLM_Serving"}),
    Case("nodepool_name_invalid", r"nodepool_name", overrides={"nodepool": {"name": "GPU_Pool"}}),
    Case("unknown_vllm_flag", r"--prefix-cache-block-size.*vllm_args|vllm_args.*--prefix-cache-block-size",
         overrides={"vllm_args": ["--dtype=half", "--prefix-cache-block-size=16"]}),
    Case("tensor_parallel_above_accelerators", r"tensor-parallel-size=2.*accelerator_count",
         overrides={"vllm_args": ["--dtype=half", "--tensor-parallel-size=2"]}),
    Case("hf_token_in_pattern_env", r"HF_TOKEN", overrides={"env": {"HF_TOKEN": "hf_in_plain_text"}}),
    Case("unknown_price_book", r"price_book.*gcp-on-demand-mars|gcp-on-demand-mars.*price_book",
         extra_vars={"llm_serving_price_book": "gcp-on-demand-mars"}),
    Case("gcp_location_empty", r"nodepool_location", extra_vars={"llm_serving_gcp_location": ""}),
]


def _wait_for_async_jobs(async_dir, deadline=600):
    """Wait until the background jobs a failed play left behind (nodepool tasks_from: start) have ended.

    A play that fails after starting an async task exits while the job still runs; its writes would land
    after the checks. async_wrapper keeps {"started": 1, "finished": 0} in the job file until the module ends.
    """
    stop = time.monotonic() + deadline
    while time.monotonic() < stop:
        running = [job for job in async_dir.glob("*") if not job.name.endswith(".tmp") and not _job_finished(job)]
        if not running:
            return
        time.sleep(2)
    raise AssertionError(f"async jobs still running after {deadline}s: {running}")


def _job_finished(job_file):
    try:
        data = json.loads(job_file.read_text())
    except ValueError:
        return False  # being written
    return data.get("finished") == 1 or "started" not in data


def _deep_merge(base, extra):
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def global_gateway(k8s):
    """A Gateway of the global class (no InferencePool support) in the test's own namespace."""
    namespaces = k8s.resources.get(api_version="v1", kind="Namespace")
    if not cluster_state.exists(k8s, "v1", "Namespace", GATEWAY_NAMESPACE):
        namespaces.create(body={"metadata": {"name": GATEWAY_NAMESPACE}})
    gateways = k8s.resources.get(api_version="gateway.networking.k8s.io/v1", kind="Gateway")
    body = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": GLOBAL_GATEWAY, "namespace": GATEWAY_NAMESPACE},
            "spec": {"gatewayClassName": "gke-l7-global-external-managed",
                     "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                                    "allowedRoutes": {"namespaces": {"from": "All"}}}]}}
    try:
        gateways.create(body=body, namespace=GATEWAY_NAMESPACE)
    except ApiException as exc:
        if exc.status != 409:
            raise
    yield
    cluster_state.delete_if_present(k8s, "v1", "Namespace", GATEWAY_NAMESPACE)


def _objects_in(k8s, namespace, api_version, kind):
    objects = k8s.resources.get(api_version=api_version, kind=kind).get(namespace=namespace)
    return [o.metadata.name for o in objects.items]


# ---------------------------------------------------------------- the matrix

@pytest.mark.parametrize("case", [
    pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else [])
    for c in CASES])
def test_bad_input_fails_before_any_write(case, run_playbook, k8s, gke_sim, tmp_path, request):
    uses_gateway = GATEWAY_NAMESPACE in json.dumps(case.overrides)
    if uses_gateway:  # only this case's own worker makes (and removes) the global-class Gateway
        request.getfixturevalue("global_gateway")
    names = case.names
    base = {"namespace": names, "llmisvc_name": names, "nodepool": {"name": names}, "replicas": 1}
    overrides = _deep_merge(base, case.overrides)
    pools = {overrides["nodepool"]["name"], names}
    # Bounds on the waits and no benchmark, for cases that are not stopped early (xfail) and deploy anyway.
    extra_vars = {"pattern_overrides": overrides, "llm_serving_report_dir": str(tmp_path), "llmisvc_wait_timeout": 90,
                  "verification_benchmark": False, "verification_cache_test": False, **case.extra_vars}
    assert not cluster_state.exists(k8s, "v1", "Namespace", names), f"namespace {names} left over from an earlier run"

    started = datetime.now(UTC)
    try:
        async_dir = tmp_path / "async"
        result = run_playbook(case.playbook, extra_vars,
                              env={**cluster_state.JSON_RESULTS, "ANSIBLE_ASYNC_DIR": str(async_dir)})
        _wait_for_async_jobs(async_dir)
        writes = [w for pool in pools for w in gke_sim.writes_naming(pool, started)]
        namespace_made = cluster_state.exists(k8s, "v1", "Namespace", names)
    finally:
        for pool in pools:
            gke_sim.delete_pool(pool)
        cluster_state.delete_if_present(k8s, "v1", "Namespace", names)

    messages = cluster_state.failure_messages(result.stdout)
    print(f"{case.id}: rc={result.rc} messages={messages}")
    assert result.rc != 0 and result.failed > 0, f"{case.id} did not fail:\n{result.stdout[-3000:]}"
    assert not writes, f"{case.id} wrote to GKE before failing: {writes}"
    assert not namespace_made, f"{case.id} created namespace {names} before failing"
    if uses_gateway:
        assert _objects_in(k8s, GATEWAY_NAMESPACE, "gateway.networking.k8s.io/v1", "HTTPRoute") == []
    assert any(re.search(case.expect, m, re.S) for m in messages), (
        f"{case.id}: no failure message matches {case.expect!r}: {messages or result.stdout[-3000:]}")
