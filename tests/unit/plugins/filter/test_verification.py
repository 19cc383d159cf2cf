"""Filters of the verification role (plugins/filter/verification.py): the one k8s_read run's queries, the URL
choice, the Ready workload pods against the expected replicas, the routing and GKE policy checks."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.verification import FilterModule

F = FilterModule().filters()
NS, NAME = "ns", "demo"
V1, V1ALPHA2 = "inference.networking.k8s.io", "inference.networking.x-k8s.io"
POOL = "demo-inference-pool"


def _result(query_id, resources, kind=None):
    return {"item": {"id": query_id, "kind": kind or query_id}, "resources": resources}


def _llmisvc(url="", replicas=None):
    spec = {} if replicas is None else {"replicas": replicas}
    return {"metadata": {"name": NAME, "namespace": NS}, "spec": spec, "status": {"url": url} if url else {}}


def _pod(ip, ready=True, phase="Running", deleting=False, period=None):
    meta = {"name": f"p-{ip}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    container = {"name": "main"}
    if period:
        container["readinessProbe"] = {"periodSeconds": period}
    status = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "spec": {"containers": [container]}, "status": status}


def _gateway(address):
    return {"metadata": {"name": "inference-gateway"}, "status": {"addresses": [{"value": address}]}}


def discover(results, **kwargs):
    return F["verification_discover"](results, NAME, NS, **kwargs)


def test_queries_read_everything_in_one_run_and_routing_only_when_asked():
    plain = F["verification_queries"](NAME, NS)
    assert [q["id"] for q in plain] == ["llmisvc", "gateway", "pods", "deployments"]
    assert plain[0]["api_version"] == "serving.kserve.io/v1alpha1" and plain[0]["name"] == NAME
    assert "app.kubernetes.io/component=llminferenceservice-workload" in plain[2]["label_selectors"]
    assert plain[3]["label_selectors"] == plain[2]["label_selectors"]
    assert [q["id"] for q in F["verification_queries"](NAME, NS, policies=True)] == [q["id"] for q in plain]
    full = F["verification_queries"](NAME, NS, api_version="v1alpha2", routing=True, policies=True)
    assert full[0]["api_version"] == "serving.kserve.io/v1alpha2"
    assert [(q["id"], q.get("api_version"), q["kind"]) for q in full[4:]] == [
        ("routes", "gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("pools", f"{V1}/v1", "InferencePool"), ("pools", f"{V1ALPHA2}/v1alpha2", "InferencePool"),
        ("policies", "networking.gke.io/v1", "HealthCheckPolicy"),
        ("policies", "networking.gke.io/v1", "GCPBackendPolicy")]


@pytest.mark.parametrize(("base_url", "status_url", "address", "url", "source"), [
    ("http://override//", "http://status/ns/demo", "1.2.3.4", "http://override", "verification_base_url"),
    ("", "http://status/ns/demo/", "1.2.3.4", "http://status/ns/demo", "status.url"),
    ("", "", " 1.2.3.4 ", "http://1.2.3.4/ns/demo", "gateway opendatahub/inference-gateway"),
])
def test_the_url_is_the_override_else_status_url_else_the_gateway_address(
        base_url, status_url, address, url, source):
    found = discover([_result("llmisvc", [_llmisvc(status_url)]), _result("gateway", [_gateway(address)])],
                     base_url=base_url)
    assert (found["url"], found["url_source"], found["error"]) == (url, source, "")


def test_a_missing_llmisvc_is_an_error_naming_it_and_the_variables():
    found = discover([_result("llmisvc", []), _result("gateway", [_gateway("1.2.3.4")])])
    assert found["found"] is False
    assert found["error"] == ("LLMInferenceService ns/demo was not found (verification_llmisvc_name / "
                              "verification_namespace).")


def test_no_url_is_an_error_naming_the_gateway_and_verification_base_url():
    found = discover([_result("llmisvc", [_llmisvc()]), _result("gateway", [])], gateway_namespace="gw-ns",
                     gateway_name="gw")
    assert found["url"] == ""
    assert found["error"] == ("No URL for ns/demo: its status.url is empty and Gateway gw-ns/gw has no address yet. "
                              "Wait for the llmisvc (llm_serving.gke.llmisvc_wait) or set verification_base_url.")


def test_only_running_ready_pods_with_an_ip_that_are_not_terminating_count():
    pods = [_pod("10.0.0.1"), _pod("10.0.0.2", ready=False), _pod("10.0.0.3", phase="Pending"),
            _pod("10.0.0.4", deleting=True), _pod(None), _pod("10.0.0.6")]
    found = discover([_result("llmisvc", [_llmisvc("http://u", replicas=2)]), _result("pods", pods)])
    assert found["pod_ips"] == ["10.0.0.1", "10.0.0.6"]
    assert found["replicas"]["ready"] == 2 and found["replicas"]["listed"] == 6 and found["replicas"]["expected"] == 2


@pytest.mark.parametrize(("spec_replicas", "deployment_ready", "expected"), [
    (3, [1], 3), (None, [], 1), (1, [2, 1], 3), (0, [], 0),
])
def test_expected_replicas_are_spec_replicas_or_the_deployments_ready_replicas_when_more(
        spec_replicas, deployment_ready, expected):
    deployments = [{"status": {"readyReplicas": n}} for n in deployment_ready]
    found = discover([_result("llmisvc", [_llmisvc("http://u", replicas=spec_replicas)]),
                      _result("deployments", deployments), _result("pods", [_pod("10.0.0.1")])])
    assert found["replicas"]["expected"] == expected
    assert found["replicas"]["ready"] == 1


@pytest.mark.parametrize(("period", "scale", "delay"), [
    (10, 1.0, 10), (10, 0.02, 1), (30, 0.1, 3), (None, 1, 10), (5, "0.5", 3)])
def test_pods_are_listed_again_one_scaled_readiness_probe_period_apart_at_least_1_s(period, scale, delay):
    replicas = F["verification_workload_replicas"]([_result("pods", [_pod("10.0.0.1", period=period)])], 2,
                                                   probe_period_scale=scale)
    assert replicas["relist_delay"] == delay
    assert (replicas["ready"], replicas["expected"]) == (1, 2)


def test_a_probe_period_scale_that_is_no_number_names_the_variable():
    with pytest.raises(AnsibleFilterError, match="verification_probe_period_scale must be a number"):
        F["verification_workload_replicas"]([], 1, probe_period_scale="fast")


def test_results_that_are_no_list_are_refused():
    with pytest.raises(AnsibleFilterError, match="results list of llm_serving.gke.k8s_read"):
        discover({"results": []})


def _route(*refs):
    return {"spec": {"rules": [{"backendRefs": list(refs)}, {"backendRefs": [{"name": "svc", "port": 80}]}]}}


def _pool(group, version, status):
    return {"apiVersion": f"{group}/{version}", "metadata": {"name": POOL}, "status": status}


ACCEPTED = {"conditions": [{"type": "Accepted", "status": "True"}]}
REJECTED = {"conditions": [{"type": "Accepted", "status": "False"}]}


@pytest.mark.parametrize(("group", "measured", "passed"), [
    (V1ALPHA2, "1 parent(s), 1 accepted", True),  # v1alpha2 keeps the parents in status.parent
    (V1, "2 parent(s), 0 accepted", False),
    ("", "2 parent(s), 0 accepted", False),  # no group: the v1 pool
])
def test_the_pool_in_the_group_the_route_names_is_judged(group, measured, passed):
    ref = {"group": group, "kind": "InferencePool", "name": POOL}
    results = [_result("llmisvc", [_llmisvc("http://u")]),
               _result("routes", [_route(ref, ref)]),
               _result("pools", [_pool(V1, "v1", {"parents": [REJECTED, REJECTED]})]),
               _result("pools", [_pool(V1ALPHA2, "v1alpha2", {"parent": [ACCEPTED]})])]
    found = discover(results)
    assert found["pool_refs"] == [{"group": group, "kind": "InferencePool", "name": POOL}]
    route, pool = F["verification_routing_checks"](found)
    assert route == {"name": "route_to_inference_pool", "passed": True,
                     "expected": "the llmisvc's HTTPRoute has an InferencePool backend (scheduler configured)",
                     "measured": f"1 route(s), InferencePool backends: {POOL}"}
    assert (pool["name"], pool["passed"], pool["measured"]) == ("inference_pool_accepted", passed, measured)


def test_a_route_without_a_pool_fails_both_routing_checks():
    found = discover([_result("llmisvc", [_llmisvc("http://u")]), _result("routes", [_route()])])
    route, pool = F["verification_routing_checks"](found)
    assert (route["passed"], route["measured"]) == (False, "1 route(s), InferencePool backends: none")
    assert (pool["passed"], pool["measured"]) == (False, "pool not found")


def _policies(groups):
    refs = [{"spec": {"targetRef": {"group": g, "kind": "InferencePool", "name": POOL}}} for g in groups]
    return {"results": [{"item": kind, "resources": refs} for kind in ("HealthCheckPolicy", "GCPBackendPolicy")]}


def test_policies_are_shaped_like_the_former_looped_register():
    results = [_result("llmisvc", [_llmisvc("http://u")]),
               _result("policies", [{"spec": {}}], kind="HealthCheckPolicy"),
               _result("policies", [], kind="GCPBackendPolicy")]
    assert discover(results)["policies"] == {"results": [{"item": "HealthCheckPolicy", "resources": [{"spec": {}}]},
                                                         {"item": "GCPBackendPolicy", "resources": []}]}


def test_policy_check_passes_when_both_policies_target_the_route_backend():
    check = F["verification_policy_check"](_policies([V1, V1ALPHA2]),
                                           [{"group": V1ALPHA2, "kind": "InferencePool", "name": POOL}])
    assert check["passed"] is True
    assert check["measured"] == f"route backends: {V1ALPHA2}/InferencePool/{POOL}; every backend has both policies"


def test_policy_check_names_each_missing_policy():
    check = F["verification_policy_check"](_policies([V1]),
                                           [{"group": V1ALPHA2, "kind": "InferencePool", "name": POOL}])
    assert check["passed"] is False
    assert check["measured"].endswith(f"missing: HealthCheckPolicy for {V1ALPHA2}/InferencePool {POOL}, "
                                      f"GCPBackendPolicy for {V1ALPHA2}/InferencePool {POOL}")


def test_policy_check_without_route_backends_fails():
    check = F["verification_policy_check"]({}, [])
    assert (check["passed"], check["measured"]) == (False, "route backends: none; every backend has both policies")


def test_functional_requests_go_through_the_url_and_to_each_pod_without_the_gateway_headers():
    requests = F["verification_requests"]("http://gw/ns/demo", "m", pod_ips=["10.0.0.1"], pod_scheme="https",
                                          pod_port=8443)
    assert [(r["name"], r["url"], r.get("method", "GET")) for r in requests] == [
        ("models", "http://gw/ns/demo/v1/models", "GET"),
        ("completions", "http://gw/ns/demo/v1/completions", "POST"),
        ("chat", "http://gw/ns/demo/v1/chat/completions", "POST"),
        ("gateway_health", "http://gw/ns/demo/health", "GET"),
        ("pod_health", "https://10.0.0.1:8443/health", "GET")]
    assert [r.get("use_headers", True) for r in requests] == [True] * 4 + [False]
    assert all("headers" not in r for r in requests) and requests[4]["item"] == "10.0.0.1"
    assert requests[1]["body"] == {"model": "m", "prompt": "Hello, how are you?", "max_tokens": 16, "temperature": 0}
    assert requests[2]["body"]["messages"] == [{"role": "user", "content": "What is Kubernetes?"}]
    assert [r["name"] for r in F["verification_requests"]("u", "m", gateway_health=False)] == [
        "models", "completions", "chat"]
