"""Regional quota arithmetic of gce_region_quota: metric names, the quota table, whether new nodes fit."""
import pytest
from ansible_collections.llm_serving.gke.plugins.module_utils import gce_quota

REGION = {"name": "europe-west4", "quotas": [
    {"metric": "CPUS", "limit": 24.0, "usage": 8.0},
    {"metric": "NVIDIA_T4_GPUS", "limit": 4.0, "usage": 3.0},
    {"metric": "PREEMPTIBLE_NVIDIA_L4_GPUS", "limit": 8.0, "usage": 0.0},
    {"metric": "NVIDIA_L4_GPUS", "limit": 2.0, "usage": 0.0},
    {"metric": "TPU_LITE_PODSLICE_V5", "limit": 16.0, "usage": 20.0},
]}


@pytest.mark.parametrize(("location", "region"), [("europe-west4-a", "europe-west4"), ("us-central1", "us-central1")])
def test_region_of(location, region):
    assert gce_quota.region_of(location) == region


def test_region_of_refuses_what_is_no_location():
    with pytest.raises(gce_quota.QuotaInputError, match="location 'europe' is neither a zone"):
        gce_quota.region_of("europe")


@pytest.mark.parametrize(("accelerator", "spot", "metric"), [
    ("nvidia-tesla-t4", False, "NVIDIA_T4_GPUS"),
    ("nvidia-tesla-t4", True, "PREEMPTIBLE_NVIDIA_T4_GPUS"),
    ("nvidia-l4", False, "NVIDIA_L4_GPUS"),
    ("nvidia-h100-80gb", False, "NVIDIA_H100_GPUS"),
    ("nvidia-rtx-pro-6000", False, "NVIDIA_RTX_PRO_6000_GPUS"),  # unknown GPUs follow the enum's pattern
    ("tpu-v5-lite-podslice", False, "TPU_LITE_PODSLICE_V5"),
    ("tpu-v6e-slice", False, "TPU_V6E_SLICE"),
    ("tpu7x", False, None),
    ("", False, None),
])
def test_accelerator_metric(accelerator, spot, metric):
    assert gce_quota.accelerator_metric(accelerator, spot) == metric


@pytest.mark.parametrize(("machine", "metric"), [("n1-standard-4", "CPUS"), ("n2-standard-8", "N2_CPUS"),
                                                 ("e2-medium", "E2_CPUS"), ("ct6e-standard-4t", "CT6E_CPUS"),
                                                 ("", None)])
def test_cpu_metric(machine, metric):
    assert gce_quota.cpu_metric(machine) == metric


def test_quota_table_never_reports_negative_availability():
    table = gce_quota.quota_table(REGION)
    assert table["NVIDIA_T4_GPUS"] == {"limit": 4.0, "usage": 3.0, "available": 1.0}
    assert table["TPU_LITE_PODSLICE_V5"]["available"] == 0.0
    assert gce_quota.quota_table({}) == {}


def t4_requirements(cpus=4):
    return gce_quota.node_requirements("n1-standard-4", "nvidia-tesla-t4", 1, guest_cpus=cpus)


def test_three_t4_nodes_fall_short_on_gpus_not_cpus():
    result = gce_quota.fit(gce_quota.quota_table(REGION), t4_requirements(), 3)
    assert not result["fits"]
    [short] = result["shortfalls"]
    assert (short["metric"], short["needed"], short["available"]) == ("NVIDIA_T4_GPUS", 3.0, 1.0)
    assert [r["metric"] for r in result["required"]] == ["NVIDIA_T4_GPUS", "CPUS"]
    assert result["unchecked"] == []


def test_one_t4_node_fits_and_zero_new_nodes_always_fit():
    table = gce_quota.quota_table(REGION)
    assert gce_quota.fit(table, t4_requirements(), 1)["fits"]
    assert gce_quota.fit(table, t4_requirements(), 0)["fits"]


def test_cpu_shortfall_is_reported():
    result = gce_quota.fit(gce_quota.quota_table(REGION), t4_requirements(cpus=17), 1)
    assert [s["metric"] for s in result["shortfalls"]] == ["CPUS"]
    assert result["shortfalls"][0]["needed"] == 17.0


def test_metric_the_region_does_not_list_is_unchecked_not_passed_or_failed():
    requirements = gce_quota.node_requirements("ct6e-standard-4t", "tpu-v6e-slice", 4, guest_cpus=180)
    result = gce_quota.fit(gce_quota.quota_table(REGION), requirements, 3)
    assert result["fits"] and result["required"] == []
    assert [(u["metric"], u["reason"]) for u in result["unchecked"]] == [
        ("TPU_V6E_SLICE", "the region lists no quota metric TPU_V6E_SLICE"),
        ("CT6E_CPUS", "the region lists no quota metric CT6E_CPUS")]


def test_unknown_tpu_and_unknown_vcpus_are_unchecked():
    requirements = gce_quota.node_requirements("n1-standard-4", "tpu7x", 4, guest_cpus=None)
    result = gce_quota.fit(gce_quota.quota_table(REGION), requirements, 1)
    assert [u["reason"] for u in result["unchecked"]] == [
        "no regional quota metric is known for tpu7x", "the vCPU count of n1-standard-4 is unknown"]


def test_spot_uses_the_preemptible_metric_and_falls_back_to_the_standard_one():
    table = gce_quota.quota_table(REGION)
    l4 = gce_quota.node_requirements("g2-standard-4", "nvidia-l4", 1, guest_cpus=4, spot=True)
    assert gce_quota.fit(table, l4, 5)["required"][0]["metric"] == "PREEMPTIBLE_NVIDIA_L4_GPUS"
    t4 = gce_quota.node_requirements("n1-standard-4", "nvidia-tesla-t4", 1, guest_cpus=4, spot=True)
    assert gce_quota.fit(table, t4, 3)["shortfalls"][0]["metric"] == "NVIDIA_T4_GPUS"


def test_metric_overrides_replace_the_derived_names():
    requirements = gce_quota.node_requirements("n1-standard-4", "nvidia-tesla-t4", 1, guest_cpus=4,
                                               accelerator_metric_name="NVIDIA_L4_GPUS", cpu_metric_name="E2_CPUS")
    assert [r["metric"] for r in requirements] == ["NVIDIA_L4_GPUS", "E2_CPUS"]


@pytest.mark.parametrize("bad", [-1, "two", True])
def test_counts_must_be_whole_numbers(bad):
    with pytest.raises(gce_quota.QuotaInputError, match="new_nodes"):
        gce_quota.fit({}, [], bad)


def test_refusal_names_metric_region_needed_and_available():
    result = gce_quota.fit(gce_quota.quota_table(REGION), t4_requirements(), 3)
    msg = gce_quota.refusal_message("p1", "europe-west4", result, 3, "pattern p3-gpu")
    assert msg.startswith("Not enough regional quota in europe-west4 (project p1) for 3 new node(s) of pattern "
                          "p3-gpu: ")
    assert "NVIDIA_T4_GPUS needs 3 (1 per node of nvidia-tesla-t4), 1 available (limit 4, usage 3)" in msg
    assert "Nothing was created" in msg and "quotas?project=p1" in msg
