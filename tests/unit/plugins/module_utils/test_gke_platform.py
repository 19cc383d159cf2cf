"""Platform pre-flight logic (module_utils/gke_platform.py): each check, its fix, and a healthy platform passing."""
import copy

import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_platform as gp

CLUSTER = {
    "name": "c1", "location": "europe-west4-a", "currentMasterVersion": "1.34.3-gke.1051003", "endpoint": "34.90.1.2",
    "addonsConfig": {"httpLoadBalancing": {}},
    "networkConfig": {"network": "projects/p/global/networks/default",
                      "gatewayApiConfig": {"channel": "CHANNEL_STANDARD"}},
}
PROXY = {"name": "proxy-only-subnet", "purpose": "REGIONAL_MANAGED_PROXY", "role": "ACTIVE",
         "network": "https://www.googleapis.com/compute/v1/projects/p/global/networks/default"}
GATEWAY = {"metadata": {"name": "inference-gateway", "namespace": "opendatahub"},
           "spec": {"gatewayClassName": "gke-l7-rilb",
                    "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                                   "allowedRoutes": {"namespaces": {"from": "All"}}}]},
           "status": {"addresses": [{"type": "IPAddress", "value": "10.0.0.9"}]}}


def deployment(image, available=True):
    return {"spec": {"template": {"spec": {"containers": [{"name": "manager", "image": image}]}}},
            "status": {"conditions": [{"type": "Available", "status": "True" if available else "False"}]}}


SERVED = {"gateway.networking.k8s.io/v1": ["gateways", "httproutes", "gatewayclasses"],
          "inference.networking.k8s.io/v1": ["inferencepools"],
          "serving.kserve.io/v1alpha1": ["llminferenceservices", "llminferenceserviceconfigs"],
          "serving.kserve.io/v1alpha2": ["llminferenceservices", "llminferenceserviceconfigs"]}
FACTS = {"cluster": CLUSTER, "subnets": [PROXY], "kube_server": "https://34.90.1.2", "kube_context": "gke_p_c1",
         "gateway": GATEWAY, "namespace_labels": {"kubernetes.io/metadata.name": "llm"}, "served": SERVED,
         "controller": deployment("kserve/llmisvc-controller:v0.20.0"), "odh_controller": None}
WANT = {"cluster_name": "c1", "location": "europe-west4-a", "min_gke_version": "1.32.3",
        "gateway_ref": "opendatahub/inference-gateway", "route_namespace": "llm",
        "allowed_gateway_classes": ["gke-l7-regional-external-managed", "gke-l7-rilb"], "exposure": None,
        "kserve_ref": "kserve/llmisvc-controller-manager", "kserve_min_version": "0.20.0"}


def evaluate(facts=None, want=None, **changes):
    merged = copy.deepcopy(FACTS)
    merged.update(facts or {})
    for path, value in changes.items():  # e.g. cluster__addonsConfig__httpLoadBalancing={"disabled": True}
        keys = path.split("__")
        target = merged
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return gp.evaluate(merged, {**WANT, **(want or {})})


def test_a_healthy_platform_has_no_problems():
    result = evaluate()
    assert result["problems"] == []
    assert all(check["ok"] for check in result["checks"].values())
    assert result["kserve"] == {"flavour": "upstream", "version": "0.20.0",
                                "image": "kserve/llmisvc-controller:v0.20.0"}
    assert result["gateway_exposure"] == "internal"
    assert "internal endpoint, reachable from the VPC only, unauthenticated" in result["exposure_summary"]


@pytest.mark.parametrize("changes, expected", [
    ({"cluster__currentMasterVersion": "1.31.9-gke.1"},
     "runs 1.31.9-gke.1, older than 1.32.3 (platform_min_gke_version"),
    ({"cluster__networkConfig__gatewayApiConfig": {"channel": "CHANNEL_DISABLED"}},
     "gcloud container clusters update c1 --location europe-west4-a --gateway-api=standard"),
    ({"cluster__addonsConfig__httpLoadBalancing": {"disabled": True}},
     "--update-addons=HttpLoadBalancing=ENABLED"),
    ({"subnets": []}, "no proxy-only subnet (purpose REGIONAL_MANAGED_PROXY, role ACTIVE) in region europe-west4, "
                      "network default"),
    ({"subnets": [dict(PROXY, role="BACKUP")]}, "gcloud compute networks subnets create proxy-only-subnet "
                                                "--purpose=REGIONAL_MANAGED_PROXY --role=ACTIVE --region=europe-west4"),
    ({"subnets": [dict(PROXY, network="projects/p/global/networks/other")]}, "playbooks/platform.yml"),
    ({"gateway": None}, "Gateway opendatahub/inference-gateway does not exist: create it with playbooks/platform.yml"),
    ({"gateway__spec__gatewayClassName": "gke-l7-global-external-managed"},
     "uses class gke-l7-global-external-managed, which does not support InferencePool"),
    ({"served": {k: v for k, v in SERVED.items() if not k.startswith("inference.")}},
     "the API inference.networking.k8s.io/v1 does not serve inferencepools"),
])
def test_each_platform_problem_names_its_fix(changes, expected):
    result = evaluate(**changes)
    assert any(expected in problem for problem in result["problems"]), result["problems"]


def test_only_the_alpha_inference_pool_api_is_named_as_such():
    served = {k: v for k, v in SERVED.items() if not k.startswith("inference.")}
    served["inference.networking.x-k8s.io/v1alpha2"] = ["inferencepools", "inferencemodels"]
    problems = evaluate(served=served)["problems"]
    assert any("only inference.networking.x-k8s.io/v1alpha2 InferencePools are served" in p for p in problems)
    assert evaluate(want={"required_apis": {k: v for k, v in gp.DEFAULT_REQUIRED_APIS.items()
                                            if not k.startswith("inference.")}}, served=served)["problems"] == []


def test_proxy_subnet_is_not_needed_for_a_global_class_and_not_read_when_skipped():
    result = evaluate(want={"allowed_gateway_classes": ["gke-l7-global-external-managed"]}, subnets=[],
                      gateway__spec__gatewayClassName="gke-l7-global-external-managed")
    assert "proxy_subnet" not in result["checks"] and result["problems"] == []
    assert "PUBLIC endpoint, reachable from the internet, UNAUTHENTICATED" in result["exposure_summary"]
    assert "proxy_subnet" not in evaluate(subnets=None)["checks"]


def test_exposure_choice_refuses_the_other_kind_and_unset_accepts_both():
    refused = evaluate(want={"exposure": "external"})
    assert any("is internal (class gke-l7-rilb) but llm_serving_gateway_exposure is external" in p
               for p in refused["problems"])
    assert evaluate(want={"exposure": "internal"})["problems"] == []
    public = evaluate(gateway__spec__gatewayClassName="gke-l7-regional-external-managed")
    assert public["problems"] == [] and public["gateway_exposure"] == "external"
    assert "PUBLIC" in public["exposure_summary"] and "10.0.0.9" in public["exposure_summary"]


@pytest.mark.parametrize("allowed, labels, admitted", [
    ({"namespaces": {"from": "All"}}, {}, True),
    ({}, {}, False),  # from: Same is the default
    ({"namespaces": {"from": "Same"}}, {}, False),
    ({"namespaces": {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "llm"}}}},
     {"kubernetes.io/metadata.name": "llm"}, True),
    ({"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "ml"}}}},
     {"kubernetes.io/metadata.name": "llm"}, False),
    ({"namespaces": {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "team", "operator": "In", "values": ["ml", "ai"]}]}}}, {"team": "ai"}, True),
    ({"namespaces": {"from": "Selector", "selector": {"matchExpressions": [
        {"key": "team", "operator": "DoesNotExist"}]}}}, {"team": "ai"}, False),
    ({"namespaces": {"from": "All"}, "kinds": [{"kind": "GRPCRoute"}]}, {}, False),
])
def test_allowed_routes(allowed, labels, admitted):
    gateway = copy.deepcopy(GATEWAY)
    gateway["spec"]["listeners"][0]["allowedRoutes"] = allowed
    result = evaluate(gateway=gateway, namespace_labels=labels)
    problems = [p for p in result["problems"] if "does not admit HTTPRoutes from namespace llm" in p]
    assert bool(problems) is not admitted, result["problems"]
    if problems:
        assert "allowedRoutes.namespaces.from" in problems[0]


