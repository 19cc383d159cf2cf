"""The verification role against llmisvcs served by the local cluster (simulated KServe, gateway and vLLM).

Two llmisvcs with three prefix-caching replicas each: ``sched`` routes through an InferencePool and the
prefix-aware endpoint picker, ``rr`` routes to the workload Service (round robin). The role runs in a
playbook written to a temporary directory, exactly as a user's playbook would call it.
"""
import json
import uuid
from pathlib import Path

import polling
import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster import crds

from tests.chart_svg import read_chart

pytestmark = pytest.mark.cluster

PRESETS = crds.presets_dir()  # KServe v0.20.0's presets, pinned in localcluster/crds.py
GROUP, VERSION = "serving.kserve.io", "v1alpha2"
POOL_GROUP = "inference.networking.k8s.io"
POOL_GROUP_V1ALPHA2 = "inference.networking.x-k8s.io"
VLLM_CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1.1"
MODEL = "Qwen/Qwen2.5-3B-Instruct"
REPLICAS = 3
# Prefix groups per replica in these tests: half the role's default (8), which keeps the round-robin and
# prefix-aware hit rates far apart (each group still gets 4 requests) at half the sequential requests.
CACHE_GROUPS_PER_REPLICA = 4


def wait_for(predicate, timeout=60, interval=1.0, what="condition"):
    return polling.wait_for(predicate, timeout=timeout, interval=interval, what=what)


def llmisvc(name, scheduler):
    router = {"route": {}, "gateway": {"refs": [{"name": "inference-gateway", "namespace": "opendatahub"}]}}
    if scheduler:
        router["scheduler"] = {}
    probe = {"httpGet": {"path": "/health", "port": 8000}, "initialDelaySeconds": 1, "periodSeconds": 2}
    return {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "LLMInferenceService", "metadata": {"name": name},
        "spec": {"model": {"uri": "hf://Qwen/Qwen2.5-3B-Instruct", "name": MODEL}, "replicas": REPLICAS,
                 "router": router,
                 "template": {"containers": [{
                     "name": "main", "image": VLLM_CPU_IMAGE,
                     "args": ["--enable-prefix-caching", "--max-model-len=4096", "--disable-log-requests"],
                     "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token",
                                                                                 "key": "HF_TOKEN"}}}],
                     "readinessProbe": probe}]}},
    }


def health_check_policy(name, kind, target, group=None):
    target_ref = {"kind": kind, "name": target}
    if group:
        target_ref["group"] = group
    return {"apiVersion": "networking.gke.io/v1", "kind": "HealthCheckPolicy", "metadata": {"name": name},
            "spec": {"default": {"checkIntervalSec": 2, "healthyThreshold": 1,
                                 "config": {"type": "HTTP", "httpHealthCheck": {"port": 8000,
                                                                                "requestPath": "/health"}}},
                     "targetRef": target_ref}}


def backend_policy(name, target, group):
    return {"apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy", "metadata": {"name": name},
            "spec": {"default": {"timeoutSec": 300},
                     "targetRef": {"group": group, "kind": "InferencePool", "name": target}}}


def route_preset_without_timeouts(namespace):
    """The collection's GKE fix: a namespace-local router-route preset without the rejected timeouts."""
    with open(PRESETS / "config-llm-router-route.yaml") as handle:
        preset = yaml.safe_load(handle)
    for rule in preset["spec"]["router"]["route"]["http"]["spec"]["rules"]:
        rule.pop("timeouts", None)
    preset["metadata"] = {"name": "kserve-config-llm-router-route", "namespace": namespace}
    return preset


