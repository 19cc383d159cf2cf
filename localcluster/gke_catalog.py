"""What the simulated Google Cloud offers: zones, machine types, accelerators, TPU slices, node resources.

Pure data and arithmetic (no I/O), shared by the GKE API simulator (validation, Compute reads) and the
node materialiser (capacity/allocatable, labels). Figures follow Google's public machine-type tables and
GKE's documented node resource reservations; zone offerings are a small, plausible subset (see
localcluster/README.md, "GKE simulator").
"""
import math

GKE_VERSION = "1.34.3-gke.1051003"
MAX_PODS_PER_NODE = 110
BOOT_DISK_GB = 100

# machine type -> guest CPUs, memory (MiB), built-in accelerators, boot time of a node (real seconds).
MACHINE_TYPES = {
    "e2-medium": {"guestCpus": 2, "memoryMb": 4096, "family": "e2", "boot_seconds": 60},
    "e2-standard-4": {"guestCpus": 4, "memoryMb": 16384, "family": "e2", "boot_seconds": 60},
    "e2-standard-8": {"guestCpus": 8, "memoryMb": 32768, "family": "e2", "boot_seconds": 60},
    "n1-standard-4": {"guestCpus": 4, "memoryMb": 15360, "family": "n1", "boot_seconds": 60},
    "n1-standard-8": {"guestCpus": 8, "memoryMb": 30720, "family": "n1", "boot_seconds": 60},
    "n1-standard-16": {"guestCpus": 16, "memoryMb": 61440, "family": "n1", "boot_seconds": 60},
    "n2-standard-4": {"guestCpus": 4, "memoryMb": 16384, "family": "n2", "boot_seconds": 60},
    "n2-standard-8": {"guestCpus": 8, "memoryMb": 32768, "family": "n2", "boot_seconds": 60},
    "g2-standard-4": {"guestCpus": 4, "memoryMb": 16384, "family": "g2", "boot_seconds": 120,
                      "accelerators": [{"guestAcceleratorType": "nvidia-l4", "guestAcceleratorCount": 1}]},
    "g2-standard-8": {"guestCpus": 8, "memoryMb": 32768, "family": "g2", "boot_seconds": 120,
                      "accelerators": [{"guestAcceleratorType": "nvidia-l4", "guestAcceleratorCount": 1}]},
    "ct6e-standard-1t": {"guestCpus": 44, "memoryMb": 180224, "family": "ct6e", "boot_seconds": 300,
                         "tpu": {"accelerator": "tpu-v6e-slice", "chips": 1, "topology": "1x1"}},
    "ct6e-standard-4t": {"guestCpus": 180, "memoryMb": 737280, "family": "ct6e", "boot_seconds": 300,
                         "tpu": {"accelerator": "tpu-v6e-slice", "chips": 4, "topology": "2x2"}},
    "ct6e-standard-8t": {"guestCpus": 180, "memoryMb": 1474560, "family": "ct6e", "boot_seconds": 300,
                         "tpu": {"accelerator": "tpu-v6e-slice", "chips": 8, "topology": "2x4"}},
    "ct5lp-hightpu-4t": {"guestCpus": 112, "memoryMb": 196608, "family": "ct5lp", "boot_seconds": 300,
                         "tpu": {"accelerator": "tpu-v5-lite-podslice", "chips": 4, "topology": "2x2"}},
    # TPU7x (Ironwood): 4 chips, 224 vCPUs and 960 GB of RAM per VM (https://cloud.google.com/tpu/docs/tpu7x);
    # GKE accelerator label tpu7x. Not offered in any simulated zone (access goes through Google's account team).
    "tpu7x-standard-4t": {"guestCpus": 224, "memoryMb": 983040, "family": "tpu7x", "boot_seconds": 300,
                          "tpu": {"accelerator": "tpu7x", "chips": 4, "topology": "2x2x1"}},
}

