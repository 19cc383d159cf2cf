"""Which container images "exist" in the simulated registries, and what pulling them needs.

The node agent pulls nothing; it looks the image up here. An image that is not listed fails the way a
containerd-based kubelet fails (``ErrImagePull`` then ``ImagePullBackOff``, with containerd's message),
and registry.redhat.io answers 401 unless the pod has a pull secret with credentials for it (as the
real registry does). Add images for a test with ``LOCALCLUSTER_EXTRA_IMAGES="repo:tag=kind,..."``.
"""
import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass

# Image kinds: what the node agent runs for a container of that image.
VLLM_CUDA, VLLM_TPU, VLLM_CPU = "vllm-cuda", "vllm-tpu", "vllm-cpu"
STORAGE_INITIALIZER = "storage-initializer"
SERVICE = "service"  # anything else: runs and becomes Ready
VLLM_KINDS = (VLLM_CUDA, VLLM_TPU, VLLM_CPU)

ANY_TAG = re.compile(r"^[\w][\w.-]{0,127}$")  # Docker's tag grammar: every tag of a listed repository exists
AUTHENTICATED_REGISTRIES = ("registry.redhat.io",)
RED_HAT_UNAUTHORIZED = ("unauthorized: Please login to the Red Hat Registry using your Customer Portal credentials. "
                        "Further instructions can be found here: https://access.redhat.com/RegistryAuthentication")


@dataclass(frozen=True)
class CatalogEntry:
    kind: str
    tags: object = ANY_TAG  # a regex, or a dict tag -> vLLM version
    vllm_version: str | None = None
    size_mb: int = 500


# RHAIIS tag -> vLLM version it ships (Red Hat AI Inference Server release notes).
_RHAIIS_CUDA = {"3.0.0": "0.8.4", "3.1.0": "0.9.0.1", "3.2.0": "0.10.0", "3.2.1": "0.10.0", "3.2.2": "0.10.1.1",
                "3.2.3": "0.10.1.1", "3.2.4": "0.10.1.1", "3.2.5": "0.10.1.1"}
_RHAIIS_TPU = {tag: version for tag, version in _RHAIIS_CUDA.items() if tag.startswith("3.2")}

CATALOG = {
    "registry.redhat.io/rhaiis/vllm-cuda-rhel9": CatalogEntry(VLLM_CUDA, _RHAIIS_CUDA, size_mb=9800),
    "registry.redhat.io/rhaiis/vllm-tpu-rhel9": CatalogEntry(VLLM_TPU, _RHAIIS_TPU, size_mb=7600),
    "docker.io/vllm/vllm-openai": CatalogEntry(VLLM_CUDA, vllm_version="0.10.1.1", size_mb=9500),
    "docker.io/vllm/vllm-tpu": CatalogEntry(VLLM_TPU, vllm_version="0.10.1.1", size_mb=7000),
    "ghcr.io/llm-d/llm-d-cuda": CatalogEntry(VLLM_CUDA, vllm_version="0.11.0", size_mb=11000),
    "ghcr.io/llm-d/llm-d": CatalogEntry(VLLM_CUDA, vllm_version="0.10.1.1", size_mb=11000),
    "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo": CatalogEntry(VLLM_CPU, vllm_version="0.10.1.1", size_mb=3000),
    "docker.io/kserve/storage-initializer": CatalogEntry(STORAGE_INITIALIZER, size_mb=900),
    "docker.io/kserve/kserve-storage-initializer": CatalogEntry(STORAGE_INITIALIZER, size_mb=900),
    "quay.io/opendatahub/kserve-storage-initializer": CatalogEntry(STORAGE_INITIALIZER, size_mb=900),
    "docker.io/kserve/llmisvc-controller": CatalogEntry(SERVICE, size_mb=80),
    "quay.io/opendatahub/kserve-controller": CatalogEntry(SERVICE, size_mb=80),
    "quay.io/opendatahub/llmisvc-controller": CatalogEntry(SERVICE, size_mb=80),
    "quay.io/opendatahub/llm-d-inference-scheduler": CatalogEntry(SERVICE, size_mb=120),
    "docker.io/kserve/kserve-controller": CatalogEntry(SERVICE, size_mb=80),
    "ghcr.io/llm-d/llm-d-router-endpoint-picker": CatalogEntry(SERVICE, size_mb=120),
    "ghcr.io/llm-d/llm-d-inference-scheduler": CatalogEntry(SERVICE, size_mb=120),
    "ghcr.io/llm-d/llm-d-uds-tokenizer": CatalogEntry(SERVICE, size_mb=400),
    "ghcr.io/llm-d/llm-d-routing-sidecar": CatalogEntry(SERVICE, size_mb=60),
    "quay.io/llm-d/llm-d-inference-scheduler": CatalogEntry(SERVICE, size_mb=120),
    "gcr.io/ecoeng-llmd/llm-d-inference-scheduler": CatalogEntry(SERVICE, re.compile(r"^alpn-fix$"), size_mb=120),
    "registry.k8s.io/gateway-api-inference-extension/epp": CatalogEntry(SERVICE, size_mb=120),
    "registry.k8s.io/pause": CatalogEntry(SERVICE, size_mb=1),
    "docker.io/library/busybox": CatalogEntry(SERVICE, size_mb=5),
    "docker.io/library/alpine": CatalogEntry(SERVICE, size_mb=8),
    "docker.io/library/nginx": CatalogEntry(SERVICE, size_mb=70),
    "docker.io/library/python": CatalogEntry(SERVICE, size_mb=400),
    "docker.io/curlimages/curl": CatalogEntry(SERVICE, size_mb=12),
    "quay.io/jetstack/cert-manager-controller": CatalogEntry(SERVICE, size_mb=60),
}


