"""Install the real upstream CRDs (pinned releases), pre-processed only as far as an old server needs.

Files are read from ../shared/crds (or LLM_SERVING_GKE_CRDS); a machine without that folder downloads
the same pinned upstream files into ~/.cache/llm-serving-gke/crds. Facts behind the pre-processing:
shared/crds/README.md and local-test-infrastructure.md section 5.
"""
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import config
from .kube import collection_path

CRD_COLLECTION = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Servers older than this lack CEL and reject `default: ""` (read as null).
FIRST_VERSION_WITHOUT_PREPROCESSING = 25

_KSERVE = "https://raw.githubusercontent.com/kserve/kserve/v0.20.0"
_GIE = "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api-inference-extension"
_GWAPI = "https://raw.githubusercontent.com/kubernetes-sigs/gateway-api/v1.5.1/config/crd/standard"


@dataclass(frozen=True)
class SourceFile:
    relpath: str  # path under the CRD folder (layout of shared/crds)
    url: str  # the same file at its pinned upstream tag


CRD_FILES = (
    SourceFile("kserve/v0.20.0/crd-full/serving.kserve.io_llminferenceservices.yaml",
               f"{_KSERVE}/config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml"),
    SourceFile("kserve/v0.20.0/crd-full/serving.kserve.io_llminferenceserviceconfigs.yaml",
               f"{_KSERVE}/config/crd/full/llmisvc/serving.kserve.io_llminferenceserviceconfigs.yaml"),
    SourceFile("gateway-api-inference-extension/v1.5.0/inference.networking.k8s.io_inferencepools.yaml",
               f"{_GIE}/v1.5.0/config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"),
    SourceFile("gateway-api-inference-extension/v1.4.0/inference.networking.x-k8s.io_inferencepools.yaml",
               f"{_GIE}/v1.4.0/config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml"),
) + tuple(
    SourceFile(f"gateway-api/v1.5.1/standard/gateway.networking.k8s.io_{kind}.yaml",
               f"{_GWAPI}/gateway.networking.k8s.io_{kind}.yaml")
    for kind in ("gatewayclasses", "gateways", "httproutes", "referencegrants")
)

PRESET_NAMES = ("config-llm-decode-template", "config-llm-decode-worker-data-parallel",
                "config-llm-prefill-template", "config-llm-prefill-worker-data-parallel",
                "config-llm-router-route", "config-llm-scheduler-latency-predictor", "config-llm-scheduler",
                "config-llm-template", "config-llm-tracing", "config-llm-worker-data-parallel")
PRESET_FILES = tuple(
    SourceFile(f"samples/kserve-v0.20.0/presets-config-llmisvcconfig/{name}.yaml",
               f"{_KSERVE}/config/llmisvcconfig/{name}.yaml")
    for name in PRESET_NAMES
)


class CrdError(RuntimeError):
    pass


# ---------------------------------------------------------------- sources

def crds_root():
    """shared/crds when present, else the download cache."""
    if os.environ.get("LLM_SERVING_GKE_CRDS"):
        return Path(os.environ["LLM_SERVING_GKE_CRDS"])
    shared = config.REPO_ROOT.parent / "shared" / "crds"
    return shared if shared.is_dir() else config.cache_dir() / "crds"


def source_path(source):
    """Local path of ``source``, downloading it from its pinned tag if it is not there."""
    path = crds_root() / source.relpath
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(source.url, timeout=20) as resp:  # noqa: S310 - pinned https URL
            data = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CrdError(f"{path} is missing and {source.url} cannot be downloaded ({exc}). Provide the "
                       "upstream files in ../shared/crds or set LLM_SERVING_GKE_CRDS to a folder with that "
                       "layout.") from exc
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def load_documents(path):
    with open(path, "rb") as handle:
        return [doc for doc in yaml.load_all(handle, Loader=yaml.CSafeLoader) if doc]


# ---------------------------------------------------------------- pre-processing for servers < 1.25

