"""Simulated GKE Container API v1 (plus the Compute reads used for pre-flight), on plain HTTP on loopback.

Run as ``python -m localcluster.gke_api``. Settings (environment, set by the supervisor):
``KUBECONFIG``, ``LOCALCLUSTER_STATE_DIR`` (writes ``ready/gke_api`` when serving, keeps ``gke_state.json``),
``LOCALCLUSTER_TIME_SCALE`` (multiplies every simulated delay; default 0.02), ``GKE_API_PORT`` (18080),
``GCP_ACCESS_TOKEN`` (required as ``Authorization: Bearer``), ``GCP_PROJECT``, ``GKE_LOCATION``, ``GKE_CLUSTER``.

Container API surface (both ``/v1/projects/P/locations/L/...`` and the legacy ``/v1/projects/P/zones/Z/...``):
clusters list/get/update (``update.desiredGatewayApiConfig``, ``update.desiredAddonsConfig``) and ``:setAddons``;
nodePools list/get/create/delete, update (``PUT`` or legacy ``POST .../update``), ``:setAutoscaling``
(legacy ``/autoscaling``), ``:setSize``, ``:setManagement``; operations list/get. Compute:
``GET /compute/v1/projects/P/zones/Z/machineTypes[/M]``, ``.../acceleratorTypes[/A]`` and
``.../instanceGroupManagers[/NAME]`` (one zonal MIG per pool zone, ``targetSize`` = the pool's size there).
Compute subnetworks list/get/insert/delete and region operations get (``/compute/v1/projects/P/regions/R/...``,
localcluster/gke_subnets.py): the proxy-only subnet that regional Gateway classes need.
Node pools materialise as Kubernetes Nodes (``localcluster.nodes``); a cluster-autoscaler runs for pools
with autoscaling enabled.

Admin endpoints (same bearer token), used by tests to inject faults and inspect traffic:

``POST /_sim/faults`` with ``{"method": "POST", "path_regex": "nodePools$", "fault": F, "times": N}`` adds a
fault for the next N (default 1; 0 = until cleared) requests whose method and path (no query) match
(optional ``"body_regex"`` must match the raw request body, e.g. a pool name in a create request).
``method`` may be ``SCALE_UP`` to hit the cluster-autoscaler's scale-ups instead (path
``projects/P/locations/L/clusters/C/nodePools/N``). Faults ``F``:

- ``stockout``: the request is accepted; the VMs it creates fail, its operation ends DONE with
  ``error.code`` 8 and a message with ``GCE_STOCKOUT`` / ``ZONE_RESOURCE_POOL_EXHAUSTED``, zone and machine
  type; the pool's status becomes ERROR (create) and it keeps the nodes it had. On ``SCALE_UP``: the
  autoscaler's new nodes fail, pods get ``FailedScaleUp`` and the pool is backed off.
- ``quota``: 403 PERMISSION_DENIED "Insufficient regional quota to satisfy request: resource ..." (optional
  ``"quota_limit"``); on ``SCALE_UP`` the scale-up fails with "GCE quota exceeded".
- ``in_progress``: 400 FAILED_PRECONDITION "Cluster is running incompatible operation ..."; an optional
  ``"message"`` replaces the text (GKE words it in several ways, e.g. "Operation operation-... is currently
  deleting a node pool for cluster X. Please wait and try again once it is done." in
  hashicorp/terraform-provider-google#10366; ``""`` leaves only the RequestInfo detail).
- ``http_429``: 429 RESOURCE_EXHAUSTED "Too many operations: cluster ... concurrent operations quota ...".
- ``http_503``: 503 UNAVAILABLE.

``GET /_sim/faults`` lists them, ``DELETE /_sim/faults`` clears them. ``GET /_sim/requests`` returns the request
log (``{"requests": [{"method", "path", "query", "status", "body"}]}``, admin calls excluded);
``DELETE /_sim/requests`` clears it. ``POST /_sim/quotas`` with ``{"NVIDIA_T4_GPUS": 2}`` sets regional quota
limits (enforced on create/setSize/scale-up, shown by ``GET /compute/v1/projects/P/regions/R``);
``DELETE /_sim/quotas`` restores the defaults.
``POST /_sim/stockouts`` with ``{"zone": "europe-west4-a", "machine_type": "ct6e-standard-4t"}`` (machine type
optional: all) makes new pools in that zone fail with GCE_STOCKOUT, unless they consume a reservation with room
(``POST /_sim/reservations`` with ``{"name", "zone", "machine_type", "count"}``; a pool consumes it with
``config.reservationAffinity`` ANY_RESERVATION or SPECIFIC_RESERVATION naming it). ``DELETE`` clears either.
"""
import copy
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import urllib3
import yaml

from localcluster import gke_catalog, gke_subnets, nodes
from localcluster.gke_validation import ApiError, check_autoscaling, check_locations, check_new_pool, \
    check_payload, check_tpu_slice, invalid, pool_zones

log = logging.getLogger("localcluster.gke_api")

DEFAULT_OAUTH_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_only",
                        "https://www.googleapis.com/auth/logging.write",
                        "https://www.googleapis.com/auth/monitoring",
                        "https://www.googleapis.com/auth/service.management.readonly",
                        "https://www.googleapis.com/auth/servicecontrol",
                        "https://www.googleapis.com/auth/trace.append"]
PUBLIC_BASE = "https://container.googleapis.com"
COMPUTE_BASE = "https://www.googleapis.com/compute/v1"
# Real-world durations of the API part of each operation (node boots and drains come on top), in seconds.
OPERATION_SECONDS = {"CREATE_NODE_POOL": 30, "DELETE_NODE_POOL": 30, "SET_NODE_POOL_SIZE": 5, "UPDATE_CLUSTER": 10,
                     "UPGRADE_NODES": 20, "SET_NODE_POOL_MANAGEMENT": 5}
POOL_LEVEL_UPDATES = ("upgradeSettings", "queuedProvisioning", "nodeDrainConfig", "maintenancePolicy")
UPDATE_RECREATES = ("machineType", "diskType", "diskSizeGb", "imageType", "accelerators")
REQUEST_LOG_SIZE = 5000
# Regional quota limits of the simulated project (admin: POST /_sim/quotas). Metric names of GPUs follow
# Compute Engine; the TPU ones are the simulator's own (not verified against a project).
DEFAULT_QUOTA_LIMITS = {"CPUS": 1000.0, "NVIDIA_T4_GPUS": 16.0, "NVIDIA_L4_GPUS": 16.0, "NVIDIA_V100_GPUS": 8.0,
                        "TPU_V6E_SLICE": 32.0, "TPU_LITE_PODSLICE_V5": 32.0}
FAULTS = ("stockout", "quota", "in_progress", "http_429", "http_503")


