"""The simulated GKE gateway against real API objects and vLLM replicas run by the node agent.

Three CPU vLLM replicas (Deployment ``replica``) and an endpoint-picker pod are scheduled on the
bootstrap ``default-pool`` nodes; routes, health-check and backend policies are ordinary API objects.
"""
import random
import re
import socket
import time
import uuid

import polling
import pytest
import requests
from kubernetes import client

pytestmark = pytest.mark.cluster

GATEWAY = ("opendatahub", "inference-gateway")
POOL_GROUP = "inference.networking.k8s.io"
VLLM_CPU_IMAGE = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.10.1.1"
EPP_IMAGE = "ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.9.0"
REPLICAS = 3
WAIT = 60


def wait_for(predicate, timeout=WAIT, interval=0.25, what="condition"):
    return polling.wait_for(predicate, timeout=timeout, interval=interval, what=what)


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def gateway_url(local_cluster, k8s_api_client):
    custom = client.CustomObjectsApi(k8s_api_client)

    def programmed():
        gw = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", GATEWAY[0], "gateways",
                                                 GATEWAY[1])
        status = gw.get("status") or {}
        ok = any(c["type"] == "Programmed" and c["status"] == "True" for c in status.get("conditions") or [])
        return ok and status.get("addresses")
    try:
        addresses = wait_for(programmed, timeout=30, what="inference-gateway Programmed")
    except AssertionError:
        pytest.fail("the gateway simulator has not programmed opendatahub/inference-gateway within 30s "
                    "(is it running?)")
    return f"http://{addresses[0]['value']}"


@pytest.fixture(scope="module")
def namespace(k8s_api_client):
    core = client.CoreV1Api(k8s_api_client)
    name = f"t-gw-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def deployment(name, labels, replicas, container):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def ready_pod_ips(core, namespace, selector, count):
    def ips():
        pods = core.list_namespaced_pod(namespace, label_selector=selector).items
        ready = [p.status.pod_ip for p in pods if p.status.pod_ip and any(
            c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        return sorted(ready) if len(ready) == count else None
    return wait_for(ips, timeout=180, interval=1, what=f"{count} ready pods {selector}")


@pytest.fixture(scope="module")
def replicas(k8s_api_client, namespace, gateway_url):
    """Pod IPs of three CPU vLLM replicas with prefix caching (run by the node agent)."""
    apps, core = client.AppsV1Api(k8s_api_client), client.CoreV1Api(k8s_api_client)
    apps.create_namespaced_deployment(namespace, deployment("replica", {"app": "t-replica"}, REPLICAS, {
        "name": "main", "image": VLLM_CPU_IMAGE, "ports": [{"containerPort": 8000, "name": "http"}],
        "command": ["vllm", "serve", "/mnt/models", "--served-model-name", "qwen", "--enable-prefix-caching",
                    "--port", "8000", "--max-model-len", "4096"],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 1}}))
    apps.create_namespaced_deployment(namespace, deployment("epp", {"app": "t-epp"}, 1, {
        "name": "main", "image": EPP_IMAGE, "ports": [{"containerPort": 9002, "name": "grpc"}]}))
    try:
        ready_pod_ips(core, namespace, "app=t-epp", 1)
        return ready_pod_ips(core, namespace, "app=t-replica", REPLICAS)
    except AssertionError as exc:
        pytest.fail(f"the node agent did not run the replicas: {exc}")


@pytest.fixture(scope="module")
def backends(k8s_api_client, namespace, replicas):
    """Service ``t-svc`` and InferencePool ``t-pool`` over the replicas; the pool's picker is ``t-epp``."""
    core = client.CoreV1Api(k8s_api_client)
    custom = client.CustomObjectsApi(k8s_api_client)
    labels = {"app": "t-replica"}
    core.create_namespaced_service(namespace, {"metadata": {"name": "t-svc"}, "spec": {
        "selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": 8000}]}})
    core.create_namespaced_service(namespace, {"metadata": {"name": "t-epp"}, "spec": {
        "selector": {"app": "t-epp"}, "ports": [{"name": "grpc", "port": 9002, "targetPort": 9002}]}})
    custom.create_namespaced_custom_object(POOL_GROUP, "v1", namespace, "inferencepools", {
        "apiVersion": f"{POOL_GROUP}/v1", "kind": "InferencePool", "metadata": {"name": "t-pool"},
        "spec": {"selector": {"matchLabels": labels}, "targetPorts": [{"number": 8000}],
                 "endpointPickerRef": {"kind": "Service", "name": "t-epp", "port": {"number": 9002},
                                       "failureMode": "FailOpen"}}})
    return {"service": "t-svc", "pool": "t-pool", "ips": replicas}


