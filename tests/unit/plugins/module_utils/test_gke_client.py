"""Unit tests of the Container API client: retries, operation waits, cluster facts (gke_client)."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc

from tests.unit.plugins.module_utils.fake_gke import FakeGke, api_error
from tests.unit.plugins.module_utils.gke_test_params import (
    POOLS,
    QUOTA,
    STOCKOUT,
    client_for,
    reconcile,
    t4_params,
    tpu_params,
)


def test_429_and_503_are_retried_with_growing_jittered_delays():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(429, "RESOURCE_EXHAUSTED", "Too many requests"))
    fake.script("POST", POOLS, *api_error(503, "UNAVAILABLE", "try again"))
    result, clock = reconcile(fake, t4_params())
    assert result["changed"] and "gpu-t4-pool" in fake.pools
    assert [r["status"] for r in result["retries"]] == [429, 503]
    assert len([s for s in clock.sleeps if s <= 1.0]) >= 1


def test_network_errors_are_retried():
    fake = FakeGke()
    fake.script("GET", "nodePools/gpu-t4-pool$", 0, ConnectionError("connection reset"))
    result, _unused = reconcile(fake, t4_params())
    assert result["retries"][0]["reason"] == "retry" and result["changed"]


def test_quota_fails_fast_without_retry():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(403, "PERMISSION_DENIED", QUOTA))
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params())
    assert err.value.kind == "quota" and "TPU_V6E" in err.value.message
    assert len([c for c in fake.calls if c[0] == "POST"]) == 1


def test_synchronous_stockout_fails_fast():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(503, "UNAVAILABLE", STOCKOUT))
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params())
    assert err.value.kind == "stockout" and "europe-west4-a" in err.value.message


def test_operation_error_stockout_is_reported():
    fake = FakeGke()
    fake.op_error = {"code": 9, "message": STOCKOUT}
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, tpu_params())
    assert err.value.kind == "stockout" and "ct6e-standard-4t" in err.value.message


def test_deprecated_conditions_alone_are_not_read_the_operation_error_is():
    """Operation.nodepoolConditions is deprecated ("Use field error instead"): only operation.error fails a task."""
    fake = FakeGke()
    fake.op_conditions = [{"code": "GCE_STOCKOUT", "message": STOCKOUT}]
    result, _unused = reconcile(fake, tpu_params())
    assert result["changed"] and "tpu-v6e-pool" in fake.pools


def test_operation_in_progress_is_retried_then_reported_at_timeout():
    fake = FakeGke()
    fake.script("POST", POOLS, *api_error(400, "FAILED_PRECONDITION", "Cluster is running incompatible operation"),
                times=1000)
    with pytest.raises(errs.GkeError) as err:
        reconcile(fake, t4_params(), timeout=120)
    assert err.value.kind == "in_progress" and "c1" in err.value.message
    assert len([c for c in fake.calls if c[0] == "POST"]) > 2


def test_operation_wait_times_out_with_operation_name():
    fake = FakeGke()
    running = {"name": "operation-9", "status": "RUNNING", "operationType": "CREATE_NODE_POOL"}
    fake.operations["operation-9"] = running
    fake.read_operation = lambda name: (200, dict(running))  # never finishes
    client, clock = client_for(fake, timeout=30)
    with pytest.raises(errs.GkeError) as err:
        client.wait(dict(running), {"name": "p"})
    assert err.value.kind == "timeout" and "operation-9" in err.value.message
    assert clock.now >= 30


def test_cluster_facts_reads_gateway_channel_from_either_place():
    assert gkc.cluster_facts({"networkConfig": {"gatewayApiConfig": {"channel": "CHANNEL_STANDARD"}}})[
        "gateway_api_enabled"]
    assert gkc.cluster_facts({"addonsConfig": {"gatewayApiConfig": {"channel": "CHANNEL_STANDARD"}}})[
        "gateway_api_enabled"]
    assert not gkc.cluster_facts({})["gateway_api_enabled"]
