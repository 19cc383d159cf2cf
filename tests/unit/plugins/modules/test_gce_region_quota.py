"""gce_region_quota as Ansible runs it, on a fake Compute/Container transport: the quota table, the fit of new
nodes, the refusal message, retries, auth and missing-region failures, check mode, docs and action group."""
import json
import re
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from ansible_collections.llm_serving.gke.plugins.module_utils import gcp_client
from ansible_collections.llm_serving.gke.plugins.modules import gce_region_quota
from tests.unit.plugins.module_docs import merged_documentation

ROOT = Path(__file__).resolve().parents[4]
AUTH = {"auth_kind": "accesstoken", "access_token": "t0ken", "project": "p1"}
REGION_RE = re.compile(r"^/compute/v1/projects/p1/regions/([^/]+)$")
MACHINE_RE = re.compile(r"^/compute/v1/projects/p1/zones/([^/]+)/machineTypes/([^/]+)$")
POOL_RE = re.compile(r"^/v1/projects/p1/locations/[^/]+/clusters/c1/nodePools/([^/]+)$")
IGM_RE = re.compile(r"^/compute/v1/projects/p1/zones/([^/]+)/instanceGroupManagers/([^/]+)$")


class FakeCompute:
    """regions.get, machineTypes.get, nodePools.get and instanceGroupManagers.get, as the Compute/Container APIs
    answer them (https://cloud.google.com/compute/docs/reference/rest/v1/regions/get: quotas[].metric/limit/usage)."""

    def __init__(self):
        self.quotas = {"CPUS": (24.0, 8.0), "NVIDIA_T4_GPUS": (4.0, 2.0)}
        self.machines = {"n1-standard-4": 4, "ct6e-standard-4t": 180}
        self.pools = {}  # name -> size in europe-west4-a
        self.calls = []
        self.scripted = []  # (path regex, status, payload), consumed in order

    def __call__(self, method, url, body):
        path = re.sub(r"^https?://[^/]+", "", url)
        self.calls.append((method, path))
        for index, (pattern, status, payload) in enumerate(self.scripted):
            if re.search(pattern, path):
                del self.scripted[index]
                return status, payload
        if method != "GET":
            return 405, {"error": {"code": 405, "message": "read-only fake"}}
        if match := REGION_RE.match(path):
            if match.group(1) != "europe-west4":
                return 404, {"error": {"code": 404, "message": f"The resource '{path}' was not found"}}
            base = "https://www.googleapis.com/compute/v1/projects/p1"
            return 200, {"kind": "compute#region", "name": "europe-west4",
                         "zones": [f"{base}/zones/europe-west4-b", f"{base}/zones/europe-west4-a"],
                         "quotas": [{"metric": m, "limit": lim, "usage": use} for m, (lim, use) in self.quotas.items()]}
        if match := MACHINE_RE.match(path):
            cpus = self.machines.get(match.group(2))
            return (200, {"name": match.group(2), "guestCpus": cpus}) if cpus else (404, {"error": {"code": 404}})
        if match := POOL_RE.match(path):
            name = match.group(1)
            if name not in self.pools:
                return 404, {"error": {"code": 404, "message": "not found"}}
            igm = ("https://www.googleapis.com/compute/v1/projects/p1/zones/europe-west4-a/instanceGroupManagers/"
                   f"gke-c1-{name}-grp")
            return 200, {"name": name, "status": "RUNNING", "instanceGroupUrls": [igm]}
        if match := IGM_RE.match(path):
            name = match.group(2)[len("gke-c1-"):-len("-grp")]
            return 200, {"name": match.group(2), "targetSize": self.pools[name]}
        return 404, {"error": {"code": 404, "message": f"fake has no {path}"}}


@pytest.fixture
def fake(monkeypatch):
    api = FakeCompute()
    products = []

    def make_transport(module, product="container"):
        products.append(product)
        return api

    monkeypatch.setattr(gcp_client, "make_transport", make_transport)
    monkeypatch.setattr(gcp_client.time, "sleep", lambda seconds: None)
    api.products = products
    return api


def run_module(capsys, args, check_mode=False):
    args = dict(AUTH, **args)
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        gce_region_quota.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = exit_info.value.code
    return result


T4_NODES = {"location": "europe-west4-a", "machine_type": "n1-standard-4", "accelerator_type": "nvidia-tesla-t4",
            "accelerator_count": 1}


def test_reads_the_region_of_a_zone_into_a_quota_table(fake, capsys):
    result = run_module(capsys, {"location": "europe-west4-a"})
    assert result["rc"] == 0 and not result["changed"] and result["region"] == "europe-west4"
    assert result["quotas"]["NVIDIA_T4_GPUS"] == {"limit": 4.0, "usage": 2.0, "available": 2.0}
    assert fake.calls == [("GET", "/compute/v1/projects/p1/regions/europe-west4")]
    assert fake.products == ["compute"]


