"""Kubernetes side of the GKE simulator: Node objects for node pools, heartbeats, drains and a cluster-autoscaler.

- ``node_manifest`` builds a Node as GKE's kubelet registers it (labels, taints, capacity/allocatable).
- ``Fleet`` is level-triggered: for every pool and zone it makes the number of Node objects match the pool's
  target size (a VM boots for a scaled delay before its Node appears), drains and deletes surplus nodes, and
  keeps every node alive with the kubelet's heartbeats (Lease renewals and status updates, as kwok does).
- ``Autoscaler`` plays GKE's cluster-autoscaler for pools with autoscaling enabled: scale-up for unschedulable
  pods whose needs a pool's node template meets, scale-down of empty nodes, with the autoscaler's pod events.

The GKE state (pools, target sizes, faults) belongs to ``localcluster.gke_api``; it is reached through the
``store`` object passed in (methods documented on ``gke_api.Simulator``).
"""
import hashlib
import json
import logging
import math
import random
import string
import threading
import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import config as kube_config
from kubernetes.utils import parse_quantity

from localcluster import gke_catalog
from localcluster.config import node_ip, node_network
from localcluster.gke_validation import taint_to_kubernetes

log = logging.getLogger("localcluster.gke_api")

SIMULATED_BY = "localcluster.llm-serving-gke.io/simulated-by"
POOL_LABEL = "cloud.google.com/gke-nodepool"
HEARTBEAT_SECONDS = 10.0  # kubelet Lease renew interval (real time: the node lifecycle controller's clock)
LEASE_SECONDS = 40
DAEMONSET_KINDS = ("DaemonSet",)
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"


def utc_now(micro=False):
    stamp = datetime.now(UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes client: plain dicts, retried while the API server is away


class KubeError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


class Kube:
    """Raw JSON requests through the official client's connection pool (kubeconfig auth and TLS)."""

    def __init__(self, kubeconfig, max_wait=60.0):
        self.client = kube_config.new_client_from_config(config_file=str(kubeconfig))
        self.host = self.client.configuration.host
        self.max_wait = max_wait

    def _headers(self, content_type):
        headers = {"Accept": "application/json", "Content-Type": content_type}
        for setting in self.client.configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def request(self, method, path, body=None, query=None, content_type="application/json"):
        """One API call; connection errors, 429 and 5xx are retried with backoff for up to ``max_wait`` s."""
        url = self.host + path + (f"?{urlencode(query)}" if query else "")
        payload = body  # serialised by the client (JSON for every +json content type)
        deadline, delay = time.monotonic() + self.max_wait, 0.2
        while True:
            try:
                response = self.client.rest_client.request(method, url, headers=self._headers(content_type),
                                                            body=payload, _request_timeout=30)
                data = response.read()
                if response.status < 400:
                    return json.loads(data) if data else {}
                if response.status not in (429, 500, 502, 503, 504):
                    raise KubeError(response.status, data.decode(errors="replace"))
                failure = KubeError(response.status, data.decode(errors="replace"))
            except (urllib3.exceptions.HTTPError, OSError) as error:
                failure = error
            if time.monotonic() + delay > deadline:
                raise failure
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def get(self, path):
        try:
            return self.request("GET", path)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def delete(self, path, body=None):
        try:
            return self.request("DELETE", path, body=body)
        except KubeError as error:
            if error.status != 404:
                raise
            return None

    def server_minor(self):
        version = self.request("GET", "/version")
        return int("".join(ch for ch in version.get("minor", "0") if ch.isdigit()) or 0)


# ---------------------------------------------------------------------------------------------------------------
# Node objects as GKE registers them (pure)


def node_name(cluster, pool, mig_hash):
    """gke-<cluster>-<pool>-<8 hex>-<4 chars>, truncated like GKE so it stays a valid hostname."""
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=4))
    return f"gke-{cluster[:20].rstrip('-')}-{pool[:15].rstrip('-')}-{mig_hash}-{suffix}"


def mig_hash(project, cluster, pool, zone):
    return hashlib.sha256(f"{project}/{cluster}/{pool}/{zone}".encode()).hexdigest()[:8]


def mig_name(cluster, pool, hash8):
    return f"gke-{cluster[:20].rstrip('-')}-{pool[:15].rstrip('-')}-{hash8}-grp"