def rfc3339(epoch=None):
    stamp = datetime.fromtimestamp(epoch if epoch is not None else time.time(), UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def request_id():
    return {"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": f"0x{uuid.uuid4().hex[:16]}"}


class Settings:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.kubeconfig = env.get("KUBECONFIG")
        self.state_dir = Path(env.get("LOCALCLUSTER_STATE_DIR") or ".localcluster")
        self.time_scale = float(env.get("LOCALCLUSTER_TIME_SCALE") or "0.02")
        self.port = int(env.get("GKE_API_PORT") or "18080")
        self.token = env.get("GCP_ACCESS_TOKEN") or ""
        self.project = env.get("GCP_PROJECT") or "llm-serving-local"
        self.location = env.get("GKE_LOCATION") or "europe-west4-a"
        self.cluster = env.get("GKE_CLUSTER") or "llm-serving-local"
        if not self.token:
            raise SystemExit("gke_api: GCP_ACCESS_TOKEN must be set (the bearer token clients must send)")


# ---------------------------------------------------------------------------------------------------------------
# State: one zonal cluster, its node pools, operations, faults


class Simulator:
    """GKE state and behaviour. Also the ``store`` that ``nodes.Fleet`` / ``nodes.Autoscaler`` work against."""

    def __init__(self, settings, kube=None):
        self.settings = settings
        self.project = settings.project
        self.cluster_name = settings.cluster
        self.zone = settings.location
        self.scale = settings.time_scale
        self.lock = threading.RLock()
        self.state_path = settings.state_dir / "gke_state.json"
        self.faults = []
        self.requests = []
        self.state = self._load()
        self.kube = kube
        self.fleet = nodes.Fleet(kube, self, self.scale) if kube else None
        self.autoscaler = nodes.Autoscaler(kube, self, self.fleet, self.scale) if kube else None

    # -- persistence

    def _load(self):
        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            # The control plane this simulated cluster stands for is the kubeconfig's API server.
            state["cluster"]["endpoint"] = control_plane_host(self.settings.kubeconfig)
            for op in state["operations"].values():
                if op["status"] in ("PENDING", "RUNNING"):
                    op["_resume"] = True
            return state
        number = str(int(hashlib.sha256(self.project.encode()).hexdigest(), 16) % 10 ** 12).rjust(12, "1")
        state = {"project_number": number, "cluster": self._new_cluster(), "pools": {}, "operations": {}}
        default = self._complete_pool({"name": "default-pool", "initialNodeCount": 2,
                                       "config": {"machineType": "n1-standard-4"},
                                       "autoscaling": {"enabled": True, "minNodeCount": 2, "maxNodeCount": 4}})
        default["status"] = "RUNNING"
        state["pools"]["default-pool"] = self._pool_record(default)
        return state

    def save(self):
        with self.lock:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.state_path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.state, indent=1, sort_keys=True))
            os.replace(temporary, self.state_path)

    def _new_cluster(self):
        # Field names and meanings: the Cluster resource of
        # https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters
        # (currentMasterVersion, addonsConfig.httpLoadBalancing - disabled when switched off -, networkConfig.
        # gatewayApiConfig.channel, endpoint = the control plane's IP address, which kubeconfigs from
        # `gcloud container clusters get-credentials` use as https://<endpoint>).
        zone = self.zone
        return {
            "name": self.cluster_name, "location": zone, "zone": zone, "locations": [zone],
            "status": "RUNNING", "currentMasterVersion": gke_catalog.GKE_VERSION,
            "currentNodeVersion": gke_catalog.GKE_VERSION, "initialClusterVersion": gke_catalog.GKE_VERSION,
            "endpoint": control_plane_host(self.settings.kubeconfig),
            "createTime": rfc3339(), "network": "default", "subnetwork": "default",
            "clusterIpv4Cidr": "10.76.0.0/14", "servicesIpv4Cidr": "34.118.224.0/20",
            "loggingService": "logging.googleapis.com/kubernetes",
            "monitoringService": "monitoring.googleapis.com/kubernetes",
            "releaseChannel": {"channel": "REGULAR"},
            "workloadIdentityConfig": {"workloadPool": f"{self.project}.svc.id.goog"},
            "addonsConfig": {"httpLoadBalancing": {}, "horizontalPodAutoscaling": {},
                             "kubernetesDashboard": {"disabled": True},
                             "networkPolicyConfig": {"disabled": True},
                             "gcePersistentDiskCsiDriverConfig": {"enabled": True}},
            "networkConfig": {"network": f"projects/{self.project}/global/networks/default",
                              "subnetwork": f"projects/{self.project}/regions/"
                                            f"{gke_catalog.region_of(zone)}/subnetworks/default",
                              "gatewayApiConfig": {"channel": "CHANNEL_STANDARD"},
                              "datapathProvider": "LEGACY_DATAPATH"},
        }

    # -- names and links

    def cluster_path(self, project=None):
        return f"projects/{project or self.project}/zones/{self.zone}/clusters/{self.cluster_name}"

    def mig_url(self, pool, zone):
        record = self.state["pools"][pool]
        return (f"{COMPUTE_BASE}/projects/{self.project}/zones/{zone}/instanceGroups/"
                f"{nodes.mig_name(self.cluster_name, pool, record['mig_hashes'][zone])}")

    def _pool_record(self, pool):
        zones = pool_zones(pool, self.zone)
        hashes = {zone: nodes.mig_hash(self.project, self.cluster_name, pool["name"], zone) for zone in zones}
        pool["instanceGroupUrls"] = [
            f"{COMPUTE_BASE}/projects/{self.project}/zones/{zone}/instanceGroupManagers/"
            f"{nodes.mig_name(self.cluster_name, pool['name'], hashes[zone])}" for zone in zones]
        return {"api": pool, "zones": {zone: int(pool.get("initialNodeCount") or 0) for zone in zones},
                "mig_hashes": hashes, "provision_fault": None, "failure": None}

    def _complete_pool(self, pool):
        """Fill in the fields GKE adds to a node pool on create (clients must expect them)."""
        pool = copy.deepcopy(pool)
        config = pool.setdefault("config", {})
        config.setdefault("machineType", "e2-medium")
        config.setdefault("diskSizeGb", gke_catalog.BOOT_DISK_GB)
        config.setdefault("diskType", "pd-balanced")
        config.setdefault("imageType", "COS_CONTAINERD")
        config.setdefault("oauthScopes", list(DEFAULT_OAUTH_SCOPES))
        config.setdefault("serviceAccount", "default")
        config.setdefault("metadata", {}).setdefault("disable-legacy-endpoints", "true")
        config.setdefault("shieldedInstanceConfig", {"enableIntegrityMonitoring": True})
        model = "spot" if config.get("spot") else "preemptible" if config.get("preemptible") else "on-demand"
        config.setdefault("resourceLabels", {}).setdefault("goog-gke-node-pool-provisioning-model", model)
        if config.get("taints"):
            for taint in config["taints"]:
                taint.setdefault("value", "")
        pool.setdefault("initialNodeCount", 0)
        pool.setdefault("locations", [self.zone])
        pool.setdefault("management", {"autoUpgrade": True, "autoRepair": True})
        pool.setdefault("maxPodsConstraint", {"maxPodsPerNode": str(gke_catalog.MAX_PODS_PER_NODE)})
        pool.setdefault("podIpv4CidrSize", 24)
        pool.setdefault("networkConfig", {"podRange": f"gke-{self.cluster_name}-pods",
                                          "podIpv4CidrBlock": "10.76.0.0/14"})
        pool.setdefault("upgradeSettings", {"maxSurge": 1, "strategy": "SURGE"})
        pool.setdefault("autoscaling", {})
        if pool["autoscaling"].get("enabled"):
            pool["autoscaling"].setdefault("locationPolicy", "BALANCED")
        pool["version"] = gke_catalog.GKE_VERSION
        pool["selfLink"] = f"{PUBLIC_BASE}/v1/{self.cluster_path()}/nodePools/{pool['name']}"
        pool["status"] = "PROVISIONING"
        self._set_etag(pool)
        return pool

    @staticmethod
    def _set_etag(pool):
        body = {k: v for k, v in pool.items() if k not in ("etag", "status", "statusMessage", "conditions")}
        pool["etag"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]

    # -- store interface for nodes.Fleet / nodes.Autoscaler

    # -- regional quota (limits per metric, usage from the pools' sizes)

    def quota_limits(self):
        return dict(DEFAULT_QUOTA_LIMITS, **self.state.setdefault("quota_limits", {}))

    def quota_usage(self, region):
        usage = {}
        for record in self.state["pools"].values():
            per_node = node_quota(record["api"])
            for zone, size in record["zones"].items():
                if gke_catalog.region_of(zone) == region:
                    for metric, amount in per_node.items():
                        usage[metric] = usage.get(metric, 0.0) + amount * size
        return usage

    def quota_shortfall(self, pool, extra_nodes):
        """None, or the 403 that asking for ``extra_nodes`` more nodes of ``pool`` gets (checked per metric)."""
        if extra_nodes <= 0:
            return None
        usage, limits = self.quota_usage(gke_catalog.region_of(self.zone)), self.quota_limits()
        per_node = node_quota(pool)
        for metric in sorted(per_node, key=lambda m: m == "CPUS"):
            need = per_node[metric] * extra_nodes
            if usage.get(metric, 0.0) + need > limits.get(metric, float("inf")):
                return ApiError(403, quota_message(self, metric, need, limits[metric], usage.get(metric, 0.0)),
                                "PERMISSION_DENIED", [request_id()])
        return None

    def pool_targets(self):
        with self.lock:
            return {name: {"api": copy.deepcopy(r["api"]), "zones": dict(r["zones"]),
                           "mig_hashes": dict(r["mig_hashes"])}
                    for name, r in self.state["pools"].items()}

    def take_provision_fault(self, pool, zone):
        with self.lock:
            record = self.state["pools"].get(pool)
            if not record or not record.get("provision_fault"):
                return None
            if record["provision_fault"].get("zone") not in (None, zone):  # a per-zone stockout elsewhere
                return None
            fault, record["provision_fault"] = record["provision_fault"], None
            return fault

    # -- capacity: per-zone stockouts and reservations (admin: /_sim/stockouts, /_sim/reservations)

    def zone_stockout(self, pool, zones):
        """The first of ``zones`` that is out of stock for the pool's machine type and not covered by a
        reservation the pool consumes, else None. A reservation holds capacity for its project, so a pool that
        consumes one with room for its nodes gets VMs in a zone that is otherwise out of stock
        (https://cloud.google.com/compute/docs/instances/reservations-overview)."""
        machine = nodes.pool_machine(pool)
        stockouts = self.state.setdefault("zone_stockouts", {})
        for zone in zones:
            machines = stockouts.get(zone)
            if machines is None or (machines and machine not in machines):
                continue
            if self.reserved_room(pool, zone) >= int(pool.get("initialNodeCount") or 0):
                continue
            return zone
        return None

    def reserved_room(self, pool, zone):
        """VMs the pool may take from reservations in ``zone`` (ReservationAffinity of its node config)."""
        affinity = (pool.get("config") or {}).get("reservationAffinity") or {}
        kind = affinity.get("consumeReservationType")
        if kind not in ("ANY_RESERVATION", "SPECIFIC_RESERVATION", "ANY_RESERVATION_THEN_FAIL"):
            return 0
        wanted = set(affinity.get("values") or []) if kind == "SPECIFIC_RESERVATION" else None
        return sum(int(r["count"]) for name, r in self.state.setdefault("reservations", {}).items()
                   if r["zone"] == zone and r["machine_type"] == nodes.pool_machine(pool)
                   and (wanted is None or name in wanted))

    def check_reservation_affinity(self, pool):
        """GKE refuses SPECIFIC_RESERVATION naming a reservation the project does not have (the simulator's own
        wording: GKE's text for it is not checked)."""
        affinity = (pool.get("config") or {}).get("reservationAffinity") or {}
        if affinity.get("consumeReservationType") != "SPECIFIC_RESERVATION":
            return
        if not affinity.get("values"):
            raise invalid("Reservation affinity SPECIFIC_RESERVATION needs the reservation name(s) in values.",
                          "node_pool.config.reservation_affinity.values")
        known = self.state.setdefault("reservations", {})
        for name in affinity["values"]:
            if name not in known:
                raise invalid(f"Reservation \"{name}\" was not found in project {self.project}.",
                              "node_pool.config.reservation_affinity.values")

    def provision_failed(self, pool, zone, fault, count):
        with self.lock:
            record = self.state["pools"].get(pool)
            if not record:
                return
            record["zones"][zone] = max(0, record["zones"][zone] - count)
            message = failure_message(self, record["api"], zone, fault, count)
            record["failure"] = {"fault": fault, "message": message, "zone": zone}
            running = self._running_operation()
            autoscaler_owned = fault.get("source") == "autoscaler"
            self.save()
        log.warning("pool %s: %d VM(s) failed in %s: %s", pool, count, zone, message)
        if autoscaler_owned or not running:
            with self.lock:
                record["failure"] = None
            if self.autoscaler:
                self.autoscaler.scale_up_failed(pool, zone, fault["fault"])

    def autoscaler_resize(self, pool, zone, size):
        with self.lock:
            record = self.state["pools"].get(pool)
            if record:
                growth = size - record["zones"][zone]
                fault = self.take_fault("SCALE_UP", f"{self.cluster_path()}/nodePools/{pool}") if growth > 0 else None
                if growth > 0 and not fault and self.quota_shortfall(record["api"], growth):
                    fault = {"fault": "quota"}  # the MIG cannot create the VMs: GCE_QUOTA_EXCEEDED
                record["zones"][zone] = size
                if fault and fault["fault"] in ("stockout", "quota"):
                    record["provision_fault"] = dict(fault, source="autoscaler")
                self.save()

    # -- faults and request log

    def add_fault(self, spec):
        if not isinstance(spec, dict) or spec.get("fault") not in FAULTS:
            raise invalid(f"fault must be one of {', '.join(FAULTS)}", "fault")
        for key in ("path_regex", "body_regex"):
            try:
                re.compile(spec.get(key) or "")
            except re.error as error:
                raise invalid(f"{key} is not a valid regular expression: {error}", key) from error
        fault = {"method": (spec.get("method") or "").upper(), "path_regex": spec.get("path_regex") or "",
                 "body_regex": spec.get("body_regex") or "", "fault": spec["fault"],
                 "times": int(spec.get("times", 1)), "id": uuid.uuid4().hex[:12]}
        if "quota_limit" in spec:
            fault["quota_limit"] = float(spec["quota_limit"])
        if "message" in spec:
            if not isinstance(spec["message"], str):
                raise invalid("message must be a string (the error text of an in_progress fault)", "message")
            fault["message"] = spec["message"]
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method, path, body_text=""):
        with self.lock:
            for fault in self.faults:
                if fault["method"] and fault["method"] != method:
                    continue
                if not re.search(fault["path_regex"], path) or not re.search(fault["body_regex"], body_text):
                    continue
                if fault["times"] > 0:
                    fault["times"] -= 1
                    if fault["times"] == 0:
                        self.faults.remove(fault)
                return dict(fault)
        return None

    def give_back_fault(self, fault):
        """A request that took a stockout/quota fault was refused for another reason: the fault stays armed."""
        with self.lock:
            for armed in self.faults:
                if armed["id"] == fault["id"]:
                    if armed["times"] > 0:
                        armed["times"] += 1
                    return
            self.faults.append(dict(fault, times=1))

    # -- operations

    def _running_operation(self):
        for op in self.state["operations"].values():
            if op["status"] in ("PENDING", "RUNNING"):
                return op
        return None

    def ensure_no_operation(self):
        op = self._running_operation()
        if op:
            raise ApiError(400, f"Cluster is running incompatible operation {op['name']}.", "FAILED_PRECONDITION",
                           [request_id()])

    def start_operation(self, kind, target, action, pool=None, payload=None):
        """Record a RUNNING operation and run its action in a thread; returns the op.

        The action and its payload are kept with the operation so that a restarted simulator finishes it.
        """
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4()}"
        number = self.state["project_number"]
        op = {"name": name, "zone": self.zone, "operationType": kind, "status": "RUNNING",
              "selfLink": f"v1/projects/{number}/zones/{self.zone}/operations/{name}",
              "targetLink": f"v1/projects/{number}/zones/{self.zone}/clusters/{self.cluster_name}{target}",
              "startTime": rfc3339(), "_pool": pool, "_action": action, "_payload": payload}
        self.state["operations"][name] = op
        self._prune_operations()
        self.save()
        self.start_thread(op)
        return op

    def _prune_operations(self, keep=500):
        """Keep the newest finished operations only (GKE also forgets old ones)."""
        done = [name for name, op in self.state["operations"].items() if op["status"] == "DONE"]
        for name in done[:max(0, len(done) - keep)]:
            del self.state["operations"][name]

    def _run_operation(self, op, work):
        try:
            error = work(op)
        except Exception as exc:  # noqa: BLE001 - an op that crashed ends with INTERNAL, as GKE would
            log.exception("operation %s failed", op["name"])
            error = {"code": 13, "message": f"Internal error: {exc}"}
        with self.lock:
            op["status"] = "DONE"
            op["endTime"] = rfc3339()
            if error:
                op["error"] = {"code": error["code"], "message": error["message"], "details": []}
                op["statusMessage"] = error["message"]
                if error.get("condition"):
                    op["nodepoolConditions"] = [error["condition"]]
            self.save()
        log.info("operation %s %s: %s", op["name"], op["operationType"], "error" if error else "done")

    def sleep(self, real_seconds):
        time.sleep(real_seconds * self.scale)

    def wait_for_pool(self, pool, timeout_real_seconds=7200):
        """Wait until the pool's nodes match its targets; return the failure dict if provisioning failed."""
        deadline = time.monotonic() + max(5.0, timeout_real_seconds * self.scale)
        while time.monotonic() < deadline:
            with self.lock:
                record = self.state["pools"].get(pool)
                if record is None:
                    return None
                if record.get("failure"):
                    failure, record["failure"] = record["failure"], None
                    return failure
                targets = dict(record["zones"])
            if self.fleet is None or self.fleet.converged(pool, targets):
                return None
            time.sleep(0.05)
        return {"message": f"Timed out waiting for the nodes of node pool {pool}.", "fault": {"fault": "timeout"}}

    def resume_operations(self):
        """After a restart: run RUNNING operations again (every action is idempotent)."""
        for op in list(self.state["operations"].values()):
            if op.pop("_resume", False):
                self.start_thread(op)

    def start_thread(self, op):
        action, pool, payload = op.get("_action"), op.get("_pool"), op.get("_payload")
        work = {
            "create": lambda o: self._create_work(o, pool),
            "delete": lambda o: self._delete_work(o, pool),
            "set_size": lambda o: self._converge_work(o, pool, OPERATION_SECONDS["SET_NODE_POOL_SIZE"]),
            "set_autoscaling": lambda o: self._set_autoscaling_work(o, pool, payload),
            "set_management": lambda o: self._set_management_work(o, pool, payload),
            "update_pool": lambda o: self._update_pool_work(o, pool, payload),
            "update_cluster": lambda o: self._update_cluster_work(o, payload),
        }.get(action, lambda o: None)
        threading.Thread(target=self._run_operation, args=(op, work), daemon=True, name=op["name"]).start()

    # -- node pool operations (called with self.lock held, after validation)

    def create_pool(self, body, fault):
        pool = self._complete_pool(body["nodePool"])
        if pool["name"] in self.state["pools"]:
            raise ApiError(409, f"Already exists: {self.cluster_path(self.state['project_number'])}/nodePools/"
                                f"{pool['name']}.", "ALREADY_EXISTS", [request_id()])
        self.ensure_no_operation()
        record = self._pool_record(pool)
        shortfall = self.quota_shortfall(pool, sum(record["zones"].values()))
        if shortfall:
            raise shortfall
        if fault and fault["fault"] == "stockout":
            record["provision_fault"] = fault
        else:
            self.check_reservation_affinity(pool)
            short = self.zone_stockout(pool, list(record["zones"]))
            if short:
                record["provision_fault"] = {"fault": "stockout", "zone": short, "id": f"zone-{short}"}
        self.state["pools"][pool["name"]] = record
        return self.start_operation("CREATE_NODE_POOL", f"/nodePools/{pool['name']}", "create", pool["name"])

    def _create_work(self, op, pool):
        self.sleep(OPERATION_SECONDS["CREATE_NODE_POOL"])
        failure = self.wait_for_pool(pool)
        with self.lock:
            record = self.state["pools"].get(pool)
            if record is None:
                return None
            if failure:
                return self._fail_pool(record, failure, "ERROR")
            record["api"]["status"] = "RUNNING"
            self._set_etag(record["api"])
        return None

    def _fail_pool(self, record, failure, status):
        code = "GCE_QUOTA_EXCEEDED" if failure["fault"].get("fault") == "quota" else "GCE_STOCKOUT"
        condition = {"code": code, "message": failure["message"], "canonicalCode": "RESOURCE_EXHAUSTED"}
        record["api"]["status"] = status
        record["api"]["statusMessage"] = failure["message"]
        record["api"]["conditions"] = [condition]
        return {"code": 8, "message": failure["message"], "condition": condition}

    def _converge_work(self, op, pool, api_seconds=0):
        self.sleep(api_seconds)
        failure = self.wait_for_pool(pool)
        with self.lock:
            record = self.state["pools"].get(pool)
            if failure and record:
                return self._fail_pool(record, failure, "RUNNING_WITH_ERROR")
            if record:
                record["api"]["status"] = "RUNNING"
        return None

    def delete_pool(self, name):
        self.ensure_no_operation()
        self.state["pools"][name]["api"]["status"] = "STOPPING"
        return self.start_operation("DELETE_NODE_POOL", f"/nodePools/{name}", "delete", name)

    def _delete_work(self, op, name):
        self.sleep(OPERATION_SECONDS["DELETE_NODE_POOL"])
        with self.lock:
            record = self.state["pools"].get(name)
            if record is None:
                return None
            record["zones"] = {zone: 0 for zone in record["zones"]}
            record["provision_fault"] = None
        self.wait_for_pool(name)
        with self.lock:
            self.state["pools"].pop(name, None)
        return None

    def _reconciling(self, record):
        """NodePool.status RECONCILING: "some work is actively being done on the node pool" (Container API v1
        discovery document, NodePool.status); _converge_work sets RUNNING again when the operation ends."""
        if record["api"].get("status") == "RUNNING":
            record["api"]["status"] = "RECONCILING"

    def set_size(self, name, count, fault):
        self.ensure_no_operation()
        record = self.state["pools"][name]
        shortfall = self.quota_shortfall(record["api"], sum(count - n for n in record["zones"].values()))
        if shortfall:
            raise shortfall
        self._reconciling(record)
        for zone in record["zones"]:
            record["zones"][zone] = count
        if fault and fault["fault"] == "stockout":
            record["provision_fault"] = fault
        return self.start_operation("SET_NODE_POOL_SIZE", f"/nodePools/{name}", "set_size", name)

    def set_autoscaling(self, name, autoscaling):
        self.ensure_no_operation()
        self._reconciling(self.state["pools"][name])
        return self.start_operation("UPDATE_CLUSTER", f"/nodePools/{name}", "set_autoscaling", name, autoscaling)

    def _set_autoscaling_work(self, op, name, autoscaling):
        self.sleep(OPERATION_SECONDS["UPDATE_CLUSTER"])
        with self.lock:
            record = self.state["pools"].get(name)
            if record is None:
                return None
            # SetNodePoolAutoscalingRequest.autoscaling replaces the pool's whole NodePoolAutoscaling: what the body
            # leaves out takes the API default (minNodeCount 0, locationPolicy BALANCED), it is not kept from the
            # old setting - which is why Terraform sends min, max and location policy together (nodePoolUpdate in
            # hashicorp/terraform-provider-google google/services/container/resource_container_node_pool.go).
            if autoscaling.get("enabled"):
                autoscaling.setdefault("locationPolicy", "BALANCED")
                low, high = int(autoscaling.get("minNodeCount") or 0), int(autoscaling["maxNodeCount"])
                # GKE brings the pool into the new bounds.
                record["zones"] = {z: min(max(n, low), high) for z, n in record["zones"].items()}
            record["api"]["autoscaling"] = autoscaling if autoscaling.get("enabled") else {}
            self._set_etag(record["api"])
        return self._converge_work(op, name)

    def set_management(self, name, management):
        self.ensure_no_operation()
        return self.start_operation("SET_NODE_POOL_MANAGEMENT", f"/nodePools/{name}", "set_management", name,
                                    management)

    def _set_management_work(self, op, name, management):
        self.sleep(OPERATION_SECONDS["SET_NODE_POOL_MANAGEMENT"])
        with self.lock:
            record = self.state["pools"].get(name)
            if record:
                record["api"]["management"] = management
                self._set_etag(record["api"])

    def update_pool(self, name, update):
        """Apply an UpdateNodePoolRequest: labels/taints/resource labels in place, hardware by a surge upgrade."""
        record = self.state["pools"][name]
        changes = pool_update_changes(record["api"], update, self.zone)
        self.ensure_no_operation()
        self._reconciling(record)
        return self.start_operation("UPGRADE_NODES", f"/nodePools/{name}", "update_pool", name, changes)

    def _update_pool_work(self, op, name, changes):
        self.sleep(OPERATION_SECONDS["UPGRADE_NODES"])
        with self.lock:
            current = self.state["pools"].get(name)
            if current is None:
                return None
            apply_pool_changes(current, changes, self)
            self._set_etag(current["api"])
        if self.fleet:
            failure = self._roll_nodes(name, changes)
            if failure:
                with self.lock:
                    record = self.state["pools"].get(name)
                    if record:
                        return self._fail_pool(record, failure, "RUNNING_WITH_ERROR")
        return self._converge_work(op, name)

    def _surge_replace(self, name, node_id, zone):
        """Replace one node by a surge upgrade with maxSurge 1 / maxUnavailable 0 (the pool default): a new node
        (with the pool's new config) is created and Ready before the old one is cordoned and drained
        (https://cloud.google.com/kubernetes-engine/docs/concepts/node-pool-upgrade-strategies#surge). If the new
        VM cannot be created (e.g. GCE_STOCKOUT), the old node keeps serving and the failure is returned."""
        with self.lock:
            record = self.state["pools"].get(name)
            if record is None:
                return None
            record["zones"][zone] = record["zones"].get(zone, 0) + 1
        failure = self.wait_for_pool(name)
        if failure:  # provision_failed already took the surge node off the target: the old node stays
            return failure
        with self.lock:
            record = self.state["pools"].get(name)
            if record is None:
                return None
            # Mark the old node for removal and lower the target in one step, so that the node controller
            # neither recreates it nor picks the new node as the surplus.
            self.fleet.remove_node(node_id)
            record["zones"][zone] = max(0, record["zones"][zone] - 1)
        self.wait_for_pool(name)
        return None

    def _roll_nodes(self, name, changes):
        """Labels and taints are patched onto the nodes; hardware changes (UpdateNodePoolRequest machineType,
        accelerators, diskSizeGb, diskType, imageType: "Initiates an upgrade operation that migrates the nodes",
        Container API v1 discovery document) replace them one by one with a surge upgrade. Returns a provisioning
        failure, if any."""
        with self.lock:
            pool = copy.deepcopy(self.state["pools"][name]["api"])
        recreate = any(key in changes for key in UPDATE_RECREATES)
        for node in self.fleet.pool_nodes(name):
            node_id = node["metadata"]["name"]
            zone = node["metadata"]["labels"]["topology.kubernetes.io/zone"]
            if recreate:
                failure = self._surge_replace(name, node_id, zone)
                if failure:
                    return failure
                continue
            labels = nodes.node_labels(pool, zone, node_id)
            stale = {key: None for key in node["metadata"]["labels"] if key not in labels}
            self.kube.request("PATCH", f"/api/v1/nodes/{node_id}",
                              {"metadata": {"labels": {**stale, **labels}},
                               "spec": {"taints": nodes.node_taints(pool)}},
                              content_type="application/merge-patch+json")
        return None

    def update_cluster(self, update):
        self.ensure_no_operation()
        self.state["cluster"]["status"] = "RECONCILING"
        return self.start_operation("UPDATE_CLUSTER", "", "update_cluster", None, update)

    def _update_cluster_work(self, op, update):
        self.sleep(OPERATION_SECONDS["UPDATE_CLUSTER"])
        with self.lock:
            cluster = self.state["cluster"]
            if "desiredGatewayApiConfig" in update:
                cluster["networkConfig"]["gatewayApiConfig"] = update["desiredGatewayApiConfig"]
            for addon, value in (update.get("desiredAddonsConfig") or {}).items():
                cluster["addonsConfig"][addon] = value
            cluster["status"] = "RUNNING"

    # -- read views

    def cluster_view(self):
        cluster = copy.deepcopy(self.state["cluster"])
        pools = [self.pool_view(name) for name in self.state["pools"]]
        cluster["nodePools"] = pools
        cluster["selfLink"] = f"{PUBLIC_BASE}/v1/{self.cluster_path()}"
        cluster["currentNodeCount"] = sum(sum(r["zones"].values()) for r in self.state["pools"].values())
        cluster["instanceGroupUrls"] = [url for pool in pools for url in pool.get("instanceGroupUrls", [])]
        return cluster

    def pool_view(self, name):
        return copy.deepcopy(self.state["pools"][name]["api"])


