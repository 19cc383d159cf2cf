"""Argument handling of the llmisvc_wait module; the waiting itself is tested in module_utils."""

import pytest

from ansible_collections.kubernetes.core.plugins.module_utils.k8s import client as k8s_client
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_watch as lw
from ansible_collections.llm_serving.gke.plugins.modules import llmisvc_wait
from tests.unit.plugins.modules.module_exit import patch_exits, run_main


@pytest.fixture(autouse=True)
def no_exit(monkeypatch):
    patch_exits(monkeypatch)


@pytest.fixture
def fake_cluster(monkeypatch):
    """Records how the module builds its client and waiter, instead of talking to a cluster."""
    calls = {}

    class FakeClient:
        client = object()

    def get_api_client(module):
        calls["module"] = module
        return FakeClient()

    def run(self, wait=True):
        calls.update(wait=wait, waiter=self)
        return dict(calls.get("result", {"ready": True, "outcome": "ready", "url": "http://x"}))

    monkeypatch.setattr(llmisvc_wait, "get_api_client", get_api_client)
    monkeypatch.setattr(lw, "discover_version", lambda api, deadline: "v1alpha2")
    monkeypatch.setattr(lw.LlmisvcWaiter, "run", run)
    return calls


def run_module(args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    return run_main(llmisvc_wait.main, args)


def test_name_and_namespace_are_required(fake_cluster):
    result = run_module({"name": "x"})
    assert result.kind == "fail"
    assert "namespace" in result.result["msg"]
    assert "module" not in fake_cluster


@pytest.mark.parametrize(
    "args, option",
    [
        ({"timeout": 0}, "timeout"),
        ({"progress_deadline": -5}, "progress_deadline"),
        ({"api_version": "serving.kserve.io/v1beta1"}, "api_version"),
        ({"api_version": "apps/v1alpha2"}, "api_version"),
        ({"name": " "}, "name"),
    ],
)
def test_bad_values_fail_naming_the_option_before_any_api_call(fake_cluster, args, option):
    result = run_module(dict({"name": "qwen", "namespace": "ns"}, **args))
    assert result.kind == "fail"
    assert result.result["msg"].startswith(option)
    assert "module" not in fake_cluster


def test_defaults_reach_the_waiter(fake_cluster):
    result = run_module({"name": "qwen", "namespace": "ns"})
    assert result.kind == "exit" and result.result["changed"] is False
    waiter = fake_cluster["waiter"]
    assert (waiter.timeout, waiter.progress_deadline) == (1800, 600)
    assert waiter.require_rollout and waiter.require_url and waiter.fail_fast
    assert waiter.version == "v1alpha2" and fake_cluster["wait"] is True


def test_explicit_api_version_skips_discovery(fake_cluster, monkeypatch):
    monkeypatch.setattr(lw, "discover_version", lambda *a: pytest.fail("discovery must not run"))
    run_module({"name": "qwen", "namespace": "ns", "api_version": "serving.kserve.io/v1alpha1"})
    assert fake_cluster["waiter"].version == "v1alpha1"


def test_check_mode_does_not_wait(fake_cluster):
    fake_cluster["result"] = {"ready": False, "outcome": "pending", "diagnosis": {"reason": "FailedScheduling"}}
    result = run_module({"name": "qwen", "namespace": "ns"}, check_mode=True)
    assert result.kind == "exit"
    assert fake_cluster["wait"] is False
    assert result.result["outcome"] == "pending"


def test_not_ready_fails_with_the_diagnosis_line(fake_cluster):
    fake_cluster["result"] = {"ready": False, "outcome": "failed", "msg": "qwen not ready: pod p: ImagePullBackOff"}
    result = run_module({"name": "qwen", "namespace": "ns"})
    assert result.kind == "fail"
    assert result.result["msg"] == "qwen not ready: pod p: ImagePullBackOff"
    assert result.result["outcome"] == "failed"


def test_auth_options_and_k8s_auth_environment(fake_cluster, monkeypatch, tmp_path):
    """kubernetes.core's auth options are accepted, and K8S_AUTH_* fill what the task leaves out (as in AWX)."""
    for option in ("kubeconfig", "context", "host", "api_key", "validate_certs", "ca_cert", "impersonate_user"):
        assert option in llmisvc_wait.argument_spec()
    monkeypatch.setenv("K8S_AUTH_HOST", "https://10.0.0.1")
    monkeypatch.setenv("K8S_AUTH_API_KEY", "token-from-awx")
    run_module({"name": "qwen", "namespace": "ns", "validate_certs": False})
    auth = k8s_client._create_auth_spec(fake_cluster["module"])
    assert auth["host"] == "https://10.0.0.1"
    assert auth["api_key"] == "token-from-awx"
    assert auth["verify_ssl"] is False


def test_check_mode_reports_a_permanent_failure_without_failing(fake_cluster):
    fake_cluster["result"] = {"ready": False, "outcome": "failed", "msg": "qwen not ready: pod p: ImagePullBackOff"}
    result = run_module({"name": "qwen", "namespace": "ns"}, check_mode=True)
    assert result.kind == "exit"
    assert result.result["outcome"] == "failed"


def test_client_creation_is_retried_while_the_api_server_is_down(fake_cluster, monkeypatch):
    attempts = []

    class FakeClient:
        client = object()

    def flaky_get_api_client(module):
        attempts.append(module)
        if len(attempts) < 3:
            raise ConnectionRefusedError(111, "Connection refused")
        return FakeClient()

    monkeypatch.setattr(llmisvc_wait, "get_api_client", flaky_get_api_client)
    monkeypatch.setattr(llmisvc_wait.time, "sleep", lambda seconds: None)
    result = run_module({"name": "qwen", "namespace": "ns"})
    assert result.kind == "exit" and len(attempts) == 3


def test_unreachable_api_server_fails_with_a_clear_message(fake_cluster, monkeypatch):
    def down(module):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(llmisvc_wait, "get_api_client", down)
    result = run_module({"name": "qwen", "namespace": "ns"}, check_mode=True)  # check mode: no retries
    assert result.kind == "fail"
    assert result.result["msg"].startswith("cannot reach the Kubernetes API server: ConnectionRefusedError")
