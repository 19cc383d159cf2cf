"""Request validation of the GKE simulator, with Google's error shapes.

Two layers, as on the real API:
- JSON payload checks against the Container API v1 discovery document shipped with google-api-python-client
  (unknown field names, wrong scalar types, bad enum values) -> 400 ``Invalid JSON payload received...``;
- GKE's own checks (machine type / accelerator offered in the zone, TPU topology and slice size,
  autoscaling bounds, node pool name) -> 400 INVALID_ARGUMENT with GKE's wording where it is public.
"""
import importlib.util
import json
import re
from pathlib import Path

from localcluster import gke_catalog

HTTP_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
RPC_CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
             "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
             "FAILED_PRECONDITION": 9, "ABORTED": 10, "INTERNAL": 13, "UNAVAILABLE": 14, "UNAUTHENTICATED": 16}
POOL_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule", "NO_EXECUTE": "NoExecute"}


class ApiError(Exception):
    """An error answer in Google's JSON error format (``{"error": {code, message, status, details}}``)."""

    def __init__(self, http_code, message, status=None, details=None, headers=None):
        super().__init__(message)
        self.http_code = http_code
        self.message = message
        self.status = status or HTTP_STATUS.get(http_code, "UNKNOWN")
        self.details = details or []
        self.headers = headers or {}

    def body(self):
        return {"error": {"code": self.http_code, "message": self.message, "status": self.status,
                          "details": self.details}}


def invalid(message, field=None):
    details = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}]}] if field else []
    return ApiError(400, message, "INVALID_ARGUMENT", details)


# ---------------------------------------------------------------------------------------------------------------
# JSON payload validation against the discovery document


def _discovery_document():
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "discovery_cache" / "documents" / "container.v1.json"
    return json.loads(path.read_text()) if path.exists() else None


_SCHEMAS = None


def schemas():
    """Schemas of container.v1 (empty when google-api-python-client is absent: payload checks are skipped)."""
    global _SCHEMAS
    if _SCHEMAS is None:
        document = _discovery_document()
        _SCHEMAS = document["schemas"] if document else {}
    return _SCHEMAS


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def check_payload(body, schema_name):
    """Raise the 400 the real API gives for a body that does not match ``schema_name``."""
    if not isinstance(body, dict):
        raise invalid("Invalid JSON payload received. Expected an object.", "")
    if schemas():
        _check_object(body, schema_name, "")


