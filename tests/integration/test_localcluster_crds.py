"""The local API server holds the real upstream CRDs and judges manifests as GKE + KServe would."""
import base64
import copy
import json
import uuid

import pytest
import yaml
from kubernetes.dynamic.exceptions import DynamicApiError

from localcluster import bootstrap, crds

SEED_LLMISVCS = ("llmisvc-gpu-pattern3.yaml", "llmisvc-tpu-pattern3.yaml", "llmisvc-tpu.yaml")


def _seed(name):
    """A seed manifest (johnahull/llm-d-xks-gke, pinned in localcluster/crds.py; UpstreamFileError when missing)."""
    path = crds.seed_manifest(name)
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def namespace(k8s):
    name = f"t-lc-crds-{uuid.uuid4().hex[:6]}"
    namespaces = k8s.resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"metadata": {"name": name}})
    yield name
    namespaces.delete(name=name)


def _dry_run_create(k8s, doc, namespace):
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    resource = k8s.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    return resource.create(body=doc, namespace=namespace, dry_run="All").to_dict()


@pytest.mark.cluster
@pytest.mark.parametrize("manifest", SEED_LLMISVCS)
def test_seed_llmisvc_accepted_by_server(k8s, namespace, manifest):
    (doc,) = _seed(manifest)
    created = _dry_run_create(k8s, doc, namespace)
    assert created["kind"] == "LLMInferenceService"
    assert created["spec"]["model"]["uri"] == doc["spec"]["model"]["uri"]
    assert created["spec"]["replicas"] == doc["spec"]["replicas"]


@pytest.mark.cluster
def test_malformed_replicas_refused_with_server_message(k8s, namespace):
    (doc,) = _seed("llmisvc-gpu-pattern3.yaml")
    doc["spec"]["replicas"] = "three"
    with pytest.raises(DynamicApiError) as err:
        _dry_run_create(k8s, doc, namespace)
    assert err.value.status == 422
    assert "spec.replicas in body must be of type integer" in json.loads(err.value.body)["message"]


@pytest.mark.cluster
@pytest.mark.parametrize("manifest", ("healthcheck-policies-pattern1.yaml", "healthcheck-policies-pattern3.yaml"))
def test_seed_gke_healthcheck_policies_accepted(k8s, namespace, manifest):
    for doc in _seed(manifest):
        created = _dry_run_create(k8s, doc, namespace)
        assert created["spec"]["default"]["config"]["httpHealthCheck"]["requestPath"] == "/health"


@pytest.mark.cluster
def test_gke_policy_without_target_ref_refused(k8s, namespace):
    doc = {"apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy",
           "metadata": {"name": "no-target"}, "spec": {"default": {"timeoutSec": 300}}}
    with pytest.raises(DynamicApiError) as err:
        _dry_run_create(k8s, doc, namespace)
    assert "spec.targetRef: Required value" in json.loads(err.value.body)["message"]


@pytest.mark.cluster
@pytest.mark.parametrize("group, kind, versions", [
    ("serving.kserve.io", "LLMInferenceService", {"v1alpha1", "v1alpha2"}),
    ("serving.kserve.io", "LLMInferenceServiceConfig", {"v1alpha1", "v1alpha2"}),
    ("inference.networking.k8s.io", "InferencePool", {"v1"}),
    ("inference.networking.x-k8s.io", "InferencePool", {"v1alpha2"}),
    ("gateway.networking.k8s.io", "HTTPRoute", {"v1"}),
    ("gateway.networking.k8s.io", "Gateway", {"v1"}),
    ("gateway.networking.k8s.io", "GatewayClass", {"v1"}),
    ("gateway.networking.k8s.io", "ReferenceGrant", {"v1beta1"}),
])
def test_upstream_kinds_served(k8s, group, kind, versions):
    served = {r.api_version for r in k8s.resources.search(group=group, kind=kind)}
    assert versions <= served


@pytest.mark.cluster
def test_kserve_presets_installed(k8s):
    configs = k8s.resources.get(api_version="serving.kserve.io/v1alpha2", kind="LLMInferenceServiceConfig")
    names = {item.metadata.name for item in configs.get(namespace="kserve").items}
    assert {"kserve-config-llm-template", "kserve-config-llm-router-route", "kserve-config-llm-scheduler"} <= names
    assert len(names) >= len(crds.PRESET_NAMES)


@pytest.mark.cluster
def test_gke_gateway_bootstrap(k8s):
    classes = k8s.resources.get(api_version="gateway.networking.k8s.io/v1", kind="GatewayClass")
    for name in bootstrap.GATEWAY_CLASSES:
        assert classes.get(name=name).spec.controllerName == "networking.gke.io/gateway"
    gateways = k8s.resources.get(api_version="gateway.networking.k8s.io/v1", kind="Gateway")
    gateway = gateways.get(name="inference-gateway", namespace="opendatahub")
    assert gateway.spec.gatewayClassName == "gke-l7-regional-external-managed"
    listener = gateway.spec.listeners[0]
    assert (listener.name, listener.protocol, listener.port) == ("http", "HTTP", 80)
    assert listener.allowedRoutes.namespaces["from"] == "All"


@pytest.mark.cluster
def test_pull_secret_is_a_dockerconfigjson_for_redhat_registry(k8s):
    secret = k8s.resources.get(api_version="v1", kind="Secret").get(name="redhat-pull-secret",
                                                                    namespace="cert-manager")
    assert secret.type == "kubernetes.io/dockerconfigjson"
    auths = json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))["auths"]
    entry = auths["registry.redhat.io"]
    assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"


# ---------------------------------------------------------------- pre-processing (no cluster needed)

def test_preprocessing_drops_cel_and_empty_defaults_and_relaxes_map_lists():
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "self.a == 1"}], "properties": {
        "mode": {"type": "string", "default": ""},
        "kept": {"type": "string", "default": "TCP"},
        "pullSecrets": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string", "default": ""}}}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                  "items": {"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}}},
    }}
    crds.preprocess_for_old_server(schema)
    props = schema["properties"]
    assert "x-kubernetes-validations" not in schema
    assert "default" not in props["mode"] and props["kept"]["default"] == "TCP"
    assert props["pullSecrets"]["x-kubernetes-list-type"] == "atomic"
    assert "x-kubernetes-list-map-keys" not in props["pullSecrets"]
    assert props["ports"]["x-kubernetes-list-type"] == "map"  # its key is required: stays a map


def test_hand_written_gke_policy_crds_are_structural():
    for kind, plural in crds.GKE_POLICY_CRDS:
        crd = crds.gke_policy_crd(kind, plural)
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert crd["metadata"]["name"] == f"{plural}.networking.gke.io"
        assert set(spec["properties"]["targetRef"]["properties"]) >= {"group", "kind", "name"}
        assert spec["properties"]["default"]["x-kubernetes-preserve-unknown-fields"] is True