# GPU accelerator types (Compute API acceleratorTypes) and the machine families that can attach them.
ACCELERATOR_TYPES = {
    "nvidia-tesla-t4": {"description": "NVIDIA T4", "maximumCardsPerInstance": 4, "families": ("n1",),
                        "quota_metric": "NVIDIA_T4_GPUS", "boot_seconds": 120},
    "nvidia-tesla-v100": {"description": "NVIDIA V100", "maximumCardsPerInstance": 8, "families": ("n1",),
                          "quota_metric": "NVIDIA_V100_GPUS", "boot_seconds": 120},
    "nvidia-l4": {"description": "NVIDIA L4", "maximumCardsPerInstance": 8, "families": ("g2",),
                  "quota_metric": "NVIDIA_L4_GPUS", "boot_seconds": 120},
}

# TPU slice accelerators: topologies valid for each machine type (its own single-host topology first). v6e from
# "Supported configurations" of https://cloud.google.com/tpu/docs/v6e (2x2 is ct6e-standard-4t's own, 1 VM; 2x4 on
# ct6e-standard-4t is 2 VMs). TPU7x multi-host slices use a workload policy instead of a topology
# (https://cloud.google.com/kubernetes-engine/docs/concepts/tpu-ironwood), so only its single-host shape is listed.
TPU_TOPOLOGIES = {
    "ct6e-standard-1t": ("1x1",),
    "ct6e-standard-4t": ("2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"),
    "ct6e-standard-8t": ("2x4",),
    "ct5lp-hightpu-4t": ("2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"),
    "tpu7x-standard-4t": ("2x2x1",),
}
TPU_QUOTA_METRICS = {"tpu-v6e-slice": "TPU_V6E_SLICE", "tpu-v5-lite-podslice": "TPU_LITE_PODSLICE_V5",
                     "tpu7x": "TPU_7X"}

_CPU_ONLY = ("e2-medium", "e2-standard-4", "e2-standard-8", "n1-standard-4", "n1-standard-8", "n1-standard-16",
             "n2-standard-4", "n2-standard-8")

# zone -> machine types and GPU accelerator types offered there (TPU machine types are listed with machines).
ZONES = {
    "europe-west4-a": {"machines": _CPU_ONLY + ("g2-standard-4", "g2-standard-8", "ct6e-standard-1t",
                                                "ct6e-standard-4t", "ct6e-standard-8t"),
                       "accelerators": ("nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-l4")},
    "europe-west4-b": {"machines": _CPU_ONLY + ("g2-standard-4", "g2-standard-8", "ct5lp-hightpu-4t"),
                       "accelerators": ("nvidia-tesla-t4", "nvidia-l4")},
    "europe-west4-c": {"machines": _CPU_ONLY + ("g2-standard-4", "g2-standard-8"),
                       "accelerators": ("nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-l4")},
    "us-central1-a": {"machines": _CPU_ONLY + ("g2-standard-4",), "accelerators": ("nvidia-tesla-t4", "nvidia-l4")},
    "us-central1-b": {"machines": _CPU_ONLY + ("g2-standard-4", "ct6e-standard-4t"),
                      "accelerators": ("nvidia-tesla-t4", "nvidia-l4")},
    "us-east5-a": {"machines": _CPU_ONLY + ("ct6e-standard-4t",), "accelerators": ()},
    "us-south1-a": {"machines": _CPU_ONLY, "accelerators": ()},
}


def region_of(zone):
    """europe-west4-a -> europe-west4 (a region passes through unchanged)."""
    parts = zone.split("-")
    return "-".join(parts[:2]) if len(parts) == 3 else zone


def zones_in_region(region):
    return sorted(zone for zone in ZONES if region_of(zone) == region)


def machine_type(zone, name):
    """The machine type dict when ``zone`` offers ``name``, else None."""
    if zone in ZONES and name in ZONES[zone]["machines"]:
        return MACHINE_TYPES[name]
    return None


