"""up / restart / down of a throw-away second cluster (own state dir and ports, no simulators).

The shared cluster is never touched: this proves that `up` is idempotent, that `restart` replaces one
process, and that `down` stops exactly what `up` started and leaves nothing listening.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster.controlplane import find_binaries
from localcluster.supervisor import pid_alive, port_listening

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 1000
PORTS = [p + OFFSET for p in (12379, 12380, 16443, 10257, 10259)]

pytestmark = pytest.mark.cluster


@pytest.fixture
def isolated(tmp_path):
    if "kube-apiserver" not in find_binaries().paths:
        pytest.fail("no control-plane binaries: build them with make control-plane")
    if any(port_listening(p) for p in PORTS):
        pytest.fail(f"ports {PORTS} of the isolated test cluster are in use (LOCALCLUSTER_PORT_OFFSET {OFFSET}): "
                    "stop what listens there")
    env = {**os.environ, "LOCALCLUSTER_DIR": str(tmp_path / "lc"), "LOCALCLUSTER_PORT_OFFSET": str(OFFSET),
           "LOCALCLUSTER_SIMULATORS": "none", "GKE_API_PORT": "19080"}
    env.pop("LOCALCLUSTER_EXTERNAL_KUBECONFIG", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "localcluster", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    yield run
    run("down", "--purge")


def _pids(run):
    report = json.loads(run("status", "--json").stdout)
    return {c["name"]: c["pid"] for c in report["components"] if c["alive"]}, report


def test_up_restart_down_of_a_private_cluster(isolated):
    first = isolated("up")
    assert first.returncode == 0, first.stdout + first.stderr
    pids, report = _pids(isolated)
    assert report["healthy"] and list(pids) == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
    assert report["endpoints"]["kube-apiserver"] == f"https://127.0.0.1:{16443 + OFFSET}"

    again = isolated("up")
    assert again.returncode == 0 and "created" not in again.stdout, again.stdout
    assert _pids(isolated)[0] == pids

    restarted = isolated("restart", "kube-scheduler")
    assert restarted.returncode == 0, restarted.stderr
    after = _pids(isolated)[0]
    assert after["kube-scheduler"] != pids["kube-scheduler"]
    assert {k: v for k, v in after.items() if k != "kube-scheduler"} == {
        k: v for k, v in pids.items() if k != "kube-scheduler"}

    down = isolated("down")
    assert "stopped: kube-scheduler, kube-controller-manager, kube-apiserver, etcd" in down.stdout
    assert not [p for p in PORTS if port_listening(p)]
    assert not any(pid_alive(pid) for pid in after.values())
    assert _pids(isolated)[0] == {}
