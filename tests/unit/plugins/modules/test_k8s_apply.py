"""k8s_apply: one run for every object, change judged without status and volatile metadata (k8s_change)."""
import copy

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_change, k8s_client
from ansible_collections.llm_serving.gke.plugins.modules import k8s_apply

OBJ = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "LLMInferenceService", "spec": {"replicas": 3},
       "metadata": {"name": "x", "namespace": "ns"}}
SERVER = {"status": {"ready": True},
          "metadata": {"uid": "u1", "resourceVersion": "1", "generation": 1, "managedFields": [{"time": "t1"}]}}


def on_server(obj, **metadata):
    out = copy.deepcopy(obj)
    out["status"] = dict(SERVER["status"])
    out["metadata"] = {**obj["metadata"], **SERVER["metadata"], **metadata}
    return out


class Instance:
    def __init__(self, obj):
        self.obj = obj

    def to_dict(self):
        return copy.deepcopy(self.obj)


class FakeService:
    """Objects by (kind, namespace, name); apply returns what the server would hold after it."""

    def __init__(self, objects, server_changes=None):
        self.objects = objects
        self.server_changes = server_changes or {}
        self.calls = []

    def find_resource(self, kind, api_version, fail=False):
        return kind

    def retrieve(self, resource, definition):
        self.calls.append(("get", resource))
        obj = self.objects.get((resource, definition["metadata"]["name"]))
        return Instance(obj) if obj else None

    def apply(self, resource, definition, existing):
        self.calls.append(("apply", resource))
        after = on_server(definition, resourceVersion="2", managedFields=[{"time": "t2"}])
        after.update(self.server_changes.get(resource, {}))
        return after, []


def test_unchanged_objects_whose_managed_fields_moved_are_not_changed():
    svc = FakeService({("LLMInferenceService", "x"): on_server(OBJ)})
    results, diffs = k8s_apply.apply_all(svc, [OBJ])
    assert [r["changed"] for r in results] == [False]
    assert results[0]["method"] == "apply"
    assert "managedFields" not in results[0]["result"]["metadata"] and "status" not in results[0]["result"]
    assert diffs == []
    assert svc.calls == [("get", "LLMInferenceService"), ("apply", "LLMInferenceService")]


def test_new_and_changed_objects_are_changed_with_a_diff_each():
    policy = {"apiVersion": "networking.gke.io/v1", "kind": "HealthCheckPolicy",
              "metadata": {"name": "p", "namespace": "ns"},
              "spec": {"default": {"checkIntervalSec": 5}}}
    old = on_server(dict(OBJ, spec={"replicas": 2}))
    svc = FakeService({("LLMInferenceService", "x"): old})
    results, diffs = k8s_apply.apply_all(svc, [dict(OBJ), policy])
    assert [(r["kind"], r["changed"], r["method"]) for r in results] == [
        ("LLMInferenceService", True, "apply"), ("HealthCheckPolicy", True, "create")]
    assert diffs[0]["before"]["spec"] == {"replicas": 2} and diffs[0]["after"]["spec"] == {"replicas": 3}
    assert "resourceVersion" not in diffs[0]["after"]["metadata"]
    assert diffs[1]["before"] == {}


def test_definitions_without_kind_or_name_are_refused_naming_the_entry():
    assert k8s_apply.definition_errors([OBJ, {"apiVersion": "v1", "metadata": {}}]) == [
        "definitions[1] lacks kind, metadata.name"]


def test_apply_changed_ignores_status_and_volatile_metadata_only():
    before = on_server(OBJ)
    assert k8s_change.apply_changed(True, before, on_server(OBJ, generation=2, resourceVersion="9")) is False
    assert k8s_change.apply_changed(True, before, on_server(OBJ, labels={"a": "b"})) is True
    assert k8s_change.apply_changed(True, {}, before) is True
    assert k8s_change.apply_changed(False, {}, before) is False


def test_module_refuses_bad_definitions_before_connecting(monkeypatch, capsys):
    def no_client(module):
        raise AssertionError("must not connect")

    monkeypatch.setattr(k8s_client, "get_api_client", no_client)
    with patch_module_args({"definitions": [{"kind": "X"}], "field_manager": "m"}), pytest.raises(SystemExit) as exc:
        k8s_apply.main()
    assert exc.value.code == 1
    assert "k8s_apply: definitions[0] lacks apiVersion, metadata.name" in capsys.readouterr().out
