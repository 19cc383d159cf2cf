"""module_utils/k8s_client: the one Kubernetes client setup of k8s_apply and k8s_read (kubernetes.core's module
class, authentication options, client and service)."""
import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException

from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_client
from ansible_collections.llm_serving.gke.plugins.modules import k8s_apply, k8s_read


@pytest.mark.parametrize("module", [k8s_apply, k8s_read], ids=["k8s_apply", "k8s_read"])
def test_both_modules_take_kubernetes_cores_auth_options_and_their_own(module):
    spec = module.argument_spec()
    assert set(spec) == set(AUTH_ARG_SPEC) | set(module.OPTIONS)
    assert spec["kubeconfig"] == AUTH_ARG_SPEC["kubeconfig"]
    spec["kubeconfig"]["type"] = "changed"  # a copy: kubernetes.core's table stays as it is
    assert AUTH_ARG_SPEC["kubeconfig"]["type"] != "changed" and set(module.OPTIONS).isdisjoint(AUTH_ARG_SPEC)


def test_the_service_is_built_on_the_modules_client(monkeypatch):
    client = object()
    seen = {}

    class Service:
        def __init__(self, got_client, module):
            seen.update(client=got_client, module=module)

    monkeypatch.setattr(k8s_client, "get_api_client", lambda module: client)
    monkeypatch.setattr(k8s_client, "K8sService", Service)
    with patch_module_args({"queries": []}):
        module = k8s_client.k8s_module("k8s_read", k8s_read.OPTIONS)
    assert module.check_mode is False
    assert k8s_client.run_with_service(module, lambda c, svc: (c, type(svc).__name__)) == (client, "Service")
    assert seen == {"client": client, "module": module}


def test_a_kubernetes_core_failure_ends_the_module_with_its_message(monkeypatch, capsys):
    def unreachable(module):
        raise CoreException("Failed to load kubeconfig due to Invalid kube-config file. No configuration found.")

    monkeypatch.setattr(k8s_client, "get_api_client", unreachable)
    with patch_module_args({"definitions": [], "field_manager": "m"}), pytest.raises(SystemExit) as exc:
        k8s_apply.main()
    assert exc.value.code == 1
    assert "Failed to load kubeconfig" in capsys.readouterr().out


def test_without_kubernetes_core_the_module_fails_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(k8s_client, "HAS_KUBERNETES_COLLECTION", False)
    with patch_module_args({}), pytest.raises(SystemExit) as exc:
        k8s_client.k8s_module("k8s_read", k8s_read.OPTIONS)
    assert exc.value.code == 1
    assert "llm_serving.gke.k8s_read needs the kubernetes.core collection (>= 5.0)" in capsys.readouterr().out
