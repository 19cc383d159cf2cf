"""The simulated KServe v0.20 llmisvc controller: children, status conditions and GKE failures.

Uses the seed's GPU pattern (``llmisvc-gpu-pattern3.yaml`` of johnahull/llm-d-xks-gke, pinned in
localcluster/crds.py) with its vLLM args fixed (``--prefix-cache-block-size`` removed) and one replica. The
NotReady -> Ready test also needs the node agent and the GKE simulator (it creates a T4 node pool); it fails with
the reason when they are absent.
"""
import copy
import time
import uuid

import polling
import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster import crds

pytestmark = pytest.mark.cluster

SEED_GPU = crds.seed_manifest("llmisvc-gpu-pattern3.yaml")
GROUP, VERSION = "serving.kserve.io", "v1alpha2"
POOL_GROUP = "inference.networking.k8s.io"
GKE_MESSAGE = 'GWCER104: HTTPRoute "{ns}/{name}" is misconfigured, err: Timeouts are not supported.'
PART_OF = "app.kubernetes.io/part-of"


def wait_for(predicate, timeout=60, interval=0.5, what="condition"):
    return polling.wait_for(predicate, timeout=timeout, interval=interval, what=what)


def seed_llmisvc(name, namespace, replicas=1):
    """The seed's P3 GPU llmisvc with its args fixed for KServe v0.20.

    v0.20's template runs ``vllm serve /mnt/models ... $@``, so ``args`` must be vLLM flags: the seed's
    ``python3 -m vllm.entrypoints.openai.api_server --model=/mnt/models`` prefix would be passed to
    ``vllm serve`` as unrecognized arguments, and ``--prefix-cache-block-size`` is no vLLM flag at all.
    """
    with open(SEED_GPU) as handle:
        svc = yaml.safe_load(handle)
    svc["metadata"] = {"name": name, "namespace": namespace}
    svc["spec"]["replicas"] = replicas
    main = svc["spec"]["template"]["containers"][0]
    words = main["args"][0].replace("\\", " ").split()
    main["args"] = [w for w in words if w.startswith("--") and not w.startswith(("--model=", "--prefix-cache-block"))]
    for probe in ("livenessProbe", "readinessProbe"):
        main[probe]["initialDelaySeconds"] = 5
    return svc


class Cluster:
    def __init__(self, api_client, namespace):
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace

    def create_llmisvc(self, svc):
        version = svc["apiVersion"].split("/")[1]
        return self.custom.create_namespaced_custom_object(GROUP, version, self.namespace, "llminferenceservices",
                                                           svc)

    def llmisvc(self, name):
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "llminferenceservices", name)

    def condition(self, name, ctype):
        status = self.llmisvc(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)

    def get(self, group, version, plural, name):
        try:
            return self.custom.get_namespaced_custom_object(group, version, self.namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, name):
        selector = f"involvedObject.kind=LLMInferenceService,involvedObject.name={name}"
        return self.core.list_namespaced_event(self.namespace, field_selector=selector).items


@pytest.fixture(scope="module")
def cluster(local_cluster, k8s_api_client):
    core = client.CoreV1Api(k8s_api_client)
    namespace = f"t-ks-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    token = local_cluster.get("HF_TOKEN", "hf_test")
    core.create_namespaced_secret(namespace, {"metadata": {"name": "hf-token"}, "stringData": {"HF_TOKEN": token}})
    source = core.read_namespaced_secret("redhat-pull-secret", "cert-manager")
    core.create_namespaced_secret(namespace, {"metadata": {"name": "redhat-pull-secret"},
                                              "type": "kubernetes.io/dockerconfigjson", "data": source.data})
    yield Cluster(k8s_api_client, namespace)
    core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def controller_running(cluster):
    """The llmisvc created first: proves the controller answers before the detailed tests."""
    cluster.create_llmisvc(seed_llmisvc("children", cluster.namespace))
    try:
        wait_for(lambda: cluster.apps.list_namespaced_deployment(
            cluster.namespace, label_selector="app.kubernetes.io/name=children").items, timeout=30,
            what="the Deployment of llmisvc children")
    except AssertionError:
        pytest.fail("the simulated KServe controller created nothing within 30s (is kserve_controller running?)")
    return "children"