def test_two_t4_nodes_fit(fake, capsys):
    result = run_module(capsys, dict(T4_NODES, nodes=2, fail_on_shortfall=True))
    assert result["rc"] == 0 and result["fits"] and result["new_nodes"] == 2
    assert [(r["metric"], r["needed"]) for r in result["required"]] == [("NVIDIA_T4_GPUS", 2.0), ("CPUS", 8.0)]
    assert ("GET", "/compute/v1/projects/p1/zones/europe-west4-a/machineTypes/n1-standard-4") in fake.calls


def test_three_t4_nodes_are_refused_naming_metric_region_needed_and_available(fake, capsys):
    result = run_module(capsys, dict(T4_NODES, nodes=3, fail_on_shortfall=True, purpose="pattern p3-gpu"))
    assert result["failed"] and result["error_kind"] == "quota" and not result["fits"]
    assert result["msg"].startswith("Not enough regional quota in europe-west4 (project p1) for 3 new node(s) of "
                                    "pattern p3-gpu: ")
    assert "NVIDIA_T4_GPUS needs 3 (1 per node of nvidia-tesla-t4), 2 available (limit 4, usage 2)" in result["msg"]


def test_without_fail_on_shortfall_a_shortfall_is_returned(fake, capsys):
    result = run_module(capsys, dict(T4_NODES, nodes=3))
    assert result["rc"] == 0 and not result["fits"]
    assert [s["metric"] for s in result["shortfalls"]] == ["NVIDIA_T4_GPUS"]


def test_nodes_the_pool_already_has_need_no_new_quota(fake, capsys):
    fake.pools["gpu-t4-pool"] = 2
    result = run_module(capsys, dict(T4_NODES, nodes=3, cluster="c1", node_pool="gpu-t4-pool",
                                     fail_on_shortfall=True))
    assert result["rc"] == 0 and (result["current_nodes"], result["new_nodes"]) == (2, 1)
    assert result["required"][0]["needed"] == 1.0


def test_a_missing_pool_has_no_nodes(fake, capsys):
    result = run_module(capsys, dict(T4_NODES, nodes=2, cluster="c1", node_pool="gpu-t4-pool"))
    assert result["rc"] == 0 and (result["current_nodes"], result["new_nodes"]) == (0, 2)


def test_vcpus_of_a_region_location_come_from_its_first_zone(fake, capsys):
    result = run_module(capsys, dict(T4_NODES, location="europe-west4", nodes=1))
    assert ("GET", "/compute/v1/projects/p1/zones/europe-west4-a/machineTypes/n1-standard-4") in fake.calls
    assert result["fits"]


def test_tpu_v6e_without_a_listed_metric_is_unchecked_not_refused(fake, capsys):
    result = run_module(capsys, {"location": "europe-west4-a", "machine_type": "ct6e-standard-4t",
                                 "accelerator_type": "tpu-v6e-slice", "accelerator_count": 4, "nodes": 3,
                                 "fail_on_shortfall": True})
    assert result["rc"] == 0 and result["fits"]
    assert [u["metric"] for u in result["unchecked"]] == ["TPU_V6E_SLICE", "CT6E_CPUS"]


def test_503_is_retried(fake, capsys):
    fake.scripted.append(("regions/", 503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}))
    result = run_module(capsys, {"location": "europe-west4-a"})
    assert result["rc"] == 0 and result["retries"][0]["status"] == 503
    assert fake.calls.count(("GET", "/compute/v1/projects/p1/regions/europe-west4")) == 2


def test_401_fails_as_auth(fake, capsys):
    fake.scripted.append(("regions/", 401, {"error": {"code": 401, "status": "UNAUTHENTICATED",
                                                      "message": "Request had invalid authentication credentials."}}))
    result = run_module(capsys, {"location": "europe-west4-a"})
    assert result["failed"] and result["error_kind"] == "auth" and "access token" in result["msg"]


def test_unknown_region_fails_naming_it(fake, capsys):
    result = run_module(capsys, {"location": "mars-north1-a"})
    assert result["failed"] and "Region 'mars-north1' does not exist in project p1" in result["msg"]


def test_bad_location_fails_before_any_call(fake, capsys):
    result = run_module(capsys, {"location": "europe"})
    assert result["failed"] and result["error_kind"] == "invalid" and "location 'europe'" in result["msg"]
    assert fake.calls == []


def test_check_mode_reads_the_same(fake, capsys):
    result = run_module(capsys, dict(T4_NODES, nodes=3, fail_on_shortfall=True), check_mode=True)
    assert result["failed"] and "NVIDIA_T4_GPUS" in result["msg"]


def test_documentation_matches_argument_spec():
    documented = merged_documentation(gce_region_quota)["options"]  # with the llm_serving.gke.gcp fragments
    assert set(documented) == set(gce_region_quota.ARGUMENT_SPEC)
    for name, spec in gce_region_quota.ARGUMENT_SPEC.items():
        assert documented[name]["type"] == spec["type"], name
        assert documented[name].get("default") == spec.get("default"), name
    yaml.safe_load(gce_region_quota.EXAMPLES)
    assert set(yaml.safe_load(gce_region_quota.RETURN)) >= {"region", "quotas", "shortfalls", "fits", "unchecked"}


def test_module_is_in_the_gcp_action_group():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    assert "gce_region_quota" in runtime["action_groups"]["gcp"]