def ready(custom, core, namespace, name):
    """The llmisvc is Ready, all its replicas are Ready pods, and a completion through its URL succeeds."""
    try:
        svc = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "llminferenceservices", name)
    except ApiException:
        return None
    status = svc.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if conditions.get("Ready") != "True" or not status.get("url"):
        return None
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={name},"
                                    "app.kubernetes.io/component=llminferenceservice-workload").items
    ready_pods = [p for p in pods if not p.metadata.deletion_timestamp and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    if len(ready_pods) != REPLICAS:
        return None
    try:
        response = requests.post(status["url"] + "/v1/completions", timeout=30,
                                 json={"model": MODEL, "prompt": "ping", "max_tokens": 1})
    except requests.RequestException:
        return None
    return response.status_code == 200 and requests.get(status["url"] + "/health", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def deployed(local_cluster, k8s_api_client):
    """Namespace with the llmisvcs ``sched`` (InferencePool + EPP) and ``rr`` (Service, round robin)."""
    core, custom = client.CoreV1Api(k8s_api_client), client.CustomObjectsApi(k8s_api_client)
    namespace = f"t-verif-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        core.create_namespaced_secret(namespace, {"metadata": {"name": "hf-token"},
                                                  "stringData": {"HF_TOKEN": local_cluster.get("HF_TOKEN", "x")}})
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "llminferenceserviceconfigs",
                                               route_preset_without_timeouts(namespace))
        for name, scheduler in (("sched", True), ("rr", False)):
            custom.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, "llminferenceservices",
                                                   llmisvc(name, scheduler))
        # As the llmisvc role does: the InferencePool (both groups: KServe routes to v1alpha2 until the gateway
        # rejects it) and the workload Service (catch-all rule) all need one.
        for policy in (health_check_policy("sched-pool-hc", "InferencePool", "sched-inference-pool", POOL_GROUP),
                       health_check_policy("sched-pool-v1alpha2-hc", "InferencePool", "sched-inference-pool",
                                           POOL_GROUP_V1ALPHA2),
                       health_check_policy("sched-hc", "Service", "sched-kserve-workload-svc"),
                       health_check_policy("rr-hc", "Service", "rr-kserve-workload-svc")):
            custom.create_namespaced_custom_object("networking.gke.io", "v1", namespace, "healthcheckpolicies",
                                                   policy)
        for group, suffix in ((POOL_GROUP, ""), (POOL_GROUP_V1ALPHA2, "-v1alpha2")):
            custom.create_namespaced_custom_object("networking.gke.io", "v1", namespace, "gcpbackendpolicies",
                                                   backend_policy(f"sched-backend{suffix}", "sched-inference-pool",
                                                                  group))
        try:
            for name in ("sched", "rr"):
                wait_for(lambda name=name: ready(custom, core, namespace, name), timeout=300,
                         what=f"llmisvc {name} Ready and serving")
        except AssertionError as exc:
            pytest.fail(f"the local cluster did not make the llmisvcs Ready: {exc}")
        yield namespace
    finally:
        core.delete_namespace(namespace)


def run_verification(run_playbook, tmp_path, name, namespace, check=False, **overrides):
    """Run the role in a one-play playbook; return (PlaybookResult, parsed JSON report or None)."""
    report_dir = tmp_path / name
    variables = {
        "verification_llmisvc_name": name, "verification_namespace": namespace, "verification_model_name": MODEL,
        "verification_report_dir": str(report_dir),
        "verification_benchmark_concurrency": [1, 4], "verification_benchmark_warmup_seconds": 0.5,
        "verification_benchmark_duration_seconds": 0, "verification_benchmark_max_requests_per_step": 12,
        "verification_benchmark_max_tokens": 8, "verification_scheduler_enabled": name != "rr",
        "verification_cache_test": True, "verification_cache_requests_per_group": 4,
        "verification_cache_prefix_groups": CACHE_GROUPS_PER_REPLICA * REPLICAS,
        "verification_cache_shared_prefix_tokens": 200,
        "verification_cache_require_beats_round_robin": name != "rr",
        "verification_check_pod_health": True, "verification_scrape_replica_metrics": True,
    }
    variables.update(overrides)
    playbook = tmp_path / f"verify-{name}.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"Verify {name}", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Verify", "ansible.builtin.include_role": {"name": "llm_serving.gke.verification"}}],
    }]))
    result = run_playbook(playbook, extra_vars=variables, check=check, timeout=600)
    reports = sorted(report_dir.glob(f"verification-{name}-*.json"))
    return result, (json.loads(reports[-1].read_text()) if reports else None)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("verification")


_RUNS = {}  # (namespace, llmisvc) -> result of the default run, shared by the tests of this module


@pytest.fixture
def verified(run_playbook, deployed, module_tmp):
    """verified(name) -> (PlaybookResult, report) of the role's run with the default test settings."""
    def get(name):
        if (deployed, name) not in _RUNS:
            _RUNS[deployed, name] = run_verification(run_playbook, module_tmp, name, deployed)
        return _RUNS[deployed, name]
    return get


def test_all_checks_pass_and_reports_are_written(verified, deployed):
    result, report = verified("sched")
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert report is not None
    assert report["passed"] is True and report["failures"] == []
    assert report["url"].endswith(f"/{deployed}/sched") and report["url_source"] == "status.url"
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == {"models", "completions", "chat_completions", "gateway_health", "pod_health",
                           "route_to_inference_pool", "inference_pool_accepted",
                           "gke_policies_target_route_backend"}
    assert all(c["passed"] for c in checks.values())
    assert len(report["pod_ips"]) == REPLICAS
    bench = report["benchmark"]
    assert [s["concurrency"] for s in bench["steps"]] == [1, 4]
    assert all(s["requests"] == 12 and s["success_rate"] == 1.0 for s in bench["steps"])
    assert bench["requests_per_second"] > 0 and bench["ttft_p95_ms"] > 0
    markdown = Path(report["report_markdown"]).read_text()
    assert "# Verification of" in markdown and "**PASSED**" in markdown
    assert "Prefix-cache hit rate" in markdown
    # The charts are SVG files beside the Markdown, linked by relative paths, plotting the report's numbers.
    base = Path(report["report_markdown"]).name[:-len(".md")]
    charts = {Path(path).name: Path(path) for path in report["report_charts"]}
    assert set(charts) == {f"{base}-{name}.svg" for name in ("throughput", "latency", "replicas", "hit-rates")}
    for file_name, path in charts.items():
        assert f"]({file_name})" in markdown and path.parent == Path(report["report_markdown"]).parent
    assert "█" not in markdown  # the text charts are only the fallback without pygal
    throughput = read_chart(str(charts[f"{base}-throughput.svg"]))["series"]["req/s"]
    assert throughput == {f"c={s['concurrency']}": f"{s['requests_per_s']:.2f}" for s in bench["steps"]}
    replicas = read_chart(str(charts[f"{base}-replicas.svg"]))["series"]["request share"]
    assert replicas == {url.split("://")[1]: f"{rep['request_share'] * 100:.1f}"
                        for url, rep in report["cache"]["replicas"].items() if rep["request_share"]}