def control_plane_host(kubeconfig):
    """Host of the API server of the kubeconfig's current context (the local control plane, or an external
    cluster's), which the simulated cluster reports as its ``endpoint``; 127.0.0.1 without a kubeconfig."""
    try:
        doc = yaml.safe_load(Path(kubeconfig).read_text())
        context = next(c["context"] for c in doc["contexts"] if c["name"] == doc["current-context"])
        server = next(c["cluster"]["server"] for c in doc["clusters"] if c["name"] == context["cluster"])
        return urlsplit(server).hostname or "127.0.0.1"
    except (OSError, KeyError, StopIteration, TypeError, yaml.YAMLError):
        return "127.0.0.1"


def failure_message(sim, pool, zone, fault, count):
    machine = nodes.pool_machine(pool)
    gpu_type, gpu_count = gke_catalog.gpu_of(machine, (pool.get("config") or {}).get("accelerators"))
    attachment = f" with {gpu_count} {gpu_type} accelerator(s)" if gpu_type else ""
    record = sim.state["pools"][pool["name"]]
    instance = nodes.node_name(sim.cluster_name, pool["name"], record["mig_hashes"][zone])
    if fault.get("fault") == "quota":
        metric = accelerator_metric(pool)
        return (f"Google Compute Engine: Not all instances running in IGM after 1m2.5s. Expected {count}, running 0, "
                f"transitioning {count}. Current errors: [GCE_QUOTA_EXCEEDED]: Instance '{instance}' creation "
                f"failed: Quota '{metric}' exceeded.  Limit: {sim.quota_limits().get(metric, 0.0)} in region "
                f"{gke_catalog.region_of(zone)}.")
    return (f"Google Compute Engine: Not all instances running in IGM after 35m0.5s. Expected {count}, running 0, "
            f"transitioning {count}. Current errors: [GCE_STOCKOUT]: Instance '{instance}' creation failed: The zone "
            f"'projects/{sim.project}/zones/{zone}' does not have enough resources available to fulfill the request."
            f"  '(resource type:compute)'.; [ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS]: A {machine} VM instance"
            f"{attachment} is currently unavailable in the {zone} zone. Alternatively, you can try your request "
            "again with a different VM hardware configuration or at a later time. For more information, see the "
            "troubleshooting documentation.")