def pool_machine(pool):
    return (pool.get("config") or {}).get("machineType") or "e2-medium"


def node_labels(pool, zone, name):
    config = pool.get("config") or {}
    machine = pool_machine(pool)
    region = gke_catalog.region_of(zone)
    spot = bool(config.get("spot"))
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
        "beta.kubernetes.io/instance-type": machine, "node.kubernetes.io/instance-type": machine,
        POOL_LABEL: pool["name"],
        "cloud.google.com/gke-os-distribution": "cos",
        "cloud.google.com/gke-container-runtime": "containerd",
        "cloud.google.com/gke-boot-disk": config.get("diskType") or "pd-balanced",
        "cloud.google.com/machine-family": gke_catalog.MACHINE_TYPES[machine]["family"],
        "cloud.google.com/gke-max-pods-per-node": str(gke_catalog.MAX_PODS_PER_NODE),
        "cloud.google.com/gke-provisioning": "spot" if spot else "standard",
        "cloud.google.com/private-node": "false",
        "failure-domain.beta.kubernetes.io/region": region, "failure-domain.beta.kubernetes.io/zone": zone,
        "topology.kubernetes.io/region": region, "topology.kubernetes.io/zone": zone,
    }
    if spot:
        labels["cloud.google.com/gke-spot"] = "true"
    if config.get("preemptible"):
        labels["cloud.google.com/gke-preemptible"] = "true"
    gpu_type, _count = gke_catalog.gpu_of(machine, config.get("accelerators"))
    if gpu_type:
        labels["cloud.google.com/gke-accelerator"] = gpu_type
        driver = ((config.get("accelerators") or [{}])[0].get("gpuDriverInstallationConfig") or {})
        if driver.get("gpuDriverVersion") in ("DEFAULT", "LATEST"):
            labels["cloud.google.com/gke-gpu-driver-version"] = driver["gpuDriverVersion"].lower()
    tpu = gke_catalog.tpu_of(machine)
    if tpu:
        labels["cloud.google.com/gke-tpu-accelerator"] = tpu["accelerator"]
        labels["cloud.google.com/gke-tpu-topology"] = (pool.get("placementPolicy") or {}).get("tpuTopology") \
            or tpu["topology"]
    labels.update(config.get("labels") or {})
    return labels


def node_taints(pool):
    """User taints plus those GKE adds itself to accelerator nodes."""
    config = pool.get("config") or {}
    taints = [taint_to_kubernetes(taint) for taint in config.get("taints") or []]
    machine = pool_machine(pool)
    implicit = []
    if gke_catalog.gpu_of(machine, config.get("accelerators"))[0]:
        implicit.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
    if gke_catalog.tpu_of(machine):
        implicit.append({"key": "google.com/tpu", "value": "present", "effect": "NoSchedule"})
    for taint in implicit:
        if not any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in taints):
            taints.append(taint)
    return taints


def node_resources(pool):
    config = pool.get("config") or {}
    machine = pool_machine(pool)
    gpu_type, gpu_count = gke_catalog.gpu_of(machine, config.get("accelerators"))
    return gke_catalog.node_resources(machine, gpu_type, gpu_count)


def node_conditions(now):
    def condition(kind, status, reason, message):
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled"),
    ]


def node_addresses(name, environ=None):
    """A loopback InternalIP (127.0.x.y, or in LOCALCLUSTER_NODE_NETWORK; pods use 127.1.x.y) derived from the
    name, and the hostname."""
    digest = hashlib.sha256(name.encode()).digest()
    address = node_ip(node_network(environ), digest[0] % 250 + 2, digest[1] % 250 + 2)
    return [{"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": name}]


def node_manifest(project, pool, zone, name):
    capacity, allocatable = node_resources(pool)
    now = utc_now()
    digest = hashlib.sha256(name.encode()).hexdigest()
    pod_cidr = f"10.{64 + int(digest[:2], 16) % 64}.{int(digest[2:4], 16)}.0/24"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(pool, zone, name), "annotations": {
            "container.googleapis.com/instance_id": str(int(digest[:15], 16)),
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            SIMULATED_BY: "gke_api"}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr], "providerID": f"gce://{project}/{zone}/{name}",
                 "taints": node_taints(pool)},
        "status": {
            "capacity": capacity, "allocatable": allocatable, "conditions": node_conditions(now),
            "addresses": node_addresses(name), "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": digest[:36], "machineID": digest[:32],
                         "systemUUID": digest[32:68], "containerRuntimeVersion": "containerd://2.0.6",
                         "kernelVersion": "6.6.97+", "kubeProxyVersion": f"v{gke_catalog.GKE_VERSION}",
                         "kubeletVersion": f"v{gke_catalog.GKE_VERSION}", "operatingSystem": "linux",
                         "osImage": "Container-Optimized OS from Google"},
        },
    }


