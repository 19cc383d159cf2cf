"""Small path-based Kubernetes client over the official client (kubeconfig auth, incl. kind/GKE plugins)."""
import hashlib
import json

from kubernetes import config as kube_config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

HASH_ANNOTATION = "localcluster.llm-serving-gke.io/content-hash"
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def api_client(kubeconfig):
    return kube_config.new_client_from_config(config_file=str(kubeconfig))


def dynamic_client(kubeconfig):
    return DynamicClient(api_client(kubeconfig))


class Kube:
    """GET/POST/PUT/DELETE on API paths, returning plain dicts."""

    def __init__(self, kubeconfig):
        self.dyn = dynamic_client(kubeconfig)

    def request(self, method, path, body=None, **params):
        resp = self.dyn.request(method, path, body=body, serialize=False, **params)
        return json.loads(resp.data.decode("utf8"))

    def get(self, path):
        try:
            return self.request("GET", path)
        except NotFoundError:
            return None

    def get_metadata(self, path):
        """Only the metadata of an object (PartialObjectMetadata): cheap even for a 2 MiB CRD."""
        try:
            return self.request("GET", path, header_params={"Accept": METADATA_ONLY})["metadata"]
        except NotFoundError:
            return None

    def server_minor_version(self):
        version = self.request("GET", "/version")
        return int("".join(ch for ch in version["minor"] if ch.isdigit()))

    def ensure(self, collection_path, obj, replace_if_changed=True):
        """Create ``obj`` in ``collection_path``; replace it when its content changed since we last wrote it.

        Returns "created", "replaced" or "unchanged". Objects we did not create (no hash annotation,
        e.g. GKE-managed CRDs) are never replaced.
        """
        digest = content_hash(obj)
        annotated = _with_annotation(obj, HASH_ANNOTATION, digest)
        name = obj["metadata"]["name"]
        current = self.get_metadata(f"{collection_path}/{name}")
        if current is None:
            self.request("POST", collection_path, body=annotated)
            return "created"
        previous = (current.get("annotations") or {}).get(HASH_ANNOTATION)
        if previous is None or previous == digest or not replace_if_changed:
            return "unchanged"
        annotated["metadata"]["resourceVersion"] = current["resourceVersion"]
        self.request("PUT", f"{collection_path}/{name}", body=annotated)
        return "replaced"


def content_hash(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _with_annotation(obj, key, value):
    copy = json.loads(json.dumps(obj))
    copy["metadata"].setdefault("annotations", {})[key] = value
    return copy


def collection_path(api_version, plural, namespace=None):
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
