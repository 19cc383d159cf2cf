# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""TPU machine types and slice topologies: the one table, and the checks the node pool module and the
nodepool role's filter (llm_serving.gke.tpu_topology_error) share.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError

# The one table of TPU machine types (the module validates with it; the nodepool role reads it through the
# filter llm_serving.gke.tpu_topology_error). Per machine type: the TPU generation, the chips of one VM (node),
# the machine type's own single-host slice topology, and the topologies of multi-host slices built from several
# such VMs with placementPolicy.tpuTopology ("3d": any AxBxC whose chips fill whole VMs).
TPU_MACHINE_TYPES = {
    # TPU v6e (Trillium), "Supported configurations" of https://cloud.google.com/tpu/docs/v6e: 1x1 ct6e-standard-1t,
    # 2x2 ct6e-standard-4t (1 VM), 2x4 ct6e-standard-8t (1 VM) or ct6e-standard-4t (2 VMs), 4x4 / 4x8 / 8x8 / 8x16 /
    # 16x16 on ct6e-standard-4t (4 to 64 VMs). 2-D shapes only: 2x2x1 is no v6e topology.
    "ct6e-standard-1t": {"generation": "v6e", "chips": 1, "topology": "1x1", "multi_host": ()},
    "ct6e-standard-4t": {"generation": "v6e", "chips": 4, "topology": "2x2",
                         "multi_host": ("2x4", "4x4", "4x8", "8x8", "8x16", "16x16")},
    "ct6e-standard-8t": {"generation": "v6e", "chips": 8, "topology": "2x4", "multi_host": ()},
    # TPU v5e (2-D slices 1x1 ... 16x16; serving machine types ct5lp-hightpu-1t/-4t/-8t with 1x1, 2x2, 2x4),
    # https://cloud.google.com/tpu/docs/v5e.
    "ct5lp-hightpu-1t": {"generation": "v5e", "chips": 1, "topology": "1x1", "multi_host": ()},
    "ct5lp-hightpu-4t": {"generation": "v5e", "chips": 4, "topology": "2x2",
                         "multi_host": ("4x4", "4x8", "8x8", "8x16", "16x16")},
    "ct5lp-hightpu-8t": {"generation": "v5e", "chips": 8, "topology": "2x4", "multi_host": ()},
    # TPU v5p and v4: 3-D slices; one 4-chip host is 2x2x1 (https://cloud.google.com/tpu/docs/v5p,
    # https://cloud.google.com/tpu/docs/v4).
    "ct5p-hightpu-4t": {"generation": "v5p", "chips": 4, "topology": "2x2x1", "multi_host": "3d"},
    "ct4p-hightpu-4t": {"generation": "v4", "chips": 4, "topology": "2x2x1", "multi_host": "3d"},
    # TPU7x (Ironwood): four chips per VM; multi-host slices are placed with a workload policy
    # (placementPolicy.policyName), which replaces the TPU topology of other generations
    # (https://cloud.google.com/kubernetes-engine/docs/concepts/tpu-ironwood). The single-host shape 2x2x1 follows
    # the 3-D naming of v5p; it is not checked against a Google table here.
    "tpu7x-standard-4t": {"generation": "tpu7x", "chips": 4, "topology": "2x2x1", "multi_host": ()},
}
# Chips per VM, derived from TPU_MACHINE_TYPES (kept for callers of the former table).
TPU_CHIPS_PER_VM = {name: spec["chips"] for name, spec in TPU_MACHINE_TYPES.items()}


def topology_chips(topology, option="tpu_topology"):
    dims = str(topology).lower().split("x")
    if not 2 <= len(dims) <= 3 or not all(d.isdigit() and int(d) > 0 for d in dims):
        raise GkeError(f"{option}: '{topology}' is not a TPU topology such as 4x4 or 2x2x4", kind="invalid")
    chips = 1
    for dim in dims:
        chips *= int(dim)
    return chips


def _normal_topology(topology):
    return "x".join(str(int(d)) for d in str(topology).lower().split("x"))


def own_topology(machine_type, topology):
    """True when ``topology`` is the machine type's own single-host slice (2x2 for ct6e-standard-4t)."""
    spec = TPU_MACHINE_TYPES.get(machine_type)
    if not spec or not topology:
        return False
    try:
        return _normal_topology(topology) == spec["topology"]
    except ValueError:
        return False


def effective_topology(machine_type, topology):
    """The topology to send and compare: None for the machine type's own single-host topology, which GKE derives
    from the machine type (the same as leaving it unset), else the topology as given."""
    return None if own_topology(machine_type, topology) else topology


def _shapes_text(machine_type, spec):
    if spec["multi_host"] == "3d":
        return (f"multi-host slices of {machine_type} nodes are 3-D shapes AxBxC whose chips are a multiple of "
                f"{spec['chips']} (for example 2x2x2, 2x4x4)")
    if spec["generation"] == "tpu7x":
        return ("multi-host TPU7x slices are placed with a workload policy (placementPolicy.policyName), not with "
                "a TPU topology")
    if spec["multi_host"]:
        return f"multi-host slices of {machine_type} nodes are {', '.join(spec['multi_host'])}"
    return f"{machine_type} forms no multi-host slices"


def validate_tpu(machine_type, topology, max_node_count=None, option="tpu_topology"):
    """Refuse TPU topologies the machine type's generation does not have, before any request is sent.

    A machine type's own single-host topology (2x2 for ct6e-standard-4t, per Google's v6e table) is accepted and is
    the same as leaving the option unset. A multi-host topology makes the pool one slice of chips / chips-per-VM
    nodes, so autoscaling.max_node_count must be that number (GKE: "not a valid size of TPU pod slice").
    """
    if not topology:
        return
    spec = TPU_MACHINE_TYPES.get(machine_type)
    if spec is None:
        known = ", ".join(sorted(TPU_MACHINE_TYPES))
        raise GkeError(f"{option} is set but machine type '{machine_type}' is not a TPU machine type ({known})",
                       kind="invalid")
    chips = topology_chips(topology, option)
    if own_topology(machine_type, topology):
        return
    shape = _normal_topology(topology)
    dims = len(shape.split("x"))
    per_vm = spec["chips"]
    if spec["multi_host"] == "3d":
        valid = dims == 3 and chips > per_vm and chips % per_vm == 0
    else:
        valid = shape in spec["multi_host"]
    if not valid:
        raise GkeError(
            f"{option}: '{topology}' is not a TPU {spec['generation']} slice shape for {machine_type}. Its own "
            f"single-host topology is {spec['topology']} ({per_vm} chips per node; the same as leaving {option} "
            f"unset, GKE derives it from the machine type); {_shapes_text(machine_type, spec)}. GKE rejects other "
            "shapes ('Could not find TPU topology').", kind="invalid")
    hosts = chips // per_vm
    if max_node_count is not None and max_node_count != hosts:
        raise GkeError(f"autoscaling.max_node_count {max_node_count} does not fit {option} {topology}: a multi-host "
                       f"TPU node pool is one slice of {hosts} {machine_type} nodes, so max_node_count must be "
                       f"{hosts} (GKE rejects other sizes: 'not a valid size of TPU pod slice'); use one node pool "
                       "per slice", kind="invalid")


def tpu_topology_error(topology, machine_type, option="tpu_topology", max_node_count=None):
    """'' when validate_tpu accepts the topology, else its message (for the nodepool role's filter)."""
    try:
        validate_tpu(machine_type, topology, max_node_count, option)
    except GkeError as exc:
        return exc.message
    return ""