def lease_manifest(name, uid):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                     "renewTime": utc_now(micro=True)}}


# ---------------------------------------------------------------------------------------------------------------
# Scheduling predicates (pure): would a pod fit a node built from a pool's template?


def pod_requests(pod):
    """Effective requests: sum over containers, at least the largest init container (as the scheduler does)."""
    totals = {}
    for container in pod["spec"].get("containers", []):
        for key, value in ((container.get("resources") or {}).get("requests") or {}).items():
            totals[key] = totals.get(key, 0) + parse_quantity(value)
    for container in pod["spec"].get("initContainers", []) or []:
        for key, value in ((container.get("resources") or {}).get("requests") or {}).items():
            totals[key] = max(totals.get(key, 0), parse_quantity(value))
    for key, value in (pod["spec"].get("overhead") or {}).items():
        totals[key] = totals.get(key, 0) + parse_quantity(value)
    return totals


def _expression_matches(expression, labels):
    key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    if operator in ("Gt", "Lt") and key in labels:
        try:
            label, bound = int(labels[key]), int(values[0])
        except (ValueError, IndexError):
            return False
        return label > bound if operator == "Gt" else label < bound
    return False


def matches_node_selector(pod, labels):
    selector = pod["spec"].get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return False
    required = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}) \
        .get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True
    return any(all(_expression_matches(e, labels) for e in term.get("matchExpressions") or [])
               for term in required.get("nodeSelectorTerms") or [])


def tolerates(tolerations, taint):
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint["effect"]:
            continue
        if not toleration.get("key"):
            if toleration.get("operator") == "Exists":
                return True
            continue
        if toleration["key"] != taint["key"]:
            continue
        if toleration.get("operator") == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def untolerated_taint(pod, taints):
    tolerations = pod["spec"].get("tolerations") or []
    for taint in taints:
        if taint["effect"] in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return taint
    return None


def misfit_reason(pod, labels, taints, free):
    """None when the pod fits; otherwise the scheduler's reason, worded as the autoscaler reports it."""
    if not matches_node_selector(pod, labels):
        return "node(s) didn't match Pod's node affinity/selector"
    taint = untolerated_taint(pod, taints)
    if taint:
        return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
    requests = pod_requests(pod)
    requests["pods"] = 1
    for resource, amount in sorted(requests.items()):
        if amount > free.get(resource, 0):
            return f"Insufficient {resource}"
    return None


def quantities(resources):
    return {key: parse_quantity(value) for key, value in resources.items()}


def subtract(free, requests):
    return {key: free.get(key, 0) - requests.get(key, 0) for key in free}


def binpack_new_nodes(pods, allocatable):
    """How many template nodes the pods need (first fit, in the given order)."""
    nodes = []
    for pod in pods:
        requests = pod_requests(pod)
        requests["pods"] = 1
        for index, free in enumerate(nodes):
            if all(free.get(k, 0) >= v for k, v in requests.items()):
                nodes[index] = subtract(free, requests)
                break
        else:
            nodes.append(subtract(dict(allocatable), requests))
    return len(nodes)


def is_unschedulable(pod):
    if pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
        return False
    if (pod.get("status") or {}).get("phase") not in (None, "Pending"):
        return False
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable"
               for c in (pod.get("status") or {}).get("conditions") or [])


def counts_for_scale_down(pod):
    """Pods that keep a node busy: not DaemonSet pods, not mirror pods, not finished."""
    owners = pod["metadata"].get("ownerReferences") or []
    if any(owner.get("kind") in DAEMONSET_KINDS for owner in owners):
        return False
    if "kubernetes.io/config.mirror" in (pod["metadata"].get("annotations") or {}):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def not_triggered_message(reasons):
    """"pod didn't trigger scale-up: 1 max node group size reached, 2 Insufficient nvidia.com/gpu" (CA wording)."""
    counts = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return "pod didn't trigger scale-up: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


