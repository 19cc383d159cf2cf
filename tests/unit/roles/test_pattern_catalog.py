"""Render every catalog pattern through the real pattern + llmisvc roles and check the result.

One ansible-playbook run (module fixture) renders each pattern with the roles' own tasks
(`pattern` role, then `llmisvc` tasks_from=render, no cluster) and records the manifests and
the error messages of deliberately bad inputs; the tests validate them against the upstream
KServe v0.20 CRD schemas and against the known bugs of the seed manifests (both pinned in
localcluster/crds.py).
"""
import functools
import json
import os
import shlex

import jsonschema
import pytest
import yaml

from localcluster import cel, crds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Pinned upstream files (localcluster/crds.py: from the cache, a mirror or the pinned download, checksum checked).
CRDS = os.path.dirname(crds.source_path(crds.CRD_FILES[0]))  # KServe v0.20.0 config/crd/full/llmisvc
crds.source_path(crds.CRD_FILES[1])  # the LLMInferenceServiceConfig CRD, same folder
PRESET = os.path.join(crds.presets_dir(), "config-llm-router-route.yaml")
SEED_GPU = str(crds.seed_manifest("llmisvc-gpu-pattern3.yaml"))
SEED_TPU = [str(crds.seed_manifest(n)) for n in ("llmisvc-tpu.yaml", "llmisvc-tpu-pattern3.yaml")]

with open(os.path.join(ROOT, "roles", "pattern", "defaults", "main.yml")) as fh:
    CATALOG = yaml.safe_load(fh)["pattern_catalog"]

# A pattern added as data only: one L4 replica (g2-standard-8), no code change.
P1_GPU_L4 = {
    "description": "One NVIDIA L4 replica",
    "llmisvc_name": "qwen2-3b-pattern1-l4",
    "namespace": "llm-d-inference-scheduling",
    "model_uri": "hf://Qwen/Qwen2.5-3B-Instruct",
    "model_name": "Qwen/Qwen2.5-3B-Instruct",
    "replicas": 1,
    "machine_type": "g2-standard-8",
    "accelerator_type": "nvidia-l4",
    "accelerator_count": 1,
    "accelerator": {
        "family": "gpu", "type": "nvidia-l4", "resource_name": "nvidia.com/gpu", "per_node_count": 1,
        "gpu_driver_version": "latest", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "startup_budget_seconds": 480,
    },
    "nodepool": {"name": "gpu-l4-pool", "min_node_count": 0, "max_node_count": 2},
    "image": "registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.2.5",
    "vllm_args": ["--max-model-len=4096", "--enable-prefix-caching"],
    "scheduler": {"enabled": False},
    "gateway": {"name": "inference-gateway", "namespace": "opendatahub"},
    "pull_secret": "redhat-pull-secret",
}


def _seed_args(path):
    with open(path) as fh:
        return yaml.safe_load(fh)["spec"]["template"]["containers"][0]["args"][0]


# (case id, extra vars); each case renders or records its error message.
CASES = [(f"{name}-{ver}", {"pattern_name": name, "llmisvc_api_version": ver})
         for name in CATALOG for ver in ("v1alpha1", "v1alpha2")]
CASES += [
    ("p1-gpu-v1alpha1", {"pattern_name": "p1-gpu", "pattern_catalog_extra": {"p1-gpu": P1_GPU_L4}}),
    ("seed-gpu-args", {"pattern_name": "p3-gpu",
                       "pattern_overrides": {"vllm_args": shlex.split(_seed_args(SEED_GPU).replace("\\\n", " "))[4:]}}),
    ("unknown-pattern", {"pattern_name": "p9-fpga"}),
    ("override-typo", {"pattern_name": "p3-gpu", "pattern_overrides": {"replica": 5}}),
    ("too-many-replicas", {"pattern_name": "p3-tpu", "pattern_overrides": {"replicas": 4}}),
    ("tp-too-large", {"pattern_name": "p3-gpu", "pattern_overrides": {"vllm_args": ["--tensor-parallel-size=2"]}}),
    ("reserved-flag", {"pattern_name": "p3-gpu", "pattern_overrides": {"vllm_args": ["--served-model-name=x"]}}),
    ("p3-gpu-tls", {"pattern_name": "p3-gpu", "llmisvc_kserve_tls": True}),
    ("reserved-ssl-flag", {"pattern_name": "p3-gpu", "pattern_overrides": {"vllm_args": ["--ssl-certfile=/x.crt"]}}),
    ("hf-key-not-hf-token", {"pattern_name": "p3-gpu", "llmisvc_hf_token_key": "token"}),
]

