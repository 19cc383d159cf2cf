"""Simulated Compute Engine subnetworks and region operations (the calls playbooks/platform.yml and
llm_serving.gke.gke_platform_check make), kept in the GKE simulator's state under ``subnetworks``.

Behaviour follows the Compute Engine API v1 reference:
- Subnetwork resource, list/get/insert/delete: https://cloud.google.com/compute/docs/reference/rest/v1/subnetworks
  (list answers ``compute#subnetworkList`` with ``items``; insert and delete answer a region ``compute#operation``).
- Region operations: https://cloud.google.com/compute/docs/reference/rest/v1/regionOperations/get (status PENDING,
  RUNNING, DONE; a failed operation is DONE with ``error.errors``).
- Proxy-only subnets: purpose ``REGIONAL_MANAGED_PROXY`` needs a role (``ACTIVE`` or ``BACKUP``) and one region and
  VPC network can have only one ACTIVE proxy-only subnet per purpose
  (https://cloud.google.com/load-balancing/docs/proxy-only-subnets). The exact wording of that error could not be
  checked against a real project; the simulator's text says the same thing.
- Field names confirmed in the Compute discovery document (google-api-python-client
  googleapiclient/discovery_cache/documents/compute.v1.json, schemas Subnetwork and Operation).

A new project starts with the auto-mode ``default`` subnet of the cluster's region (10.164.0.0/20 for europe-west4,
https://cloud.google.com/vpc/docs/subnets#ip-ranges) and a proxy-only subnet ``proxy-only-subnet`` (10.129.0.0/23, the
range of the GKE Gateway guide https://cloud.google.com/kubernetes-engine/docs/how-to/deploying-gateways), as on a
cluster set up by docs/gke-setup.md.
"""
import ipaddress
import re
import time
import uuid

from localcluster import gke_catalog
from localcluster.gke_validation import ApiError

COMPUTE_BASE = "https://www.googleapis.com/compute/v1"
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")  # RFC 1035, as the Subnetwork.name field documents
PURPOSES = ("PRIVATE", "REGIONAL_MANAGED_PROXY", "GLOBAL_MANAGED_PROXY", "PRIVATE_SERVICE_CONNECT", "PRIVATE_NAT",
            "PEER_MIGRATION", "PRIVATE_RFC_1918", "INTERNAL_HTTPS_LOAD_BALANCER")
PROXY_PURPOSES = ("REGIONAL_MANAGED_PROXY", "GLOBAL_MANAGED_PROXY", "INTERNAL_HTTPS_LOAD_BALANCER")
OPERATION_SECONDS = 10  # simulated; multiplied by LOCALCLUSTER_TIME_SCALE
AUTO_MODE_RANGES = {"europe-west4": "10.164.0.0/20", "us-central1": "10.128.0.0/20", "us-east1": "10.142.0.0/20",
                    "us-east5": "10.202.0.0/20", "us-west1": "10.138.0.0/20", "asia-northeast1": "10.146.0.0/20"}


def compute_error(code, message, reason):
    error = ApiError(code, message)
    error.body = lambda: {"error": {"code": code, "message": message,
                                    "errors": [{"message": message, "domain": "global", "reason": reason}]}}
    return error


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


def network_name(value):
    return (value or "").rstrip("/").rsplit("/", 1)[-1]


def default_subnets(project, region):
    base = f"{COMPUTE_BASE}/projects/{project}"
    network = f"{base}/global/networks/default"
    subnets = {
        "default": {"name": "default", "network": network, "ipCidrRange": AUTO_MODE_RANGES.get(region, "10.10.0.0/20"),
                    "purpose": "PRIVATE", "privateIpGoogleAccess": False, "stackType": "IPV4_ONLY"},
        "proxy-only-subnet": {"name": "proxy-only-subnet", "network": network, "ipCidrRange": "10.129.0.0/23",
                              "purpose": "REGIONAL_MANAGED_PROXY", "role": "ACTIVE", "state": "READY"},
    }
    for subnet in subnets.values():
        _complete(subnet, project, region)
    return {region: subnets}


def _complete(subnet, project, region):
    subnet.update(kind="compute#subnetwork", region=f"{COMPUTE_BASE}/projects/{project}/regions/{region}",
                  selfLink=f"{COMPUTE_BASE}/projects/{project}/regions/{region}/subnetworks/{subnet['name']}")
    subnet.setdefault("id", str(uuid.uuid5(uuid.NAMESPACE_URL, subnet["selfLink"]).int % 10 ** 19))
    subnet.setdefault("creationTimestamp", _now())
    subnet.setdefault("fingerprint", uuid.uuid4().hex[:12])
    subnet.setdefault("gatewayAddress", str(next(ipaddress.ip_network(subnet["ipCidrRange"]).hosts())))
    return subnet


