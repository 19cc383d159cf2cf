"""Fixtures for tests that need the embedded local cluster (localcluster/README.md).

Fixtures
- ``local_cluster`` (session): the parsed ``.localcluster/env`` as a dict (KUBECONFIG, GKE_API_ENDPOINT,
  GCP_ACCESS_TOKEN, HF_TOKEN, ...). Uses the running cluster when it is healthy; otherwise runs
  ``python -m localcluster up`` under a file lock and, at the end of the session, ``down`` again only if
  this session started the control plane and no other pytest session is still using it
  (LOCALCLUSTER_KEEP=1 keeps it running anyway).
- ``k8s``: a ``kubernetes.dynamic.DynamicClient`` for the cluster's admin kubeconfig.
- ``k8s_api_client``: the underlying ``kubernetes.client.ApiClient`` (for typed APIs: ``CoreV1Api(k8s_api_client)``).
- ``gke_sim`` (session): ``cluster_state.GkeSim``, the simulated GKE/Compute APIs (request log, faults, pools, quota);
  ``pool_name``: a ``t-np-<random>`` node pool name, deleted after the test.
- ``run_playbook``: ``run_playbook(path, extra_vars=None, check=False, env=None, ...)`` runs
  ``ansible-playbook -i inventories/local <path>`` from the repository root with the cluster's env and
  returns a ``PlaybookResult`` (``rc``, ``stdout``, ``stderr``, ``recap`` per host, totals ``ok``,
  ``changed``, ``failed``)::

      def test_second_run_changes_nothing(run_playbook):
          first = run_playbook("playbooks/deploy_pattern3_gpu.yml", {"pattern_overrides": {"replicas": 1}})
          assert first.rc == 0, first.stdout
          assert run_playbook("playbooks/deploy_pattern3_gpu.yml").changed == 0

Mark cluster tests with ``@pytest.mark.cluster`` (or ``pytestmark = pytest.mark.cluster``).
"""
import fcntl
import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cluster_state
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from localcluster.cluster import Cluster, read_env_file  # noqa: E402
from localcluster.supervisor import pid_alive  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


# ---------------------------------------------------------------- the cluster