def node_quota(pool):
    """Regional quota one node of ``pool`` uses: CPUS, plus its GPU or TPU chip metric."""
    machine = nodes.pool_machine(pool)
    use = {"CPUS": float(gke_catalog.MACHINE_TYPES[machine]["guestCpus"])}
    tpu = gke_catalog.tpu_of(machine)
    gpu_type, gpu_count = gke_catalog.gpu_of(machine, (pool.get("config") or {}).get("accelerators"))
    if tpu:
        use[gke_catalog.TPU_QUOTA_METRICS[tpu["accelerator"]]] = float(tpu["chips"])
    elif gpu_type:
        use[gke_catalog.ACCELERATOR_TYPES[gpu_type]["quota_metric"]] = float(gpu_count)
    return use


def accelerator_metric(pool):
    """The metric a quota error names first: the accelerator's when there is one (the scarce resource)."""
    metrics = [m for m in node_quota(pool) if m != "CPUS"]
    return metrics[0] if metrics else "CPUS"


def quota_message(sim, metric, need, limit, usage):
    return (f"Insufficient regional quota to satisfy request: resource \"{metric}\": request requires "
            f"'{float(need)}' and is short '{float(usage + need - limit)}'. project has a quota of '{float(limit)}' "
            f"with '{float(max(limit - usage, 0))}' available. View and manage quotas at "
            f"https://console.cloud.google.com/iam-admin/quotas?usage=USED&project={sim.project}.")


