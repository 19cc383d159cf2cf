"""The GKE simulator's Compute subnetworks and region operations (localcluster/gke_subnets.py)."""
import json
import time

import pytest

from tests.gke_sim_inprocess import REGION_PATH as REGION
from tests.gke_sim_inprocess import call, make_api

PROXY = {"name": "proxy-b", "network": "projects/proj/global/networks/default", "ipCidrRange": "10.130.0.0/23",
         "purpose": "REGIONAL_MANAGED_PROXY", "role": "ACTIVE"}


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path)


def wait_done(api, op):
    for _ in range(300):
        status, current = call(api, "GET", f"{REGION}/operations/{op['name']}")
        assert status == 200
        if current["status"] == "DONE":
            return current
        time.sleep(0.01)
    raise AssertionError("region operation never finished")


def test_new_project_has_default_and_proxy_only_subnet(api):
    status, listing = call(api, "GET", f"{REGION}/subnetworks")
    assert status == 200 and listing["kind"] == "compute#subnetworkList"
    by_name = {s["name"]: s for s in listing["items"]}
    assert by_name["default"]["ipCidrRange"] == "10.164.0.0/20" and by_name["default"]["purpose"] == "PRIVATE"
    proxy = by_name["proxy-only-subnet"]
    assert (proxy["purpose"], proxy["role"]) == ("REGIONAL_MANAGED_PROXY", "ACTIVE")
    assert proxy["network"].endswith("/projects/proj/global/networks/default")


def test_delete_then_insert_through_region_operations(api):
    status, op = call(api, "DELETE", f"{REGION}/subnetworks/proxy-only-subnet")
    assert status == 200 and op["kind"] == "compute#operation" and op["status"] == "RUNNING"
    wait_done(api, op)
    assert call(api, "GET", f"{REGION}/subnetworks/proxy-only-subnet")[0] == 404
    status, op = call(api, "POST", f"{REGION}/subnetworks", PROXY)
    assert status == 200 and op["operationType"] == "insert"
    assert wait_done(api, op)["progress"] == 100
    status, subnet = call(api, "GET", f"{REGION}/subnetworks/proxy-b")
    assert status == 200 and subnet["state"] == "READY" and subnet["gatewayAddress"] == "10.130.0.1"


@pytest.mark.parametrize("change, code, text", [
    ({"name": "proxy-only-subnet"}, 409, "already exists"),
    ({"ipCidrRange": "10.164.0.0/24"}, 400, "conflicts with existing subnetwork 'default'"),
    ({"role": None}, 400, "must have a role of ACTIVE or BACKUP"),
    ({}, 400, "Only one ACTIVE subnetwork with purpose REGIONAL_MANAGED_PROXY"),
    ({"ipCidrRange": "10.130.0.1/23"}, 400, "Invalid IPCidrRange"),
    ({"name": "Bad_Name"}, 400, "resource.name"),
    ({"network": "projects/proj/global/networks/other"}, 404, "networks/other' was not found"),
])
def test_insert_refusals(api, change, code, text):
    body = {k: v for k, v in {**PROXY, **change}.items() if v is not None}
    status, payload = call(api, "POST", f"{REGION}/subnetworks", body)
    assert status == code, payload
    assert text in payload["error"]["message"]
    assert payload["error"]["errors"][0]["reason"]


def test_unknown_region_and_operation(api):
    assert call(api, "GET", "/compute/v1/projects/proj/regions/mars-north1/subnetworks")[0] == 400
    assert call(api, "GET", f"{REGION}/operations/operation-none")[0] == 404


def test_cluster_endpoint_is_the_kubeconfigs_api_server(tmp_path):
    """One cluster (issue 17 item 3): the simulated cluster's endpoint is the host of the kubeconfig's API server,
    as a kubeconfig from `gcloud container clusters get-credentials` points at https://<endpoint>."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": "https://10.1.2.3:16443"}}], "users": []}))
    api = make_api(tmp_path, KUBECONFIG=str(kubeconfig))
    status, cluster = call(api, "GET", "/v1/projects/proj/locations/europe-west4-a/clusters/c1")
    assert status == 200 and cluster["endpoint"] == "10.1.2.3"
    assert make_api(tmp_path / "other").sim.state["cluster"]["endpoint"] == "127.0.0.1"
