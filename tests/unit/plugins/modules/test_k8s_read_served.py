"""k8s_read served_kinds (the served versions of CRD kinds from one discovery) and metadata_only queries."""
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_client
from ansible_collections.llm_serving.gke.plugins.modules import k8s_read


class Resource:
    def __init__(self, group, version, kind):
        self.group = group
        self.kind = kind
        self.group_version = f"{group}/{version}" if group else version


class ResourceList(Resource):
    """Named like the dynamic client's list resources, which k8s_cluster_info skips."""


KINDS = {"llminferenceservices.serving.kserve.io": "LLMInferenceService",
         "gateways.gateway.networking.k8s.io": "Gateway",
         "inferencepools.inference.networking.k8s.io": "InferencePool"}


def test_served_versions_per_crd_name_in_discovery_order():
    discovered = [[Resource("gateway.networking.k8s.io", "v1", "Gateway")],
                  [Resource("gateway.networking.k8s.io", "v1beta1", "Gateway")],
                  [Resource("gateway.networking.k8s.io", "v1", "HTTPRoute")],
                  [Resource("serving.kserve.io", "v1alpha2", "LLMInferenceService")],
                  [Resource("serving.kserve.io", "v1alpha1", "LLMInferenceService")],
                  # Same kind in another group (the x-k8s.io InferencePool alpha) is not the CRD asked for.
                  [Resource("inference.networking.x-k8s.io", "v1alpha2", "InferencePool")],
                  [ResourceList("inference.networking.k8s.io", "v1", "InferencePool")]]
    assert k8s_read.served_versions(discovered, KINDS) == {
        "llminferenceservices.serving.kserve.io": ["v1alpha2", "v1alpha1"],
        "gateways.gateway.networking.k8s.io": ["v1", "v1beta1"],
        "inferencepools.inference.networking.k8s.io": []}


def test_metadata_only_drops_the_data_of_the_objects_read():
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}, "data": {"HF_TOKEN": "c2VjcmV0"},
              "type": "Opaque"}

    class Svc:
        def find(self, kind, api_version, name=None, namespace=None, label_selectors=None):
            return {"resources": [dict(secret)], "api_found": True}

    queries = [{"kind": "Secret", "namespace": "ns", "name": "hf", "metadata_only": True},
               {"kind": "Secret", "namespace": "ns", "name": "hf"}]
    results = k8s_read.read_all(Svc(), queries)
    assert results[0]["resources"] == [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}}]
    assert results[1]["resources"] == [secret]


class FakeDiscovery(list):
    def __init__(self, items):
        super().__init__(items)
        self.invalidated = 0

    def invalidate_cache(self):
        self.invalidated += 1


class FakeClient:
    def __init__(self, resources):
        self.resources = resources


def test_module_refreshes_discovery_once_and_returns_served_with_the_reads(monkeypatch, capsys):
    discovery = FakeDiscovery([[Resource("gateway.networking.k8s.io", "v1", "Gateway")]])
    client = FakeClient(discovery)
    monkeypatch.setattr(k8s_client, "get_api_client", lambda module: client)

    class Svc:
        def __init__(self, got_client, module):
            assert got_client is client

        def find(self, kind, api_version, name=None, namespace=None, label_selectors=None):
            return {"resources": [], "api_found": True}

    monkeypatch.setattr(k8s_client, "K8sService", Svc)
    args = {"queries": [{"kind": "Namespace", "name": "x"}],
            "served_kinds": {"gateways.gateway.networking.k8s.io": "Gateway"}}
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        k8s_read.main()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert '"served": {"gateways.gateway.networking.k8s.io": ["v1"]}' in out
    assert discovery.invalidated == 1


def test_module_refuses_a_served_kinds_key_that_is_no_crd_name(monkeypatch, capsys):
    monkeypatch.setattr(k8s_client, "get_api_client", lambda module: pytest.fail("must not connect"))
    args = {"queries": [], "served_kinds": {"Gateway": "Gateway"}}
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        k8s_read.main()
    assert exc.value.code == 1
    assert "served_kinds keys must be CRD names <plural>.<group>" in capsys.readouterr().out