def quota_error(sim, pool, count, fault):
    """The 403 of an injected ``quota`` fault (limit: ``quota_limit``, default one unit short)."""
    metric = accelerator_metric(pool)
    need = node_quota(pool)[metric] * max(count, 1)
    limit = fault.get("quota_limit", max(need - 1, 0))
    return ApiError(403, quota_message(sim, metric, need, limit, 0), "PERMISSION_DENIED", [request_id()])


def pool_update_changes(pool, update, cluster_zone):
    """Validate an UpdateNodePoolRequest against the pool; return {field: new value} of what it changes."""
    changes = {}
    config = pool.get("config") or {}
    if "labels" in update:
        changes["labels"] = dict((update["labels"] or {}).get("labels") or {})
    if "resourceLabels" in update:
        changes["resourceLabels"] = dict((update["resourceLabels"] or {}).get("labels") or {})
    if "taints" in update:
        changes["taints"] = [dict(t, value=t.get("value", "")) for t in (update["taints"] or {}).get("taints") or []]
    if "locations" in update:
        check_locations(update["locations"], cluster_zone)
        for zone in update["locations"]:
            if gke_catalog.machine_type(zone, config.get("machineType")) is None:
                raise invalid(f"Machine type \"{config.get('machineType')}\" is not available in zone {zone}.",
                              "locations")
        changes["locations"] = list(update["locations"])
    handled = ("labels", "resourceLabels", "taints", "locations", "nodeVersion")
    for key, value in update.items():
        if key not in handled:
            changes[key] = value  # hardware fields replace the nodes (surge); the rest is kept in the pool's config
    if "machineType" in changes:
        for zone in pool_zones(pool, cluster_zone):
            if gke_catalog.machine_type(zone, changes["machineType"]) is None:
                raise invalid(f"Invalid value for field 'machine_type': Machine type with name "
                              f"'{changes['machineType']}' does not exist in zone '{zone}'.", "machine_type")
        was_tpu = bool(gke_catalog.tpu_of(config.get("machineType")))
        if was_tpu != bool(gke_catalog.tpu_of(changes["machineType"])):
            raise invalid("Updating the machine type between TPU and non-TPU machine types is not supported.",
                          "machine_type")
    if update.get("nodeVersion") not in (None, "", "-", "latest", gke_catalog.GKE_VERSION):
        raise invalid(f"Node version \"{update['nodeVersion']}\" is not a valid version for this cluster.",
                      "node_version")
    if not changes and "nodeVersion" not in update:
        raise invalid("Node pool update requires at least one field to update.", "")
    return changes


def apply_pool_changes(record, changes, sim):
    config = record["api"].setdefault("config", {})
    for key, value in changes.items():
        if key == "locations":
            record["api"]["locations"] = value
            size = max(record["zones"].values() or [0])
            record["zones"] = {zone: record["zones"].get(zone, size) for zone in value}
            for zone in value:
                record["mig_hashes"].setdefault(zone, nodes.mig_hash(sim.project, sim.cluster_name,
                                                                     record["api"]["name"], zone))
            # One zonal managed instance group per pool zone: instanceGroupUrls follows the locations.
            record["api"]["instanceGroupUrls"] = [
                f"{COMPUTE_BASE}/projects/{sim.project}/zones/{zone}/instanceGroupManagers/"
                f"{nodes.mig_name(sim.cluster_name, record['api']['name'], record['mig_hashes'][zone])}"
                for zone in value]
        elif key in POOL_LEVEL_UPDATES:
            record["api"][key] = value
        elif key == "resourceLabels":
            model = config.get("resourceLabels", {}).get("goog-gke-node-pool-provisioning-model")
            config["resourceLabels"] = dict(value, **({"goog-gke-node-pool-provisioning-model": model}
                                                      if model else {}))
        else:
            config[key] = value


# ---------------------------------------------------------------------------------------------------------------
# HTTP