def assert_owned(obj, llmisvc):
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
    refs = meta.get("owner_references") or meta.get("ownerReferences")
    assert len(refs) == 1
    ref = refs[0]
    get = ref.get
    assert get("api_version", get("apiVersion")) == "serving.kserve.io/v1alpha2"
    assert get("kind") == "LLMInferenceService"
    assert get("name") == llmisvc["metadata"]["name"]
    assert get("uid") == llmisvc["metadata"]["uid"]
    assert get("controller") is True
    assert get("block_owner_deletion", get("blockOwnerDeletion")) is True


def test_children_have_kserve_names_labels_and_owner_references(cluster, controller_running):
    name = controller_running
    svc = wait_for(lambda: cluster.llmisvc(name).get("status", {}).get("observedGeneration") and cluster.llmisvc(name),
                   what="observedGeneration")
    assert "serving.kserve.io/llmisvc-finalizer" in svc["metadata"]["finalizers"]

    deployment = cluster.apps.read_namespaced_deployment(f"{name}-kserve", cluster.namespace)
    assert deployment.metadata.labels == {
        "app.kubernetes.io/component": "llminferenceservice-workload", "app.kubernetes.io/name": name,
        PART_OF: "llminferenceservice", "kserve.io/component": "workload", "llm-d.ai/role": "both"}
    assert_owned(deployment, svc)
    assert deployment.spec.replicas == 1
    pod = deployment.spec.template.spec
    assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert [s.name for s in pod.image_pull_secrets] == ["redhat-pull-secret"]
    init = pod.init_containers[0]
    assert (init.name, init.args) == ("storage-initializer", ["hf://Qwen/Qwen2.5-3B-Instruct", "/mnt/models"])
    main = next(c for c in pod.containers if c.name == "main")
    assert main.image == "registry.redhat.io/rhaiis/vllm-cuda-rhel9:3.0.0"
    assert main.command[:2] == ["/bin/bash", "-c"]
    assert main.args == ["--dtype=half", "--max-model-len=2048", "--gpu-memory-utilization=0.75",
                         "--enable-prefix-caching", "--disable-log-requests"]
    assert "HF_TOKEN" in [e.name for e in main.env]
    assert main.readiness_probe.http_get.path == "/v1/models"
    assert main.resources.limits == {"nvidia.com/gpu": "1"}

    service = cluster.core.read_namespaced_service(f"{name}-kserve-workload-svc", cluster.namespace)
    assert service.spec.selector == {"app.kubernetes.io/name": name, PART_OF: "llminferenceservice",
                                     "kserve.io/component": "workload"}
    assert [p.port for p in service.spec.ports] == [8000]
    assert_owned(service, svc)

    route = wait_for(lambda: cluster.get("gateway.networking.k8s.io", "v1", "httproutes", f"{name}-kserve-route"),
                     what="HTTPRoute")
    assert route["metadata"]["labels"]["app.kubernetes.io/component"] == "llminferenceservice-router"
    assert_owned(route, svc)
    assert [(p["namespace"], p["name"]) for p in route["spec"]["parentRefs"]] == [("opendatahub",
                                                                                   "inference-gateway")]
    pool_refs = {b["name"] for r in route["spec"]["rules"] for b in r["backendRefs"] if b["kind"] == "InferencePool"}
    assert pool_refs == {f"{name}-inference-pool"}
    assert all("timeouts" in rule for rule in route["spec"]["rules"])  # the upstream preset's, kept

    pool = cluster.get(POOL_GROUP, "v1", "inferencepools", f"{name}-inference-pool")
    assert pool["spec"]["selector"]["matchLabels"] == service.spec.selector
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"]["name"] == f"{name}-epp-service"
    assert_owned(pool, svc)

    scheduler = cluster.apps.read_namespaced_deployment(f"{name}-kserve-router-scheduler", cluster.namespace)
    assert scheduler.metadata.labels["app.kubernetes.io/component"] == "llminferenceservice-router-scheduler"
    epp = cluster.core.read_namespaced_service(f"{name}-epp-service", cluster.namespace)
    assert {p.port for p in epp.spec.ports} >= {9002, 9003}

    reasons = {(e.reason, e.message) for e in cluster.events(name)}
    assert ("Created", f"Created v1.Deployment {cluster.namespace}/{name}-kserve") in reasons
    assert ("Created", f"Created v1.HTTPRoute {cluster.namespace}/{name}-kserve-route") in reasons

    workloads = svc["status"].get("workloads") or cluster.llmisvc(name)["status"]["workloads"]
    assert workloads["primary"]["name"] == f"{name}-kserve"
    assert workloads["scheduler"]["name"] == f"{name}-kserve-router-scheduler"