# ---------------------------------------------------------------------------------------------------------------
# Events


class EventRecorder:
    """Core v1 Events as client-go's recorder writes them; repeats bump ``count`` at most every 10 s."""

    REPEAT_SECONDS = 10.0

    def __init__(self, kube, component):
        self.kube = kube
        self.component = component
        self.seen = {}  # (uid, reason, message) -> [event name, namespace, count, last emit]

    def emit(self, obj, kind, reason, message, event_type="Normal"):
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid"), reason, message)
        now, stamp = time.monotonic(), utc_now()
        previous = self.seen.get(key)
        try:
            if previous and now - previous[3] < self.REPEAT_SECONDS:
                return
            if previous:
                previous[2] += 1
                previous[3] = now
                self.kube.request("PATCH", f"/api/v1/namespaces/{previous[1]}/events/{previous[0]}",
                                  {"count": previous[2], "lastTimestamp": stamp},
                                  content_type="application/merge-patch+json")
                return
            name = f"{meta['name']}.{time.time_ns():x}"
            self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events", {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"kind": kind, "apiVersion": "v1", "name": meta["name"],
                                   "namespace": meta.get("namespace", ""), "uid": meta.get("uid"),
                                   "resourceVersion": meta.get("resourceVersion")},
                "reason": reason, "message": message, "type": event_type, "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": self.component}, "reportingComponent": self.component,
                "reportingInstance": self.component})
            self.seen[key] = [name, namespace, 1, now]
        except KubeError as error:
            log.warning("event %s on %s/%s not recorded: %s", reason, namespace, meta["name"], error)


# ---------------------------------------------------------------------------------------------------------------
# Fleet: Node objects follow the pools' target sizes


