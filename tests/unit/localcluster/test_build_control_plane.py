"""build-control-plane.sh: a second build started while one runs waits for it instead of deleting its source tree.

On a new machine `make test` reaches the build twice at once (cluster-up in one lane, the attach scenario's second
control plane in another); before the lock the second run's `rm -rf tree` broke the first one's compile.
"""
import fcntl
import os
import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "localcluster" / "build-control-plane.sh"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _recipe():
    return re.search(r'^RECIPE="(.*)"$', SCRIPT.read_text(), re.MULTILINE).group(1)


def _stub_path(tmp_path):
    """dpkg and apt-get that record being called and fail: the script must not get to them in these tests."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("dpkg", "apt-get", "make"):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/called"\nexit 1\n')
        stub.chmod(0o755)
    return f"{stubs}:{os.environ['PATH']}"


def _install_binaries(out):
    out.mkdir(parents=True)
    for name in BINARIES:
        binary = out / name
        binary.write_text("#!/bin/sh\necho Kubernetes v1.20.2\n")
        binary.chmod(0o755)
    (out / ".recipe").write_text(_recipe() + "\n")


def test_a_second_build_waits_for_the_running_one_and_uses_its_binaries(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    env = dict(os.environ, LLM_SERVING_GKE_CACHE=str(cache), PATH=_stub_path(tmp_path))
    with open(cache / "build.lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the build that is running
        proc = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE,  # noqa: S603,S607
                                stderr=subprocess.STDOUT, text=True)
        first_line = proc.stdout.readline()
        assert "waiting for it to end" in first_line, first_line + proc.stdout.read()
        assert proc.poll() is None  # still waiting
        _install_binaries(cache / "kubernetes-v1.20.2" / "bin")  # the running build ends with its binaries
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, rest
    assert "built meanwhile by the other run" in rest
    assert not (tmp_path / "called").exists(), (tmp_path / "called").read_text()
    assert not (cache / "build").exists()  # no second source tree was unpacked


def test_binaries_of_the_current_recipe_are_used_without_taking_the_lock(tmp_path):
    cache = tmp_path / "cache"
    _install_binaries(cache / "kubernetes-v1.20.2" / "bin")
    env = dict(os.environ, LLM_SERVING_GKE_CACHE=str(cache), PATH=_stub_path(tmp_path))
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,  # noqa: S603,S607
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "already built" in proc.stdout
    assert not (cache / "build.lock").exists()
    assert not (tmp_path / "called").exists()