def create_route(custom, namespace, name, prefix, backend, timeouts=False):
    rule = {"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                       "replacePrefixMatch": "/"}}}],
            "backendRefs": [backend]}
    if timeouts:
        rule["timeouts"] = {"request": "0s", "backendRequest": "0s"}
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": GATEWAY[1], "namespace": GATEWAY[0]}], "rules": [rule]}})


def route_parent(custom, namespace, name):
    route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", name)
    parents = (route.get("status") or {}).get("parents") or []
    return next((p for p in parents if p.get("controllerName") == "networking.gke.io/gateway"), None)


def accepted(custom, namespace, name):
    parent = route_parent(custom, namespace, name)
    conds = {c["type"]: c for c in (parent or {}).get("conditions") or []}
    return conds.get("Accepted", {}).get("status") == "True" and conds.get("ResolvedRefs", {}).get("status") == "True"


def health_check_policy(custom, namespace, name, kind, target, group=None):
    target_ref = {"kind": kind, "name": target}
    if group:  # the core group is "" (omitted: a 1.20 API server reads an empty string as null)
        target_ref["group"] = group
    custom.create_namespaced_custom_object("networking.gke.io", "v1", namespace, "healthcheckpolicies", {
        "apiVersion": "networking.gke.io/v1", "kind": "HealthCheckPolicy", "metadata": {"name": name},
        "spec": {"default": {"checkIntervalSec": 5, "timeoutSec": 5, "healthyThreshold": 1, "unhealthyThreshold": 2,
                             "config": {"type": "HTTP", "httpHealthCheck": {"port": 8000, "requestPath": "/health"}}},
                 "targetRef": target_ref}})