class Subnets:
    """Subnetwork calls against ``sim.state`` (call with ``sim.lock`` held)."""

    def __init__(self, sim):
        self.sim = sim

    @property
    def state(self):
        state = self.sim.state
        if "subnetworks" not in state:  # a state file written before subnetworks were simulated
            state["subnetworks"] = default_subnets(self.sim.project, gke_catalog.region_of(self.sim.zone))
        state.setdefault("region_operations", {})
        return state

    def _region(self, project, region):
        if not gke_catalog.zones_in_region(region):
            raise compute_error(400, f"Invalid value for field 'region': '{region}'. Unknown region.", "invalid")
        self.settle()
        return self.state["subnetworks"].setdefault(region, {})

    def settle(self):
        """Finish the operations whose simulated time has passed (no thread: reads advance the clock)."""
        now = time.time()
        for op in self.state["region_operations"].values():
            if op["status"] != "DONE" and op["_done_at"] <= now:
                work = op.pop("_work")
                if work["kind"] == "insert":
                    self.state["subnetworks"].setdefault(work["region"], {})[work["subnet"]["name"]] = work["subnet"]
                    work["subnet"].pop("state", None)
                    if work["subnet"].get("purpose") in PROXY_PURPOSES:
                        work["subnet"]["state"] = "READY"
                else:
                    self.state["subnetworks"].get(work["region"], {}).pop(work["name"], None)
                op.update(status="DONE", progress=100, endTime=_now())
                self.sim.save()

    def list(self, project, region):
        subnets = self._region(project, region)
        return {"kind": "compute#subnetworkList", "id": f"projects/{project}/regions/{region}/subnetworks",
                "items": [dict(s) for _n, s in sorted(subnets.items())],
                "selfLink": f"{COMPUTE_BASE}/projects/{project}/regions/{region}/subnetworks"}

    def get(self, project, region, name):
        subnet = self._region(project, region).get(name)
        if subnet is None:
            raise compute_error(404, f"The resource 'projects/{project}/regions/{region}/subnetworks/{name}' was not "
                                     "found", "notFound")
        return dict(subnet)

    def insert(self, project, region, body):
        subnets = self._region(project, region)
        body = dict(body or {})
        name = body.get("name") or ""
        if not NAME.match(name):
            raise compute_error(400, f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
                                     "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", "invalid")
        if not body.get("network"):
            raise compute_error(400, "Invalid value for field 'resource.network': ''. The network resource must be "
                                     "specified.", "invalid")
        if network_name(body["network"]) != "default":
            raise compute_error(404, f"The resource 'projects/{project}/global/networks/"
                                     f"{network_name(body['network'])}' was not found", "notFound")
        try:
            cidr = ipaddress.ip_network(body.get("ipCidrRange") or "", strict=True)
        except ValueError:
            raise compute_error(400, f"Invalid value for field 'resource.ipCidrRange': "
                                     f"'{body.get('ipCidrRange', '')}'. Invalid IPCidrRange.", "invalid") from None
        purpose = body.get("purpose") or "PRIVATE"
        if purpose not in PURPOSES:
            raise compute_error(400, f"Invalid value for field 'resource.purpose': '{purpose}'.", "invalid")
        if purpose in PROXY_PURPOSES and body.get("role") not in ("ACTIVE", "BACKUP"):
            raise compute_error(400, "Invalid value for field 'resource.role': "
                                     f"'{body.get('role', '')}'. A subnetwork with purpose {purpose} must have a role "
                                     "of ACTIVE or BACKUP.", "invalid")
        pending = [op["_work"]["subnet"] for op in self.state["region_operations"].values()
                   if op["status"] != "DONE" and op["_work"]["kind"] == "insert" and op["_work"]["region"] == region]
        existing = list(subnets.values()) + pending
        if any(s["name"] == name for s in existing):
            raise compute_error(409, f"The resource 'projects/{project}/regions/{region}/subnetworks/{name}' already "
                                     "exists", "alreadyExists")
        for other in existing:
            if cidr.overlaps(ipaddress.ip_network(other["ipCidrRange"])):
                raise compute_error(400, f"Invalid IPCidrRange: {cidr} conflicts with existing subnetwork "
                                         f"'{other['name']}' in region '{region}'.", "invalid")
        if purpose in PROXY_PURPOSES and body.get("role") == "ACTIVE" and any(
                s.get("purpose") == purpose and s.get("role") == "ACTIVE"
                and network_name(s["network"]) == network_name(body["network"]) for s in existing):
            raise compute_error(400, f"Invalid value for field 'resource.role': 'ACTIVE'. Only one ACTIVE subnetwork "
                                     f"with purpose {purpose} is allowed per network and region.", "invalid")
        body["network"] = f"{COMPUTE_BASE}/projects/{project}/global/networks/{network_name(body['network'])}"
        subnet = _complete(body, project, region)
        return self._operation(project, region, "insert", subnet["selfLink"],
                               {"kind": "insert", "region": region, "subnet": subnet})

    def delete(self, project, region, name):
        self.get(project, region, name)
        link = f"{COMPUTE_BASE}/projects/{project}/regions/{region}/subnetworks/{name}"
        return self._operation(project, region, "delete", link, {"kind": "delete", "region": region, "name": name})

    def _operation(self, project, region, op_type, target, work):
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:13]}"
        op = {"kind": "compute#operation", "id": str(uuid.uuid4().int % 10 ** 19), "name": name,
              "operationType": op_type, "targetLink": target, "status": "RUNNING", "progress": 0,
              "insertTime": _now(), "startTime": _now(), "user": "llm-serving-local",
              "region": f"{COMPUTE_BASE}/projects/{project}/regions/{region}",
              "selfLink": f"{COMPUTE_BASE}/projects/{project}/regions/{region}/operations/{name}",
              "_done_at": time.time() + OPERATION_SECONDS * self.sim.scale, "_work": work}
        self.state["region_operations"][name] = op
        self.sim.save()
        return public(op)

    def operation(self, project, region, name):
        self._region(project, region)
        op = self.state["region_operations"].get(name)
        if op is None:
            raise compute_error(404, f"The resource 'projects/{project}/regions/{region}/operations/{name}' was not "
                                     "found", "notFound")
        return public(op)


def public(op):
    return {k: v for k, v in op.items() if not k.startswith("_")}