@dataclass(frozen=True)
class ImageInfo:
    """A pullable image as the kubelet reports it."""

    reference: str  # fully qualified: registry/repository:tag or @digest
    kind: str
    vllm_version: str | None
    size_mb: int

    @property
    def image_id(self):
        """What containerd reports as imageID: repository@sha256:<digest> (stable per reference)."""
        digest = hashlib.sha256(self.reference.encode()).hexdigest()
        return f"{self.reference.rsplit('@', 1)[0].rsplit(':', 1)[0]}@sha256:{digest}"

    @property
    def is_vllm(self):
        return self.kind in VLLM_KINDS


class ImagePullError(Exception):
    """The pull failed; ``message`` is what containerd returns (kubelet prefixes it in events)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def parse_reference(image):
    """(registry, repository, tag, digest) with Docker's defaults (docker.io, library/, latest)."""
    name, digest = (image.split("@", 1) + [None])[:2]
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = "docker.io", name
    if registry == "docker.io" and "/" not in repository:
        repository = f"library/{repository}"
    if tag is None and digest is None:
        tag = "latest"
    return registry, repository, tag, digest


def _extra_images():
    """``LOCALCLUSTER_EXTRA_IMAGES``: comma-separated ``image=kind`` (kind defaults to service)."""
    extra = {}
    for item in filter(None, (os.environ.get("LOCALCLUSTER_EXTRA_IMAGES") or "").split(",")):
        image, _, kind = item.strip().partition("=")
        registry, repository, tag, digest = parse_reference(image)
        extra[(f"{registry}/{repository}", tag or digest)] = kind or SERVICE
    return extra


def _catalog_lookup(repo, tag, digest):
    """ImageInfo fields for a known image, or None."""
    kind = _extra_images().get((repo, tag or digest))
    if kind:
        return kind, "0.10.1.1" if kind in VLLM_KINDS else None, 500
    entry = CATALOG.get(repo)
    if entry is None:
        return None
    if digest:  # the seed's chart pinned registry.redhat.io digests that did not resolve
        return None if repo.startswith("registry.redhat.io/") else (entry.kind, entry.vllm_version, entry.size_mb)
    if isinstance(entry.tags, dict):
        if tag not in entry.tags:
            return None
        return entry.kind, entry.tags[tag], entry.size_mb
    return (entry.kind, entry.vllm_version, entry.size_mb) if entry.tags.match(tag) else None


def _has_credentials(registry, docker_configs):
    """True if one of the pod's pull secrets holds a user:password for ``registry``."""
    for config in docker_configs:
        auths = config.get("auths", config)  # .dockercfg has no "auths" level
        for server, cred in (auths or {}).items():
            host = re.sub(r"^https?://", "", server).split("/", 1)[0]
            if host != registry or not isinstance(cred, dict):
                continue
            if cred.get("username") and cred.get("password"):
                return True
            try:
                user, _, password = base64.b64decode(cred.get("auth") or "").decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                continue
            if user and password:
                return True
    return False


def decode_pull_secret(secret_data):
    """The docker config JSON inside a Secret's ``data`` (dockerconfigjson or legacy dockercfg), or {}."""
    for key in (".dockerconfigjson", ".dockercfg"):
        if key in (secret_data or {}):
            try:
                return json.loads(base64.b64decode(secret_data[key]))
            except ValueError:
                return {}
    return {}


def resolve_image(image, docker_configs=()):
    """Look ``image`` up; raises ImagePullError with containerd's message when it cannot be pulled."""
    registry, repository, tag, digest = parse_reference(image)
    repo = f"{registry}/{repository}"
    reference = f"{repo}@{digest}" if digest else f"{repo}:{tag}"
    prefix = f'failed to pull and unpack image "{reference}": failed to resolve reference "{reference}"'
    if registry in AUTHENTICATED_REGISTRIES and not _has_credentials(registry, docker_configs):
        raise ImagePullError(f"rpc error: code = Unknown desc = {prefix}: pull access denied, repository does not "
                             f"exist or may require authorization: server message: {RED_HAT_UNAUTHORIZED}")
    found = _catalog_lookup(repo, tag, digest)
    if found is None:
        if registry == "docker.io" and repo not in CATALOG:
            raise ImagePullError(f"rpc error: code = Unknown desc = {prefix}: pull access denied, repository does "
                                 "not exist or may require authorization: server message: insufficient_scope: "
                                 "authorization failed")
        raise ImagePullError(f"rpc error: code = NotFound desc = {prefix}: {reference}: not found")
    kind, vllm_version, size_mb = found
    return ImageInfo(reference, kind, vllm_version, size_mb)