def metrics(ip):
    text = requests.get(f"http://{ip}:8000/metrics", timeout=5).text
    values = {}
    for key in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "vllm:request_success_total"):
        values[key] = sum(float(m) for m in re.findall(rf"^{re.escape(key)}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))
    return values


def complete(url, prompt, max_tokens=2):
    return requests.post(url, json={"model": "qwen", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0},
                         timeout=60)


# ---------------------------------------------------------------- tests

def test_http10_gets_426_upgrade_required(gateway_url):
    host = gateway_url.split("//", 1)[1]
    with socket.create_connection((host, 80), timeout=5) as sock:
        sock.sendall(b"GET /anything HTTP/1.0\r\nHost: x\r\n\r\n")
        head = sock.recv(200).decode(errors="replace")
    assert head.startswith("HTTP/1.") and " 426 " in head.split("\r\n", 1)[0]


def test_route_with_timeouts_is_rejected_like_gke(k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    create_route(custom, namespace, "with-timeouts", f"/{namespace}/timeouts", {"name": backends["service"],
                                                                                "port": 8000}, timeouts=True)
    parent = wait_for(lambda: route_parent(custom, namespace, "with-timeouts"), what="route status")
    cond = next(c for c in parent["conditions"] if c["type"] == "Accepted")
    assert cond["status"] == "False"
    assert cond["reason"] == "UnsupportedValue"
    assert cond["message"] == (f'GWCER104: HTTPRoute "{namespace}/with-timeouts" is misconfigured, '
                               "err: Timeouts are not supported.")
    assert requests.get(f"{gateway_url}/{namespace}/timeouts/health", timeout=5).status_code == 404


def test_missing_backend_gives_backend_not_found(k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    create_route(custom, namespace, "missing", f"/{namespace}/missing", {"name": "no-such-svc", "port": 8000})
    parent = wait_for(lambda: route_parent(custom, namespace, "missing"), what="route status")
    cond = next(c for c in parent["conditions"] if c["type"] == "ResolvedRefs")
    assert (cond["status"], cond["reason"]) == ("False", "BackendNotFound")


def test_default_health_check_on_slash_makes_vllm_unhealthy_until_a_policy_sets_health(
        k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    create_route(custom, namespace, "svc", f"/{namespace}/svc", {"name": backends["service"], "port": 8000})
    wait_for(lambda: accepted(custom, namespace, "svc"), what="route svc accepted")
    url = f"{gateway_url}/{namespace}/svc/v1/models"
    time.sleep(2)  # several health-check rounds on "/" (vLLM answers 404 there)
    response = requests.get(url, timeout=5)
    assert response.status_code == 503
    assert response.text == "no healthy upstream"
    health_check_policy(custom, namespace, "svc-hc", "Service", backends["service"])
    wait_for(lambda: requests.get(url, timeout=5).status_code == 200, what="backends healthy on /health")
    policy = custom.get_namespaced_custom_object("networking.gke.io", "v1", namespace, "healthcheckpolicies",
                                                 "svc-hc")
    assert [(c["type"], c["status"], c["reason"]) for c in policy["status"]["conditions"]] == [
        ("Attached", "True", "Attached")]
    ips = backends["ips"]
    before = {ip: metrics(ip)["vllm:request_success_total"] for ip in ips}
    for _unused in range(3 * len(ips)):
        assert complete(f"{gateway_url}/{namespace}/svc/v1/completions", "hello there").status_code == 200
    served = {ip: metrics(ip)["vllm:request_success_total"] - before[ip] for ip in ips}
    assert served == {ip: 3 for ip in ips}  # round robin over the Service's ready pods


def test_streaming_responses_pass_through(k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    if not accepted(custom, namespace, "svc"):
        pytest.fail("the svc route of the health-check test is not Accepted (that test failed or did not run)")
    wait_for(lambda: requests.get(f"{gateway_url}/{namespace}/svc/health", timeout=5).status_code == 200)
    with requests.post(f"{gateway_url}/{namespace}/svc/v1/completions", stream=True, timeout=60,
                       json={"model": "qwen", "prompt": "count", "max_tokens": 5, "stream": True}) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]"
    assert len(lines) >= 3


def test_health_check_policy_on_a_service_no_route_uses_is_not_attached(k8s_api_client, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    health_check_policy(custom, namespace, "shadow-hc", "Service", "t-replica-ip-30172fd8")  # the seed's mistake
    policy = wait_for(lambda: (custom.get_namespaced_custom_object(
        "networking.gke.io", "v1", namespace, "healthcheckpolicies", "shadow-hc").get("status") or {}).get(
        "conditions"), what="policy status")
    assert [(c["type"], c["status"], c["reason"]) for c in policy] == [("Attached", "False", "GatewayNotFound")]


def test_backend_timeout_from_gcpbackendpolicy_gives_504(k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    core = client.CoreV1Api(k8s_api_client)
    core.create_namespaced_service(namespace, {"metadata": {"name": "t-slow"}, "spec": {
        "selector": {"app": "t-replica"}, "ports": [{"name": "http", "port": 8000, "targetPort": 8000}]}})
    health_check_policy(custom, namespace, "slow-hc", "Service", "t-slow")
    custom.create_namespaced_custom_object("networking.gke.io", "v1", namespace, "gcpbackendpolicies", {
        "apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy", "metadata": {"name": "slow-timeout"},
        "spec": {"default": {"timeoutSec": 1}, "targetRef": {"kind": "Service", "name": "t-slow"}}})
    create_route(custom, namespace, "slow", f"/{namespace}/slow", {"name": "t-slow", "port": 8000})
    wait_for(lambda: accepted(custom, namespace, "slow"), what="route slow accepted")
    wait_for(lambda: requests.get(f"{gateway_url}/{namespace}/slow/health", timeout=5).status_code == 200)
    response = complete(f"{gateway_url}/{namespace}/slow/v1/completions", "tell a long story", max_tokens=400)
    assert response.status_code == 504


def run_shared_prefix_workload(url, ips, groups, per_group, seed):
    """Hit rate (hits/queries in tokens, from the replicas' /metrics) of a shared-prefix workload."""
    rng = random.Random(seed)
    # ~300-token shared prefix per group (each word is 5 tokens): far more than one 16-token block
    prefixes = [" ".join(f"doc{seed}-{g}-{rng.randrange(10**6)}" for _unused in range(60)) for g in range(groups)]
    order = [g for g in range(groups) for _unused in range(per_group)]
    rng.shuffle(order)
    before = {ip: metrics(ip) for ip in ips}
    for n, group in enumerate(order):
        response = complete(url, f"{prefixes[group]}\nQuestion {n}: what is item {rng.randrange(1000)}?")
        assert response.status_code == 200, response.text
    after = {ip: metrics(ip) for ip in ips}
    queries = sum(after[ip]["vllm:prefix_cache_queries_total"] - before[ip]["vllm:prefix_cache_queries_total"]
                  for ip in ips)
    hits = sum(after[ip]["vllm:prefix_cache_hits_total"] - before[ip]["vllm:prefix_cache_hits_total"]
               for ip in ips)
    return hits / queries


def test_inference_pool_routing_has_higher_prefix_cache_hit_rate_than_round_robin(
        k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    if not accepted(custom, namespace, "svc"):
        pytest.fail("the svc route of the health-check test is not Accepted (that test failed or did not run)")
    create_route(custom, namespace, "pool", f"/{namespace}/pool",
                 {"group": POOL_GROUP, "kind": "InferencePool", "name": backends["pool"], "port": 8000})
    health_check_policy(custom, namespace, "pool-hc", "InferencePool", backends["pool"], group=POOL_GROUP)
    wait_for(lambda: accepted(custom, namespace, "pool"), what="route pool accepted")
    pool = wait_for(lambda: (custom.get_namespaced_custom_object(POOL_GROUP, "v1", namespace, "inferencepools",
                                                                 backends["pool"]).get("status") or {}).get("parents"),
                    what="InferencePool parent status")
    assert pool[0]["parentRef"]["name"] == GATEWAY[1]
    assert any(c["type"] == "Accepted" and c["status"] == "True" for c in pool[0]["conditions"])
    wait_for(lambda: requests.get(f"{gateway_url}/{namespace}/svc/health", timeout=5).status_code == 200)
    wait_for(lambda: complete(f"{gateway_url}/{namespace}/pool/v1/completions", "warm").status_code == 200)
    ips = backends["ips"]
    round_robin = run_shared_prefix_workload(f"{gateway_url}/{namespace}/svc/v1/completions", ips, 4, 6, seed=1)
    prefix_aware = run_shared_prefix_workload(f"{gateway_url}/{namespace}/pool/v1/completions", ips, 4, 6, seed=2)
    print(f"prefix-cache hit rate: round robin {round_robin:.3f}, InferencePool (EPP) {prefix_aware:.3f}")
    assert prefix_aware > round_robin


def test_gke_global_class_does_not_support_inference_pool(k8s_api_client, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    name = f"t-gw-global-{namespace[-6:]}"
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "gateways", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": name},
        "spec": {"gatewayClassName": "gke-l7-global-external-managed",
                 "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]}})
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "global-pool"},
        "spec": {"parentRefs": [{"name": name}], "rules": [{"backendRefs": [
            {"group": POOL_GROUP, "kind": "InferencePool", "name": backends["pool"], "port": 8000}]}]}})
    parent = wait_for(lambda: route_parent(custom, namespace, "global-pool"), what="route status")
    resolved = next(c for c in parent["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "InvalidKind")
    time.sleep(1)
    pool = custom.get_namespaced_custom_object(POOL_GROUP, "v1", namespace, "inferencepools", backends["pool"])
    parents = (pool.get("status") or {}).get("parents") or []
    assert all(p["parentRef"]["name"] != name for p in parents)


def test_pool_fails_open_to_round_robin_when_the_endpoint_picker_is_down(
        k8s_api_client, gateway_url, namespace, backends):
    custom = client.CustomObjectsApi(k8s_api_client)
    if not accepted(custom, namespace, "pool"):
        pytest.fail("the pool route of the hit-rate test is not Accepted (that test failed or did not run)")
    apps, core = client.AppsV1Api(k8s_api_client), client.CoreV1Api(k8s_api_client)
    apps.patch_namespaced_deployment_scale("epp", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not core.list_namespaced_pod(namespace, label_selector="app=t-epp").items, timeout=120,
             what="endpoint picker gone")
    time.sleep(1)  # the gateway's routing table follows the pod watch
    ips = backends["ips"]
    before = {ip: metrics(ip)["vllm:request_success_total"] for ip in ips}
    prompt = " ".join(f"same-{i}" for i in range(60))
    for _unused in range(len(ips)):
        assert complete(f"{gateway_url}/{namespace}/pool/v1/completions", prompt).status_code == 200
    served = {ip: metrics(ip)["vllm:request_success_total"] - before[ip] for ip in ips}
    assert served == {ip: 1 for ip in ips}  # FailOpen: plain rotation, no prefix affinity
