"""Unit tests of GKE error classification and messages (gke_errors)."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_errors as errs

from tests.unit.plugins.module_utils.gke_test_params import QUOTA, STOCKOUT


@pytest.mark.parametrize("status, api_status, message, kind", [
    (None, "", STOCKOUT, "stockout"),
    (403, "PERMISSION_DENIED", QUOTA, "quota"),
    (400, "FAILED_PRECONDITION", "Cluster is running incompatible operation operation-17", "in_progress"),
    (429, "RESOURCE_EXHAUSTED", "hits the concurrent operations quota 5", "in_progress"),
    (429, "RESOURCE_EXHAUSTED", "Too many requests", "retry"),
    (503, "UNAVAILABLE", "backend unavailable", "retry"),
    (400, "INVALID_ARGUMENT", "Could not find TPU topology 2x2x1", "fatal"),
])
def test_classify(status, api_status, message, kind):
    assert errs.classify(status, api_status, message) == kind


def test_stockout_and_quota_messages_name_zone_resource_and_what_to_try():
    ctx = {"name": "tpu-v6e-pool", "machine_type": "ct6e-standard-4t", "location": "europe-west4", "project": "p1"}
    message = errs.stockout_message(STOCKOUT, ctx)
    assert "europe-west4-a" in message and "ct6e-standard-4t" in message
    assert "spot: true" in message and "another zone" in message and "smaller pool" in message
    message = errs.quota_message(QUOTA, ctx)
    assert "TPU_V6E" in message and "p1" in message and "smaller pool" in message