def test_same_namespace_route_is_admitted_by_default():
    gateway = copy.deepcopy(GATEWAY)
    gateway["spec"]["listeners"][0].pop("allowedRoutes")
    assert evaluate(gateway=gateway, want={"route_namespace": "opendatahub"})["problems"] == []


@pytest.mark.parametrize("server, context_ok", [
    ("https://34.90.1.2", True),
    ("https://34.90.1.2:443", True),
    ("https://10.0.0.2", True),  # private endpoint
    ("https://gke-abc.europe-west4.gke.goog", True),  # DNS endpoint
    ("https://connectgateway.googleapis.com/v1/projects/123/locations/global/gkeMemberships/c1", True),
    ("https://connectgateway.googleapis.com/v1/projects/123/locations/global/gkeMemberships/other", False),
    ("https://35.1.1.1", False),
    ("", False),
])
def test_one_cluster(server, context_ok):
    cluster = dict(CLUSTER, privateClusterConfig={"privateEndpoint": "10.0.0.2"},
                   controlPlaneEndpointsConfig={"dnsEndpointConfig": {"endpoint": "gke-abc.europe-west4.gke.goog"}})
    problem = gp.one_cluster_problem(server, "ctx-x", cluster, "c1", "europe-west4-a")
    assert (problem is None) is context_ok
    if problem:
        assert f"API server {server or '(none)'} (context ctx-x)" in problem
        assert "control plane 34.90.1.2, 10.0.0.2, gke-abc.europe-west4.gke.goog" in problem
        assert "gcloud container clusters get-credentials c1 --location europe-west4-a" in problem