def test_route_with_preset_timeouts_is_rejected_by_the_gke_gateway(cluster, controller_running):
    name = controller_running
    cond = wait_for(lambda: (c := cluster.condition(name, "HTTPRoutesReady")) and "UnsupportedValue" in c.get(
        "message", "") and c, what="HTTPRoutesReady=False with the gateway's reason")
    message = GKE_MESSAGE.format(ns=cluster.namespace, name=f"{name}-kserve-route").replace('"', '\\"')
    assert cond["reason"] == "HTTPRoutesNotReady"
    assert cond["message"] == (f"The following HTTPRoutes are not ready: [{cluster.namespace}/{name}-kserve-route: "
                               f'"False" (reason "UnsupportedValue", message "{message}")]')
    router = cluster.condition(name, "RouterReady")
    assert (router["status"], router["reason"]) == ("False", "HTTPRoutesNotReady")
    assert cluster.condition(name, "Ready")["status"] == "False"
    # the pool is never accepted through a rejected route
    pool = cluster.condition(name, "InferencePoolReady")
    assert (pool["status"], pool["reason"]) == ("False", "WaitingForGateway")


def test_missing_base_ref_stops_before_creating_anything(cluster, controller_running):
    svc = seed_llmisvc("missing-ref", cluster.namespace)
    svc["spec"]["baseRefs"] = [{"name": "t-ks-no-such-config"}]
    cluster.create_llmisvc(svc)
    cond = wait_for(lambda: cluster.condition("missing-ref", "PresetsCombined"), what="PresetsCombined")
    assert (cond["status"], cond["reason"]) == ("False", "ConfigNotFound")
    assert "t-ks-no-such-config" in cond["message"]
    current = cluster.llmisvc("missing-ref")
    assert current["status"]["observedGeneration"] == current["metadata"]["generation"]
    ready = cluster.condition("missing-ref", "Ready")
    assert ready["status"] == "Unknown"  # v0.20: PresetsCombined is not part of Ready
    assert not cluster.apps.list_namespaced_deployment(
        cluster.namespace, label_selector="app.kubernetes.io/name=missing-ref").items


def test_default_gateway_that_does_not_exist_is_refs_invalid(cluster, controller_running):
    svc = seed_llmisvc("default-gw", cluster.namespace)
    svc["spec"]["router"] = {"route": {}, "gateway": {}}  # gateway: {} -> kserve/kserve-ingress-gateway
    cluster.create_llmisvc(svc)
    cond = wait_for(lambda: (c := cluster.condition("default-gw", "HTTPRoutesReady")) and c["status"] == "False" and c,
                    what="HTTPRoutesReady=False")
    assert cond["reason"] == "RefsInvalid"
    assert cond["message"] == "Managed HTTPRoute references non-existent Gateway kserve/kserve-ingress-gateway"
    assert cluster.condition("default-gw", "GatewaysReady") is None  # only present with gateway.refs


def test_bring_your_own_route_is_left_alone_but_counts_for_status(cluster, controller_running):
    cluster.custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", cluster.namespace, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "byo"},
        "spec": {"parentRefs": [{"name": "inference-gateway", "namespace": "opendatahub"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/{cluster.namespace}/byo"}}],
                            "backendRefs": [{"name": "byo-kserve-workload-svc", "port": 8000}]}]}})
    svc = seed_llmisvc("byo", cluster.namespace)
    svc["spec"]["router"] = {"route": {"http": {"refs": [{"name": "byo"}]}},
                             "gateway": {"refs": [{"name": "inference-gateway", "namespace": "opendatahub"}]}}
    cluster.create_llmisvc(svc)
    cond = wait_for(lambda: (c := cluster.condition("byo", "HTTPRoutesReady")) and c["status"] == "True" and c,
                    what="HTTPRoutesReady=True for the referenced route")
    assert cond["status"] == "True"
    assert cluster.get("gateway.networking.k8s.io", "v1", "httproutes", "byo-kserve-route") is None
    assert cluster.llmisvc("byo")["status"]["url"] == f"http://127.0.0.1/{cluster.namespace}/byo"