def test_shared_prefix_cache_hit_rate_is_higher_with_the_scheduler(verified):
    (sched_result, sched), (rr_result, rr) = verified("sched"), verified("rr")
    assert sched_result.rc == 0 and rr_result.rc == 0, sched_result.stdout[-3000:] + rr_result.stdout[-3000:]
    assert {c["name"] for c in rr["checks"]} == {"models", "completions", "chat_completions", "gateway_health",
                                                 "pod_health"}  # no scheduler: no routing checks
    assert sched["cache"]["requests"] == rr["cache"]["requests"] == CACHE_GROUPS_PER_REPLICA * REPLICAS * 4
    # Round robin sends each prefix to every replica, so each replica misses it once; the prefix-aware picker
    # keeps a prefix on the replica that has it cached. Fresh prefixes: both runs start cold.
    assert sched["cache"]["hit_rate"] > rr["cache"]["hit_rate"]
    assert sched["cache"]["gain_over_round_robin"] >= 0.5 > rr["cache"]["gain_over_round_robin"]
    assert sched["cache"]["mean_group_affinity"] > rr["cache"]["mean_group_affinity"]
    for report in (sched, rr):
        cache = report["cache"]
        assert cache["replica_request_sum"] == cache["requests"] and cache["unattributed_requests"] == 0
        assert sum(r["requests"] for r in cache["replicas"].values()) == cache["requests"]
        shares = [r["request_share"] for r in cache["replicas"].values()]
        assert len(shares) == REPLICAS and sum(shares) == pytest.approx(1.0)
    assert min(r["request_share"] for r in rr["cache"]["replicas"].values()) > 0.2  # round robin spreads evenly


def test_a_round_robin_route_fails_the_beats_round_robin_requirement(run_playbook, deployed, module_tmp):
    result, report = run_verification(run_playbook, module_tmp, "rr", deployed, verification_benchmark=False,
                                      verification_cache_require_beats_round_robin=True)
    assert result.rc != 0
    assert any(f.startswith("verification_cache_min_gain: measured") for f in report["failures"]), report["failures"]


def test_missed_thresholds_fail_naming_threshold_and_measured_value(run_playbook, deployed, module_tmp):
    result, report = run_verification(
        run_playbook, module_tmp, "sched", deployed, verification_cache_test=False,
        verification_check_pod_health=False, verification_benchmark_concurrency=[2],
        verification_max_p95_ms=0.001, verification_min_rps=100000, verification_gateway_health_status=[503])
    assert result.rc != 0
    assert "verification_max_p95_ms: measured " in result.stdout, result.stdout[-3000:]
    assert "required <= 0.001 ms" in result.stdout
    assert "verification_min_rps: measured " in result.stdout
    assert "check gateway_health: expected HTTP 503" in result.stdout and "got HTTP 200" in result.stdout
    assert report is not None and report["passed"] is False  # the report is written before the failure
    assert {t["name"] for t in report["thresholds"] if not t["passed"]} == {"verification_max_p95_ms",
                                                                            "verification_min_rps"}


def test_unknown_llmisvc_fails_with_a_clear_message(run_playbook, deployed, module_tmp):
    result, report = run_verification(run_playbook, module_tmp, "no-such-llmisvc", deployed)
    assert result.rc != 0
    assert f"LLMInferenceService {deployed}/no-such-llmisvc was not found" in result.stdout
    assert report is None


def test_check_mode_runs_the_checks_and_writes_no_report(run_playbook, deployed, tmp_path):
    result, report = run_verification(run_playbook, tmp_path, "sched", deployed, check=True,
                                      verification_benchmark=False, verification_cache_test=False)
    assert result.rc == 0, result.stdout[-4000:]
    assert "8 checks and 0 thresholds passed" in " ".join(result.stdout.split())  # the 8 of the test above
    assert report is None and not (tmp_path / "sched").exists()