RENDER_ONE = """
- name: Render one case
  vars:
    pattern_name: "{{ case.vars.pattern_name }}"
    pattern_catalog_extra: "{{ case.vars.pattern_catalog_extra | default({}) }}"
    pattern_overrides: "{{ case.vars.pattern_overrides | default({}) }}"
    llmisvc_api_version: "{{ case.vars.llmisvc_api_version | default('v1alpha1') }}"
    llmisvc_kserve_tls: "{{ case.vars.llmisvc_kserve_tls | default(None) }}"
    llmisvc_hf_token_key: "{{ case.vars.llmisvc_hf_token_key | default('HF_TOKEN') }}"
  block:
    - name: Resolve the pattern
      ansible.builtin.include_role:
        name: llm_serving.gke.pattern
    - name: Render the manifests
      ansible.builtin.include_role:
        name: llm_serving.gke.llmisvc
        tasks_from: render
    - name: Record the manifests
      ansible.builtin.set_fact:
        results: >-
          {{ results | default({}) | combine({case.id: {'pattern': pattern_resolved,
                                                        'manifests': llmisvc_manifests}}) }}
  rescue:
    - name: Record the error
      ansible.builtin.set_fact:
        results: "{{ results | default({}) | combine({case.id: {'error': ansible_failed_result.msg}}) }}"
"""


@pytest.fixture(scope="module")
def rendered(role_cases):
    # The one render of all cases, shared by both xdist workers (it is the unit suite's most expensive run).
    return role_cases("pattern-catalog", RENDER_ONE, [{"id": cid, "vars": v} for cid, v in CASES])


@functools.cache
def _crd_schema(plural, version):
    # The full CRDs are ~2.7 MB of YAML: parse each once, with the C loader when available.
    with open(os.path.join(CRDS, f"serving.kserve.io_{plural}.yaml")) as fh:
        crd = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schema = next(v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["name"] == version)
    # A validator built once: jsonschema.validate() would re-check the huge schema on every call.
    return jsonschema.Draft7Validator(schema)


def _main(manifest):
    return manifest["spec"]["template"]["containers"][0]


