"""gke_platform_check and gke_proxy_subnet as Ansible runs them, against the GKE simulator's HTTP layer (no
Kubernetes cluster: the Kubernetes reads are a fake)."""
import json
import time

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.modules import gke_platform_check, gke_proxy_subnet

from tests.gke_sim_inprocess import TOKEN, make_api
from tests.gke_sim_inprocess import transport as sim_transport

AUTH = {"auth_kind": "accesstoken", "access_token": TOKEN, "project": "proj"}
REGION = "/compute/v1/projects/proj/regions/europe-west4"
CLUSTER = "/v1/projects/proj/locations/europe-west4-a/clusters/c1"


@pytest.fixture
def api(tmp_path, monkeypatch):
    sim_api = make_api(tmp_path)
    transport = sim_transport(sim_api)

    monkeypatch.setattr(gkc, "make_transport", lambda module, product="container": transport)
    monkeypatch.setattr(gke_proxy_subnet, "make_transport", lambda module, product="compute": transport)
    sim_api.transport = transport
    return sim_api


def kubeconfig(tmp_path, server):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx-a",
        "clusters": [{"name": "a", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "ctx-a", "context": {"cluster": "a", "user": "u"}}]}))
    return str(path)


def run(capsys, module, args, check_mode=False):
    args = dict(AUTH, **args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exit_info.value.code
    return result


class FakeKube:
    """The Kubernetes side of a healthy local cluster (bootstrap objects, upstream KServe v0.20)."""

    objects = {
        "/apis/gateway.networking.k8s.io/v1": {"resources": [{"name": "gateways"}, {"name": "httproutes"}]},
        "/apis/inference.networking.k8s.io/v1": {"resources": [{"name": "inferencepools"}]},
        "/apis/serving.kserve.io/v1alpha1": {"resources": [{"name": "llminferenceservices"},
                                                           {"name": "llminferenceserviceconfigs"}]},
        "/apis/serving.kserve.io/v1alpha2": {"resources": [{"name": "llminferenceservices"}]},
        "/apis/gateway.networking.k8s.io/v1/namespaces/opendatahub/gateways/inference-gateway": {
            "metadata": {"name": "inference-gateway", "namespace": "opendatahub"},
            "spec": {"gatewayClassName": "gke-l7-regional-external-managed",
                     "listeners": [{"name": "http", "protocol": "HTTP",
                                    "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
        "/apis/apps/v1/namespaces/kserve/deployments/llmisvc-controller-manager": {
            "spec": {"template": {"spec": {"containers": [{"image": "kserve/llmisvc-controller:v0.20.0"}]}}},
            "status": {"conditions": [{"type": "Available", "status": "True"}]}},
    }

    def __init__(self, params):
        self.reads = []

    def get(self, path, optional=False):
        return self.objects.get(path)


ARGS = {"location": "europe-west4-a", "cluster": "c1", "route_namespace": "llm"}


def test_mismatched_kubeconfig_is_refused_before_any_kubernetes_read(api, tmp_path, capsys, monkeypatch):
    def no_kube(params):
        raise AssertionError("the Kubernetes API of another cluster must not be read")

    monkeypatch.setattr(gke_platform_check, "Kube", no_kube)
    result = run(capsys, gke_platform_check, dict(ARGS, kubeconfig=kubeconfig(tmp_path, "https://10.9.9.9:6443")))
    assert result["rc"] == 1 and result["failed"]
    assert "API server https://10.9.9.9:6443 (context ctx-a) is not GKE cluster c1" in result["msg"]
    assert "control plane 127.0.0.1" in result["msg"] and "nothing was written" in result["msg"]


def test_healthy_platform_passes_and_states_exposure(api, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gke_platform_check, "Kube", FakeKube)
    result = run(capsys, gke_platform_check, dict(ARGS, kubeconfig=kubeconfig(tmp_path, "https://127.0.0.1:16443")))
    assert result["rc"] == 0, result
    assert result["problems"] == [] and result["kserve"]["flavour"] == "upstream"
    assert result["checks"]["proxy_subnet"]["detail"] == "proxy-only-subnet"
    assert "PUBLIC endpoint" in result["exposure_summary"] and "UNAUTHENTICATED" in result["exposure_summary"]


def test_http_lb_disabled_and_missing_proxy_subnet_are_reported_together(api, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gke_platform_check, "Kube", FakeKube)
    assert api.transport("POST", f"http://sim{CLUSTER}:setAddons",
                         {"addonsConfig": {"httpLoadBalancing": {"disabled": True}}})[0] == 200
    assert api.transport("DELETE", f"http://sim{REGION}/subnetworks/proxy-only-subnet", None)[0] == 200
    for _attempt in range(300):
        cluster = api.transport("GET", f"http://sim{CLUSTER}", None)[1]
        subnets = api.transport("GET", f"http://sim{REGION}/subnetworks", None)[1]["items"]
        if cluster["status"] == "RUNNING" and len(subnets) == 1:
            break
        time.sleep(0.01)
    result = run(capsys, gke_platform_check, dict(ARGS, kubeconfig=kubeconfig(tmp_path, "https://127.0.0.1:16443")))
    assert result["rc"] == 1
    assert "--update-addons=HttpLoadBalancing=ENABLED" in result["msg"]
    assert "no proxy-only subnet (purpose REGIONAL_MANAGED_PROXY, role ACTIVE) in region europe-west4" in result["msg"]
    assert len(result["problems"]) == 2


def test_proxy_subnet_module_is_idempotent_and_honours_check_mode(api, capsys):
    args = {"region": "europe-west4-a", "compute_endpoint": "http://sim"}
    assert run(capsys, gke_proxy_subnet, args)["changed"] is False  # the existing one is accepted
    api.transport("DELETE", f"http://sim{REGION}/subnetworks/proxy-only-subnet", None)
    for _attempt in range(300):
        if api.transport("GET", f"http://sim{REGION}/subnetworks/proxy-only-subnet", None)[0] == 404:
            break
        time.sleep(0.01)
    api.sim.requests.clear()
    checked = run(capsys, gke_proxy_subnet, dict(args, name="proxy-b"), check_mode=True)
    assert checked["changed"] is True and checked["subnet"]["purpose"] == "REGIONAL_MANAGED_PROXY"
    assert [r["method"] for r in api.sim.requests] == ["GET"]
    created = run(capsys, gke_proxy_subnet, dict(args, name="proxy-b", timeout=30))
    assert created["changed"] is True and created["subnet"]["name"] == "proxy-b"
    assert created["subnet"]["role"] == "ACTIVE" and created["subnet"]["ipCidrRange"] == "10.129.0.0/23"
    assert run(capsys, gke_proxy_subnet, dict(args, name="proxy-c"))["changed"] is False
