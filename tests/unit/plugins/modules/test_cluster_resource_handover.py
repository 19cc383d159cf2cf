"""cluster_resource of gke_platform_check and gce_region_quota: the cluster gke_cluster_info read in this run is used
instead of reading the cluster (or the node pool) again; another cluster's resource is not."""
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.modules import gke_platform_check

from tests.unit.plugins.modules import test_gce_region_quota as quota_tests
from tests.unit.plugins.modules import test_gke_platform_check as platform_tests
from tests.unit.plugins.modules.test_gce_region_quota import T4_NODES, run_module
from tests.unit.plugins.modules.test_gke_platform_check import ARGS, FakeKube, kubeconfig, run

# The fake GCP APIs of those tests, as fixtures here.
fake = quota_tests.fake
api = platform_tests.api

CLUSTER_PATH = "/v1/projects/proj/locations/europe-west4-a/clusters/c1"
IGM = "https://www.googleapis.com/compute/v1/projects/p1/zones/europe-west4-a/instanceGroupManagers/gke-c1-{}-grp"


def test_quota_takes_the_pool_from_the_cluster_read_and_only_sizes_its_instance_groups(fake, capsys):
    fake.pools["gpu-t4-pool"] = 2
    cluster = {"name": "c1", "nodePools": [{"name": "gpu-t4-pool", "status": "RUNNING",
                                            "instanceGroupUrls": [IGM.format("gpu-t4-pool")]}]}
    result = run_module(capsys, dict(T4_NODES, nodes=3, cluster="c1", node_pool="gpu-t4-pool",
                                     cluster_resource=cluster, fail_on_shortfall=True))
    assert result["rc"] == 0 and (result["current_nodes"], result["new_nodes"]) == (2, 1)
    assert not [path for _method, path in fake.calls if "/nodePools/" in path]


def test_quota_counts_a_pool_missing_from_the_cluster_read_as_no_nodes(fake, capsys):
    fake.pools["gpu-t4-pool"] = 2  # only a read of the pool would find it
    result = run_module(capsys, dict(T4_NODES, nodes=2, cluster="c1", node_pool="gpu-t4-pool",
                                     cluster_resource={"name": "c1", "nodePools": []}))
    assert (result["current_nodes"], result["new_nodes"]) == (0, 2)
    assert not [path for _method, path in fake.calls if "/nodePools/" in path]


def test_quota_reads_the_pool_when_the_cluster_read_is_another_cluster(fake, capsys):
    fake.pools["gpu-t4-pool"] = 2
    result = run_module(capsys, dict(T4_NODES, nodes=3, cluster="c1", node_pool="gpu-t4-pool",
                                     cluster_resource={"name": "other", "nodePools": []}))
    assert (result["current_nodes"], result["new_nodes"]) == (2, 1)
    assert [path for _method, path in fake.calls if "/nodePools/" in path]


def counting(transport, calls):
    def wrapped(method, url, body):
        calls.append((method, url.split("://", 1)[1].split("/", 1)[1]))
        return transport(method, url, body)
    return wrapped


def test_platform_check_uses_the_cluster_read_instead_of_reading_it_again(api, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gke_platform_check, "Kube", FakeKube)
    calls = []
    monkeypatch.setattr(gkc, "make_transport", lambda module, product="container": counting(api.transport, calls))
    status, cluster, _headers = api.handle("GET", CLUSTER_PATH, {"Authorization": "Bearer unit-token"}, b"",
                                           "http://sim")
    assert status == 200
    server = kubeconfig(tmp_path, "https://127.0.0.1:16443")
    given = run(capsys, gke_platform_check, dict(ARGS, kubeconfig=server, cluster_resource=cluster))
    assert given["rc"] == 0 and given["problems"] == [], given
    assert ("GET", CLUSTER_PATH.lstrip("/")) not in calls
    read = run(capsys, gke_platform_check, dict(ARGS, kubeconfig=server, cluster_resource={"name": "other"}))
    assert read["rc"] == 0 and ("GET", CLUSTER_PATH.lstrip("/")) in calls
    assert {k: given[k] for k in ("checks", "gke_endpoints", "gke_version")} == \
        {k: read[k] for k in ("checks", "gke_endpoints", "gke_version")}
