"""Install the real upstream CRDs (pinned releases), pre-processed only as far as an old server needs.

Every upstream file the local cluster and the tests read (CRDs, KServe presets, the seed manifests) is pinned here
by URL and sha256, and ``upstream_file()`` is the one way to get it: from the cache (``upstream/`` under
``config.cache_dir()``), else copied from a local mirror (``LLM_SERVING_GKE_MIRROR``, a folder with the same
relative paths, for machines without network), else downloaded from its pinned URL. A file whose checksum differs
is refused; when no source has it, ``UpstreamFileError`` names the file, the URL and both ways to provide it.

Pre-processing facts: an API server before 1.25 does not evaluate CRD validation rules (``x-kubernetes-validations``,
alpha in 1.23, beta and on by default in 1.25: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#validation-rules) and the local 1.20 server reads ``default: ""`` as null.
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
# The seed: the hand-made manifests this collection replaces, public repository johnahull/llm-d-xks-gke at commit
# 7630140c (2026-02-13), folder deployments/llm-d-infra-xks-gke-tpu-native-gateway/manifests (bugs included; the
# tests use them as inputs).
_SEED = ("https://raw.githubusercontent.com/johnahull/llm-d-xks-gke/7630140c1047f7b6e4b4f18353d96e44d10125f3/"
         "deployments/llm-d-infra-xks-gke-tpu-native-gateway/manifests")
MIRROR_ENV = "LLM_SERVING_GKE_MIRROR"
SIBLING_MIRROR = Path(__file__).resolve().parents[2] / "shared"


@dataclass(frozen=True)
class SourceFile:
    relpath: str  # path under the cache (and a mirror): crds/<project>/<tag>/..., seed/manifests/...
    url: str  # the same file at its pinned upstream tag or commit
    sha256: str  # of the file at that tag or commit


CRD_FILES = (
    SourceFile("crds/kserve/v0.20.0/crd-full/serving.kserve.io_llminferenceservices.yaml",
               f"{_KSERVE}/config/crd/full/llmisvc/serving.kserve.io_llminferenceservices.yaml",
               "4377745d253c5c6407ccd46aecdfadcea160ba77a0976dd2d112f0ca9a1ac53f"),
    SourceFile("crds/kserve/v0.20.0/crd-full/serving.kserve.io_llminferenceserviceconfigs.yaml",
               f"{_KSERVE}/config/crd/full/llmisvc/serving.kserve.io_llminferenceserviceconfigs.yaml",
               "b25e19597ef22638deee22111c097d42ad62da58c25f1ef4a529f4cef1c93c2a"),
    SourceFile("crds/gateway-api-inference-extension/v1.5.0/inference.networking.k8s.io_inferencepools.yaml",
               f"{_GIE}/v1.5.0/config/crd/bases/inference.networking.k8s.io_inferencepools.yaml",
               "0bc3ddd94db6f588a5cecc627c39e3d12b4343d51c48d47ffa68c50fa73c290c"),
    SourceFile("crds/gateway-api-inference-extension/v1.4.0/inference.networking.x-k8s.io_inferencepools.yaml",
               f"{_GIE}/v1.4.0/config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml",
               "449c5135bf65fdef2f5b925cc1632c0ac23f75e0e1f77aa6e21caadc4703f1e3"),
) + tuple(
    SourceFile(f"crds/gateway-api/v1.5.1/standard/gateway.networking.k8s.io_{kind}.yaml",
               f"{_GWAPI}/gateway.networking.k8s.io_{kind}.yaml", digest)
    for kind, digest in (
        ("gatewayclasses", "234ad4b2757ee1b3596a4187bb98df071c5bbdd9e1806f692f2dbf8387e6bef4"),
        ("gateways", "7416e8300eb4d8c0a71a23445609075bbacbe8bc80104584b019cfe1ebe77c31"),
        ("httproutes", "682203b109baecb18d38073a578f7bc2c17d22fe9b0c27bf030850abe014c370"),
        ("referencegrants", "a8902c486eed0b7339f5bb8a476ccaba0918eb038048402bdc01cbb69b0fbb51"),
    )
)

# KServe v0.20.0 config/llmisvcconfig: the well-known kserve-config-llm-* presets (LLMInferenceServiceConfig).
PRESET_SHA256 = {
    "config-llm-decode-template": "39016f8c7f1a04f8247d045d7568ab025fb187a09e6ea587b19ec1c92dbcc17a",
    "config-llm-decode-worker-data-parallel": "546037006159cd5d1c4052b97b7b772a5b836b026e6fa8e52e5cb475bfeb6b00",
    "config-llm-prefill-template": "9737e8c8b45a737ae828694bc60e8d1048cbe202fa854f65ad627e7973f6190e",
    "config-llm-prefill-worker-data-parallel": "91d17a7b3ffa57bd1faf40d680aae7573a660c0e9223a91598b722639970b7b3",
    "config-llm-router-route": "ab946e175f46a2e7a57f3a949b3d376284ec650efffb1f3d3f85df848394df19",
    "config-llm-scheduler-latency-predictor": "21ed6ce931651eab014133dad3f18494d053b0fb1930c8798641ea9149fd30d4",
    "config-llm-scheduler": "594c37bec3d383b1ebb1104937670f1e0dd2d551b2c7473ff0372a34bb0d78ee",
    "config-llm-template": "7efdb4050c09e976d5e9342ca4d708c6583c2d825f9cf43614108b1f010ad320",
    "config-llm-tracing": "20163e3fc4ecc22617b49e9dc77156d3dbc42ad62d38284fbc789e35f2e6f538",
    "config-llm-worker-data-parallel": "b55a069690956bbce5b28a1f841b57404a72e45822aa2317308448b7ae3daf93",
}
PRESET_NAMES = tuple(PRESET_SHA256)
PRESETS_RELDIR = "crds/samples/kserve-v0.20.0/presets-config-llmisvcconfig"
PRESET_FILES = tuple(
    SourceFile(f"{PRESETS_RELDIR}/{name}.yaml", f"{_KSERVE}/config/llmisvcconfig/{name}.yaml", digest)
    for name, digest in PRESET_SHA256.items()
)

SEED_FILES = tuple(
    SourceFile(f"seed/manifests/{name}", f"{_SEED}/{name}", digest)
    for name, digest in (
        ("llmisvc-gpu-pattern3.yaml", "ebf5774ec914d9fb8a8abf942c6c495479d08765db9392b6cf294b04e91ae3c3"),
        ("llmisvc-tpu-pattern3.yaml", "ca80015b66bce3a2bfdc8d9c9a20ffd1feca873ea1009262211547b4b592929c"),
        ("llmisvc-tpu.yaml", "9a6c189401f789024c852fe99252eb56ad9b05b503ffb0c62b4c666a57bdf8a4"),
        ("healthcheck-policies-pattern1.yaml", "26d0cae0db84404379880744494f300a97b9f95144f3b4a4995d2696a64b634c"),
        ("healthcheck-policies-pattern3.yaml", "9931fa6cabbf7d9671f1d41c16873d5438151334eb6ff1f94d8fed6ee627aa05"),
    )
)
UPSTREAM_FILES = {source.relpath: source for source in CRD_FILES + PRESET_FILES + SEED_FILES}


class CrdError(RuntimeError):
    pass


class UpstreamFileError(CrdError):
    """A pinned upstream file is in no cache or mirror and cannot be downloaded, or its checksum differs."""


# ---------------------------------------------------------------- sources

def upstream_cache():
    return config.cache_dir() / "upstream"


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def mirrors():
    """[(folder, where it came from)] to read pinned files from before downloading: LLM_SERVING_GKE_MIRROR when
    set, then a folder ``shared`` beside the checkout when it holds a ``crds`` folder (the project's CI lays its
    reference files there, at the same relative paths, and has no route to GitHub)."""
    found = []
    if os.environ.get(MIRROR_ENV):
        found.append((Path(os.environ[MIRROR_ENV]), f"{MIRROR_ENV}={os.environ[MIRROR_ENV]}"))
    if (SIBLING_MIRROR / "crds").is_dir():
        found.append((SIBLING_MIRROR, "the folder beside the checkout"))
    return found


def upstream_file(relpath):
    """Local path of the pinned upstream file ``relpath`` (a key of UPSTREAM_FILES), with its checksum checked.

    Order: the cache; a mirror folder (see mirrors()), copied into the cache; the pinned URL, downloaded into the
    cache. Raises UpstreamFileError naming the file, the URL and how to provide it.
    """
    source = UPSTREAM_FILES.get(relpath)
    if source is None:
        raise UpstreamFileError(f"{relpath} is not a pinned upstream file (localcluster/crds.py UPSTREAM_FILES)")
    path = upstream_cache() / source.relpath
    if path.is_file() and _sha256(path.read_bytes()) == source.sha256:
        return path
    problems = []
    data = None
    for mirror, origin in mirrors():
        candidate = mirror / source.relpath
        if candidate.is_file():
            data = candidate.read_bytes()
            if _sha256(data) == source.sha256:
                break
            problems.append(f"{candidate} has sha256 {_sha256(data)}, not the pinned {source.sha256}")
            data = None
        else:
            problems.append(f"{candidate} does not exist ({origin})")
    if data is None:
        try:
            with urllib.request.urlopen(source.url, timeout=20) as resp:  # noqa: S310 - pinned https URL
                data = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            problems.append(f"{source.url} cannot be downloaded ({exc})")
        else:
            if _sha256(data) != source.sha256:
                problems.append(f"{source.url} has sha256 {_sha256(data)}, not the pinned {source.sha256}")
                data = None
    if data is None:
        raise UpstreamFileError(
            f"upstream file {source.relpath} is not in the cache {upstream_cache()} and cannot be fetched: "
            + "; ".join(problems) + f". Allow the download, or set {MIRROR_ENV} to a folder holding the pinned files "
            f"at the same relative paths (for example a copy of {upstream_cache()} from a machine with network).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def source_path(source):
    """Local path of ``source`` (a SourceFile), from the cache, a mirror or its pinned URL."""
    return upstream_file(source.relpath)


def presets_dir():
    """The folder with KServe v0.20.0's presets (every file of PRESET_FILES fetched first)."""
    for source in PRESET_FILES:
        source_path(source)
    return upstream_cache() / PRESETS_RELDIR


def seed_manifest(name):
    """Path of one seed manifest (llmisvc-gpu-pattern3.yaml, ...), see _SEED."""
    return upstream_file(f"seed/manifests/{name}")


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
