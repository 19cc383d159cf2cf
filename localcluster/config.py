"""Paths, ports and fixed names of the local cluster (one place, so every part agrees)."""
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