@contextmanager
def _file_lock(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _control_plane_ready(report):
    return report["mode"] == "external" or any(
        c["name"] == "kube-apiserver" and c["ready"] for c in report["components"])


def _needs_up(report):
    """Something `up` can fix: the API server is not ready or a component that exists is not running."""
    return not _control_plane_ready(report) or any(c["present"] and not c["alive"] for c in report["components"])


def _other_live_sessions(sessions_dir):
    others = []
    for lease in sessions_dir.glob("*"):
        pid = int(lease.name) if lease.name.isdigit() else None
        if pid and pid != os.getpid() and pid_alive(pid):
            others.append(pid)
        elif pid != os.getpid():
            lease.unlink(missing_ok=True)  # left by a session that died
    return others


def _localcluster(*args):
    return subprocess.run([PYTHON, "-m", "localcluster", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope="session")
def local_cluster():
    """The .localcluster/env of a running cluster (started here if needed); see the module docstring."""
    cluster = Cluster(log=lambda *_: None)
    paths = cluster.paths
    lease = paths.sessions / str(os.getpid())
    started_here = False
    with _file_lock(paths.root / "pytest.lock"):
        paths.sessions.mkdir(parents=True, exist_ok=True)
        lease.touch()
        report = cluster.status()
        if _needs_up(report):
            started_here = not _control_plane_ready(report)
            result = _localcluster("up")
            report = cluster.status()
            if not _control_plane_ready(report):
                pytest.exit(f"local cluster did not start (rc={result.returncode}):\n{result.stdout}\n"
                            f"{result.stderr}", returncode=3)
    env = read_env_file(paths.env_file)
    yield env
    with _file_lock(paths.root / "pytest.lock"):
        lease.unlink(missing_ok=True)
        if started_here and os.environ.get("LOCALCLUSTER_KEEP") != "1" and not _other_live_sessions(paths.sessions):
            _localcluster("down")


@pytest.fixture(scope="session")
def k8s_api_client(local_cluster):
    from kubernetes import config as kube_config

    return kube_config.new_client_from_config(config_file=local_cluster["KUBECONFIG"])


@pytest.fixture(scope="session")
def k8s(k8s_api_client):
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(k8s_api_client)


@pytest.fixture(scope="session")
def gke_sim(local_cluster):
    """The simulated GKE and Compute APIs of the local cluster (tests/integration/cluster_state.py)."""
    return cluster_state.GkeSim(local_cluster)


@pytest.fixture
def pool_name(gke_sim):
    """A node pool name of this test (t-np-<random>: other sessions share the simulator); deleted afterwards."""
    name = f"t-np-{uuid.uuid4().hex[:8]}"
    yield name
    gke_sim.delete_pool(name)


# ---------------------------------------------------------------- ansible-playbook

_RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(ok=\d+.*)$")


@dataclass
class PlaybookResult:
    rc: int
    stdout: str
    stderr: str
    recap: dict = field(default_factory=dict)  # host -> {"ok": n, "changed": n, "failed": n, "skipped": n, ...}

    def _total(self, key):
        return sum(counts.get(key, 0) for counts in self.recap.values())

    @property
    def ok(self):
        return self._total("ok")

    @property
    def changed(self):
        return self._total("changed")

    @property
    def failed(self):
        return self._total("failed") + self._total("unreachable")


def parse_recap(stdout):
    """{host: counts} from the PLAY RECAP section of ansible-playbook's default output."""
    recap, in_recap = {}, False
    for line in stdout.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = _RECAP_LINE.match(line.strip()) if in_recap else None
        if match:
            recap[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return recap


def ansible_env(cluster_env, extra=None):
    """Process environment for ansible-playbook: the cluster's env plus what the Makefile sets."""
    env = {**os.environ, **cluster_env}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
        "ANSIBLE_HOME": str(ROOT / ".cache" / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(ROOT / ".cache" / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "KUBECACHEDIR": str(ROOT / ".cache" / "kube"),
    })
    env.update(extra or {})
    return env


@pytest.fixture
def run_playbook(local_cluster):
    """Run a playbook against the local cluster; see the module docstring."""

    def run(path, extra_vars=None, check=False, env=None, diff=False, inventory="inventories/local",
            args=(), timeout=1200):
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(path)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        if extra_vars:
            cmd += ["--extra-vars", json.dumps(extra_vars)]
        cmd += list(args)
        proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(local_cluster, env), capture_output=True, text=True,
                              timeout=timeout, check=False)
        return PlaybookResult(proc.returncode, proc.stdout, proc.stderr, parse_recap(proc.stdout))

    return run


# ---------------------------------------------------------------- parallel workers (pytest-xdist)

# `make integration` runs this suite in pytest-xdist workers. Tests of these modules may run on different
# workers at the same time: each test makes its own namespace, llmisvc, node pool and GKE faults (all named after
# the test). Every other module runs whole on one worker, because its module-scoped fixtures build objects with
# fixed names that its tests share. Tests marked `serial` (they restart or reconfigure the shared cluster) run
# afterwards, alone, in a second pytest run.
SPREAD_MODULES = {"test_bad_input_matrix", "test_gke_node_pool", "test_llmisvc_role", "test_llmisvc_wait_cluster"}

# The longest modules (measured: tests/run_suite.py's slowest-tests list) are handed out first, so that the
# run does not end waiting for one of them on one worker. The sort is stable: tests of a module keep their order.
LONGEST_FIRST = ("test_awx_launch", "test_llmisvc_role", "test_verification_role", "test_quota_preflight",
                 "test_teardown", "test_platform_preflight", "test_nodepool_role", "test_secrets_role",
                 "test_rbac_least_privilege", "test_vault_inventory", "test_kserve_sim_llmisvc",
                 "test_node_agent_pods")


def _module_name(nodeid):
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: LONGEST_FIRST.index(_module_name(item.nodeid))
               if _module_name(item.nodeid) in LONGEST_FIRST else len(LONGEST_FIRST))


def pytest_xdist_make_scheduler(config, log):
    """Scopes of work for the xdist workers: one test in SPREAD_MODULES, else its whole module.

    (Not `xdist_group` marks with --dist loadgroup: pytest-xdist 3.8 adds the group to `item._nodeid`, which
    pytest 9 no longer reads, so the marks group nothing.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return nodeid if _module_name(nodeid) in SPREAD_MODULES else module

    return ModuleScopes(config, log)