V1 = r"^/v1/projects/(?P<project>[^/]+)/(?P<kind>locations|zones)/(?P<location>[^/]+)"
CLUSTER = V1 + r"/clusters/(?P<cluster>[^/:]+)"
POOL = CLUSTER + r"/nodePools/(?P<pool>[^/:]+)"
COMPUTE = r"^/compute/v1/projects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)"
REGION = r"^/compute/v1/projects/(?P<project>[^/]+)/regions/(?P<region>[^/]+)"
ROUTES = [
    ("GET", V1 + r"/clusters$", "list_clusters"),
    ("GET", CLUSTER + r"$", "get_cluster"),
    ("PUT", CLUSTER + r"$", "update_cluster"),
    ("POST", CLUSTER + r"(:setAddons|/addons)$", "set_addons"),
    ("GET", CLUSTER + r"/nodePools$", "list_pools"),
    ("POST", CLUSTER + r"/nodePools$", "create_pool"),
    ("GET", POOL + r"$", "get_pool"),
    ("DELETE", POOL + r"$", "delete_pool"),
    ("PUT", POOL + r"$", "update_pool"),
    ("POST", POOL + r"/update$", "update_pool"),
    ("POST", POOL + r"(:setAutoscaling|/autoscaling)$", "set_autoscaling"),
    ("POST", POOL + r"(:setSize|/setSize)$", "set_size"),
    ("POST", POOL + r"(:setManagement|/setManagement)$", "set_management"),
    ("GET", V1 + r"/operations$", "list_operations"),
    ("GET", V1 + r"/operations/(?P<operation>[^/:]+)$", "get_operation"),
    ("GET", r"^/compute/v1/projects/(?P<project>[^/]+)/regions/(?P<region>[^/]+)$", "get_region"),
    ("GET", COMPUTE + r"/machineTypes$", "list_machine_types"),
    ("GET", COMPUTE + r"/machineTypes/(?P<name>[^/]+)$", "get_machine_type"),
    ("GET", COMPUTE + r"/instanceGroupManagers$", "list_instance_group_managers"),
    ("GET", COMPUTE + r"/instanceGroupManagers/(?P<name>[^/]+)$", "get_instance_group_manager"),
    ("GET", COMPUTE + r"/acceleratorTypes$", "list_accelerator_types"),
    ("GET", COMPUTE + r"/acceleratorTypes/(?P<name>[^/]+)$", "get_accelerator_type"),
    # Subnetworks and region operations: localcluster/gke_subnets.py (Compute API v1 reference cited there).
    ("GET", REGION + r"/subnetworks$", "list_subnetworks"),
    ("POST", REGION + r"/subnetworks$", "insert_subnetwork"),
    ("GET", REGION + r"/subnetworks/(?P<name>[^/]+)$", "get_subnetwork"),
    ("DELETE", REGION + r"/subnetworks/(?P<name>[^/]+)$", "delete_subnetwork"),
    ("GET", REGION + r"/operations/(?P<operation>[^/]+)$", "get_region_operation"),
]
MUTATING = ("POST", "PUT", "DELETE", "PATCH")