def test_spec_change_updates_the_deployment_and_observed_generation(cluster, controller_running):
    name = controller_running
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "llminferenceservices", name,
                                                  {"spec": {"replicas": 2}})
    wait_for(lambda: cluster.apps.read_namespaced_deployment(f"{name}-kserve", cluster.namespace).spec.replicas == 2,
             what="Deployment replicas 2")
    current = wait_for(lambda: (s := cluster.llmisvc(name))["status"]["observedGeneration"] ==
                       s["metadata"]["generation"] and s, what="observedGeneration caught up")
    assert current["metadata"]["generation"] >= 2
    assert ("Updated", f"Updated v1.Deployment {cluster.namespace}/{name}-kserve") in {
        (e.reason, e.message) for e in cluster.events(name)}


def test_stop_annotation_deletes_workloads_and_marks_stopped(cluster, controller_running):
    name = controller_running
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "llminferenceservices", name,
                                                  {"metadata": {"annotations": {"serving.kserve.io/stop": "true"}}})
    main = wait_for(lambda: (c := cluster.condition(name, "MainWorkloadReady")) and c.get("reason") == "Stopped" and c,
                    what="MainWorkloadReady Stopped")
    assert (main["status"], main["message"]) == ("False", "Service is stopped")
    assert cluster.condition(name, "Ready")["reason"] == "Stopped"
    wait_for(lambda: not cluster.apps.list_namespaced_deployment(
        cluster.namespace, label_selector=f"app.kubernetes.io/name={name}").items, what="workloads deleted")
    assert cluster.get("gateway.networking.k8s.io", "v1", "httproutes", f"{name}-kserve-route") is None
    assert "url" not in cluster.llmisvc(name)["status"]


def test_deleting_the_llmisvc_garbage_collects_its_children(cluster, controller_running):
    svc = seed_llmisvc("short-lived", cluster.namespace)
    del svc["spec"]["router"]["scheduler"]
    cluster.create_llmisvc(svc)
    wait_for(lambda: cluster.get("gateway.networking.k8s.io", "v1", "httproutes", "short-lived-kserve-route"),
             what="route of short-lived")
    route = cluster.get("gateway.networking.k8s.io", "v1", "httproutes", "short-lived-kserve-route")
    assert {b["kind"] for r in route["spec"]["rules"] for b in r["backendRefs"]} == {"Service"}  # no scheduler
    cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "llminferenceservices",
                                                   "short-lived")
    wait_for(lambda: cluster.get(GROUP, VERSION, "llminferenceservices", "short-lived") is None,
             what="llmisvc gone (finalizer removed)")
    wait_for(lambda: not cluster.apps.list_namespaced_deployment(
        cluster.namespace, label_selector="app.kubernetes.io/name=short-lived").items, what="children collected")


# ---------------------------------------------------------------- NotReady -> Ready (needs the node agent)

def gke_request(env, method, path, body=None):
    base = env["GKE_API_ENDPOINT"].rstrip("/")
    url = f"{base}/v1/projects/{env['GCP_PROJECT']}/locations/{env['GKE_LOCATION']}/clusters/{env['GKE_CLUSTER']}"
    return requests.request(method, url + path, json=body, timeout=10,
                            headers={"Authorization": f"Bearer {env['GCP_ACCESS_TOKEN']}"})


@pytest.fixture(scope="module")
def gpu_pool(local_cluster, cluster):
    """A one-node T4 pool in the simulated GKE (its Node is run by the node agent)."""
    name = f"t-ks-t4-{cluster.namespace[-6:]}"
    body = {"nodePool": {"name": name, "initialNodeCount": 1,
                         "config": {"machineType": "n1-standard-4",
                                    "accelerators": [{"acceleratorCount": "1", "acceleratorType": "nvidia-tesla-t4"}]}}}
    deadline = time.monotonic() + 120
    try:
        created = gke_request(local_cluster, "POST", "/nodePools", body)
        # GKE runs one operation per cluster and answers 400 FAILED_PRECONDITION meanwhile (other tests create
        # pools at the same time): retry, as every GKE client must.
        while created.status_code == 400 and "FAILED_PRECONDITION" in created.text and time.monotonic() < deadline:
            time.sleep(2)
            created = gke_request(local_cluster, "POST", "/nodePools", body)
    except (requests.RequestException, KeyError) as exc:
        pytest.fail(f"the GKE simulator is not reachable: {exc}")
    if created.status_code >= 300:
        pytest.fail(f"the GKE simulator refused the T4 pool: {created.status_code} {created.text[:200]}")

    def node_ready():
        nodes = cluster.core.list_node(label_selector=f"cloud.google.com/gke-nodepool={name}").items
        return nodes and all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                             for n in nodes)
    try:
        wait_for(node_ready, timeout=120, what=f"node of pool {name} Ready")
    except AssertionError as exc:
        gke_request(local_cluster, "DELETE", f"/nodePools/{name}")
        pytest.fail(f"no Ready T4 node (node agent / GKE simulator not running?): {exc}")
    yield name
    # GKE refuses a delete while another operation runs on the cluster ("incompatible operation"): retry
    wait_for(lambda: gke_request(local_cluster, "DELETE", f"/nodePools/{name}").status_code in (200, 404),
             timeout=120, interval=2, what=f"deletion of node pool {name}")


