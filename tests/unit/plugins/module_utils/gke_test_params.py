"""Module parameters, a fake clock and clients shared by the GKE module_utils tests."""
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_client as gkc
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_reconciler as rec
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_node_pool_spec as spec

from tests.unit.plugins.module_utils.fake_gke import FakeGke

POOLS = "nodePools$"


def params(**overrides):
    base = {
        "project": "p1", "location": "europe-west4-a", "cluster": "c1", "name": "gpu-t4-pool", "state": "present",
        "machine_type": "n1-standard-4", "accelerator": None, "tpu_topology": None, "spot": None,
        "autoscaling": None, "initial_node_count": None, "node_count": None, "node_locations": None,
        "labels": None, "taints": None, "disk_size_gb": None, "disk_type": None, "image_type": None,
        "service_account": None, "oauth_scopes": None, "recreate": False, "wait": True, "timeout": 600,
    }
    base.update(overrides)
    return base


def t4_params(**overrides):
    values = {"accelerator": {"type": "nvidia-tesla-t4", "count": 1, "gpu_driver_version": "DEFAULT"},
              "autoscaling": {"enabled": True, "min_node_count": 0, "max_node_count": 5, "location_policy": None}}
    values.update(overrides)
    return params(**values)


def tpu_params(**overrides):
    values = {"name": "tpu-v6e-pool", "machine_type": "ct6e-standard-4t", "initial_node_count": 1,
              "taints": ["google.com/tpu=present:NoSchedule"],
              "labels": {"cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice"},
              "autoscaling": {"enabled": True, "min_node_count": 0, "max_node_count": 3, "location_policy": None}}
    values.update(overrides)
    return params(**values)


class Clock:
    """Fake monotonic clock; sleep advances it and records the delays."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def client_for(fake, timeout=600, clock=None):
    clock = clock or Clock()
    return gkc.ContainerClient(fake, "p1", "europe-west4-a", "c1", endpoint="http://gke", compute_endpoint="http://gce",
                               timeout=timeout, clock=clock, sleep=clock.sleep), clock


def reconcile(fake, p, check_mode=False, timeout=600):
    client, clock = client_for(fake, timeout)
    return rec.NodePoolReconciler(client, p, check_mode=check_mode).run(), clock


def stored(p):
    fake = FakeGke()
    return fake.add_pool(spec.build_node_pool(p))


STOCKOUT = ("Google Compute Engine: Not all instances running in IGM after 35m. Expected 1, running 0, "
            "transitioning 1. Current errors: [GCE_STOCKOUT]: Instance 'gke-x' creation failed: The zone "
            "'projects/p1/zones/europe-west4-a' does not have enough resources available to fulfill the request.")

QUOTA = ('Insufficient regional quota to satisfy request: resource "TPU_V6E": request requires \'12.0\' and is short '
         "'8.0'. project has a quota of '4.0' with '4.0' available.")