def _check_object(value, schema_name, path):
    properties = schemas()[schema_name].get("properties", {})
    for key, item in value.items():
        if key not in properties:
            where = f" at '{path}'" if path else ""
            raise invalid(f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.', path)
        field_path = f"{path}.{snake(key)}" if path else snake(key)
        _check_value(item, properties[key], field_path, f"{schema_name}.{key[0].upper()}{key[1:]}")


def _check_value(value, prop, path, enum_name):
    if value is None:
        return
    if "$ref" in prop:
        if not isinstance(value, dict):
            raise _bad_value(path, "type.googleapis.com/google.container.v1." + prop["$ref"], value)
        _check_object(value, prop["$ref"], path)
        return
    kind = prop.get("type")
    if kind == "array":
        if not isinstance(value, list):
            raise _bad_value(path, "TYPE_MESSAGE", value)
        for index, item in enumerate(value):
            _check_value(item, prop.get("items", {}), f"{path}[{index}]", enum_name)
    elif kind == "object" and "additionalProperties" in prop:
        if not isinstance(value, dict):
            raise _bad_value(path, "TYPE_MESSAGE", value)
        for key, item in value.items():
            _check_value(item, prop["additionalProperties"], f"{path}[{key}]", enum_name)
    elif kind == "integer" or prop.get("format") in ("int64", "uint64"):
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            raise _bad_value(path, "TYPE_INT64" if prop.get("format") == "int64" else "TYPE_INT32", value)
    elif kind == "boolean" and not isinstance(value, bool):
        raise _bad_value(path, "TYPE_BOOL", value)
    elif kind == "string":
        if not isinstance(value, str):
            raise _bad_value(path, "TYPE_STRING", value)
        if "enum" in prop and value not in prop["enum"]:
            raise _bad_value(path, f"type.googleapis.com/google.container.v1.{enum_name}", value)


def _bad_value(path, type_name, value):
    return invalid(f"Invalid value at '{path}' ({type_name}), {json.dumps(value)}", path)


# ---------------------------------------------------------------------------------------------------------------
# GKE's semantic checks


def pool_zones(pool, cluster_zone):
    return list(pool.get("locations") or [cluster_zone])


def check_new_pool(pool, cluster_zone):
    """Validate a NodePool of a create request (after payload checks); raise ApiError like GKE."""
    name = pool.get("name")
    if not name:
        raise invalid("Node pool name must be specified.", "node_pool.name")
    if not POOL_NAME.match(name):
        raise invalid(f'Invalid node pool name "{name}": must be 1-40 characters long, start with a lowercase '
                      "letter, and contain only lowercase letters, digits and hyphens.", "node_pool.name")
    config = pool.get("config") or {}
    machine = config.get("machineType") or "e2-medium"
    zones = pool_zones(pool, cluster_zone)
    check_locations(zones, cluster_zone)
    for zone in zones:
        check_machine_in_zone(machine, zone)
        check_accelerators(config.get("accelerators") or [], machine, zone)
    if config.get("spot") and config.get("preemptible"):
        raise invalid("Cannot specify both spot and preemptible in node config.", "node_pool.config.spot")
    initial = int(pool.get("initialNodeCount") or 0)
    if initial < 0:
        raise invalid("Initial node count must be non-negative.", "node_pool.initial_node_count")
    check_autoscaling(pool.get("autoscaling") or {}, "node_pool.autoscaling")
    check_tpu_slice(machine, pool.get("placementPolicy") or {}, pool.get("autoscaling") or {}, initial)


def check_locations(zones, cluster_zone):
    region = gke_catalog.region_of(cluster_zone)
    for zone in zones:
        if zone not in gke_catalog.ZONES or gke_catalog.region_of(zone) != region:
            raise invalid(f'Location "{zone}" is not a valid zone of the cluster\'s region "{region}".',
                          "node_pool.locations")


def check_machine_in_zone(machine, zone):
    if gke_catalog.machine_type(zone, machine) is None:
        raise invalid(f"Invalid value for field 'resource.machineType': 'zones/{zone}/machineTypes/{machine}'. "
                      f"Machine type with name '{machine}' does not exist in zone '{zone}'.",
                      "node_pool.config.machine_type")


def check_accelerators(accelerators, machine, zone):
    family = gke_catalog.MACHINE_TYPES[machine]["family"]
    for index, accelerator in enumerate(accelerators):
        kind, count = accelerator.get("acceleratorType"), int(accelerator.get("acceleratorCount") or 0)
        field = f"node_pool.config.accelerators[{index}]"
        offered = gke_catalog.accelerator_type(zone, kind or "")
        if offered is None:
            raise invalid(f"Accelerator type \"{kind}\" does not exist in zone {zone}.", field)
        if family not in offered["families"]:
            raise invalid(f"Accelerator type \"{kind}\" cannot be attached to machine type \"{machine}\"; "
                          f"supported machine families: {', '.join(offered['families'])}.", field)
        if count < 1 or count > offered["maximumCardsPerInstance"]:
            raise invalid(f"Accelerator count {count} of \"{kind}\" is not supported; it must be between 1 and "
                          f"{offered['maximumCardsPerInstance']}.", field)


def check_autoscaling(autoscaling, field):
    if not autoscaling.get("enabled"):
        return
    low = int(autoscaling.get("minNodeCount") or 0)
    high = int(autoscaling.get("maxNodeCount") or 0)
    if low < 0:
        raise invalid("Minimum node count must be non-negative.", f"{field}.min_node_count")
    if high < 1:
        raise invalid("Maximum node count must be greater than 0.", f"{field}.max_node_count")
    if high < low:
        raise invalid(f"Maximum node count {high} must be greater than or equal to minimum node count {low}.",
                      f"{field}.max_node_count")
    if high > 1000:
        raise invalid("Maximum node count must not exceed 1000.", f"{field}.max_node_count")


def check_tpu_slice(machine, placement, autoscaling, initial):
    """TPU slice rules of GKE, size first, then the topology itself: GKE answered "Maximum node count 3 is not a valid
    size of TPU pod slice with topology 2x2x1" and "Could not find TPU topology 2x2x1 for machine type
    ct6e-standard-4t" (johnahull/rhaii-on-xks-gke, commits 1db302b and a87de6d)."""
    topology = placement.get("tpuTopology")
    tpu = gke_catalog.tpu_of(machine)
    if not topology:
        return
    if tpu is None:
        raise invalid(f"TPU topology can only be set for TPU machine types, not \"{machine}\".",
                      "node_pool.placement_policy.tpu_topology")
    chips = gke_catalog.topology_chips(topology)
    hosts = max(1, (chips or tpu["chips"]) // tpu["chips"])
    if autoscaling.get("enabled") and int(autoscaling.get("maxNodeCount") or 0) != hosts:
        raise invalid(f"Maximum node count {autoscaling.get('maxNodeCount')} is not a valid size of TPU pod slice "
                      f'with topology "{topology}"', "node_pool.autoscaling.max_node_count")
    if topology not in gke_catalog.TPU_TOPOLOGIES.get(machine, ()):
        raise invalid(f"Could not find TPU topology {topology} for machine type {machine}",
                      "node_pool.placement_policy.tpu_topology")
    if not autoscaling.get("enabled") and initial not in (0, hosts):
        raise invalid(f"Node count {initial} is not a valid size of TPU pod slice with topology \"{topology}\"",
                      "node_pool.initial_node_count")


def taint_to_kubernetes(taint):
    """A GKE NodeTaint (effect NO_SCHEDULE) as a Kubernetes taint (effect NoSchedule)."""
    result = {"key": taint["key"], "effect": TAINT_EFFECTS.get(taint.get("effect"), "NoSchedule")}
    if taint.get("value"):
        result["value"] = taint["value"]
    return result
