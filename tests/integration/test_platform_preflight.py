"""Issue 17 items 1 and 3 on the local cluster: a bad platform prerequisite, or a kubeconfig of another cluster,
stops a deployment before any write with the fix in its message; playbooks/platform.yml creates the proxy-only
subnet (Compute API of the GKE simulator) and leaves existing objects alone.

"Nothing was written" is shown as in test_bad_input_matrix: the GKE simulator's request log holds no write naming
the test's node pool, and the test's workload namespace does not exist afterwards.
"""
import copy
from datetime import UTC, datetime
from pathlib import Path

import cluster_state
import pytest
import yaml

pytestmark = pytest.mark.cluster

PLAYBOOK = "playbooks/deploy_pattern3_gpu.yml"
ODH_IMAGE = "quay.io/opendatahub/kserve-controller:v0.15-latest"
JSON = cluster_state.JSON_RESULTS


@pytest.fixture(scope="module")
def gke(local_cluster):
    return cluster_state.GkeSim(local_cluster)


def _deploy_refused(run_playbook, k8s, gke, name, tmp_path, extra_vars=None, env=None):
    """Run the GPU pattern with its own names; check it wrote nothing; return its failure messages, joined."""
    overrides = {"namespace": name, "llmisvc_name": name, "nodepool": {"name": name}, "replicas": 1}
    assert not cluster_state.exists(k8s, "v1", "Namespace", name), f"namespace {name} left over from an earlier run"
    started = datetime.now(UTC)
    try:
        result = run_playbook(PLAYBOOK, {"pattern_overrides": overrides, "llm_serving_report_dir": str(tmp_path),
                                         **(extra_vars or {})}, env={**JSON, **(env or {})})
        writes = gke.writes_naming(name, started)
        namespace_made = cluster_state.exists(k8s, "v1", "Namespace", name)
    finally:
        cluster_state.delete_if_present(k8s, "v1", "Namespace", name)
    assert result.rc != 0, result.stdout[-3000:]
    assert not writes, f"wrote to GKE before failing: {writes}"
    assert not namespace_made, f"created namespace {name} before failing"
    return " ".join(cluster_state.failure_messages(result.stdout))


def test_kubeconfig_of_another_cluster_is_refused_naming_both(run_playbook, k8s, gke, local_cluster, tmp_path):
    config = yaml.safe_load(Path(local_cluster["KUBECONFIG"]).read_text())
    other = copy.deepcopy(config)
    for cluster in other["clusters"]:
        cluster["cluster"]["server"] = "https://localhost:16443"  # the same API server under another name
    path = tmp_path / "kubeconfig-other"
    path.write_text(yaml.safe_dump(other))
    text = _deploy_refused(run_playbook, k8s, gke, "t-platform-kubeconfig", tmp_path,
                           {"llm_serving_kubeconfig": str(path)},
                           env={"KUBECONFIG": str(path), "K8S_AUTH_KUBECONFIG": str(path)})
    assert "the kubeconfig's API server https://localhost:16443" in text, text[-3000:]
    assert "is not GKE cluster llm-serving-local in europe-west4-a (control plane 127.0.0.1)" in text
    assert "gcloud container clusters get-credentials llm-serving-local" in text


@pytest.fixture
def odh_controller(k8s):
    """Open Data Hub's KServe 0.15 controller image under the upstream Deployment name, in the test's namespace."""
    namespace = "t-platform-odh-kserve"
    k8s.resources.get(api_version="v1", kind="Namespace").create(body={"metadata": {"name": namespace}})
    labels = {"app": "kserve-odh"}
    k8s.resources.get(api_version="apps/v1", kind="Deployment").create(namespace=namespace, body={
        "metadata": {"name": "llmisvc-controller-manager"},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "manager", "image": ODH_IMAGE}]}}}})
    yield namespace
    cluster_state.delete_if_present(k8s, "v1", "Namespace", namespace)


