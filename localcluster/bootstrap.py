"""Objects a GKE + KServe installation would already have (docs/development.md, "Bootstrap objects")."""
import base64
import json

from kubernetes.dynamic.exceptions import DynamicApiError

from . import crds
from .kube import collection_path

NAMESPACES = ("kserve", "opendatahub", "cert-manager")
GATEWAY_CLASSES = ("gke-l7-regional-external-managed", "gke-l7-rilb", "gke-l7-global-external-managed")
GKE_GATEWAY_CONTROLLER = "networking.gke.io/gateway"
# Upstream KServe v0.20.0's llmisvc controller (kserve/kserve v0.20.0 config/llmisvc/manager.yaml and
# llmisvc_manager_image_patch.yaml; releases tag the image with the version), the flavour the collection supports.
KSERVE_CONTROLLER_IMAGE = "kserve/llmisvc-controller:v0.20.0"
PULL_SECRET_REGISTRY = "registry.redhat.io"


def namespace(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def kserve_controller_deployment():
    """A marker for KServe's controller; its pod is run by the node agent on a CPU node."""
    labels = {"control-plane": "llmisvc-controller-manager", "app.kubernetes.io/name": "llmisvc-controller-manager"}
    container = {"name": "manager", "image": KSERVE_CONTROLLER_IMAGE, "args": ["--leader-elect"],
                 "resources": {"requests": {"cpu": "100m", "memory": "300Mi"},
                               "limits": {"cpu": "1", "memory": "1Gi"}}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "llmisvc-controller-manager", "namespace": "kserve", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
    }


def gateway_class(name):
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": name},
            "spec": {"controllerName": GKE_GATEWAY_CONTROLLER}}


def inference_gateway():
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "inference-gateway", "namespace": "opendatahub"},
        "spec": {"gatewayClassName": "gke-l7-regional-external-managed",
                 "listeners": [{"name": "http", "protocol": "HTTP", "port": 80,
                                "allowedRoutes": {"namespaces": {"from": "All"}}}]},
    }


def pull_secret(identity):
    """Secret redhat-pull-secret: a dockerconfigjson with a fake registry.redhat.io login (random per cluster)."""
    user, password = identity["pull_secret_username"], identity["pull_secret_password"]
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {PULL_SECRET_REGISTRY: {"username": user, "password": password, "auth": auth}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "redhat-pull-secret", "namespace": "cert-manager"},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def create_all(kube, identity, log=print):
    """Create what is missing; returns a list of problems (e.g. a preset the server refused)."""
    done = {}
    for name in NAMESPACES:
        done[f"namespace/{name}"] = kube.ensure("/api/v1/namespaces", namespace(name))
    problems = install_presets(kube, done)
    done["deployment/kserve/llmisvc-controller-manager"] = kube.ensure(
        collection_path("apps/v1", "deployments", "kserve"), kserve_controller_deployment())
    for name in GATEWAY_CLASSES:
        done[f"gatewayclass/{name}"] = kube.ensure(
            collection_path("gateway.networking.k8s.io/v1", "gatewayclasses"), gateway_class(name))
    done["gateway/opendatahub/inference-gateway"] = kube.ensure(
        collection_path("gateway.networking.k8s.io/v1", "gateways", "opendatahub"), inference_gateway())
    done["secret/cert-manager/redhat-pull-secret"] = kube.ensure(
        collection_path("v1", "secrets", "cert-manager"), pull_secret(identity), replace_if_changed=False)
    changed = [f"{key} {action}" for key, action in done.items() if action != "unchanged"]
    if changed:
        log("bootstrap: " + ", ".join(changed))
    return problems


def install_presets(kube, done):
    problems = []
    for path, doc in crds.preset_documents():
        name = doc["metadata"]["name"]
        doc["metadata"]["namespace"] = "kserve"  # what the upstream kustomization sets
        target = crds.resource_collection(doc, "llminferenceserviceconfigs", "kserve")
        try:
            done[f"llminferenceserviceconfig/kserve/{name}"] = kube.ensure(target, doc)
        except DynamicApiError as exc:
            problems.append(f"preset {path.name} ({name}) refused by the server: {_reason(exc)}")
    return problems


def _reason(exc):
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(exc)
