# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""GKE Container API v1 client for node pools: request building, per-field diff, operation wait, retries.

Everything here is plain Python over a ``transport(method, url, body) -> (status, payload)`` callable so that
it can be unit tested without HTTP; the module wires the transport to google.cloud's ``GcpSession``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import random
import re
import time
from functools import partial

try:
    import requests
except ImportError:  # reported by the modules with missing_required_lib
    requests = None

DEFAULT_API_ENDPOINT = "https://container.googleapis.com"
DEFAULT_COMPUTE_ENDPOINT = "https://compute.googleapis.com"
DEFAULT_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]

GPU_DRIVER_VERSIONS = ("DEFAULT", "LATEST", "INSTALLATION_DISABLED")
LOCATION_POLICIES = ("BALANCED", "ANY")
TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}

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

# Node labels and taints GKE adds to a pool's config on its own; left alone when the user does not name them.
GKE_MANAGED_LABEL_PREFIXES = ("cloud.google.com/", "node.kubernetes.io/")
GKE_MANAGED_TAINT_KEYS = ("nvidia.com/gpu", "google.com/tpu")

# Fields GKE cannot change on an existing pool: changing them needs recreate=true (delete + create). A machine type
# change between a TPU and a non-TPU machine type is also a recreate (see compute_diff).
IMMUTABLE_FIELDS = ("spot", "tpu_topology", "service_account", "oauth_scopes", "reservation_affinity")
# ReservationAffinity.consumeReservationType values (Container API v1 discovery document) the module accepts.
RESERVATION_TYPES = ("NO_RESERVATION", "ANY_RESERVATION", "SPECIFIC_RESERVATION", "ANY_RESERVATION_THEN_FAIL")
RESERVATION_NAME_KEY = "compute.googleapis.com/reservation-name"
# Fields sent with PUT .../nodePools/NAME (UpdateNodePoolRequest).
UPDATE_FIELDS = ("node_locations", "labels", "taints", "machine_type", "accelerator", "image_type", "disk_type",
                 "disk_size_gb")
# Of those, the ones GKE applies by replacing every node: UpdateNodePoolRequest.machineType / diskSizeGb / diskType
# "Initiates an upgrade operation that migrates the nodes in the node pool to the specified ..." (Container API v1
# discovery document), node by node with the pool's upgradeSettings (surge: maxSurge new nodes are created and
# Ready before old ones are drained). They go into one request, so the nodes are replaced once.
NODE_REPLACING_FIELDS = ("machine_type", "accelerator", "image_type", "disk_type", "disk_size_gb")

RETRYABLE_HTTP_STATUS = (429, 500, 502, 503, 504)
# Pool statuses that are errors: ERROR ("may be unusable") and RUNNING_WITH_ERROR ("partially usable. Some error
# state has occurred", e.g. a stockout that left a zone short) - NodePool.status in the Container API v1 discovery
# document; Terraform treats both as ErrorState (containerNodePoolRestingStates).
TERMINAL_POOL_STATUSES = ("ERROR", "RUNNING_WITH_ERROR")
# google.rpc.Code numbers (googleapis google/rpc/code.proto): Operation.error.code carries these.
RPC_CODES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
             6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
             10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
             15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
# NodePool.status values at which no operation is working on the pool. Terraform's node pool resource waits for one
# of them before every update and delete (containerNodePoolRestingStates / containerNodePoolAwaitRestingState in
# hashicorp/terraform-provider-google google/services/container/resource_container_node_pool.go); PROVISIONING,
# RECONCILING and STOPPING mean an operation is still at work (NodePool.status in the Container API v1 discovery
# document).
RESTING_POOL_STATUSES = ("RUNNING", "RUNNING_WITH_ERROR", "ERROR")