class Fleet:
    def __init__(self, kube, store, time_scale):
        self.kube = kube
        self.store = store
        self.scale = time_scale
        self.lock = threading.RLock()
        self.pending = {}  # (pool, zone) -> [{"ready_at": t, "fault": dict|None}]
        self.last_ready = {}  # (pool, zone) -> monotonic time its newest Node became Ready
        self.deleting = set()
        self.last_heartbeat = {}
        self.nodes = {}  # name -> Node dict (last listing)
        self._eviction_version = None

    # -- queries used by operations and the autoscaler

    def managed_nodes(self):
        with self.lock:
            return [n for n in self.nodes.values() if (n["metadata"].get("annotations") or {}).get(SIMULATED_BY)]

    def pool_nodes(self, pool, zone=None):
        return [n for n in self.managed_nodes() if n["metadata"]["labels"].get(POOL_LABEL) == pool
                and (zone is None or n["metadata"]["labels"].get("topology.kubernetes.io/zone") == zone)]

    def pending_count(self, pool, zone):
        with self.lock:
            return len(self.pending.get((pool, zone), []))

    def converged(self, pool, targets):
        """True once every zone of the pool has exactly its target of nodes and nothing is in flight."""
        with self.lock:
            for zone, target in targets.items():
                live = [n for n in self.pool_nodes(pool, zone) if n["metadata"]["name"] not in self.deleting]
                if len(live) != target or self.pending.get((pool, zone)):
                    return False
            return not any(n["metadata"]["name"] in self.deleting for n in self.pool_nodes(pool))

    # -- the reconcile pass

    def refresh(self):
        listing = self.kube.request("GET", "/api/v1/nodes")
        with self.lock:
            self.nodes = {n["metadata"]["name"]: n for n in listing.get("items", [])}

    def sync(self, immediate=False):
        """One pass: create matured nodes, start boots for missing ones, drain surplus, heartbeat."""
        self.refresh()
        now = time.monotonic()
        pools = self.store.pool_targets()
        for view in pools.values():
            for zone, target in view["zones"].items():
                self._sync_zone(view, zone, target, now, immediate)
        self._remove_orphans(pools)
        self._heartbeat(now)

    def _sync_zone(self, view, zone, target, now, immediate):
        pool = view["api"]
        key = (pool["name"], zone)
        live = [n for n in self.pool_nodes(pool["name"], zone) if n["metadata"]["name"] not in self.deleting]
        with self.lock:
            pending = self.pending.setdefault(key, [])
            missing = target - len(live) - len(pending)
            if missing > 0:
                fault = self.store.take_provision_fault(pool["name"], zone)
                delay = 0 if immediate else self.boot_delay(pool)
                pending.extend({"ready_at": now + delay, "fault": fault} for _ in range(missing))
            elif missing < 0 and pending:
                dropped = min(-missing, len(pending))
                del pending[len(pending) - dropped:]
                missing += dropped
            # A matured VM stays in `pending` (so the autoscaler still counts it as upcoming capacity) until
            # its Node exists; otherwise a pass that runs in between sees neither and scales up twice.
            matured = [entry for entry in pending if entry["ready_at"] <= now and not entry.get("creating")]
            for entry in matured:
                entry["creating"] = True
        for entry in matured:
            if not entry["fault"]:
                self._create_node(view, zone)
            with self.lock:
                pending[:] = [other for other in pending if other is not entry]
        failed = [entry for entry in matured if entry["fault"]]
        if failed:
            self.store.provision_failed(pool["name"], zone, failed[0]["fault"], len(failed))
        if missing < 0:
            for node in self._pick_victims(live, -missing):
                self.remove_node(node["metadata"]["name"])

    def boot_delay(self, pool):
        config = pool.get("config") or {}
        gpu_type, _ = gke_catalog.gpu_of(pool_machine(pool), config.get("accelerators"))
        return gke_catalog.node_boot_seconds(pool_machine(pool), gpu_type) * self.scale

    def _create_node(self, view, zone):
        pool = view["api"]
        name = node_name(self.store.cluster_name, pool["name"], view["mig_hashes"][zone])
        manifest = node_manifest(self.store.project, pool, zone, name)
        try:
            self.kube.request("POST", "/api/v1/nodes", manifest)
            # Status is not taken on create by every server version: set it through the subresource.
            created = self.kube.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": manifest["status"]},
                                        content_type="application/merge-patch+json")
            self._ensure_lease(name, created["metadata"]["uid"])
        except KubeError as error:
            log.error("creating node %s failed: %s", name, error)
            return
        with self.lock:
            self.nodes[name] = created
            self.last_ready[(pool["name"], zone)] = time.monotonic()
        log.info("node %s of pool %s is Ready in %s", name, pool["name"], zone)

    def _ensure_lease(self, name, uid):
        try:
            self.kube.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                              lease_manifest(name, uid))
        except KubeError as error:
            if error.status != 409:
                raise

    def _pick_victims(self, nodes, count):
        """Emptiest nodes first (fewest pods that block scale-down), newest first among equals."""
        busy = self._busy_counts()
        ranked = sorted(nodes, key=lambda n: n["metadata"].get("creationTimestamp", ""), reverse=True)
        ranked.sort(key=lambda n: busy.get(n["metadata"]["name"], 0))
        return ranked[:count]

    def _busy_counts(self):
        pods = self.kube.request("GET", "/api/v1/pods").get("items", [])
        counts = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node and counts_for_scale_down(pod):
                counts[node] = counts.get(node, 0) + 1
        return counts

    def _remove_orphans(self, pools):
        for node in self.managed_nodes():
            if node["metadata"]["labels"].get(POOL_LABEL) not in pools:
                self.remove_node(node["metadata"]["name"])

    # -- removal: cordon, evict (respecting PodDisruptionBudgets), delete

    def remove_node(self, name, autoscaler=False):
        with self.lock:
            if name in self.deleting:
                return
            self.deleting.add(name)
        threading.Thread(target=self._drain_and_delete, args=(name, autoscaler), daemon=True,
                         name=f"drain-{name}").start()

    def _drain_and_delete(self, name, autoscaler):
        try:
            self._cordon(name, autoscaler)
            self.drain(name, timeout=max(1.0, 3600 * self.scale))
            self.kube.delete(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
            self.kube.delete(f"/api/v1/nodes/{name}")
            log.info("node %s deleted", name)
        except Exception:  # noqa: BLE001 - a failed drain must not kill the simulator; the next pass retries
            log.exception("removing node %s failed", name)
        finally:
            with self.lock:
                self.nodes.pop(name, None)
                self.deleting.discard(name)

    def _cordon(self, name, autoscaler):
        node = self.kube.get(f"/api/v1/nodes/{name}")
        if node is None:
            return
        patch = {"spec": {"unschedulable": True}}
        if autoscaler:
            taints = list(node["spec"].get("taints") or [])
            taints.append({"key": TO_BE_DELETED_TAINT, "value": str(int(time.time())), "effect": "NoSchedule"})
            patch["spec"]["taints"] = taints
        self.kube.request("PATCH", f"/api/v1/nodes/{name}", patch, content_type="application/merge-patch+json")

    def pods_on(self, name):
        query = {"fieldSelector": f"spec.nodeName={name}"}
        return self.kube.request("GET", "/api/v1/pods", query=query).get("items", [])

    def drain(self, name, timeout):
        """Evict every pod except DaemonSet and mirror pods; after ``timeout`` delete what is left."""
        deadline = time.monotonic() + timeout
        while True:
            pods = [p for p in self.pods_on(name) if counts_for_scale_down(p)]
            if not pods:
                return
            for pod in pods:
                if not pod["metadata"].get("deletionTimestamp"):
                    self._evict(pod)
            if time.monotonic() > deadline:
                for pod in pods:
                    meta = pod["metadata"]
                    self.kube.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                                     {"gracePeriodSeconds": 0})
                return
            time.sleep(max(0.2, min(2.0, 5 * self.scale)))

    def _evict(self, pod):
        meta = pod["metadata"]
        if self._eviction_version is None:
            self._eviction_version = "policy/v1" if self.kube.server_minor() >= 22 else "policy/v1beta1"
        body = {"apiVersion": self._eviction_version, "kind": "Eviction",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{quote(meta['name'])}/eviction"
        try:
            self.kube.request("POST", path, body)
        except KubeError as error:
            if error.status == 403:  # e.g. the namespace is terminating: evictions are refused, deletes are not
                self.kube.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{quote(meta['name'])}")
            elif error.status not in (404, 429):  # 429: a PodDisruptionBudget forbids it for now; retried
                raise

    # -- heartbeats (real time: the node lifecycle controller does not know about the time scale)

    def _heartbeat(self, now):
        for node in self.managed_nodes():
            name = node["metadata"]["name"]
            if name in self.deleting or now - self.last_heartbeat.get(name, 0) < HEARTBEAT_SECONDS:
                continue
            self.last_heartbeat[name] = now
            try:
                self._renew(node)
            except KubeError as error:
                log.warning("heartbeat of %s failed: %s", name, error)

    def _renew(self, node):
        name = node["metadata"]["name"]
        stamp = utc_now()
        conditions = [{"type": c["type"], "status": c["status"], "reason": c["reason"], "message": c["message"],
                       "lastHeartbeatTime": stamp} for c in node_conditions(stamp)]
        for condition in conditions:
            current = next((c for c in (node.get("status") or {}).get("conditions") or []
                            if c["type"] == condition["type"]), None)
            if current is None or current.get("status") != condition["status"]:
                condition["lastTransitionTime"] = stamp
        self.kube.request("PATCH", f"/api/v1/nodes/{name}/status", {"status": {"conditions": conditions}},
                          content_type="application/strategic-merge-patch+json")
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        try:
            self.kube.request("PATCH", lease_path, {"spec": {"renewTime": utc_now(micro=True),
                                                             "holderIdentity": name}},
                              content_type="application/merge-patch+json")
        except KubeError as error:
            if error.status != 404:
                raise
            self._ensure_lease(name, node["metadata"]["uid"])


# ---------------------------------------------------------------------------------------------------------------
# Cluster autoscaler


class Autoscaler:
    """GKE's cluster-autoscaler, reduced to what a serving cluster meets: scale-up and empty-node scale-down."""

    SCALE_DOWN_UNNEEDED_SECONDS = 600  # --scale-down-unneeded-time (10 min), scaled
    BACKOFF_SECONDS = 300  # initial node group backoff after a failed scale-up (5 min), scaled
    NEW_NODE_GRACE_SECONDS = 5  # real seconds: the scheduler binds pods to a new node well within this

    def __init__(self, kube, store, fleet, time_scale):
        self.kube = kube
        self.store = store
        self.fleet = fleet
        self.scale = time_scale
        self.events = EventRecorder(kube, "cluster-autoscaler")
        self.empty_since = {}
        self.backoff_until = {}
        self.scale_ups = {}  # (pool, zone) -> [pods that triggered the scale-up still in flight]

    def run_once(self):
        views = {name: v for name, v in self.store.pool_targets().items()
                 if (v["api"].get("autoscaling") or {}).get("enabled") and v["api"].get("status") != "STOPPING"}
        if not views:
            return
        pods = self.kube.request("GET", "/api/v1/pods").get("items", [])
        now = time.monotonic()
        self.scale_up(views, pods, now)
        self.scale_down(views, pods, now)

    # -- scale-up

    def templates(self, views):
        """One option per (pool, zone): labels, taints, allocatable of a new node, sizes."""
        options = []
        for name, view in sorted(views.items()):
            autoscaling = view["api"]["autoscaling"]
            _capacity, allocatable = node_resources(view["api"])
            for zone, target in sorted(view["zones"].items()):
                options.append({"pool": name, "zone": zone, "target": target, "view": view,
                                "max": int(autoscaling.get("maxNodeCount") or 0),
                                "labels": node_labels(view["api"], zone, "template"),
                                "taints": node_taints(view["api"]), "allocatable": quantities(allocatable)})
        return options

    def _free_capacity(self, pods):
        """Free resources of every Ready, schedulable node, and of nodes that are still booting."""
        used = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                requests = pod_requests(pod)
                requests["pods"] = 1
                totals = used.setdefault(node, {})
                for key, value in requests.items():
                    totals[key] = totals.get(key, 0) + value
        free = []
        with self.fleet.lock:
            nodes = list(self.fleet.nodes.values())
        for node in nodes:
            if node["spec"].get("unschedulable") or node["metadata"]["name"] in self.fleet.deleting:
                continue
            allocatable = quantities((node.get("status") or {}).get("allocatable") or {})
            free.append({"labels": node["metadata"].get("labels") or {}, "taints": node["spec"].get("taints") or [],
                         "free": subtract(allocatable, used.get(node["metadata"]["name"], {}))})
        return free

    def _upcoming(self, options):
        upcoming = []
        for option in options:
            for _ in range(self.fleet.pending_count(option["pool"], option["zone"])):
                upcoming.append({"labels": option["labels"], "taints": option["taints"],
                                 "free": dict(option["allocatable"])})
        return upcoming

    @staticmethod
    def _place(pod, nodes):
        for node in nodes:
            if misfit_reason(pod, node["labels"], node["taints"], node["free"]) is None:
                requests = pod_requests(pod)
                requests["pods"] = 1
                node["free"] = subtract(node["free"], requests)
                return True
        return False

    def scale_up(self, views, pods, now):
        # Give the scheduler a moment to bind pending pods to a node that just became Ready; until it has,
        # those pods still look unschedulable and one pod would trigger a second scale-up.
        with self.fleet.lock:
            newest_ready = max(self.fleet.last_ready.values(), default=float("-inf"))
        if now - newest_ready < self.NEW_NODE_GRACE_SECONDS:
            return
        options = self.templates(views)
        waiting = [p for p in pods if is_unschedulable(p)]
        capacity = self._free_capacity(pods) + self._upcoming(options)
        waiting = [p for p in waiting if not self._place(p, capacity)]
        if not waiting:
            return
        best, reasons = None, {}
        for option in options:
            fitting = []
            for pod in waiting:
                reason = self._option_reason(option, pod, now)
                if reason:
                    reasons.setdefault(pod["metadata"]["uid"], []).append(reason)
                else:
                    fitting.append(pod)
            if fitting:
                needed = min(binpack_new_nodes(fitting, option["allocatable"]), option["max"] - option["target"])
                score = (len(fitting), -needed, option["pool"])
                if best is None or score > best[0]:
                    best = (score, option, fitting, needed)
        if best:
            self._trigger(best[1], best[2], best[3])
        helped = {p["metadata"]["uid"] for p in best[2]} if best else set()
        for pod in waiting:
            uid = pod["metadata"]["uid"]
            if uid not in helped and uid in reasons and len(reasons[uid]) == len(options):
                self.events.emit(pod, "Pod", "NotTriggerScaleUp", not_triggered_message(reasons[uid]))

    def _option_reason(self, option, pod, now):
        reason = misfit_reason(pod, option["labels"], option["taints"], option["allocatable"])
        if reason:
            return reason
        if self.backoff_until.get((option["pool"], option["zone"]), 0) > now:
            return "in backoff after failed scale-up"
        if option["target"] >= option["max"]:
            return "max node group size reached"
        return None

    def _trigger(self, option, pods, needed):
        pool, zone, current = option["pool"], option["zone"], option["target"]
        new_size = current + needed
        mig = self.store.mig_url(pool, zone)
        self.store.autoscaler_resize(pool, zone, new_size)
        log.info("cluster-autoscaler: scale-up of %s in %s %d->%d for %d pod(s)", pool, zone, current, new_size,
                 len(pods))
        message = f"pod triggered scale-up: [{{{mig} {current}->{new_size} (max: {option['max']})}}]"
        if not self.fleet.pending_count(pool, zone):
            self.scale_ups[(pool, zone)] = []  # earlier scale-ups of this group have finished
        self.scale_ups.setdefault((pool, zone), []).extend(pods)
        for pod in pods:
            self.events.emit(pod, "Pod", "TriggeredScaleUp", message)

    def scale_up_failed(self, pool, zone, fault_kind):
        """Called when VMs of a scale-up could not be created: back off and tell the waiting pods."""
        self.backoff_until[(pool, zone)] = time.monotonic() + self.BACKOFF_SECONDS * self.scale
        cause = "GCE quota exceeded" if fault_kind == "quota" else "GCE out of resources"
        for pod in self.scale_ups.pop((pool, zone), []):
            meta = pod["metadata"]
            current = self.kube.get(f"/api/v1/namespaces/{meta['namespace']}/pods/{quote(meta['name'])}")
            if current is None or current["metadata"].get("uid") != meta.get("uid") or current["spec"].get(
                    "nodeName"):
                continue  # gone or already running somewhere: nothing is at risk
            self.events.emit(pod, "Pod", "FailedScaleUp",
                             f"Node scale up in zones {zone} associated with this pod failed: {cause}. "
                             "Pod is at risk of not being scheduled.", "Warning")

    # -- scale-down

    def scale_down(self, views, pods, now):
        busy = {}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node and counts_for_scale_down(pod):
                busy[node] = busy.get(node, 0) + 1
        unneeded = self.SCALE_DOWN_UNNEEDED_SECONDS * self.scale
        for name, view in views.items():
            low = int(view["api"]["autoscaling"].get("minNodeCount") or 0)
            for zone, target in view["zones"].items():
                nodes = [n for n in self.fleet.pool_nodes(name, zone) if n["metadata"]["name"] not in
                         self.fleet.deleting]
                if len(nodes) != target or self.fleet.pending_count(name, zone):
                    continue  # still converging: leave it alone
                self._scale_down_zone(name, zone, target, low, nodes, busy, now, unneeded)

    def _scale_down_zone(self, pool, zone, target, low, nodes, busy, now, unneeded):
        for node in nodes:
            node_id = node["metadata"]["name"]
            if busy.get(node_id):
                self.empty_since.pop(node_id, None)
            else:
                self.empty_since.setdefault(node_id, now)
        removable = [n for n in nodes if now - self.empty_since.get(n["metadata"]["name"], now) >= unneeded]
        if not removable or target <= low:
            return
        victim = removable[0]
        self.events.emit(victim, "Node", "ScaleDown", "marked the node as toBeDeleted/unschedulable")
        log.info("cluster-autoscaler: removing empty node %s of %s", victim["metadata"]["name"], pool)
        self.store.autoscaler_resize(pool, zone, target - 1)
        self.fleet.remove_node(victim["metadata"]["name"], autoscaler=True)
        self.empty_since.pop(victim["metadata"]["name"], None)


def loop_forever(name, period, step, stop):
    """Run ``step`` every ``period`` seconds until ``stop`` is set; errors are logged, never fatal."""
    failures = 0
    while not stop.is_set():
        try:
            step()
            failures = 0
        except Exception:  # noqa: BLE001 - keep serving while the API server restarts
            failures += 1
            log.exception("%s pass failed (%d in a row)", name, failures)
        stop.wait(period if not failures else min(10.0, period * 2 ** min(failures, 5)))


def scaled(seconds, time_scale, floor=0.0):
    return max(floor, seconds * time_scale) if not math.isinf(seconds) else seconds
