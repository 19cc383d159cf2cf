"""Pure logic of the GKE simulator: catalog arithmetic, GKE validation, scheduling predicates, node objects."""
import pytest

from localcluster import gke_catalog, nodes
from localcluster.gke_validation import ApiError, check_new_pool, check_payload, schemas

ZONE = "europe-west4-a"
T4_POOL = {"name": "gpu-t4-pool", "initialNodeCount": 1,
           "config": {"machineType": "n1-standard-4", "labels": {"team": "ml"},
                      "accelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": "1"}],
                      "taints": [{"key": "dedicated", "value": "llm", "effect": "NO_SCHEDULE"}]}}
TPU_POOL = {"name": "tpu-v6e-pool", "config": {"machineType": "ct6e-standard-4t"}}


def gpu_pod(gpus=1, tolerate=True, selector=None):
    spec = {"containers": [{"name": "main", "resources": {"requests": {"cpu": "1", "memory": "4Gi",
                                                                       "nvidia.com/gpu": str(gpus)}}}]}
    if tolerate:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists"},
                               {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]
    if selector:
        spec["nodeSelector"] = selector
    return {"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": spec}


def test_n1_standard_4_allocatable_follows_gke_reservations():
    capacity, allocatable = gke_catalog.node_resources("n1-standard-4", "nvidia-tesla-t4", 1)
    assert capacity["cpu"] == "4" and allocatable["cpu"] == "3920m"
    # 15 GiB: 25% of 4 GiB + 20% of 4 GiB + 10% of 7 GiB = 2560 MiB, plus 100 MiB eviction threshold.
    assert allocatable["memory"] == f"{(15360 - 2660) * 1024}Ki"
    assert allocatable["nvidia.com/gpu"] == "1" and allocatable["pods"] == "110"


def test_ct6e_standard_4t_has_four_tpu_chips():
    capacity, allocatable = gke_catalog.node_resources("ct6e-standard-4t")
    assert capacity["google.com/tpu"] == allocatable["google.com/tpu"] == "4"
    assert "nvidia.com/gpu" not in capacity


def test_machine_type_not_offered_in_zone_is_rejected_naming_it():
    with pytest.raises(ApiError) as error:
        check_new_pool(dict(TPU_POOL, locations=["us-south1-a"]), "us-south1-a")
    assert error.value.http_code == 400 and error.value.status == "INVALID_ARGUMENT"
    assert "ct6e-standard-4t" in error.value.message and "us-south1-a" in error.value.message


def test_accelerator_not_offered_in_zone_is_rejected():
    pool = {"name": "p", "config": {"machineType": "n1-standard-4",
                                    "accelerators": [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}]}}
    with pytest.raises(ApiError, match="nvidia-tesla-t4.*us-south1-a"):
        check_new_pool(pool, "us-south1-a")


def test_tpu_topology_2x2x1_is_unknown_for_ct6e_standard_4t():
    pool = dict(TPU_POOL, placementPolicy={"tpuTopology": "2x2x1"}, initialNodeCount=1)
    with pytest.raises(ApiError, match="Could not find TPU topology 2x2x1 for machine type ct6e-standard-4t"):
        check_new_pool(pool, ZONE)


def test_tpu_slice_with_max_three_nodes_is_not_a_valid_slice_size():
    pool = dict(TPU_POOL, placementPolicy={"tpuTopology": "2x2x1"},
                autoscaling={"enabled": True, "minNodeCount": 0, "maxNodeCount": 3})
    expected = 'Maximum node count 3 is not a valid size of TPU pod slice with topology "2x2x1"'
    with pytest.raises(ApiError, match=expected):
        check_new_pool(pool, ZONE)


def test_seed_tpu_pool_without_topology_and_autoscaling_0_to_3_is_accepted():
    check_new_pool(dict(TPU_POOL, initialNodeCount=1,
                        autoscaling={"enabled": True, "minNodeCount": 0, "maxNodeCount": 3}), ZONE)


def test_payload_checks_use_the_real_schema():
    assert schemas(), "no container.v1 discovery document: install google-api-python-client (requirements-dev.txt)"
    with pytest.raises(ApiError, match='Unknown name "nodePool": Cannot find field'):
        check_payload({"nodePool": {"name": "x"}}, "UpdateNodePoolRequest")  # what google.cloud sends on update
    with pytest.raises(ApiError, match=r"Invalid value at 'node_pool.config.taints\[0\].effect'.*\"NoSchedule\""):
        check_payload({"nodePool": {"config": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}},
                      "CreateNodePoolRequest")
    check_payload({"nodePool": T4_POOL}, "CreateNodePoolRequest")


def test_gpu_node_carries_gke_labels_taints_and_gpu():
    manifest = nodes.node_manifest("proj", T4_POOL, ZONE, "gke-c-gpu-t4-pool-12345678-abcd")
    labels = manifest["metadata"]["labels"]
    assert labels["cloud.google.com/gke-nodepool"] == "gpu-t4-pool"
    assert labels["cloud.google.com/gke-accelerator"] == "nvidia-tesla-t4"
    assert labels["node.kubernetes.io/instance-type"] == "n1-standard-4"
    assert labels["topology.kubernetes.io/zone"] == ZONE and labels["team"] == "ml"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in manifest["spec"]["taints"]
    assert {"key": "dedicated", "value": "llm", "effect": "NoSchedule"} in manifest["spec"]["taints"]
    assert manifest["status"]["allocatable"]["nvidia.com/gpu"] == "1"


def test_tpu_node_labels_and_taint():
    manifest = nodes.node_manifest("proj", TPU_POOL, ZONE, "gke-c-tpu-v6e-pool-12345678-abcd")
    labels = manifest["metadata"]["labels"]
    assert labels["cloud.google.com/gke-tpu-accelerator"] == "tpu-v6e-slice"
    assert labels["cloud.google.com/gke-tpu-topology"] == "2x2"
    assert manifest["spec"]["taints"] == [{"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}]


def test_node_names_look_like_gke():
    name = nodes.node_name("llm-serving-local", "gpu-t4-pool", "0123abcd")
    assert name.startswith("gke-llm-serving-local-gpu-t4-pool-0123abcd-") and len(name.rsplit("-", 1)[1]) == 4


def test_predicates_report_the_scheduler_reason():
    template = nodes.node_manifest("proj", T4_POOL, ZONE, "n")
    labels, taints = template["metadata"]["labels"], template["spec"]["taints"]
    free = nodes.quantities(template["status"]["allocatable"])
    assert nodes.misfit_reason(gpu_pod(), labels, taints, free) is None
    assert nodes.misfit_reason(gpu_pod(tolerate=False), labels, taints, free).startswith(
        "node(s) had untolerated taint {dedicated: llm}")
    assert nodes.misfit_reason(gpu_pod(gpus=2), labels, taints, free) == "Insufficient nvidia.com/gpu"
    assert nodes.misfit_reason(gpu_pod(selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}), labels, taints,
                               free) == "node(s) didn't match Pod's node affinity/selector"


def test_binpacking_counts_new_nodes():
    allocatable = nodes.quantities(gke_catalog.node_resources("n1-standard-4", "nvidia-tesla-t4", 1)[1])
    assert nodes.binpack_new_nodes([gpu_pod(), gpu_pod(), gpu_pod()], allocatable) == 3


def test_not_triggered_message_aggregates_reasons_like_the_autoscaler():
    message = nodes.not_triggered_message(["max node group size reached", "Insufficient google.com/tpu",
                                           "Insufficient google.com/tpu"])
    assert message == "pod didn't trigger scale-up: 2 Insufficient google.com/tpu, 1 max node group size reached"
