"""k8s_read: several k8s_info queries in one module run, results shaped like a looped k8s_info register."""
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_client
from ansible_collections.llm_serving.gke.plugins.modules import k8s_read


class FakeService:
    def __init__(self, found):
        self.found = found
        self.calls = []

    def find(self, kind, api_version, name=None, namespace=None, label_selectors=None):
        self.calls.append((kind, api_version, name, namespace, tuple(label_selectors)))
        return self.found.get((kind, name), {"resources": [], "api_found": kind != "Gateway"})


def test_one_result_per_query_in_order_with_the_query_as_item():
    node = {"metadata": {"name": "n1"}}
    svc = FakeService({("Node", None): {"resources": [node], "api_found": True}})
    queries = [{"id": "ns", "kind": "Namespace", "name": "x"},
               {"kind": "Node", "label_selectors": ["cloud.google.com/gke-nodepool=p"]},
               {"kind": "Gateway", "api_version": "gateway.networking.k8s.io/v1", "namespace": "g", "name": "gw"}]
    results = k8s_read.read_all(svc, queries)
    assert results == [{"item": queries[0], "resources": [], "api_found": True},
                       {"item": queries[1], "resources": [node], "api_found": True},
                       {"item": queries[2], "resources": [], "api_found": False}]
    assert svc.calls == [("Namespace", "v1", "x", None, ()),
                         ("Node", "v1", None, None, ("cloud.google.com/gke-nodepool=p",)),
                         ("Gateway", "gateway.networking.k8s.io/v1", "gw", "g", ())]


def test_queries_without_kind_or_with_a_string_selector_are_refused():
    assert k8s_read.query_errors([{"kind": "Node"}, {"name": "x"}, {"kind": "Node", "label_selectors": "a=b"}]) == [
        "queries[1] lacks kind", "queries[2].label_selectors must be a list of key=value strings"]


def test_module_refuses_bad_queries_before_connecting(monkeypatch, capsys):
    def no_client(module):
        raise AssertionError("must not connect")

    monkeypatch.setattr(k8s_client, "get_api_client", no_client)
    with patch_module_args({"queries": [{"name": "x"}]}), pytest.raises(SystemExit) as exc:
        k8s_read.main()
    assert exc.value.code == 1
    assert "k8s_read: queries[0] lacks kind" in capsys.readouterr().out