class GkeError(Exception):
    """A failure to report to the user; ``kind`` is one of stockout, quota, in_progress, timeout, invalid, auth, api."""

    def __init__(self, message, kind="api", status=None, details=None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.details = details or {}


# --------------------------------------------------------------------------------------------------------------
# Input validation and normalisation
# --------------------------------------------------------------------------------------------------------------

def is_zone(location):
    """True for a zone such as europe-west4-a, False for a region such as europe-west4."""
    return bool(re.match(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$", location or ""))


def parse_taint(taint, option="taints"):
    """Accept ``key=value:Effect`` (kubectl / gcloud form) or ``{key, value, effect}``; return the API form."""
    if isinstance(taint, str):
        match = re.match(r"^([^=:]+)(?:=([^:]*))?:([A-Za-z_]+)$", taint.strip())
        if not match:
            raise GkeError(f"{option}: '{taint}' is not key=value:Effect (e.g. google.com/tpu=present:NoSchedule)",
                           kind="invalid")
        key, value, effect = match.group(1), match.group(2) or "", match.group(3)
    elif isinstance(taint, dict) and taint.get("key"):
        key, value, effect = taint["key"], str(taint.get("value") or ""), taint.get("effect") or "NoSchedule"
    else:
        raise GkeError(f"{option}: each taint needs a key (got {taint!r})", kind="invalid")
    effect = TAINT_EFFECTS.get(effect, effect)
    if effect not in TAINT_EFFECTS.values():
        raise GkeError(f"{option}: effect '{effect}' of taint '{key}' must be one of NoSchedule, PreferNoSchedule, "
                       "NoExecute", kind="invalid")
    return {"key": key, "value": value, "effect": effect}


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


def validate_accelerator(accelerator):
    if not accelerator:
        return
    acc_type = accelerator.get("type") or ""
    if acc_type.startswith("tpu-") or acc_type.startswith("ct"):
        raise GkeError(f"accelerator.type: '{acc_type}' is a TPU; TPU chips come with the machine type "
                       "(e.g. ct6e-standard-4t), so leave accelerator unset for TPU pools", kind="invalid")
    if not acc_type:
        raise GkeError("accelerator.type is required when accelerator is set (e.g. nvidia-tesla-t4)", kind="invalid")
    if int(accelerator.get("count") or 0) < 1:
        raise GkeError("accelerator.count must be at least 1", kind="invalid")


def validate_capacity_options(params):
    """reservation_affinity and fallback_locations, checked before any request."""
    affinity = params.get("reservation_affinity")
    if affinity:
        kind = affinity.get("consume_reservation_type")
        if kind not in RESERVATION_TYPES:
            raise GkeError(f"reservation_affinity.consume_reservation_type must be one of "
                           f"{', '.join(RESERVATION_TYPES)} (got {kind!r})", kind="invalid")
        if kind == "SPECIFIC_RESERVATION" and not affinity.get("values"):
            raise GkeError("reservation_affinity.values must name the reservation(s) to consume with "
                           "consume_reservation_type SPECIFIC_RESERVATION", kind="invalid")
        if kind != "SPECIFIC_RESERVATION" and affinity.get("values"):
            raise GkeError(f"reservation_affinity.values is only for SPECIFIC_RESERVATION, not {kind}",
                           kind="invalid")
    fallback = params.get("fallback_locations") or []
    if fallback:
        region = re.sub(r"-[a-z]$", "", params.get("location") or "")
        for zone in fallback:
            if not is_zone(zone) or not zone.startswith(region + "-"):
                raise GkeError(f"fallback_locations: '{zone}' is not a zone of the cluster's region {region}",
                               kind="invalid")
        if len(set(fallback)) != len(fallback):
            raise GkeError("fallback_locations: a zone is listed twice", kind="invalid")


def reservation_affinity_body(affinity):
    """NodeConfig.reservationAffinity (ReservationAffinity in the Container API v1 discovery document)."""
    if not affinity:
        return None
    body = {"consumeReservationType": affinity["consume_reservation_type"]}
    if affinity.get("values"):
        body["key"] = affinity.get("key") or RESERVATION_NAME_KEY
        body["values"] = list(affinity["values"])
    return body


def validate_params(params):
    """Cross-field checks the argument spec cannot express. Raises GkeError(kind='invalid')."""
    autoscaling = params.get("autoscaling") or {}
    if autoscaling.get("enabled", True) and autoscaling:
        low, high = autoscaling.get("min_node_count"), autoscaling.get("max_node_count")
        if low is not None and high is not None and low > high:
            raise GkeError(f"autoscaling.min_node_count ({low}) is greater than autoscaling.max_node_count ({high})",
                           kind="invalid")
        if high is not None and high < 1:
            raise GkeError("autoscaling.max_node_count must be at least 1 while autoscaling is enabled; "
                           "to scale a pool to zero disable autoscaling and set node_count: 0", kind="invalid")
    validate_accelerator(params.get("accelerator"))
    validate_capacity_options(params)
    max_nodes = autoscaling.get("max_node_count") if autoscaling.get("enabled", True) else None
    validate_tpu(params.get("machine_type"), params.get("tpu_topology"), max_nodes)
    for taint in params.get("taints") or []:
        parse_taint(taint)


# --------------------------------------------------------------------------------------------------------------
# Desired state, current state, difference
# --------------------------------------------------------------------------------------------------------------

def _int(value):
    return None if value is None else int(value)


def _upper(value):
    return None if value is None else str(value).upper()


def _sorted_taints(taints):
    return sorted(taints, key=lambda t: (t["key"], t["value"], t["effect"]))


def desired_view(params):
    """The managed fields the user asked for, in a comparable form; None means 'not managed'."""
    accelerator = params.get("accelerator")
    autoscaling = params.get("autoscaling")
    view = {
        "machine_type": params.get("machine_type"),
        "disk_size_gb": _int(params.get("disk_size_gb")),
        "disk_type": params.get("disk_type"),
        "image_type": _upper(params.get("image_type")),
        "service_account": params.get("service_account"),
        "oauth_scopes": sorted(params["oauth_scopes"]) if params.get("oauth_scopes") is not None else None,
        "spot": params.get("spot"),
        "labels": dict(params["labels"]) if params.get("labels") is not None else None,
        "taints": (_sorted_taints(parse_taint(t) for t in params["taints"])
                   if params.get("taints") is not None else None),
        "node_locations": sorted(params["node_locations"]) if params.get("node_locations") else None,
        "tpu_topology": effective_topology(params.get("machine_type"), params.get("tpu_topology")),
        "reservation_affinity": reservation_affinity_body(params.get("reservation_affinity")),
        "accelerator": None,
        "autoscaling": None,
        "node_count": _int(params.get("node_count")),
    }
    if accelerator:
        view["accelerator"] = {
            "type": accelerator["type"],
            "count": int(accelerator.get("count") or 1),
            "gpu_driver_version": accelerator.get("gpu_driver_version"),
        }
    if autoscaling is not None:
        enabled = autoscaling.get("enabled", True)
        view["autoscaling"] = {"enabled": bool(enabled)}
        if enabled:
            view["autoscaling"].update({
                "min_node_count": _int(autoscaling.get("min_node_count")),
                "max_node_count": _int(autoscaling.get("max_node_count")),
                "location_policy": autoscaling.get("location_policy"),
            })
    return view


def current_view(pool, node_count=None):
    """The same fields read from a NodePool resource as GKE returns it."""
    config = pool.get("config") or {}
    accelerators = config.get("accelerators") or []
    autoscaling = pool.get("autoscaling") or {}
    view = {
        "machine_type": config.get("machineType"),
        "disk_size_gb": _int(config.get("diskSizeGb")),
        "disk_type": config.get("diskType"),
        "image_type": _upper(config.get("imageType")),
        "service_account": config.get("serviceAccount"),
        "oauth_scopes": sorted(config.get("oauthScopes") or []),
        "spot": bool(config.get("spot")),
        "labels": dict(config.get("labels") or {}),
        "taints": _sorted_taints({"key": t.get("key"), "value": t.get("value") or "", "effect": t.get("effect")}
                                 for t in config.get("taints") or []),
        "node_locations": sorted(pool.get("locations") or []),
        "tpu_topology": effective_topology(config.get("machineType"),
                                           (pool.get("placementPolicy") or {}).get("tpuTopology")),
        "reservation_affinity": config.get("reservationAffinity"),
        "accelerator": None,
        "autoscaling": {"enabled": bool(autoscaling.get("enabled"))},
        "node_count": node_count,
    }
    if accelerators:
        first = accelerators[0]
        view["accelerator"] = {
            "type": first.get("acceleratorType"),
            "count": int(first.get("acceleratorCount") or 0),
            "gpu_driver_version": (first.get("gpuDriverInstallationConfig") or {}).get("gpuDriverVersion"),
        }
    if autoscaling.get("enabled"):
        view["autoscaling"].update({
            "min_node_count": int(autoscaling.get("minNodeCount") or 0),
            "max_node_count": int(autoscaling.get("maxNodeCount") or 0),
            "location_policy": autoscaling.get("locationPolicy"),
        })
    return view


def _field_differs(field, want, have):
    if field == "accelerator":
        if want is None or have is None:
            return want != have
        if want["gpu_driver_version"] is None:  # not managed: GKE fills in its own default
            want = dict(want, gpu_driver_version=have.get("gpu_driver_version"))
        return want != have
    if field == "autoscaling":
        if not want["enabled"]:
            return bool(have.get("enabled"))
        merged = {k: (have.get(k) if v is None else v) for k, v in want.items()}
        return merged != have
    if field == "labels":
        kept = {k: v for k, v in have.items() if k in want or not k.startswith(GKE_MANAGED_LABEL_PREFIXES)}
        return kept != want
    if field == "taints":
        wanted_keys = {t["key"] for t in want}
        kept = [t for t in have if t["key"] in wanted_keys or t["key"] not in GKE_MANAGED_TAINT_KEYS]
        return _sorted_taints(kept) != want
    if field == "node_count":
        return have is None or want != have  # unknown current size: resize to be sure
    if field == "spot":
        return bool(want) != bool(have)
    return want != have


def compute_diff(desired, current):
    """Per-field differences: list of {field, before, after, verb} for the fields the user manages."""
    changes = []
    for field, want in desired.items():
        if want is None:
            continue
        have = current.get(field)
        if field == "tpu_topology" and have is None and not want:
            continue
        if _field_differs(field, want, have):
            change = {"field": field, "before": have, "after": want, "verb": verb_for(field)}
            if field == "machine_type" and have and bool(TPU_MACHINE_TYPES.get(want)) != bool(
                    TPU_MACHINE_TYPES.get(have)):
                change["verb"] = "recreate"  # GKE updates no pool between TPU and non-TPU machine types
            if change["verb"] == "update" and field in NODE_REPLACING_FIELDS:
                change["replaces_nodes"] = True
            changes.append(change)
    return changes


def verb_for(field):
    if field in IMMUTABLE_FIELDS:
        return "recreate"
    if field == "autoscaling":
        return "setAutoscaling"
    if field == "node_count":
        return "setSize"
    return "update"


def after_view(current, changes):
    """What the managed fields will look like once the changes are applied (for diff mode)."""
    after = dict(current)
    for change in changes:
        after[change["field"]] = change["after"]
    return after


# --------------------------------------------------------------------------------------------------------------
# Request bodies (Container API v1)
# --------------------------------------------------------------------------------------------------------------

def _drop_none(obj):
    if isinstance(obj, dict):
        cleaned = {k: _drop_none(v) for k, v in obj.items()}
        return {k: v for k, v in cleaned.items() if v is not None and v != {} and v != []}
    return obj


def autoscaling_body(autoscaling, current=None):
    """NodePoolAutoscaling for a create or ``:setAutoscaling`` (field names: NodePoolAutoscaling in the Container API
    v1 discovery document).

    ``:setAutoscaling`` replaces the pool's whole autoscaling setting: a field left out is reset to GKE's default
    (a body with only maxNodeCount sets minNodeCount to 0 and locationPolicy back to BALANCED), and Terraform's node
    pool resource always sends min, max and location policy together for that reason (nodePoolUpdate in
    hashicorp/terraform-provider-google google/services/container/resource_container_node_pool.go). So for an
    existing pool the options left unset are taken from ``current`` (its autoscaling as ``current_view`` reads it).
    """
    if not autoscaling or not autoscaling.get("enabled", True):
        return {"enabled": False}
    have = current if current and current.get("enabled") else {}

    def pick(option):
        value = autoscaling.get(option)
        return have.get(option) if value is None else value

    return _drop_none({
        "enabled": True,
        "minNodeCount": pick("min_node_count"),
        "maxNodeCount": pick("max_node_count"),
        "locationPolicy": pick("location_policy"),
    })


def accelerators_body(accelerator):
    if not accelerator:
        return None
    item = {"acceleratorType": accelerator["type"], "acceleratorCount": str(int(accelerator.get("count") or 1))}
    if accelerator.get("gpu_driver_version"):
        item["gpuDriverInstallationConfig"] = {"gpuDriverVersion": accelerator["gpu_driver_version"]}
    return [item]


def build_node_pool(params):
    """NodePool resource for ``POST .../nodePools`` (body ``{"nodePool": ...}``)."""
    desired = desired_view(params)
    initial = params.get("initial_node_count")
    if initial is None:
        initial = params.get("node_count")
    if initial is None:
        initial = (params.get("autoscaling") or {}).get("min_node_count") or 1
    pool = {
        "name": params["name"],
        "initialNodeCount": int(initial),
        "config": {
            "machineType": params.get("machine_type"),
            "diskSizeGb": desired["disk_size_gb"],
            "diskType": params.get("disk_type"),
            "imageType": desired["image_type"],
            "serviceAccount": params.get("service_account"),
            "oauthScopes": params.get("oauth_scopes"),
            "spot": True if params.get("spot") else None,
            "labels": desired["labels"],
            "taints": desired["taints"],
            "accelerators": accelerators_body(params.get("accelerator")),
            "reservationAffinity": desired["reservation_affinity"],
        },
        "locations": desired["node_locations"],
        "placementPolicy": {"tpuTopology": desired["tpu_topology"]} if desired["tpu_topology"] else None,
    }
    if params.get("autoscaling") is not None:
        pool["autoscaling"] = autoscaling_body(params["autoscaling"])
    return _drop_none(pool)


def update_body(field, desired, current):
    """UpdateNodePoolRequest for one field. Labels and taints replace the whole set, so GKE-managed entries the
    user did not name are carried over."""
    if field == "labels":
        kept = {k: v for k, v in (current.get("labels") or {}).items() if k.startswith(GKE_MANAGED_LABEL_PREFIXES)}
        kept.update(desired["labels"])
        return {"labels": {"labels": kept}}
    if field == "taints":
        wanted_keys = {t["key"] for t in desired["taints"]}
        kept = [t for t in current.get("taints") or [] if t["key"] in GKE_MANAGED_TAINT_KEYS
                and t["key"] not in wanted_keys]
        return {"taints": {"taints": _sorted_taints(kept + desired["taints"])}}
    if field == "node_locations":
        return {"locations": desired["node_locations"]}
    if field == "machine_type":
        return {"machineType": desired["machine_type"]}
    if field == "accelerator":
        return {"accelerators": accelerators_body(desired["accelerator"])}
    if field == "image_type":
        return {"imageType": desired["image_type"]}
    if field == "disk_type":
        return {"diskType": desired["disk_type"]}
    if field == "disk_size_gb":
        return {"diskSizeGb": str(desired["disk_size_gb"])}
    raise ValueError(f"no update request for field {field}")


# --------------------------------------------------------------------------------------------------------------
# Errors: classification and user-facing messages
# --------------------------------------------------------------------------------------------------------------

_STOCKOUT = re.compile(r"GCE_STOCKOUT|ZONE_RESOURCE_POOL_EXHAUSTED|STOCKOUT|does not have enough resources available",
                       re.IGNORECASE)
_QUOTA = re.compile(r"insufficient\s+(?:regional\s+|zonal\s+|project\s+)?quota|QUOTA_EXCEEDED|Quota '[^']+' exceeded",
                    re.IGNORECASE)
_IN_PROGRESS = re.compile(r"incompatible operation|CLUSTER_ALREADY_HAS_OPERATION|already has an operation|"
                          r"another operation|operation .* (?:is )?(?:currently )?in progress|concurrent operations",
                          re.IGNORECASE)


def error_parts(payload):
    """(code, status, message) from a Google API error body ``{"error": {code, message, status}}`` or text."""
    if isinstance(payload, dict):
        err = payload.get("error") if isinstance(payload.get("error"), dict) else payload
        details = " ".join(str(d) for d in err.get("details") or [])
        return err.get("code"), err.get("status") or "", "{} {}".format(err.get("message") or "", details)
    return None, "", str(payload or "")


def classify(http_status, status, message):
    """stockout | quota | in_progress | retry | fatal.

    GKE runs one operation per cluster at a time and answers a second mutating call with HTTP 400
    FAILED_PRECONDITION, in several wordings: "Cluster is running incompatible operation ...", "Operation
    operation-... is currently upgrading cluster X / creating a node pool / deleting a node pool for cluster X.
    Please wait and try again once it is done." (hashicorp/terraform-provider-google issues #3650 and #10366,
    prometheus/test-infra#84), or a bare status with only a RequestInfo detail. Like Terraform
    (retryWhileIncompatibleOperation in google/services/container/resource_container_node_pool.go, which retries on
    the status code alone), any HTTP 400 FAILED_PRECONDITION is "in progress", whatever its text.
    """
    text = f"{status} {message}"
    if _STOCKOUT.search(text):
        return "stockout"
    if http_status == 400 and status == "FAILED_PRECONDITION":
        return "in_progress"
    if _IN_PROGRESS.search(text):
        return "in_progress"
    if _QUOTA.search(text):
        return "quota"
    if http_status in RETRYABLE_HTTP_STATUS or status in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
        return "retry"
    return "fatal"


def _zone_from(message, fallback):
    match = re.search(r"zones?/([a-z]+-[a-z]+[0-9]+-[a-z])", message) or re.search(
        r"\b([a-z]+-[a-z]+[0-9]+-[a-z])\b", message)
    return match.group(1) if match else fallback


def _quota_resource(message):
    match = re.search(r"resource:?\s*\\?\"?([A-Z0-9_]+)\\?\"?", message) or re.search(r"Quota '([^']+)'", message)
    return match.group(1) if match else "unknown"


def describe_resource(ctx):
    what = ctx.get("machine_type") or "the requested machine type"
    acc = ctx.get("accelerator")
    if acc:
        what += " with {} x {}".format(acc.get("count") or 1, acc.get("type"))
    return what


def stockout_message(message, ctx):
    zone = _zone_from(message, ctx.get("location"))
    return (
        f"GKE could not get capacity for node pool '{ctx.get('name')}' in zone {zone}: {describe_resource(ctx)} is "
        f"out of stock there (GCE_STOCKOUT). What to try: capacity you reserved (reservation_affinity: consume "
        f"ANY_RESERVATION or a SPECIFIC_RESERVATION), fallback_locations (other zones of the region that offer "
        f"{ctx.get('machine_type')}, tried in order on a stockout), another zone (location / node_locations), spot: "
        "true (separate capacity), a smaller pool (lower initial_node_count or min_node_count), or retry later. GKE "
        "may have left the pool in ERROR state: delete it (state: absent) or rerun with recreate: true. "
        f"API said: {message.strip()}")


def quota_message(message, ctx):
    resource = _quota_resource(message)
    return (
        f"Not enough quota for node pool '{ctx.get('name')}' in {ctx.get('location')}: quota {resource} is "
        f"exhausted. What to try: request more {resource} quota for project {ctx.get('project')} (IAM & Admin > "
        "Quotas), a smaller pool (lower max_node_count / initial_node_count), spot: true (spot VMs and GPUs have "
        f"their own quota), or another region. API said: {message.strip()}")


def in_progress_message(message, ctx):
    return (
        "Cluster '{}' in {} kept answering FAILED_PRECONDITION (another operation is running on it) until the "
        "timeout; GKE allows one mutating operation at a time. Wait for it (gcloud container operations list "
        "--location {}) and rerun, or raise timeout. API said: {}".format(
            ctx.get("cluster"), ctx.get("location"), ctx.get("location"), message.strip() or "(no message)"))


def raise_classified(http_status, payload, ctx, action):
    code, status, message = error_parts(payload)
    if http_status == 401:
        raise GkeError(f"{action} failed. " + auth_message(ctx.get("auth_kind"), message.strip()), kind="auth",
                       status=401, details={"error": payload})
    kind = classify(http_status, status, message)
    if kind == "stockout":
        raise GkeError(stockout_message(message, ctx), kind="stockout", status=http_status)
    if kind == "quota":
        raise GkeError(quota_message(message, ctx), kind="quota", status=http_status)
    if kind == "in_progress":
        raise GkeError(in_progress_message(message, ctx), kind="in_progress", status=http_status)
    raise GkeError(f"{action} failed with HTTP {http_status} {status}: {message.strip()}",
                   kind="api", status=http_status, details={"error": payload})


# --------------------------------------------------------------------------------------------------------------
# HTTP client with retries and operation waiting
# --------------------------------------------------------------------------------------------------------------

class ContainerClient:
    """Container API v1 calls for one cluster.

    ``transport(method, url, body)`` returns ``(http_status, parsed_json_or_text)`` and raises
    ``ConnectionError``/``OSError`` on network failures. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(self, transport, project, location, cluster, endpoint=DEFAULT_API_ENDPOINT,
                 compute_endpoint=DEFAULT_COMPUTE_ENDPOINT, timeout=2700, clock=time.monotonic, sleep=time.sleep,
                 initial_delay=1.0, max_delay=30.0, poll_interval=2.0, max_poll_interval=15.0):
        self.transport = transport
        self.project, self.location, self.cluster = project, location, cluster
        self.endpoint = endpoint.rstrip("/")
        self.compute_endpoint = compute_endpoint.rstrip("/")
        self.clock, self.sleep = clock, sleep
        self.deadline = clock() + timeout
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.poll_interval, self.max_poll_interval = poll_interval, max_poll_interval
        self.context = {"project": project, "location": location, "cluster": cluster}
        self.retries = []  # (method, path, reason) of every retried call, returned to the user

    # URLs --------------------------------------------------------------------------------------------------
    def location_path(self):
        return f"/v1/projects/{self.project}/locations/{self.location}"

    def cluster_path(self):
        return f"{self.location_path()}/clusters/{self.cluster}"

    def pool_path(self, name):
        return f"{self.cluster_path()}/nodePools/{name}"

    # Core request with retries ------------------------------------------------------------------------------
    def remaining(self):
        return self.deadline - self.clock()

    def _backoff(self, attempt):
        delay = min(self.max_delay, self.initial_delay * (2 ** attempt))
        return random.uniform(delay / 2, delay)  # jittered like amazon.aws AWSRetry.jittered_backoff

    def call(self, method, path, body=None, action=None, base=None, allow_404=False):
        """One API call; retries 429/5xx, network errors and 'operation in progress' until the deadline."""
        url = (base or self.endpoint) + path
        action = action or f"{method} {path}"
        attempt = 0
        while True:
            try:
                status, payload = self.transport(method, url, body)
            except (ConnectionError, OSError) as exc:
                status, payload, kind = None, {"error": {"message": str(exc), "status": "UNAVAILABLE"}}, "retry"
            else:
                if status < 400:
                    return payload if payload is not None else {}
                if status == 404 and allow_404:
                    return None
                kind = classify(status, *error_parts(payload)[1:])
            if kind not in ("retry", "in_progress"):
                raise_classified(status, payload, self.context, action)
            delay = self._backoff(attempt)
            if self.remaining() <= delay:
                raise_classified(status, payload, self.context, action + " (retried until timeout)")
            self.retries.append({"method": method, "path": path, "status": status, "reason": kind})
            self.sleep(delay)
            attempt += 1

    # Reads -----------------------------------------------------------------------------------------------------
    def get_cluster(self):
        return self.call("GET", self.cluster_path(), action="read cluster", allow_404=True)

    def get_pool(self, name):
        return self.call("GET", self.pool_path(name), action=f"read node pool {name}", allow_404=True)

    def wait_pool_at_rest(self, name, pool):
        """Poll the pool until no operation works on it (status RUNNING, RUNNING_WITH_ERROR or ERROR), as Terraform
        does before an update or delete; returns the pool as last read (None once it is gone)."""
        interval = self.poll_interval
        while pool is not None and pool.get("status") not in RESTING_POOL_STATUSES:
            if self.remaining() <= 0:
                raise GkeError(
                    f"Timed out waiting for node pool '{name}' to come to rest before changing it: it is still "
                    f"{pool.get('status')} (an operation is working on it; see gcloud container operations list "
                    f"--location {self.location}). Raise timeout or rerun later. {pool.get('statusMessage') or ''}"
                    .strip(), kind="timeout", details={"node_pool": pool})
            self.sleep(min(interval, max(self.remaining(), 0)))
            interval = min(self.max_poll_interval, interval * 1.5)
            pool = self.get_pool(name)
        return pool

    def machine_type_exists(self, zone, machine_type):
        path = f"/compute/v1/projects/{self.project}/zones/{zone}/machineTypes/{machine_type}"
        return self.call("GET", path, base=self.compute_endpoint, allow_404=True) is not None

    def accelerator_type_exists(self, zone, accelerator_type):
        path = f"/compute/v1/projects/{self.project}/zones/{zone}/acceleratorTypes/{accelerator_type}"
        return self.call("GET", path, base=self.compute_endpoint, allow_404=True) is not None

    def zone_sizes(self, pool):
        """{zone: targetSize} of the pool's managed instance groups, one zonal MIG per pool zone (the NodePool
        resource has no size field). None when it cannot be read."""
        urls = pool.get("instanceGroupUrls") or []
        if not urls:
            return None
        sizes = {}
        for url in urls:
            match = re.search(r"(/projects/[^/]+/zones/([^/]+)/instanceGroupManagers/[^/?]+)", url)
            if not match:
                return None
            try:
                igm = self.call("GET", "/compute/v1" + match.group(1), base=self.compute_endpoint, allow_404=True)
            except GkeError:
                return None
            if not igm or "targetSize" not in igm:
                return None
            sizes[match.group(2)] = sizes.get(match.group(2), 0) + int(igm["targetSize"])
        return sizes

    def current_size(self, pool):
        """The pool's node count per zone, comparable with node_count. ``SetNodePoolSizeRequest.nodeCount`` is per
        zone: "When you resize a node pool that spans multiple zones, the new size represents the number of nodes in
        the node pool per zone" (https://cloud.google.com/sdk/gcloud/reference/container/clusters/resize); Terraform's
        ``node_count`` is "The number of nodes per instance group" (resource_container_node_pool.go in
        hashicorp/terraform-provider-google). An int when every zone has the same size, {zone: size} when they
        differ (so any node_count is a change), None when it cannot be read."""
        sizes = self.zone_sizes(pool)
        if not sizes:
            return None
        values = set(sizes.values())
        return values.pop() if len(values) == 1 else dict(sorted(sizes.items()))

    # Writes (each returns the Operation) -----------------------------------------------------------------------
    def create_pool(self, node_pool):
        return self.call("POST", self.cluster_path() + "/nodePools", {"nodePool": node_pool},
                         action="create node pool {}".format(node_pool["name"]))

    def delete_pool(self, name):
        return self.call("DELETE", self.pool_path(name), action=f"delete node pool {name}")

    def set_autoscaling(self, name, autoscaling):
        return self.call("POST", self.pool_path(name) + ":setAutoscaling", {"autoscaling": autoscaling},
                         action=f"set autoscaling of node pool {name}")

    def set_size(self, name, node_count):
        return self.call("POST", self.pool_path(name) + ":setSize", {"nodeCount": node_count},
                         action=f"resize node pool {name}")

    def update_pool(self, name, body):
        return self.call("PUT", self.pool_path(name), body, action=f"update node pool {name}")

    # Operations ------------------------------------------------------------------------------------------------
    def wait(self, operation, ctx=None):
        """Poll ``operations/NAME`` until DONE; raise on an operation error or a stockout condition."""
        ctx = dict(self.context, **(ctx or {}))
        name = operation.get("name")
        interval = self.poll_interval
        while True:
            self._check_operation(operation, ctx)
            if operation.get("status") == "DONE":
                return operation
            if self.remaining() <= 0:
                raise GkeError("Timed out waiting for operation {} ({}) on node pool '{}' after the timeout; it keeps "
                               "running in GKE (which retries a stockout for about 35 minutes before it gives up). "
                               "Last status: {} {}".format(
                                   name, operation.get("operationType"), ctx.get("name"), operation.get("status"),
                                   operation.get("detail") or ""),
                               kind="timeout", details={"operation": operation})
            self.sleep(min(interval, max(self.remaining(), 0)))
            interval = min(self.max_poll_interval, interval * 1.5)
            operation = self.call("GET", f"{self.location_path()}/operations/{name}",
                                  action=f"read operation {name}")

    @staticmethod
    def _check_operation(operation, ctx):
        """Raise when the operation reports a failure in ``error``, a google.rpc.Status: ``code`` (a google.rpc.Code
        number), ``message`` and ``details`` - it has no ``status`` string (Operation.error and the Status schema
        of the Container API v1 discovery document). ``statusMessage``, ``nodepoolConditions`` and
        ``clusterConditions`` are deprecated there ("Use field error instead") and are not read.

        While GKE itself still retries a stockout, the operation stays RUNNING without an error: GKE retries the VM
        creation for about 35 minutes and then ends the operation with "Not all instances running in IGM after 35m
        ... [GCE_STOCKOUT]" (reported in NVIDIA/aicr#2764, akka/akka-core#32992,
        GoogleCloudPlatform/cluster-toolkit#6278). The module keeps waiting within ``timeout`` for that verdict.
        """
        error = operation.get("error") or {}
        if not error or not (error.get("code") or error.get("message")):
            return
        code = error.get("code")
        status = RPC_CODES.get(code, "") if isinstance(code, int) else str(code or "")
        message = (error.get("message") or "").strip()
        details = " ".join(str(d) for d in error.get("details") or [])
        kind = classify(None, status, f"{message} {details}")
        if kind == "stockout":
            raise GkeError(stockout_message(message, ctx), kind="stockout", details={"operation": operation})
        if kind == "quota":
            raise GkeError(quota_message(message, ctx), kind="quota", details={"operation": operation})
        raise GkeError(f"Operation {operation.get('name')} ({operation.get('operationType')}) on node pool "
                       f"'{ctx.get('name')}' failed with {status or 'an error'} (code {code}): {message}",
                       kind="api", details={"operation": operation})


# --------------------------------------------------------------------------------------------------------------
# Reconciliation: read, diff, apply with the right verb
# --------------------------------------------------------------------------------------------------------------

APPLY_ORDER = ("node_locations", "labels", "taints", "machine_type", "accelerator", "image_type", "disk_type",
               "disk_size_gb", "autoscaling", "node_count")


def _managed(view, desired):
    """Restrict a view to the fields the user manages (diff mode shows only those)."""
    return {k: view.get(k) for k, v in desired.items() if v is not None}


def _record(result, operation, verb, field=None):
    result["operations"].append({
        "name": operation.get("name"),
        "operation_type": operation.get("operationType"),
        "status": operation.get("status"),
        "verb": verb,
        "field": field,
        "target_link": operation.get("targetLink"),
    })


class NodePoolReconciler:
    """Brings one node pool to the state described by the module parameters."""

    def __init__(self, client, params, check_mode=False):
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.name = params["name"]
        self.ctx = {"name": self.name, "machine_type": params.get("machine_type"),
                    "accelerator": params.get("accelerator")}
        self.result = {"changed": False, "operations": [], "node_pool": {}, "diff": {"before": {}, "after": {}}}

    def run(self):
        if self.params["state"] == "present":
            validate_params(self.params)
        pool = self.client.get_pool(self.name)
        if pool is not None and not self.check_mode:
            pool = self.client.wait_pool_at_rest(self.name, pool)
        if self.params["state"] == "absent":
            self._absent(pool)
        elif pool is None:
            self._create()
        else:
            self._converge(pool)
        self.result["retries"] = self.client.retries
        return self.result

    # Steps -----------------------------------------------------------------------------------------------------
    def _submit(self, verb, call, field=None, wait=True):
        operation = call()
        if wait:
            operation = self.client.wait(operation, self.ctx)
        _record(self.result, operation, verb, field)
        return operation

    def _absent(self, pool):
        if pool is None:
            return
        self.result["changed"] = True
        self.result["diff"] = {"before": {"name": self.name, "status": pool.get("status")}, "after": {}}
        self.result["node_pool"] = pool
        if not self.check_mode:
            self._submit("delete", partial(self.client.delete_pool, self.name), wait=self.params["wait"])
            self.result["node_pool"] = {}

    def _create(self, replacing=False):
        if not self.params.get("machine_type"):
            raise GkeError(f"machine_type is required to create node pool '{self.name}'", kind="invalid")
        body = build_node_pool(self.params)
        self.result["changed"] = True
        desired = desired_view(self.params)
        if not replacing:
            self.result["diff"] = {"before": {}, "after": dict(_managed(desired, desired), name=self.name)}
        self.result["node_pool"] = body
        if self.check_mode:
            return
        fallback = [z for z in self.params.get("fallback_locations") or [] if z not in (body.get("locations") or [])]
        if not fallback or not self.params["wait"]:
            self._submit("create", partial(self.client.create_pool, body), wait=self.params["wait"])
            self._refresh()
            return
        self._create_with_fallback(body, fallback)
        self._refresh()

    def _create_with_fallback(self, body, fallback):
        """Create; on GCE_STOCKOUT delete what GKE left (a pool in ERROR) and create again in the next zone of
        fallback_locations, in order. Reported as result.capacity_fallback {tried: [{zone, error}], used}."""
        report = {"tried": [], "used": None}
        self.result["capacity_fallback"] = report
        attempts = [None] + list(fallback)  # None: the locations the task asked for (or the cluster's)
        for index, zone in enumerate(attempts):
            attempt = dict(body, locations=[zone]) if zone else body
            try:
                self._submit("create", partial(self.client.create_pool, attempt), wait=True)
            except GkeError as exc:
                if exc.details.get("operation"):
                    _record(self.result, exc.details["operation"], "create")
                if exc.kind != "stockout" or index == len(attempts) - 1:
                    if exc.kind == "stockout":
                        exc.message += " (fallback_locations tried: {})".format(
                            ", ".join(t["zone"] for t in report["tried"] + [{"zone": zone or "requested"}]))
                    raise
                report["tried"].append({"zone": zone or ",".join(body.get("locations") or [self.client.location]),
                                        "error": exc.message})
                if self.client.get_pool(self.name) is not None:  # GKE keeps the failed pool, in ERROR
                    self._submit("delete", partial(self.client.delete_pool, self.name), wait=True)
                continue
            report["used"] = zone or ",".join(body.get("locations") or [self.client.location])
            if zone:
                self.result["node_pool"] = attempt
            return

    def _converge(self, pool):
        desired = desired_view(self.params)
        size = self.client.current_size(pool) if desired["node_count"] is not None else None
        current = current_view(pool, size)
        changes = compute_diff(desired, current)
        self.result["node_pool"] = pool
        self.result["diff"] = {"before": _managed(current, desired), "after": _managed(after_view(current, changes),
                                                                                       desired)}
        self.result["changes"] = changes
        immutable = [c["field"] for c in changes if c["verb"] == "recreate"]
        broken = pool.get("status") in TERMINAL_POOL_STATUSES
        if immutable or broken:
            self._recreate(pool, immutable, changes)
            return
        if not changes:
            return
        self.result["changed"] = True
        if self.check_mode:
            return
        ordered = sorted(changes, key=lambda c: APPLY_ORDER.index(c["field"]))
        replacing = [c for c in ordered if c.get("replaces_nodes")]
        steps = []
        for change in ordered:  # one surge upgrade for all node-replacing fields, where the first of them stands
            if not change.get("replaces_nodes"):
                steps.append(change)
            elif change is replacing[0]:
                steps.append({"group": replacing})
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            wait = self.params["wait"] or not last
            if "group" in step:
                self._apply_replacing(step["group"], desired, current, wait)
            else:
                self._apply(step, desired, current, wait=wait)
        self._refresh()

    def _apply_replacing(self, changes, desired, current, wait):
        """One UpdateNodePoolRequest with every node-replacing field (a single surge upgrade of the pool)."""
        body = {}
        for change in changes:
            body.update(update_body(change["field"], desired, current))
        fields = ",".join(c["field"] for c in changes)
        self._submit("update", partial(self.client.update_pool, self.name, body), field=fields, wait=wait)

    def _apply(self, change, desired, current, wait):
        field, verb = change["field"], change["verb"]
        if verb == "setAutoscaling":
            call = partial(self.client.set_autoscaling, self.name,
                           autoscaling_body(self.params["autoscaling"], current.get("autoscaling")))
        elif verb == "setSize":
            call = partial(self.client.set_size, self.name, desired["node_count"])
        else:
            call = partial(self.client.update_pool, self.name, update_body(field, desired, current))
        self._submit(verb, call, field=field, wait=wait)

    def _recreate(self, pool, immutable, changes):
        if not self.params.get("recreate"):
            if immutable:
                details = "; ".join("{}: {} -> {}".format(c["field"], c["before"], c["after"])
                                    for c in changes if c["verb"] == "recreate")
                raise GkeError(
                    f"Node pool '{self.name}' differs in field(s) GKE cannot change in place: {details}. Nothing "
                    "was changed. Set recreate: true to delete and recreate the pool (its nodes and their pods go "
                    "away), or create a pool under a new name.", kind="immutable",
                    details={"fields": immutable})
            # NodePool.conditions says why (statusMessage is deprecated: "Use conditions instead").
            reason = _conditions_text(pool) or pool.get("statusMessage") or "GKE gives no reason"
            state = ("only partially usable (RUNNING_WITH_ERROR: some nodes could not be created or updated)"
                     if pool.get("status") == "RUNNING_WITH_ERROR" else "in status ERROR (it may be unusable)")
            raise GkeError(f"Node pool '{self.name}' is {state}: {reason}. Delete it (state: absent) or rerun with "
                           "recreate: true.", kind="api", details={"node_pool": pool})
        self.result["changed"] = True
        self.result["recreated"] = True
        if self.check_mode:
            return
        self._submit("delete", partial(self.client.delete_pool, self.name), wait=True)
        self._create(replacing=True)

    def _refresh(self):
        if self.params["wait"] and not self.check_mode:
            self.result["node_pool"] = self.client.get_pool(self.name) or {}


def _conditions_text(pool):
    return "; ".join("{} {}".format(c.get("code") or "", c.get("message") or "") for c in pool.get("conditions") or [])


def cluster_facts(cluster):
    """What pre-flight checks need from a Cluster resource."""
    addons = cluster.get("addonsConfig") or {}
    channel = ((cluster.get("networkConfig") or {}).get("gatewayApiConfig") or {}).get("channel") or (
        addons.get("gatewayApiConfig") or {}).get("channel") or "CHANNEL_DISABLED"
    http_lb_disabled = bool((addons.get("httpLoadBalancing") or {}).get("disabled"))
    return {
        "gateway_api_channel": channel,
        "gateway_api_enabled": channel not in ("CHANNEL_DISABLED", "CHANNEL_UNSPECIFIED", ""),
        "http_load_balancing_enabled": not http_lb_disabled,
        "node_pools": [p.get("name") for p in cluster.get("nodePools") or []],
        "locations": cluster.get("locations") or [],
        "status": cluster.get("status"),
    }


def auth_message(auth_kind, detail):
    """What a 401 (or a failed credential refresh) means for the given auth_kind."""
    if auth_kind == "accesstoken":
        return ("GCP refused the access token (auth_kind=accesstoken, option access_token or GCP_ACCESS_TOKEN) with "
                "HTTP 401: it has expired or was revoked, and a bare access token cannot be refreshed (they last one "
                "hour by default). Pass a fresh token, or use auth_kind application or serviceaccount, whose tokens "
                f"are refreshed during long waits. API said: {detail}")
    return (f"GCP authentication failed (auth_kind={auth_kind}): the credentials were refused or could not be "
            f"refreshed. Check them (gcloud auth application-default login, or the service account key). {detail}")


def session_transport(authed, product="container", auth_kind=None):
    """``transport(method, url, body)`` over a google-auth ``AuthorizedSession``.

    The session is made once per task and reused for every call, so credentials that can refresh (auth_kind
    application, serviceaccount, machineaccount) get a new token when the old one is about to expire - google-auth's
    ``Credentials.before_request`` refreshes a token that is no longer valid, and ``AuthorizedSession`` refreshes and
    retries once on a 401 (google.auth.transport.requests in googleapis/google-auth-library-python). A bare access
    token cannot refresh: that ends in GkeError(kind='auth') saying so. Network errors become ConnectionError for
    the retry loop (GcpSession's own full_* helpers fail the module, and crash on SSLError).
    """
    try:
        from google.auth.exceptions import RefreshError
    except ImportError:  # google-auth is required by GcpSession itself

        class RefreshError(Exception):
            """Stand-in so that the except clause below stays valid."""

    headers = {"User-Agent": f"llm_serving.gke/{product}"}

    def transport(method, url, body):
        try:
            response = authed.request(method, url, json=body, headers=headers, timeout=60)
        except RefreshError as exc:
            raise GkeError(auth_message(auth_kind, str(exc)), kind="auth", status=401) from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionError(f"{method} {url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return response.status_code, payload

    return transport


def make_transport(module, product="container"):
    """HTTP with google.cloud's GcpSession credentials (see session_transport)."""
    from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpSession

    if not module.params.get("scopes"):
        module.params["scopes"] = list(DEFAULT_SCOPES)
    authed = GcpSession(module, product).session()
    return session_transport(authed, product, module.params.get("auth_kind"))


def default_project(module):
    """The project of Application Default Credentials (auth_kind application), as google.auth.default() finds it
    (GOOGLE_CLOUD_PROJECT, the key file's project_id, gcloud's configured project); None when there is none."""
    if module.params.get("auth_kind") != "application":
        return None
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        return None
    try:
        _credentials, project = google.auth.default(scopes=module.params.get("scopes") or list(DEFAULT_SCOPES))
    except DefaultCredentialsError:
        return None
    return project


def client_from_module(module):
    """ContainerClient for the module's project/location/cluster/endpoints/timeout options."""
    params = module.params
    if not params.get("project"):
        params["project"] = default_project(module)
    if not params.get("project"):
        module.fail_json(msg="project is required: set the option project or the environment variable GCP_PROJECT "
                             "(with auth_kind application the project of Application Default Credentials is used "
                             "when it has one; none was found)")
    if requests is None:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("requests"))
    try:
        from google.auth.exceptions import GoogleAuthError
    except ImportError:  # GcpSession reports the missing library
        GoogleAuthError = GkeError  # noqa: N806 (a stand-in exception class)
    try:
        transport = make_transport(module)
    except GoogleAuthError as exc:  # e.g. no Application Default Credentials, an unreadable key
        module.fail_json(msg=auth_message(params.get("auth_kind"), str(exc)), error_kind="auth")
    client = ContainerClient(transport, params["project"], params["location"], params["cluster"],
                             endpoint=params["api_endpoint"], compute_endpoint=params["compute_endpoint"],
                             timeout=params["timeout"])
    client.context["auth_kind"] = params.get("auth_kind")
    return client
