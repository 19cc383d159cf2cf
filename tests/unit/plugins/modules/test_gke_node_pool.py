"""gke_node_pool as Ansible runs it: argument parsing, google.cloud auth options, check mode, failure output."""
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.modules import gke_node_pool

from tests.unit.plugins.module_utils.fake_gke import FakeGke, api_error
from tests.unit.plugins.module_docs import merged_documentation

AUTH = {"auth_kind": "accesstoken", "access_token": "t0ken", "project": "p1"}


@pytest.fixture
def fake(monkeypatch):
    gke = FakeGke()
    monkeypatch.setattr(gkc, "make_transport", lambda module, product="container": gke)
    monkeypatch.setattr(gkc.time, "sleep", lambda seconds: None)
    return gke


def run_module(capsys, args, check_mode=False, diff=False):
    args = dict(AUTH, location="europe-west4-a", cluster="c1", **args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        gke_node_pool.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exit_info.value.code
    return result


T4 = {"name": "gpu-t4-pool", "machine_type": "n1-standard-4",
      "accelerator": {"type": "nvidia-tesla-t4", "count": 1, "gpu_driver_version": "DEFAULT"},
      "autoscaling": {"min_node_count": 0, "max_node_count": 5}}


def test_create_returns_pool_and_operations(fake, capsys):
    result = run_module(capsys, T4)
    assert result["rc"] == 0 and result["changed"]
    assert result["operations"][0]["operation_type"] == "CREATE_NODE_POOL"
    assert result["node_pool"]["config"]["accelerators"][0]["acceleratorType"] == "nvidia-tesla-t4"
    assert "diff" not in result


def test_check_and_diff_mode(fake, capsys):
    result = run_module(capsys, T4, check_mode=True, diff=True)
    assert result["changed"] and fake.writes() == []
    assert result["diff"]["after"]["accelerator"]["type"] == "nvidia-tesla-t4"


def test_failure_carries_kind_and_message(fake, capsys):
    fake.script("POST", "nodePools$", *api_error(403, "PERMISSION_DENIED",
                                                 'Insufficient regional quota to satisfy request: resource '
                                                 '"NVIDIA_T4_GPUS": request requires \'3.0\''))
    result = run_module(capsys, T4)
    assert result["failed"] and result["error_kind"] == "quota" and "NVIDIA_T4_GPUS" in result["msg"]


def test_bad_topology_fails_before_any_call(fake, capsys):
    result = run_module(capsys, {"name": "tpu", "machine_type": "ct6e-standard-4t", "tpu_topology": "2x2x1"})
    assert result["failed"] and result["error_kind"] == "invalid" and "tpu_topology" in result["msg"]
    assert fake.calls == []


def test_gcp_env_vars_are_honoured(fake, capsys, monkeypatch):
    monkeypatch.setenv("GCP_AUTH_KIND", "accesstoken")
    monkeypatch.setenv("GCP_ACCESS_TOKEN", "from-env")
    monkeypatch.setenv("GCP_PROJECT", "p1")
    with patch_module_args(dict(location="europe-west4-a", cluster="c1", **T4)), pytest.raises(SystemExit):
        gke_node_pool.main()
    assert json.loads(capsys.readouterr().out)["changed"]


def test_documentation_matches_argument_spec():
    documented = merged_documentation(gke_node_pool)["options"]  # with the llm_serving.gke.gcp fragments
    assert set(documented) == set(gke_node_pool.ARGUMENT_SPEC)
    for name, spec in gke_node_pool.ARGUMENT_SPEC.items():
        doc = documented[name]
        assert doc.get("type") == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == spec.get("choices"), name
        for sub, sub_spec in (spec.get("options") or {}).items():
            assert doc["suboptions"][sub].get("default") == sub_spec.get("default"), f"{name}.{sub}"
            assert doc["suboptions"][sub].get("choices") == sub_spec.get("choices"), f"{name}.{sub}"


def run_cluster_info(capsys, args):
    from ansible_collections.llm_serving.gke.plugins.modules import gke_cluster_info

    with patch_module_args(dict(AUTH, location="europe-west4-a", **args)), pytest.raises(SystemExit):
        gke_cluster_info.main()
    return json.loads(capsys.readouterr().out)


def test_cluster_info_reports_gateway_and_zones_missing_the_machine_type(fake, capsys):
    fake.gateway_channel = "CHANNEL_DISABLED"
    result = run_cluster_info(capsys, {"cluster": "c1", "machine_type": "ct5lp-hightpu-4t",
                                       "accelerator_type": "nvidia-tesla-t4"})
    assert result["exists"] and not result["gateway_api_enabled"] and not result["changed"]
    assert result["machine_type_missing_zones"] == ["europe-west4-a"] and result["accelerator_missing_zones"] == []
    missing = run_cluster_info(capsys, {"cluster": "nope"})
    assert missing["exists"] is False and missing["cluster"] == {} and not missing.get("failed")