RENDERED_IDS = [f"{name}-{ver}" for name in CATALOG for ver in ("v1alpha1", "v1alpha2")]


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_llmisvc_validates_against_kserve_crd_schema(rendered, case_id):
    manifest = rendered[case_id]["manifests"]["llmisvc"]
    version = manifest["apiVersion"].split("/")[1]
    assert version == case_id.rsplit("-", 1)[1]
    _crd_schema("llminferenceservices", version).validate(manifest)
    assert cel.validate(manifest) == []  # the CRD's CEL rules too, as GKE's API server evaluates them


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_route_preset_validates_and_is_upstream_without_timeouts(rendered, case_id):
    preset = rendered[case_id]["manifests"]["route_preset"]
    _crd_schema("llminferenceserviceconfigs", preset["apiVersion"].split("/")[1]).validate(preset)
    assert cel.validate(preset) == []
    with open(PRESET) as fh:
        upstream = yaml.safe_load(fh)["spec"]["router"]["route"]["http"]["spec"]
    for rule in upstream["rules"]:
        rule.pop("timeouts")
    # KServe replaces parentRefs with gateway.refs; the role writes the pattern's gateway there.
    gateway = rendered[case_id]["pattern"]["gateway"]
    upstream["parentRefs"] = [{"group": "gateway.networking.k8s.io", "kind": "Gateway", **gateway}]
    assert preset["spec"]["router"]["route"]["http"]["spec"] == upstream
    assert "timeouts" not in json.dumps(preset)
    assert preset["metadata"] == {"name": "kserve-config-llm-router-route",
                                  "namespace": rendered[case_id]["pattern"]["namespace"],
                                  "labels": {"app.kubernetes.io/managed-by": "llm_serving.gke"}}


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_container_fixes_the_seed_bugs(rendered, case_id):
    pattern = rendered[case_id]["pattern"]
    main = _main(rendered[case_id]["manifests"]["llmisvc"])
    assert main["name"] == "main" and main["command"] == ["/bin/bash", "-c"]
    argv = shlex.split(main["args"][0])
    assert argv[:3] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    # Both served names of KServe's preset (kserve/kserve v0.20.0 config/llmisvcconfig/config-llm-template.yaml):
    # the model name and publishers/<namespace>/models/<model>, which model-based routing uses.
    names = argv[argv.index("--served-model-name") + 1:argv.index("--served-model-name") + 3]
    assert names == [pattern["model_name"], f"publishers/{pattern['namespace']}/models/{pattern['model_name']}"]
    assert not any(a.startswith("--ssl-") or a == "--enable-ssl-refresh" for a in argv)  # TLS off by default
    assert "--model=/mnt/models" in argv and "--port=8000" in argv
    assert not any(a.startswith("--prefix-cache-block-size") for a in argv)
    # HF_TOKEN only through the Secret, never as a literal value.
    hf = [e for e in main["env"] if e["name"] == "HF_TOKEN"]
    assert hf == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}]


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_probes_sized_for_the_accelerator(rendered, case_id):
    pattern = rendered[case_id]["pattern"]
    main = _main(rendered[case_id]["manifests"]["llmisvc"])
    startup = main["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= pattern["accelerator"]["startup_budget_seconds"]
    assert budget >= (1200 if pattern["accelerator"]["family"] == "tpu" else 600)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["initialDelaySeconds"] == 0
        assert main[probe]["httpGet"]["scheme"] == "HTTP" and main[probe]["httpGet"]["port"] == 8000


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_placement_and_router_come_from_the_pattern(rendered, case_id):
    pattern = rendered[case_id]["pattern"]
    spec = rendered[case_id]["manifests"]["llmisvc"]["spec"]
    acc = pattern["accelerator"]
    assert spec["replicas"] == pattern["replicas"]
    assert spec["model"] == {"uri": pattern["model_uri"], "name": pattern["model_name"]}
    # The accelerator and the pattern's own pool: not another pool of the same accelerator.
    assert spec["template"]["nodeSelector"] == {**acc["node_selector"],
                                                "cloud.google.com/gke-nodepool": pattern["nodepool"]["name"]}
    assert spec["template"]["tolerations"] == acc["tolerations"]
    assert spec["template"]["imagePullSecrets"] == [{"name": pattern["pull_secret"]}]
    count = str(pattern["accelerator_count"])
    assert _main({"spec": spec})["resources"] == {"limits": {acc["resource_name"]: count},
                                                  "requests": {acc["resource_name"]: count}}
    router = spec["router"]
    assert router["route"] == {}
    assert router["gateway"] == {"refs": [pattern["gateway"]]}
    assert ("scheduler" in router) == pattern["scheduler"]["enabled"]


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_gke_policies_target_pool_and_workload_service(rendered, case_id):
    name = rendered[case_id]["pattern"]["llmisvc_name"]
    policies = rendered[case_id]["manifests"]["policies"]
    health = {(p["spec"]["targetRef"]["group"], p["spec"]["targetRef"]["kind"]): p
              for p in policies if p["kind"] == "HealthCheckPolicy"}
    # KServe v0.20 creates the pool in both groups and the route uses v1alpha2 until the gateway rejects it
    # (kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/router.go): a policy pair for each group.
    for group in ("inference.networking.k8s.io", "inference.networking.x-k8s.io"):
        assert health[(group, "InferencePool")]["spec"]["targetRef"] == {
            "group": group, "kind": "InferencePool", "name": f"{name}-inference-pool"}
    assert health[("", "Service")]["spec"]["targetRef"] == {"group": "", "kind": "Service",
                                                            "name": f"{name}-kserve-workload-svc"}
    for policy in health.values():
        assert policy["apiVersion"] == "networking.gke.io/v1"
        assert policy["spec"]["default"]["config"] == {
            "type": "HTTP", "httpHealthCheck": {"port": 8000, "requestPath": "/health"}}
    backends = [p for p in policies if p["kind"] == "GCPBackendPolicy"]
    assert sorted(p["spec"]["targetRef"]["group"] for p in backends) == [
        "inference.networking.k8s.io", "inference.networking.x-k8s.io"]
    for backend in backends:
        assert backend["spec"]["default"]["timeoutSec"] >= 300
        assert backend["spec"]["targetRef"] == {"group": backend["spec"]["targetRef"]["group"],
                                                "kind": "InferencePool", "name": f"{name}-inference-pool"}
    assert len({p["metadata"]["name"] for p in policies}) == len(policies)


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_scheduler_renders_what_the_catalog_says(rendered, case_id):
    # prefix_cache_aware true: `scheduler: {}`, KServe v0.20 injects its default profile (prefix-cache 3, queue 2,
    # kv-cache-utilization 2, no-hit-lru 2; kserve/kserve v0.20.0 pkg/controller/v1alpha2/llmisvc/scheduler.go).
    # false: an inline EndpointPickerConfig with the load scorers only.
    pattern = rendered[case_id]["pattern"]
    scheduler = rendered[case_id]["manifests"]["llmisvc"]["spec"]["router"]["scheduler"]
    if pattern["scheduler"]["prefix_cache_aware"]:
        assert scheduler == {}
        return
    config = scheduler["config"]["inline"]
    assert config["kind"] == "EndpointPickerConfig"
    plugin_types = {p["type"] for p in config["plugins"]}
    assert "prefix-cache-scorer" not in plugin_types and "no-hit-lru-scorer" not in plugin_types
    profile = config["schedulingProfiles"][0]["plugins"]
    assert {p["pluginRef"]: p.get("weight") for p in profile} == {
        "queue-scorer": 2, "kv-cache-utilization-scorer": 2, "max-score-picker": None}


def test_prefix_caching_and_tpu_dtype_in_the_manifest(rendered):
    def argv(name):
        return shlex.split(_main(rendered[f"{name}-v1alpha1"]["manifests"]["llmisvc"])["args"][0])
    # Pattern 1 is the baseline without prefix caching: vLLM V1 caches by default, so it is turned off.
    assert "--no-enable-prefix-caching" in argv("p1-tpu") and "--enable-prefix-caching" not in argv("p1-tpu")
    assert "without prefix caching" in rendered["p1-tpu-v1alpha1"]["pattern"]["description"]
    for name in ("p3-tpu", "p3-gpu"):
        assert "--enable-prefix-caching" in argv(name) and "--no-enable-prefix-caching" not in argv(name)
    # vLLM's TPU backend runs bfloat16 whatever is asked (vllm-project/vllm vllm/platforms/tpu.py).
    for name in ("p1-tpu", "p3-tpu"):
        dtypes = [a for a in argv(name) if a.startswith("--dtype")]
        assert dtypes == ["--dtype=bfloat16"]


def test_seed_catalog_values(rendered):
    tpu1, tpu3, gpu3 = (rendered[f"{n}-v1alpha1"]["pattern"] for n in ("p1-tpu", "p3-tpu", "p3-gpu"))
    assert [tpu1["replicas"], tpu3["replicas"], gpu3["replicas"]] == [1, 3, 3]
    assert "--tensor-parallel-size=4" in tpu1["vllm_args"] and "--enable-prefix-caching" not in tpu1["vllm_args"]
    assert "--enable-prefix-caching" in tpu3["vllm_args"] and "--dtype=half" in gpu3["vllm_args"]
    assert tpu3["env"] == {"TPU_CHIPS_PER_HOST_BOUNDS": "2,2,1", "TPU_HOST_BOUNDS": "1,1,1", "PJRT_DEVICE": "TPU"}
    assert tpu3["image"].endswith("vllm-tpu-rhel9:3.2.5") and gpu3["image"].endswith("vllm-cuda-rhel9:3.0.0")


def test_pattern_added_as_data_renders(rendered):
    result = rendered["p1-gpu-v1alpha1"]
    assert result["pattern"]["name"] == "p1-gpu"
    spec = result["manifests"]["llmisvc"]["spec"]
    _crd_schema("llminferenceservices", "v1alpha1").validate(result["manifests"]["llmisvc"])
    assert spec["template"]["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4",
                                                "cloud.google.com/gke-nodepool": result["pattern"]["nodepool"]["name"]}
    assert "scheduler" not in spec["router"]
    # Without a scheduler there is no InferencePool: policies target the workload Service only.
    assert {p["spec"]["targetRef"]["kind"] for p in result["manifests"]["policies"]} == {"Service"}


def test_seed_gpu_manifest_args_are_refused_naming_the_flag(rendered):
    error = rendered["seed-gpu-args"]["error"]
    assert "--prefix-cache-block-size" in error and "--block-size" in error
    assert "pattern p3-gpu vllm_args" in error


@pytest.mark.parametrize("case_id", RENDERED_IDS)
def test_storage_initializer_gets_the_hf_token(rendered, case_id):
    # KServe gives the storage initializer the Secret named by the serving.kserve.io/storageSecretName annotation
    # (kserve/kserve v0.20.0 pkg/credentials/service_account_credentials.go); its HF_TOKEN key becomes HF_TOKEN
    # (pkg/credentials/hf/hf_secret.go). The main container's env does not reach the init container.
    manifest = rendered[case_id]["manifests"]["llmisvc"]
    assert rendered[case_id]["pattern"]["model_uri"].startswith("hf://")
    assert manifest["metadata"]["annotations"] == {"serving.kserve.io/storageSecretName": "hf-token"}


def test_kserve_tls_keeps_the_presets_tls(rendered):
    # enableLLMInferenceServiceTLS on: the preset's vLLM flags, HTTPS probes (config-llm-template.yaml) and
    # HTTPS load-balancer health checks.
    result = rendered["p3-gpu-tls"]
    main = _main(result["manifests"]["llmisvc"])
    argv = shlex.split(main["args"][0])
    assert "--enable-ssl-refresh" in argv
    assert "--ssl-certfile=/var/run/kserve/tls/tls.crt" in argv and "--ssl-keyfile=/var/run/kserve/tls/tls.key" in argv
    assert "publishers/llm-d-inference-scheduling/models/Qwen/Qwen2.5-3B-Instruct" in argv
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"]["scheme"] == "HTTPS"
    for policy in result["manifests"]["policies"]:
        if policy["kind"] == "HealthCheckPolicy":
            assert policy["spec"]["default"]["config"] == {
                "type": "HTTPS", "httpsHealthCheck": {"port": 8000, "requestPath": "/health"}}
    _crd_schema("llminferenceservices", "v1alpha1").validate(result["manifests"]["llmisvc"])


@pytest.mark.parametrize(("case_id", "expected"), [
    ("unknown-pattern", ["p9-fpga", "p1-tpu, p3-gpu, p3-tpu", "pattern_catalog_extra"]),
    ("override-typo", ["unknown key replica"]),
    ("too-many-replicas", ["4 replicas x 4 google.com/tpu need 4 nodes but nodepool.max_node_count is 3"]),
    ("tp-too-large", ["--tensor-parallel-size=2"]),
    ("reserved-flag", ["--served-model-name is set by the llmisvc role"]),
    ("reserved-ssl-flag", ["--ssl-certfile is set by the llmisvc role", "enableLLMInferenceServiceTLS"]),
    ("hf-key-not-hf-token", ["llmisvc_hf_token_key must be HF_TOKEN (got token)", "hf_secret.go"]),
])
def test_bad_input_is_refused_with_a_clear_message(rendered, case_id, expected):
    error = rendered[case_id]["error"]
    for text in expected:
        assert text in error