def test_one_cluster_problem_is_reported_by_evaluate_and_can_be_skipped():
    assert any("is not GKE cluster c1" in p for p in evaluate(kube_server="https://127.0.0.1:16443")["problems"])
    skipped = evaluate(kube_server="https://127.0.0.1:16443", want={"skip": ["one_cluster"]})
    assert skipped["problems"] == [] and skipped["checks"]["one_cluster"]["ok"] is None


def test_open_data_hub_kserve_is_detected_and_refused():
    odh = deployment("quay.io/opendatahub/kserve-controller:v0.15-latest")
    served = {k: v for k, v in SERVED.items() if k != "serving.kserve.io/v1alpha2"}
    result = evaluate(controller=None, odh_controller=odh, served=served)
    assert result["kserve"]["flavour"] == "opendatahub" and result["kserve"]["version"] == "0.15.0"
    problem = next(p for p in result["problems"] if "Open Data Hub" in p)
    assert "opendatahub/kserve-controller-manager" in problem and "serves v1alpha1" in problem
    assert "upstream KServe v0.20" in problem and "llmisvc_controller_namespace" in problem
    # the ODH image under the upstream Deployment name is refused too
    relabelled = evaluate(controller=odh)
    assert relabelled["kserve"]["flavour"] == "opendatahub"
    assert any("kserve/llmisvc-controller-manager" in p and "Open Data Hub" in p for p in relabelled["problems"])


@pytest.mark.parametrize("controller, expected", [
    (None, "Deployment kserve/llmisvc-controller-manager does not exist: install upstream KServe v0.20"),
    (deployment("kserve/llmisvc-controller:v0.19.1"),
     "KServe 0.19.1 (kserve/llmisvc-controller-manager, image kserve/llmisvc-controller:v0.19.1) is older than 0.20.0"),
    (deployment("kserve/llmisvc-controller:v0.20.0", available=False), "is not Available"),
])
def test_kserve_controller_problems(controller, expected):
    result = evaluate(controller=controller)
    assert any(expected in p for p in result["problems"]), result["problems"]


def test_kserve_without_a_version_tag_is_judged_by_its_crd():
    latest = deployment("kserve/llmisvc-controller@sha256:abc")
    assert evaluate(controller=latest)["problems"] == []
    old = {k: v for k, v in SERVED.items() if k != "serving.kserve.io/v1alpha2"}
    assert any("older than v0.17" in p for p in evaluate(controller=latest, served=old)["problems"])


def test_versions_and_hosts():
    assert gp.parse_version("1.34.3-gke.1051003") == (1, 34, 3)
    assert gp.parse_version("v0.20") == (0, 20, 0)
    assert gp.parse_version("latest") is None
    assert gp.region_of("europe-west4-a") == "europe-west4" and gp.region_of("us-central1") == "us-central1"
    assert gp.host_of("https://127.0.0.1:16443") == "127.0.0.1" and gp.host_of("34.1.2.3") == "34.1.2.3"