def preprocess_for_old_server(schema):
    """Drop CEL rules and `default: ""`, and make map-lists atomic where a key is left without default.

    Works in place on any JSON-schema node and returns it.
    """
    if isinstance(schema, list):
        for item in schema:
            preprocess_for_old_server(item)
        return schema
    if not isinstance(schema, dict):
        return schema
    schema.pop("x-kubernetes-validations", None)
    if schema.get("default") == "":
        del schema["default"]
    for value in schema.values():
        preprocess_for_old_server(value)
    _make_atomic_if_map_keys_undefaulted(schema)
    return schema


def _make_atomic_if_map_keys_undefaulted(schema):
    keys = schema.get("x-kubernetes-list-map-keys")
    if not keys or schema.get("x-kubernetes-list-type") != "map":
        return
    items = schema.get("items") or {}
    props, required = items.get("properties") or {}, set(items.get("required") or ())
    if all(key in required or "default" in props.get(key, {}) for key in keys):
        return
    schema["x-kubernetes-list-type"] = "atomic"
    del schema["x-kubernetes-list-map-keys"]


def prepared_crds(source, server_minor):
    """CRD objects from ``source`` as this server needs them (memoised on disk: the files are > 2 MiB)."""
    path = source_path(source)
    needs_edit = server_minor < FIRST_VERSION_WITHOUT_PREPROCESSING
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
    memo = config.cache_dir() / "crds-prepared" / f"{digest}-{'old' if needs_edit else 'asis'}.json"
    if memo.is_file():
        return json.loads(memo.read_text())
    docs = [doc for doc in load_documents(path) if doc.get("kind") == "CustomResourceDefinition"]
    if needs_edit:
        for doc in docs:
            preprocess_for_old_server(doc["spec"])
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps(docs))
    return docs


# ---------------------------------------------------------------- GKE's own policy CRDs (hand-written)

def gke_policy_crd(kind, plural):
    """A minimal CRD for a GKE policy kind: GKE installs these itself and publishes no CRD file."""
    target_ref = {"type": "object", "required": ["kind", "name"], "properties": {
        "group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"},
        "namespace": {"type": "string"}}}
    schema = {"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
        "spec": {"type": "object", "required": ["targetRef"], "properties": {
            "targetRef": target_ref,
            "default": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.networking.gke.io",
                     "labels": {"app.kubernetes.io/managed-by": "llm-serving-gke-localcluster"}},
        "spec": {"group": "networking.gke.io", "scope": "Namespaced",
                 "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": schema}}]},
    }


GKE_POLICY_CRDS = (("HealthCheckPolicy", "healthcheckpolicies"), ("GCPBackendPolicy", "gcpbackendpolicies"))


# ---------------------------------------------------------------- install

def all_crds(server_minor):
    crds = [crd for source in CRD_FILES for crd in prepared_crds(source, server_minor)]
    crds += [gke_policy_crd(kind, plural) for kind, plural in GKE_POLICY_CRDS]
    return crds


def install(kube, log=print, timeout=90):
    """Create or update every CRD, then wait until all are Established; returns {name: action}."""
    minor = kube.server_minor_version()
    actions = {}
    for crd in all_crds(minor):
        actions[crd["metadata"]["name"]] = kube.ensure(CRD_COLLECTION, crd)
    changed = [name for name, action in actions.items() if action != "unchanged"]
    if changed:
        mode = "pre-processed for 1." + str(minor) if minor < FIRST_VERSION_WITHOUT_PREPROCESSING else "unchanged"
        log(f"CRDs ({mode}): " + ", ".join(f"{n} {actions[n]}" for n in changed))
    wait_established(kube, changed, timeout)  # unchanged ones were waited for when they were written
    return actions


def wait_established(kube, names, timeout):
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        pending = [n for n in pending if not _established(kube.get(f"{CRD_COLLECTION}/{n}"))]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise CrdError(f"CRDs not Established after {timeout}s: {', '.join(pending)}")
        time.sleep(0.3)


def _established(crd):
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def preset_documents():
    """The KServe v0.20 well-known presets (LLMInferenceServiceConfig), with the file each came from."""
    for source in PRESET_FILES:
        path = source_path(source)
        for doc in load_documents(path):
            yield path, doc


def resource_collection(doc, plural, namespace=None):
    return collection_path(doc["apiVersion"], plural, namespace)
