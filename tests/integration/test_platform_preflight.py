"""Issue 17 items 1 and 3 on the local cluster: a bad platform prerequisite, or a kubeconfig of another cluster,
stops a deployment before any write with the fix in its message; playbooks/platform.yml creates the proxy-only
subnet (Compute API of the GKE simulator) and leaves existing objects alone.

"Nothing was written" is shown as in test_bad_input_matrix: the GKE simulator's request log holds no write naming
the test's node pool, and the test's workload namespace does not exist afterwards.
"""
import copy
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster

PLAYBOOK = "playbooks/deploy_pattern3_gpu.yml"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
ODH_IMAGE = "quay.io/opendatahub/kserve-controller:v0.15-latest"
JSON = {"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}


class Gke:
    def __init__(self, env):
        self.base = env["GKE_API_ENDPOINT"]
        self.headers = {"Authorization": f"Bearer {env['GCP_ACCESS_TOKEN']}"}
        self.cluster = (f"{self.base}/v1/projects/{env['GCP_PROJECT']}/locations/{env['GKE_LOCATION']}/clusters/"
                        f"{env['GKE_CLUSTER']}")
        region = env["GKE_LOCATION"].rsplit("-", 1)[0]
        self.subnets = f"{self.base}/compute/v1/projects/{env['GCP_PROJECT']}/regions/{region}/subnetworks"

    def call(self, method, url, body=None):
        response = requests.request(method, url, json=body, headers=self.headers, timeout=30)
        return response.status_code, response.json()

    def set_http_lb(self, disabled, deadline=120):
        stop = time.monotonic() + deadline
        while time.monotonic() < stop:
            status = self.call("POST", f"{self.cluster}:setAddons",
                               {"addonsConfig": {"httpLoadBalancing": {"disabled": disabled}}})[0]
            if status == 200:
                break
            time.sleep(2)  # 400 FAILED_PRECONDITION while another operation runs on the cluster
        while time.monotonic() < stop:
            cluster = self.call("GET", self.cluster)[1]
            if cluster["status"] == "RUNNING" and bool(
                    cluster["addonsConfig"]["httpLoadBalancing"].get("disabled")) == disabled:
                return
            time.sleep(0.5)
        raise AssertionError(f"httpLoadBalancing.disabled never became {disabled}")

    def subnet_status(self, name):
        return self.call("GET", f"{self.subnets}/{name}")[0]

    def wait_subnet(self, name, status, deadline=60):
        stop = time.monotonic() + deadline
        while self.subnet_status(name) != status:
            assert time.monotonic() < stop, f"subnet {name} never answered {status}"
            time.sleep(0.5)

    def writes_naming(self, pool, since):
        log = requests.get(f"{self.base}/_sim/requests", headers=self.headers, timeout=30).json()["requests"]
        pattern = re.compile(rf"(^|[^-a-zA-Z0-9_]){re.escape(pool)}($|[^-a-zA-Z0-9_])")
        return [f"{r['method']} {r['path']}" for r in log
                if r["method"] in WRITES and _log_time(r["time"]) >= since
                and (pattern.search(r["path"]) or pattern.search(json.dumps(r.get("body"))))]


def _failures(stdout):
    """The msg of every failed task (callback_result_format=json keeps each result on one line)."""
    messages = []
    for line in stdout.splitlines():
        match = re.search(r"FAILED! => (\{.*\})\s*$", line)
        if match:
            messages.append(str(json.loads(match.group(1)).get("msg")))
    return " ".join(messages)


def _log_time(text):
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text.rstrip("Z"))).replace(tzinfo=UTC)


def _namespace_exists(k8s, name):
    try:
        k8s.resources.get(api_version="v1", kind="Namespace").get(name=name)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _delete_namespace(k8s, name):
    try:
        k8s.resources.get(api_version="v1", kind="Namespace").delete(name=name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture(scope="module")
def gke(local_cluster):
    return Gke(local_cluster)


def _deploy_refused(run_playbook, k8s, gke, name, tmp_path, extra_vars=None, env=None):
    """Run the GPU pattern with its own names; return (failure output, writes to GKE, namespace made)."""
    overrides = {"namespace": name, "llmisvc_name": name, "nodepool": {"name": name}, "replicas": 1}
    assert not _namespace_exists(k8s, name), f"namespace {name} left over from an earlier run"
    started = datetime.now(UTC)
    try:
        result = run_playbook(PLAYBOOK, {"pattern_overrides": overrides, "llm_serving_report_dir": str(tmp_path),
                                         **(extra_vars or {})}, env={**JSON, **(env or {})})
        writes = gke.writes_naming(name, started)
        namespace_made = _namespace_exists(k8s, name)
    finally:
        _delete_namespace(k8s, name)
    assert result.rc != 0, result.stdout[-3000:]
    assert not writes, f"wrote to GKE before failing: {writes}"
    assert not namespace_made, f"created namespace {name} before failing"
    return _failures(result.stdout)


def test_kubeconfig_of_another_cluster_is_refused_naming_both(run_playbook, k8s, gke, local_cluster, tmp_path):
    config = yaml.safe_load(Path(local_cluster["KUBECONFIG"]).read_text())
    other = copy.deepcopy(config)
    for cluster in other["clusters"]:
        cluster["cluster"]["server"] = "https://localhost:16443"  # the same API server under another name
    path = tmp_path / "kubeconfig-other"
    path.write_text(yaml.safe_dump(other))
    out = _deploy_refused(run_playbook, k8s, gke, "t-platform-kubeconfig", tmp_path,
                          {"llm_serving_kubeconfig": str(path)},
                          env={"KUBECONFIG": str(path), "K8S_AUTH_KUBECONFIG": str(path)})
    text = out
    assert "the kubeconfig's API server https://localhost:16443" in text, out[-3000:]
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
    _delete_namespace(k8s, namespace)


@pytest.mark.serial  # disables HTTP load balancing and deletes the proxy-only subnet of the shared cluster
def test_bad_platform_is_refused_before_any_write_and_platform_yml_restores_the_subnet(
        run_playbook, k8s, gke, tmp_path, odh_controller):
    try:
        gke.set_http_lb(disabled=True)
        assert gke.call("DELETE", f"{gke.subnets}/proxy-only-subnet")[0] == 200
        gke.wait_subnet("proxy-only-subnet", 404)

        out = _deploy_refused(run_playbook, k8s, gke, "t-platform-bad", tmp_path,
                              {"llmisvc_controller_namespace": odh_controller})
        text = out
        assert "platform pre-flight failed (nothing was written)" in text, out[-4000:]
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
            gke.call("POST", gke.subnets, {"name": "proxy-only-subnet", "ipCidrRange": "10.129.0.0/23",
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
        _delete_namespace(k8s, namespace)