class Api:
    """Request handling, independent of the HTTP server (unit-testable)."""

    def __init__(self, sim):
        self.sim = sim

    def handle(self, method, raw_path, headers, body_bytes, base_url):
        """Answer one request: (HTTP status, JSON payload, extra headers)."""
        path, query = urlsplit(raw_path).path, dict(parse_qsl(urlsplit(raw_path).query))
        body, extra = None, {}
        try:
            self._authenticate(headers)
            if path.startswith("/_sim/"):
                return (*self._admin(method, path, body_bytes), {})
            body = self._parse_body(method, body_bytes)
            status, payload = self._dispatch(method, path, query, body, base_url, body_bytes)
        except ApiError as error:
            status, payload, extra = error.http_code, error.body(), error.headers
        if not path.startswith("/_sim/"):
            with self.sim.lock:
                self.sim.requests.append({"method": method, "path": path, "query": query, "status": status,
                                          "body": body, "time": rfc3339()})
                del self.sim.requests[:-REQUEST_LOG_SIZE]
        return status, payload, extra

    def _authenticate(self, headers):
        value = headers.get("Authorization") or headers.get("authorization") or ""
        if not value:
            raise ApiError(401, "Request is missing required authentication credential. Expected OAuth 2 access "
                                "token, login cookie or other valid authentication credential. See "
                                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                           "UNAUTHENTICATED", [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                "reason": "CREDENTIALS_MISSING", "domain": "googleapis.com"}],
                           {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        if value != f"Bearer {self.sim.settings.token}":
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential. See "
                                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                           "UNAUTHENTICATED", [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                                "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                                                "domain": "googleapis.com"}],
                           {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'})

    @staticmethod
    def _parse_body(method, body_bytes):
        if method not in ("POST", "PUT", "PATCH") or not body_bytes:
            return None
        try:
            return json.loads(body_bytes)
        except ValueError as error:
            raise invalid(f"Invalid JSON payload received. {error}", "") from error

    def _dispatch(self, method, path, query, body, base_url, body_bytes=b""):
        for route_method, pattern, handler in ROUTES:
            match = re.match(pattern, path)
            if match and route_method == method:
                fault = self.sim.take_fault(method, path, body_bytes.decode(errors="replace"))
                params = match.groupdict()
                self._check_project(params["project"], compute=path.startswith("/compute/"))
                if fault and fault["fault"] in ("in_progress", "http_429", "http_503"):
                    raise self._fault_error(fault)
                if fault and fault["fault"] == "quota" and handler not in ("create_pool", "set_size"):
                    raise quota_error(self.sim, {"config": {"machineType": "e2-standard-4"}}, 1, fault)
                try:
                    result = getattr(self, handler)(params, body, query, fault)
                except ApiError as error:
                    if fault and not error.message.startswith("Insufficient regional quota"):
                        self.sim.give_back_fault(fault)
                    raise
                return 200, self._linked(result, base_url)
        if any(re.match(pattern, path) for _m, pattern, _h in ROUTES):
            raise ApiError(405, f"Method {method} is not allowed for {path}.", "INVALID_ARGUMENT")
        raise ApiError(404, f"The requested URL {path} was not found on this server.", "NOT_FOUND")

    def _fault_error(self, fault):
        kind = fault["fault"]
        if kind == "in_progress":
            busy = f"operation-{int(time.time() * 1000)}-{uuid.uuid4()}"
            message = fault.get("message", f"Cluster is running incompatible operation {busy}.")
            return ApiError(400, message.replace("{operation}", busy), "FAILED_PRECONDITION", [request_id()])
        if kind == "http_429":
            return ApiError(429, f"Too many operations: cluster \"{self.sim.cluster_name}\" hits the concurrent "
                                 "operations quota 5, please try again later.", "RESOURCE_EXHAUSTED",
                            [request_id()])
        return ApiError(503, "The service is currently unavailable.", "UNAVAILABLE")

    def _check_project(self, project, compute=False):
        if project not in (self.sim.project, self.sim.state["project_number"]):
            if compute:
                raise ApiError(404, f"Failed to find project {project}", "NOT_FOUND")
            raise ApiError(403, f"Permission denied on resource project {project}.", "PERMISSION_DENIED",
                           [request_id()])

    def _linked(self, result, base_url):
        """Operations keep relative links; answer with absolute ones on this server (as GKE does on its own)."""
        def fix(op):
            op = {k: v for k, v in op.items() if not k.startswith("_")}
            for key in ("selfLink", "targetLink"):
                if key in op and not op[key].startswith("http"):
                    op[key] = f"{base_url}/{op[key]}"
            return op

        if isinstance(result, dict) and "operationType" in result:
            return fix(result)
        if isinstance(result, dict) and "operations" in result:
            return {"operations": [fix(op) for op in result["operations"]]}
        return result

    # -- lookups

    def _cluster(self, params):
        if params["cluster"] != self.sim.cluster_name or params["location"] != self.sim.zone:
            raise ApiError(404, f"Not found: projects/{params['project']}/{params['kind']}/{params['location']}/"
                                f"clusters/{params['cluster']}.", "NOT_FOUND", [request_id()])

    def _pool(self, params):
        self._cluster(params)
        if params["pool"] not in self.sim.state["pools"]:
            raise ApiError(404, f"Not found: projects/{params['project']}/{params['kind']}/{params['location']}/"
                                f"clusters/{params['cluster']}/nodePools/{params['pool']}.", "NOT_FOUND",
                           [request_id()])
        return self.sim.state["pools"][params["pool"]]

    # -- clusters

    def list_clusters(self, params, body, query, fault):
        if params["location"] not in (self.sim.zone, "-", gke_catalog.region_of(self.sim.zone)):
            return {}
        with self.sim.lock:
            return {"clusters": [self.sim.cluster_view()]}

    def get_cluster(self, params, body, query, fault):
        with self.sim.lock:
            self._cluster(params)
            return self.sim.cluster_view()

    def update_cluster(self, params, body, query, fault):
        check_payload(body or {}, "UpdateClusterRequest")
        update = (body or {}).get("update") or {}
        supported = {"desiredGatewayApiConfig", "desiredAddonsConfig"}
        if not update:
            raise invalid("Cluster update requires at least one field to update.", "update")
        if set(update) - supported:
            raise invalid(f"The simulator supports updating only {', '.join(sorted(supported))}; got "
                          f"{', '.join(sorted(set(update) - supported))}.", "update")
        with self.sim.lock:
            self._cluster(params)
            return self.sim.update_cluster(update)

    def set_addons(self, params, body, query, fault):
        check_payload(body or {}, "SetAddonsConfigRequest")
        with self.sim.lock:
            self._cluster(params)
            return self.sim.update_cluster({"desiredAddonsConfig": (body or {}).get("addonsConfig") or {}})

    # -- node pools

    def list_pools(self, params, body, query, fault):
        with self.sim.lock:
            self._cluster(params)
            return {"nodePools": [self.sim.pool_view(name) for name in self.sim.state["pools"]]}

    def get_pool(self, params, body, query, fault):
        with self.sim.lock:
            self._pool(params)
            return self.sim.pool_view(params["pool"])

    def create_pool(self, params, body, query, fault):
        check_payload(body or {}, "CreateNodePoolRequest")
        if not (body or {}).get("nodePool"):
            raise invalid("Node pool must be specified.", "node_pool")
        check_new_pool(body["nodePool"], self.sim.zone)
        with self.sim.lock:
            self._cluster(params)
            if fault and fault["fault"] == "quota":
                raise quota_error(self.sim, body["nodePool"], int(body["nodePool"].get("initialNodeCount") or 0),
                                  fault)
            return self.sim.create_pool(body, fault)

    def delete_pool(self, params, body, query, fault):
        with self.sim.lock:
            self._pool(params)
            return self.sim.delete_pool(params["pool"])

    def set_size(self, params, body, query, fault):
        check_payload(body or {}, "SetNodePoolSizeRequest")
        count = int((body or {}).get("nodeCount") or 0)
        if count < 0:
            raise invalid("Node count must be non-negative.", "node_count")
        with self.sim.lock:
            record = self._pool(params)
            api = record["api"]
            tpu_topology = (api.get("placementPolicy") or {}).get("tpuTopology")
            if tpu_topology:
                check_tpu_slice(nodes.pool_machine(api), api["placementPolicy"], {}, count)
            if fault and fault["fault"] == "quota":
                raise quota_error(self.sim, api, count, fault)
            return self.sim.set_size(params["pool"], count, fault)

    def set_autoscaling(self, params, body, query, fault):
        check_payload(body or {}, "SetNodePoolAutoscalingRequest")
        autoscaling = dict((body or {}).get("autoscaling") or {})
        check_autoscaling(autoscaling, "autoscaling")
        with self.sim.lock:
            record = self._pool(params)
            api = record["api"]
            check_tpu_slice(nodes.pool_machine(api), api.get("placementPolicy") or {}, autoscaling,
                            int(api.get("initialNodeCount") or 0))
            return self.sim.set_autoscaling(params["pool"], autoscaling)

    def set_management(self, params, body, query, fault):
        check_payload(body or {}, "SetNodeManagementRequest")
        with self.sim.lock:
            self._pool(params)
            return self.sim.set_management(params["pool"], (body or {}).get("management") or {})

    def update_pool(self, params, body, query, fault):
        check_payload(body or {}, "UpdateNodePoolRequest")
        body = body or {}
        for key in ("nodePoolId", "name"):
            given = body.get(key)
            if given and given.rsplit("/", 1)[-1] != params["pool"]:
                raise invalid(f"Node pool \"{given}\" in the request body does not match \"{params['pool']}\" in "
                              "the URL.", snake_field(key))
        update = {k: v for k, v in body.items() if k not in ("projectId", "zone", "clusterId", "nodePoolId",
                                                              "name", "etag")}
        with self.sim.lock:
            record = self._pool(params)
            if body.get("etag") and body["etag"] != record["api"].get("etag"):
                raise ApiError(409, "Node pool etag does not match the current etag; read it again.", "ABORTED",
                               [request_id()])
            operation = self.sim.update_pool(params["pool"], update)
            if fault and fault["fault"] == "stockout":  # the surge VMs of this upgrade cannot be created
                record["provision_fault"] = fault
            return operation

    # -- operations

    def list_operations(self, params, body, query, fault):
        with self.sim.lock:
            return {"operations": [op for op in self.sim.state["operations"].values()
                                   if params["location"] in (self.sim.zone, "-")]}

    def get_operation(self, params, body, query, fault):
        with self.sim.lock:
            op = self.sim.state["operations"].get(params["operation"])
            if op is None or params["location"] != self.sim.zone:
                raise ApiError(404, f"Not found: projects/{params['project']}/{params['kind']}/"
                                    f"{params['location']}/operations/{params['operation']}.", "NOT_FOUND",
                               [request_id()])
            return copy.deepcopy(op)

    # -- Compute API reads (errors in Compute's own format)

    def _compute_zone(self, params):
        if params["zone"] not in gke_catalog.ZONES:
            raise compute_error(400, f"Invalid value for field 'zone': '{params['zone']}'. Unknown zone.", "invalid")

    def get_region(self, params, body, query, fault):
        """Compute regions.get: ``quotas`` is a list of {metric, limit, usage} per regional quota metric
        (https://cloud.google.com/compute/docs/reference/rest/v1/regions/get, the Quota object); usage here is the
        node pools' nodes x what one node uses (node_quota)."""
        region = params["region"]
        zones = gke_catalog.zones_in_region(region)
        if not zones:
            raise compute_error(404, f"The resource 'projects/{params['project']}/regions/{region}' was not found",
                                "notFound")
        with self.sim.lock:
            usage, limits = self.sim.quota_usage(region), self.sim.quota_limits()
        base = f"{COMPUTE_BASE}/projects/{params['project']}"
        return {"kind": "compute#region", "name": region, "status": "UP", "description": region,
                "zones": [f"{base}/zones/{zone}" for zone in zones], "selfLink": f"{base}/regions/{region}",
                "quotas": [{"metric": metric, "limit": limit, "usage": usage.get(metric, 0.0)}
                           for metric, limit in sorted(limits.items())]}

    def _zone_migs(self, zone):
        """(pool record, MIG name) of every node pool MIG in ``zone`` (called with the lock held)."""
        for name, record in self.sim.state["pools"].items():
            if zone in record["zones"]:
                yield record, nodes.mig_name(self.sim.cluster_name, name, record["mig_hashes"][zone])

    def get_instance_group_manager(self, params, body, query, fault):
        """Compute instanceGroupManagers.get: a node pool has one zonal MIG per zone of its locations, and its
        ``targetSize`` is the pool's size in that zone - node_count / setSize.nodeCount are per zone
        (https://cloud.google.com/compute/docs/reference/rest/v1/instanceGroupManagers/get; Terraform reads the
        node count of a pool from these, flattenNodePool in hashicorp/terraform-provider-google
        google/services/container/resource_container_node_pool.go)."""
        self._compute_zone(params)
        with self.sim.lock:
            for record, mig in self._zone_migs(params["zone"]):
                if mig == params["name"]:
                    return igm_view(params, mig, record)
        raise compute_error(404, f"The resource 'projects/{params['project']}/zones/{params['zone']}/"
                                 f"instanceGroupManagers/{params['name']}' was not found", "notFound")

    def list_instance_group_managers(self, params, body, query, fault):
        self._compute_zone(params)
        with self.sim.lock:
            items = [igm_view(params, mig, record) for record, mig in self._zone_migs(params["zone"])]
        return {"kind": "compute#instanceGroupManagerList", "items": items,
                "selfLink": f"{COMPUTE_BASE}/projects/{params['project']}/zones/{params['zone']}/"
                            "instanceGroupManagers"}

    def list_machine_types(self, params, body, query, fault):
        self._compute_zone(params)
        items = [machine_type_view(params, name) for name in gke_catalog.ZONES[params["zone"]]["machines"]]
        return {"kind": "compute#machineTypeList", "items": items,
                "selfLink": f"{COMPUTE_BASE}/projects/{params['project']}/zones/{params['zone']}/machineTypes"}

    def get_machine_type(self, params, body, query, fault):
        self._compute_zone(params)
        if gke_catalog.machine_type(params["zone"], params["name"]) is None:
            raise compute_error(404, f"The resource 'projects/{params['project']}/zones/{params['zone']}/"
                                     f"machineTypes/{params['name']}' was not found", "notFound")
        return machine_type_view(params, params["name"])

    def list_accelerator_types(self, params, body, query, fault):
        self._compute_zone(params)
        items = [accelerator_type_view(params, n) for n in gke_catalog.ZONES[params["zone"]]["accelerators"]]
        return {"kind": "compute#acceleratorTypeList", "items": items,
                "selfLink": f"{COMPUTE_BASE}/projects/{params['project']}/zones/{params['zone']}/acceleratorTypes"}

    def get_accelerator_type(self, params, body, query, fault):
        self._compute_zone(params)
        if gke_catalog.accelerator_type(params["zone"], params["name"]) is None:
            raise compute_error(404, f"The resource 'projects/{params['project']}/zones/{params['zone']}/"
                                     f"acceleratorTypes/{params['name']}' was not found", "notFound")
        return accelerator_type_view(params, params["name"])

    # -- Compute subnetworks (localcluster/gke_subnets.py)

    def list_subnetworks(self, params, body, query, fault):
        with self.sim.lock:
            return gke_subnets.Subnets(self.sim).list(params["project"], params["region"])

    def get_subnetwork(self, params, body, query, fault):
        with self.sim.lock:
            return gke_subnets.Subnets(self.sim).get(params["project"], params["region"], params["name"])

    def insert_subnetwork(self, params, body, query, fault):
        with self.sim.lock:
            return gke_subnets.Subnets(self.sim).insert(params["project"], params["region"], body)

    def delete_subnetwork(self, params, body, query, fault):
        with self.sim.lock:
            return gke_subnets.Subnets(self.sim).delete(params["project"], params["region"], params["name"])

    def get_region_operation(self, params, body, query, fault):
        with self.sim.lock:
            return gke_subnets.Subnets(self.sim).operation(params["project"], params["region"], params["operation"])

    # -- admin

    def _admin(self, method, path, body_bytes):
        if path == "/_sim/faults" and method == "POST":
            return 200, self.sim.add_fault(self._parse_body("POST", body_bytes))
        if path == "/_sim/faults" and method == "GET":
            with self.sim.lock:
                return 200, {"faults": list(self.sim.faults)}
        if path == "/_sim/faults" and method == "DELETE":
            with self.sim.lock:
                self.sim.faults.clear()
            return 200, {}
        if path == "/_sim/requests" and method == "GET":
            with self.sim.lock:
                return 200, {"requests": list(self.sim.requests)}
        if path == "/_sim/quotas" and method == "POST":
            limits = self._parse_body("POST", body_bytes) or {}
            if not isinstance(limits, dict) or not all(isinstance(v, int | float) for v in limits.values()):
                raise invalid("quotas must be a JSON object of metric -> limit", "")
            with self.sim.lock:
                self.sim.state.setdefault("quota_limits", {}).update({k: float(v) for k, v in limits.items()})
                self.sim.save()
                return 200, {"limits": self.sim.quota_limits()}
        if path == "/_sim/quotas" and method == "DELETE":
            with self.sim.lock:
                self.sim.state["quota_limits"] = {}
                self.sim.save()
            return 200, {"limits": self.sim.quota_limits()}
        if path == "/_sim/stockouts" and method == "POST":
            spec = self._parse_body("POST", body_bytes) or {}
            zone = spec.get("zone")
            if zone not in gke_catalog.ZONES:
                raise invalid(f"zone must be a simulated zone ({', '.join(sorted(gke_catalog.ZONES))})", "zone")
            with self.sim.lock:
                machines = self.sim.state.setdefault("zone_stockouts", {}).setdefault(zone, [])
                if spec.get("machine_type"):
                    machines.append(spec["machine_type"])
                self.sim.save()
                return 200, {"stockouts": self.sim.state["zone_stockouts"]}
        if path == "/_sim/stockouts" and method == "DELETE":
            with self.sim.lock:
                self.sim.state["zone_stockouts"] = {}
                self.sim.save()
            return 200, {"stockouts": {}}
        if path == "/_sim/reservations" and method == "POST":
            spec = self._parse_body("POST", body_bytes) or {}
            missing = [k for k in ("name", "zone", "machine_type", "count") if not spec.get(k)]
            if missing:
                raise invalid(f"a reservation needs {', '.join(missing)}", missing[0])
            with self.sim.lock:
                self.sim.state.setdefault("reservations", {})[spec["name"]] = {
                    "zone": spec["zone"], "machine_type": spec["machine_type"], "count": int(spec["count"])}
                self.sim.save()
                return 200, {"reservations": self.sim.state["reservations"]}
        if path == "/_sim/reservations" and method == "DELETE":
            with self.sim.lock:
                self.sim.state["reservations"] = {}
                self.sim.save()
            return 200, {"reservations": {}}
        if path == "/_sim/requests" and method == "DELETE":
            with self.sim.lock:
                self.sim.requests.clear()
            return 200, {}
        raise ApiError(404, f"No admin endpoint {method} {path}.", "NOT_FOUND")


def snake_field(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def compute_error(code, message, reason):
    error = ApiError(code, message)
    error.body = lambda: {"error": {"code": code, "message": message,
                                    "errors": [{"message": message, "domain": "global", "reason": reason}]}}
    return error


def machine_type_view(params, name):
    machine = gke_catalog.MACHINE_TYPES[name]
    view = {"kind": "compute#machineType", "id": str(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": name,
            "description": f"{machine['guestCpus']} vCPUs, {machine['memoryMb'] / 1024:g} GB RAM",
            "guestCpus": machine["guestCpus"], "memoryMb": machine["memoryMb"], "imageSpaceGb": 0,
            "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168", "zone": params["zone"],
            "isSharedCpu": name == "e2-medium", "architecture": "X86_64",
            "selfLink": f"{COMPUTE_BASE}/projects/{params['project']}/zones/{params['zone']}/machineTypes/{name}"}
    if machine.get("accelerators"):
        view["accelerators"] = machine["accelerators"]
    return view


def igm_view(params, mig, record):
    """An InstanceGroupManager as Compute returns it (the fields a client of a GKE node pool reads)."""
    zone = params["zone"]
    base = f"{COMPUTE_BASE}/projects/{params['project']}/zones/{zone}"
    size = int(record["zones"][zone])
    return {"kind": "compute#instanceGroupManager", "name": mig, "zone": base,
            "id": str(int(hashlib.sha256(mig.encode()).hexdigest()[:12], 16)),
            "baseInstanceName": mig[:-len("-grp")], "targetSize": size,
            "instanceGroup": f"{base}/instanceGroups/{mig}", "selfLink": f"{base}/instanceGroupManagers/{mig}",
            "instanceTemplate": f"{COMPUTE_BASE}/projects/{params['project']}/global/instanceTemplates/"
                                f"{mig[:-len('-grp')]}",
            "status": {"isStable": True}}


def accelerator_type_view(params, name):
    accelerator = gke_catalog.ACCELERATOR_TYPES[name]
    base = f"{COMPUTE_BASE}/projects/{params['project']}/zones/{params['zone']}"
    return {"kind": "compute#acceleratorType", "id": str(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16)),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": name,
            "description": accelerator["description"], "zone": base,
            "maximumCardsPerInstance": accelerator["maximumCardsPerInstance"],
            "selfLink": f"{base}/acceleratorTypes/{name}"}


class Handler(BaseHTTPRequestHandler):
    api = None  # set by serve()
    protocol_version = "HTTP/1.1"

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        status, payload, extra = self.api.handle(self.command, self.path, self.headers, body, f"http://{host}")
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, fmt, *args):
        log.debug("%s - %s", self.address_string(), fmt % args)


# ---------------------------------------------------------------------------------------------------------------
# Process


def serve(settings, kube, stop):
    """Start everything; returns the HTTP server (already serving in a thread)."""
    sim = Simulator(settings, kube)
    Handler.api = Api(sim)
    server = ThreadingHTTPServer(("127.0.0.1", settings.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    log.info("GKE API simulator on http://127.0.0.1:%d (project %s, cluster %s in %s, time scale %g)",
             settings.port, settings.project, settings.cluster, settings.location, settings.time_scale)
    if sim.fleet:
        nodes_loop_until_ready(sim)
        sim.resume_operations()
        period = min(2.0, max(0.5, 10 * settings.time_scale))  # CA scan interval 10 s, scaled; bounded for CPU

        def control_pass():
            sim.fleet.sync()
            sim.autoscaler.run_once()

        threading.Thread(target=nodes.loop_forever, args=("node controller", period, control_pass, stop),
                         daemon=True, name="controller").start()
    sim.save()
    ready = settings.state_dir / "ready" / "gke_api"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.write_text(f"http://127.0.0.1:{settings.port}\n")
    server.sim = sim
    return server


def nodes_loop_until_ready(sim):
    """Create the nodes of pools that already exist (their VMs are up) before declaring readiness."""
    delay = 0.5
    while True:
        try:
            sim.fleet.sync(immediate=True)
            return
        except Exception as error:  # noqa: BLE001 - the API server may still be starting
            log.warning("Kubernetes API not ready yet (%s); retrying", error)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def main():
    logging.basicConfig(level=os.environ.get("LOCALCLUSTER_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # kubeconfigs of local clusters
    settings = Settings()
    kube = nodes.Kube(settings.kubeconfig) if settings.kubeconfig else None
    stop = threading.Event()
    server = serve(settings, kube, stop)
    try:
        while not stop.is_set():
            stop.wait(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.shutdown()


if __name__ == "__main__":
    main()