def accelerator_type(zone, name):
    if zone in ZONES and name in ZONES[zone]["accelerators"]:
        return ACCELERATOR_TYPES[name]
    return None


def tpu_of(machine_name):
    return MACHINE_TYPES.get(machine_name, {}).get("tpu")


def topology_chips(topology):
    """"2x2x1" -> 4; None when it is not AxB[xC] of positive integers."""
    try:
        dims = [int(part) for part in topology.split("x")]
    except (AttributeError, ValueError):
        return None
    if len(dims) not in (2, 3) or any(dim < 1 for dim in dims):
        return None
    return math.prod(dims)


def node_boot_seconds(machine_name, gpu_type=None):
    """Real-world seconds from VM creation to a Ready node (scaled by the caller)."""
    seconds = MACHINE_TYPES[machine_name]["boot_seconds"]
    if gpu_type:
        seconds = max(seconds, ACCELERATOR_TYPES[gpu_type]["boot_seconds"])
    return seconds


def reserved_cpu_millis(cpus):
    """GKE's kubelet CPU reservation: 6% of core 1, 1% of core 2, 0.5% of cores 3-4, 0.25% above."""
    millis = 60 * min(cpus, 1) + 10 * min(max(cpus - 1, 0), 1) + 5 * min(max(cpus - 2, 0), 2)
    return millis + 2.5 * max(cpus - 4, 0)


def reserved_memory_mib(memory_mib):
    """GKE's memory reservation (25/20/10/6/2 % tiers; 255 MiB below 1 GiB) plus the 100 MiB eviction threshold."""
    if memory_mib < 1024:
        return 255 + 100
    tiers = ((4096, 0.25), (4096, 0.20), (8192, 0.10), (114688, 0.06), (math.inf, 0.02))
    remaining, reserved = memory_mib, 0.0
    for size, share in tiers:
        portion = min(remaining, size)
        reserved += portion * share
        remaining -= portion
        if remaining <= 0:
            break
    return int(reserved) + 100


def node_resources(machine_name, gpu_type=None, gpu_count=0):
    """(capacity, allocatable) of a node as the kubelet on GKE reports them, as Kubernetes quantity strings."""
    machine = MACHINE_TYPES[machine_name]
    cpus, memory_mib = machine["guestCpus"], machine["memoryMb"]
    disk_ki = BOOT_DISK_GB * 1000 ** 3 // 1024 - 3_000_000
    capacity = {
        "cpu": str(cpus),
        "memory": f"{memory_mib * 1024}Ki",
        "pods": str(MAX_PODS_PER_NODE),
        "ephemeral-storage": f"{disk_ki}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    allocatable = dict(capacity)
    allocatable["cpu"] = f"{int(cpus * 1000 - reserved_cpu_millis(cpus))}m"
    allocatable["memory"] = f"{(memory_mib - reserved_memory_mib(memory_mib)) * 1024}Ki"
    allocatable["ephemeral-storage"] = str(int(disk_ki * 1024 * 0.45))
    built_in = machine.get("accelerators") or []
    if built_in:
        gpu_type, gpu_count = built_in[0]["guestAcceleratorType"], built_in[0]["guestAcceleratorCount"]
    if gpu_type and gpu_count:
        capacity["nvidia.com/gpu"] = allocatable["nvidia.com/gpu"] = str(gpu_count)
    if machine.get("tpu"):
        capacity["google.com/tpu"] = allocatable["google.com/tpu"] = str(machine["tpu"]["chips"])
    return capacity, allocatable


def gpu_of(machine_name, accelerators):
    """(type, count) of the GPUs a node gets: requested accelerators, or those built into the machine type."""
    for accelerator in accelerators or []:
        return accelerator.get("acceleratorType"), int(accelerator.get("acceleratorCount") or 0)
    built_in = MACHINE_TYPES.get(machine_name, {}).get("accelerators") or []
    if built_in:
        return built_in[0]["guestAcceleratorType"], built_in[0]["guestAcceleratorCount"]
    return None, 0
