# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""GKE node pool specification: input validation, the desired and current views of a pool, the per-field
diff with the verb that applies each change, and the Container API v1 request bodies.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError
from ansible_collections.llm_serving.gke.plugins.module_utils.tpu_topology import (
    TPU_MACHINE_TYPES,
    effective_topology,
    validate_tpu,
)

GPU_DRIVER_VERSIONS = ("DEFAULT", "LATEST", "INSTALLATION_DISABLED")
LOCATION_POLICIES = ("BALANCED", "ANY")
TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}

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

# The options of llm_serving.gke.gke_node_pool (without the GCP auth options GcpModule adds).
NODE_POOL_ARGUMENT_SPEC = dict(
    location=dict(type="str", required=True),
    cluster=dict(type="str", required=True),
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    machine_type=dict(type="str"),
    accelerator=dict(type="dict", options=dict(
        type=dict(type="str", required=True),
        count=dict(type="int", default=1),
        gpu_driver_version=dict(type="str", choices=["DEFAULT", "LATEST", "INSTALLATION_DISABLED"]),
    )),
    tpu_topology=dict(type="str"),
    spot=dict(type="bool"),
    autoscaling=dict(type="dict", options=dict(
        enabled=dict(type="bool", default=True),
        min_node_count=dict(type="int"),
        max_node_count=dict(type="int"),
        location_policy=dict(type="str", choices=["BALANCED", "ANY"]),
    )),
    initial_node_count=dict(type="int"),
    node_count=dict(type="int"),
    node_locations=dict(type="list", elements="str"),
    labels=dict(type="dict"),
    taints=dict(type="list", elements="raw"),
    disk_size_gb=dict(type="int"),
    disk_type=dict(type="str"),
    image_type=dict(type="str"),
    service_account=dict(type="str"),
    oauth_scopes=dict(type="list", elements="str"),
    reservation_affinity=dict(type="dict", options=dict(
        consume_reservation_type=dict(type="str", required=True, choices=list(RESERVATION_TYPES)),
        key=dict(type="str", no_log=False),  # a reservation label key, not a secret
        values=dict(type="list", elements="str"),
    )),
    fallback_locations=dict(type="list", elements="str"),
    recreate=dict(type="bool", default=False),
    wait=dict(type="bool", default=True),
    timeout=dict(type="int", default=2700),
    api_endpoint=dict(type="str", default="https://container.googleapis.com"),
    compute_endpoint=dict(type="str", default="https://compute.googleapis.com"),
)


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
