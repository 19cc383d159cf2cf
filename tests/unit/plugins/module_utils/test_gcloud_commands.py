"""gcloud container node-pools create, derived from the NodePool body gke_node_pool would POST."""
import shlex

import pytest

from ansible_collections.llm_serving.gke.plugins.module_utils import gcloud_commands as gc
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import build_node_pool

TPU_PROFILE = {"machine_type": "ct6e-standard-4t", "accelerator_type": "tpu-v6e-slice", "accelerator_count": 4,
               "tpu_topology": "2x2", "taints": [{"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"}]}
T4_PROFILE = {"machine_type": "n1-standard-4", "accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1,
              "gpu_driver_version": "default", "taints": []}


def test_t4_pool_command():
    params = gc.nodepool_params("gpu-t4-pool", T4_PROFILE, 0, 5, initial_node_count=3)
    argv = gc.node_pool_create_argv(params, "c1", "europe-west4-a", "proj")
    assert argv[:11] == ["gcloud", "container", "node-pools", "create", "gpu-t4-pool", "--cluster", "c1",
                         "--location", "europe-west4-a", "--project", "proj"]
    assert argv[11:] == ["--machine-type=n1-standard-4", "--num-nodes=3",
                         "--accelerator=type=nvidia-tesla-t4,count=1,gpu-driver-version=default",
                         "--enable-autoscaling", "--min-nodes=0", "--max-nodes=5"]


def test_tpu_pool_command_has_topology_taints_and_spot():
    params = gc.nodepool_params("tpu-v6e-pool", TPU_PROFILE, 0, 3, initial_node_count=1, spot=True,
                                location_policy="ANY", node_locations=["europe-west4-a"],
                                labels={"team": "llm"})
    command = gc.node_pool_create_command(params, "c1", "europe-west4-a")
    argv = shlex.split(command)
    # 2x2 is ct6e-standard-4t's own single-host shape: the module sends no placementPolicy, nor does gcloud.
    assert not any(a.startswith("--tpu-topology") for a in argv)
    assert "--spot" in argv and "--location-policy=ANY" in argv
    assert "--node-taints=google.com/tpu=present:NoSchedule" in argv
    assert "--node-labels=team=llm" in argv and "--node-locations=europe-west4-a" in argv
    assert not any(a.startswith("--accelerator") for a in argv)  # TPU machine types carry their chips
    assert "--project" not in argv


def test_multi_host_topology_is_passed():
    params = gc.nodepool_params("slice", dict(TPU_PROFILE, tpu_topology="4x4"), 4, 4, initial_node_count=4)
    assert "--tpu-topology=4x4" in gc.node_pool_create_argv(params, "c", "z")


def test_every_flag_comes_from_the_module_body():
    """The flags are a function of build_node_pool's body: changing the body changes the command."""
    params = gc.nodepool_params("p", T4_PROFILE, 1, 2, reservation_affinity={
        "consume_reservation_type": "SPECIFIC_RESERVATION", "values": ["r1"]})
    body = build_node_pool(params)
    argv = gc.node_pool_create_argv(params, "c", "europe-west4")
    assert f"--num-nodes={body['initialNodeCount']}" in argv
    assert "--reservation-affinity=specific" in argv and "--reservation=r1" in argv
    mapped = {entry[0] for entry in gc.NODE_POOL_FLAGS}
    top_level = {(k,) for k in body if k not in ("name", "config", "placementPolicy")}
    config = {("config", k) for k in body["config"]}
    assert top_level | config <= mapped


def test_driver_disabled_spelling():
    params = gc.nodepool_params("p", dict(T4_PROFILE, gpu_driver_version="installation_disabled"), 0, 1)
    assert "--accelerator=type=nvidia-tesla-t4,count=1,gpu-driver-version=disabled" in gc.node_pool_create_argv(
        params, "c", "z")


def test_invalid_params_fail_like_the_module():
    params = gc.nodepool_params("p", dict(TPU_PROFILE, tpu_topology="2x2x1"), 0, 1)
    with pytest.raises(GkeError, match="tpu_topology"):
        gc.node_pool_create_argv(params, "c", "z")