@pytest.mark.serial  # disables HTTP load balancing and deletes the proxy-only subnet of the shared cluster
def test_bad_platform_is_refused_before_any_write_and_platform_yml_restores_the_subnet(
        run_playbook, k8s, gke, tmp_path, odh_controller):
    try:
        gke.set_http_lb(disabled=True)
        assert gke.call("DELETE", f"{gke.subnets_url}/proxy-only-subnet")[0] == 200
        gke.wait_subnet("proxy-only-subnet", 404)

        text = _deploy_refused(run_playbook, k8s, gke, "t-platform-bad", tmp_path,
                               {"llmisvc_controller_namespace": odh_controller})
        assert "platform pre-flight failed (nothing was written)" in text, text[-4000:]
        assert "gcloud container clusters update llm-serving-local --location europe-west4-a " \
               "--update-addons=HttpLoadBalancing=ENABLED" in text
        assert "no proxy-only subnet (purpose REGIONAL_MANAGED_PROXY, role ACTIVE) in region europe-west4" in text
        assert "--purpose=REGIONAL_MANAGED_PROXY --role=ACTIVE --region=europe-west4" in text
        assert f"KServe is Open Data Hub's build ({odh_controller}/llmisvc-controller-manager, {ODH_IMAGE}" in text

        exposure = {"llm_serving_gateway_exposure": "external"}
        checked = run_playbook("playbooks/platform.yml", exposure, check=True, env=JSON)
        assert "proxy-only subnet: proxy-only-subnet 10.129.0.0/23 (would be created)" in checked.stdout, \
            checked.stdout[-3000:]
        assert gke.subnet_status("proxy-only-subnet") == 404  # --check created nothing

        applied = run_playbook("playbooks/platform.yml", exposure, env=JSON)
        text = applied.stdout
        assert "proxy-only subnet: proxy-only-subnet 10.129.0.0/23 (created)" in text, applied.stdout[-3000:]
        assert "Gateway opendatahub/inference-gateway: exists (not modified)" in text
        assert gke.subnet_status("proxy-only-subnet") == 200
        # what it cannot own is checked, not changed: HTTP load balancing is still reported, with its fix
        assert applied.rc != 0 and "--update-addons=HttpLoadBalancing=ENABLED" in text
        assert "no proxy-only subnet" not in text
    finally:
        gke.set_http_lb(disabled=False)
        if gke.subnet_status("proxy-only-subnet") == 404:
            gke.call("POST", gke.subnets_url, {"name": "proxy-only-subnet", "ipCidrRange": "10.129.0.0/23",
                                               "network": "global/networks/default",
                                               "purpose": "REGIONAL_MANAGED_PROXY", "role": "ACTIVE"})
            gke.wait_subnet("proxy-only-subnet", 200)


def test_platform_yml_creates_a_missing_gateway_once(run_playbook, k8s):
    """The Gateway is created only when missing (internal by default: gke-l7-rilb; allowedRoutes by namespace
    selector), then left alone: a second run changes nothing."""
    namespace = "t-platform-gateway"
    extra = {"platform_gateway": {"name": "t-gw", "namespace": namespace},
             "platform_gateway_allowed_namespaces": ["t-platform-workload"]}
    try:
        first = run_playbook("playbooks/platform.yml", extra, env=JSON)
        assert first.rc == 0, first.stdout[-3000:]
        assert f"Gateway {namespace}/t-gw: created" in first.stdout
        assert "internal endpoint, reachable from the VPC only, unauthenticated" in first.stdout
        gateway = k8s.resources.get(api_version="gateway.networking.k8s.io/v1", kind="Gateway").get(
            name="t-gw", namespace=namespace)
        assert gateway.spec.gatewayClassName == "gke-l7-rilb"
        selector = gateway.spec.listeners[0].allowedRoutes.namespaces
        assert selector["from"] == "Selector"
        assert selector.selector.matchExpressions[0]["values"] == ["t-platform-workload"]
        second = run_playbook("playbooks/platform.yml", extra, env=JSON)
        assert second.rc == 0 and second.changed == 0, second.stdout[-3000:]
        assert f"Gateway {namespace}/t-gw: exists (not modified)" in second.stdout
    finally:
        cluster_state.delete_if_present(k8s, "v1", "Namespace", namespace)
