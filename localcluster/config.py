"""Paths, ports and fixed names of the local cluster (one place, so every part agrees)."""
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "v1.20.2"

# Loopback ports. Everything binds to 127.0.0.1 only. LOCALCLUSTER_PORT_OFFSET shifts the control-plane
# ports so that a second, throw-away cluster (e.g. the lifecycle test) can run next to the shared one.
PORT_OFFSET = int(os.environ.get("LOCALCLUSTER_PORT_OFFSET") or 0)
ETCD_CLIENT_PORT = 12379 + PORT_OFFSET
ETCD_PEER_PORT = 12380 + PORT_OFFSET
APISERVER_PORT = 16443 + PORT_OFFSET
CONTROLLER_MANAGER_PORT = 10257 + PORT_OFFSET
SCHEDULER_PORT = 10259 + PORT_OFFSET
GKE_API_PORT = 18080
CEL_WEBHOOK_PORT = 16444 + PORT_OFFSET  # localcluster.cel_webhook (HTTPS, called by kube-apiserver)
CEL_WEBHOOK_CONFIGURATION = "localcluster-cel-validation"  # its ValidatingWebhookConfiguration

# The simulated GKE cluster (docs/development.md).
GCP_PROJECT = "llm-serving-local"
GKE_LOCATION = "europe-west4-a"
GKE_CLUSTER = "llm-serving-local"
GATEWAY_ADDRESS = "127.0.0.1"
DEFAULT_TIME_SCALE = "0.02"

# Loopback address ranges of the simulated nodes and pods. Linux routes all of 127.0.0.0/8 to lo, so servers can
# bind any of these addresses; a second cluster (molecule/attach) next to the shared one takes other ranges through
# these variables (written to .localcluster/env, so every simulator and later `restart` agree).
POD_NETWORK_ENV = "LOCALCLUSTER_POD_NETWORK"
NODE_NETWORK_ENV = "LOCALCLUSTER_NODE_NETWORK"
DEFAULT_POD_NETWORK = "127.1.0.0/16"  # node_agent: one IP per pod, the vLLM simulator listens on <pod IP>:8000
DEFAULT_NODE_NETWORK = "127.0.0.0/16"  # nodes.py: Node InternalIPs <net>.<2..251>.<2..251>, kubelet port 10250
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def pod_network(environ=None):
    """The node agent's pod IP range: LOCALCLUSTER_POD_NETWORK, a loopback IPv4 network of /8 to /24."""
    environ = os.environ if environ is None else environ
    return _loopback_network(POD_NETWORK_ENV, environ.get(POD_NETWORK_ENV) or DEFAULT_POD_NETWORK, range(8, 25))


def node_network(environ=None):
    """The range of the simulated Nodes' InternalIPs: LOCALCLUSTER_NODE_NETWORK, a loopback IPv4 /16."""
    environ = os.environ if environ is None else environ
    return _loopback_network(NODE_NETWORK_ENV, environ.get(NODE_NETWORK_ENV) or DEFAULT_NODE_NETWORK, (16,))


def node_ip(network, first, second):
    """InternalIP number (first, second) of a node network: <net>.<first>.<second>; both in 0..255."""
    return str(network.network_address + first * 256 + second)


def _loopback_network(name, value, prefixes):
    try:
        network = ipaddress.ip_network(value.strip())
    except ValueError as exc:
        raise ValueError(f"{name} must be an IPv4 network such as 127.1.0.0/16, got {value!r} ({exc})") from None
    if network.version != 4 or not network.subnet_of(LOOPBACK) or network.prefixlen not in prefixes:
        raise ValueError(f"{name} must be a loopback IPv4 network inside 127.0.0.0/8 with a prefix length of "
                         f"/{prefixes[0]}{'' if len(prefixes) == 1 else f' to /{prefixes[-1]}'}, got {value!r}")
    return network


def gateway_address(value):
    """GATEWAY_ADDRESS, where the simulated gateway serves the Gateways' listeners: one loopback IPv4 address."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        address = None
    if address is None or address.version != 4 or address not in LOOPBACK:
        raise ValueError(f"GATEWAY_ADDRESS must be a loopback IPv4 address inside 127.0.0.0/8, got {value!r}")
    return str(address)

# Simulators, in start order (each is `python -m localcluster.<name>`; stopped in reverse). cel_webhook is not a
# simulator but the admission webhook that enforces the CRDs' CEL rules; `up` starts it before the bootstrap objects.
SIMULATORS = ("cel_webhook", "gke_api", "node_agent", "kserve_controller", "gateway")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def cache_dir():
    """Cache outside the repository (binaries, downloaded CRDs), shared with build-control-plane.sh."""
    return Path(os.environ.get("LLM_SERVING_GKE_CACHE") or Path.home() / ".cache" / "llm-serving-gke")


@dataclass(frozen=True)
class StatePaths:
    """Layout of .localcluster/ (git-ignored runtime state)."""

    root: Path

    @property
    def pids(self):
        return self.root / "pids"

    @property
    def logs(self):
        return self.root / "logs"

    @property
    def ready(self):
        return self.root / "ready"

    @property
    def etcd(self):
        return self.root / "etcd"

    @property
    def pki(self):
        return self.root / "pki"

    @property
    def kubeconfig(self):
        return self.root / "kubeconfig"

    @property
    def env_file(self):
        return self.root / "env"

    @property
    def identity_file(self):
        return self.root / "cluster.json"

    @property
    def lock_file(self):
        return self.root / "lock"

    @property
    def sessions(self):
        return self.root / "sessions"

    def make_dirs(self):
        for path in (self.root, self.pids, self.logs, self.ready, self.pki):
            path.mkdir(parents=True, exist_ok=True)
        self.pki.chmod(0o700)


def state_paths():
    """State directory: LOCALCLUSTER_DIR if set (tests of the CLI itself), else <repo>/.localcluster."""
    root = os.environ.get("LOCALCLUSTER_DIR") or REPO_ROOT / ".localcluster"
    return StatePaths(Path(root).resolve())