def route_preset_without_timeouts(cluster):
    presets = crds.presets_dir()
    with open(presets / "config-llm-router-route.yaml") as handle:
        preset = yaml.safe_load(handle)
    for rule in preset["spec"]["router"]["route"]["http"]["spec"]["rules"]:
        rule.pop("timeouts", None)
    preset["metadata"] = {"name": "kserve-config-llm-router-route", "namespace": cluster.namespace}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "llminferenceserviceconfigs",
                                                   preset)


def test_conditions_move_from_not_ready_to_ready_as_pods_become_ready(cluster, controller_running, gpu_pool):
    route_preset_without_timeouts(cluster)  # the collection's GKE fix: namespace-local preset wins
    name = "ready"
    cluster.create_llmisvc(seed_llmisvc(name, cluster.namespace))
    first = wait_for(lambda: cluster.condition(name, "MainWorkloadReady"), what="MainWorkloadReady")
    assert first["status"] == "False"
    assert first["reason"] in ("MinimumReplicasUnavailable", "Progressing")
    assert cluster.condition(name, "Ready")["status"] != "True"
    ready = wait_for(lambda: (c := cluster.condition(name, "Ready")) and c["status"] == "True" and c, timeout=300,
                     interval=1, what="Ready=True")
    assert ready.get("reason") is None
    svc = cluster.llmisvc(name)
    status = {c["type"]: c["status"] for c in svc["status"]["conditions"]}
    for ctype in ("MainWorkloadReady", "WorkloadsReady", "HTTPRoutesReady", "InferencePoolReady",
                  "SchedulerWorkloadReady", "GatewaysReady", "RouterReady", "PresetsCombined"):
        assert status[ctype] == "True", ctype
    assert svc["status"]["url"] == f"http://127.0.0.1/{cluster.namespace}/{name}"
    assert svc["status"]["addresses"] == [{"name": "gateway-external", "url": svc["status"]["url"]}]
    assert svc["status"]["workloads"]["primary"]["readyReplicas"] == 1
    reasons = {e.reason for e in cluster.events(name)}
    assert "LLMInferenceServiceReady" in reasons

    # Ready does not mean traffic flows on GKE: without a HealthCheckPolicy the LB probes "/" and gets 404
    completions = svc["status"]["url"] + "/v1/completions"
    body = {"model": "Qwen/Qwen2.5-3B-Instruct", "prompt": "Hello", "max_tokens": 2}
    time.sleep(1)
    response = requests.post(completions, json=body, timeout=30)
    assert (response.status_code, response.text) == (503, "no healthy upstream")
    # The policy must name the pool group the route uses (v1alpha2 while the gateway accepts it, as GKE does).
    route = cluster.get("gateway.networking.k8s.io", "v1", "httproutes", f"{name}-kserve-route")
    route_group = next(b["group"] for r in route["spec"]["rules"] for b in r["backendRefs"]
                       if b["kind"] == "InferencePool")
    policy = copy.deepcopy({"apiVersion": "networking.gke.io/v1", "kind": "HealthCheckPolicy",
                            "metadata": {"name": "pool-hc"},
                            "spec": {"default": {"checkIntervalSec": 5, "healthyThreshold": 1,
                                                 "config": {"type": "HTTP", "httpHealthCheck": {
                                                     "port": 8000, "requestPath": "/health"}}},
                                     "targetRef": {"group": route_group, "kind": "InferencePool",
                                                   "name": f"{name}-inference-pool"}}})
    cluster.custom.create_namespaced_custom_object("networking.gke.io", "v1", cluster.namespace,
                                                   "healthcheckpolicies", policy)
    wait_for(lambda: requests.post(completions, json=body, timeout=30).status_code == 200, timeout=60,
             what="completion through the gateway")
