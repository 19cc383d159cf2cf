"""Simulated GKE Gateway: controller and HTTP data plane in one process (``python -m localcluster.gateway``).

Controller: for GatewayClasses with ``controllerName: networking.gke.io/gateway`` it accepts the class,
programs Gateways on ``GATEWAY_ADDRESS`` and writes HTTPRoute and InferencePool status the way GKE does
(``timeouts`` rejected with GWCER104, InferencePool only on the regional classes). InferencePools of both API
groups are backends, as on GKE: ``inference.networking.k8s.io/v1`` and the preview
``inference.networking.x-k8s.io/v1alpha2`` (GKE's migration guide runs both side by side:
https://cloud.google.com/kubernetes-engine/docs/how-to/migrate-gke-inference-gateway). With
``GATEWAY_INFERENCEPOOL_V1ALPHA2=reject`` the gateway answers a v1alpha2 backendRef with ResolvedRefs=False/
InvalidKind instead, like a gateway without v1alpha2 support (what makes KServe switch the route to v1).

Data plane: serves every programmed listener port on ``GATEWAY_ADDRESS`` (HTTP/1.1 only; HTTP/1.0 gets
426), matches HTTPRoutes (PathPrefix/Exact, header matches, URLRewrite ReplacePrefixMatch) and proxies to
pod IPs: round robin for Service backends, the EPP profile KServe v0.20 injects for ``scheduler: {}`` (queue 2,
kv-cache-utilization 2, prefix-cache 3, no-hit-lru 2; ``localcluster/epp.py``) for InferencePool backends
while the pool's endpoint picker has an available pod (FailOpen round robin otherwise). Backends are
health-checked like GKE does: on the HealthCheckPolicy's path and port, ``/`` on the serving port by default,
so vLLM backends without a policy are unhealthy and requests get 503 "no healthy upstream".
"""
import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import random
import threading
import time

import aiohttp
import yaml
from aiohttp import web

from localcluster.epp import (KSERVE_DEFAULT_WEIGHTS, PrefixAwarePicker, RoundRobin, parse_metrics, prompt_text,
                              weights_from_config)
from localcluster.kserve_controller import Informer, Kube, resource_path

LOG = logging.getLogger("gateway")
ACCESS_LOG = logging.getLogger("gateway.access")
CONTROLLER_NAME = "networking.gke.io/gateway"
REGIONAL_CLASSES = ("gke-l7-regional-external-managed", "gke-l7-rilb")
GATEWAY_GROUP = "gateway.networking.k8s.io"
POOL_GROUP = "inference.networking.k8s.io"
POOL_GROUP_V1ALPHA2 = "inference.networking.x-k8s.io"
GKE_GROUP = "networking.gke.io"
DEFAULT_TIMEOUT_SEC = 30
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "host"}
HEALTH_DEFAULTS = {"checkIntervalSec": 5, "timeoutSec": 5, "healthyThreshold": 2, "unhealthyThreshold": 2}
# Setting: how the gateway treats inference.networking.x-k8s.io/v1alpha2 InferencePool backendRefs.
V1ALPHA2_POOLS_ENV = "GATEWAY_INFERENCEPOOL_V1ALPHA2"
V1ALPHA2_POOL_MODES = ("accept", "reject")


def v1alpha2_pool_mode(environ=None):
    """``accept`` (GKE's behaviour, the default) or ``reject``; anything else is refused naming the variable."""
    value = ((environ if environ is not None else os.environ).get(V1ALPHA2_POOLS_ENV) or "accept").strip().lower()
    if value not in V1ALPHA2_POOL_MODES:
        raise ValueError(f"{V1ALPHA2_POOLS_ENV}={value!r}: use one of {', '.join(V1ALPHA2_POOL_MODES)}")
    return value


def now_rfc3339():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Messages for conditions that carry no news (a 1.20 API server reads an empty required string as null).
DEFAULT_MESSAGES = {"Accepted": "Accepted by the GKE Gateway controller", "Programmed": "Programmed",
                    "NoConflicts": "No conflicts", "ResolvedRefs": "All references resolved",
                    "SupportedByParent": "Supported by the parent Gateway"}


def condition(ctype, status, reason, message, generation):
    message = message or DEFAULT_MESSAGES.get(reason, reason)
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": now_rfc3339()}


def keep_transition_times(new_conditions, old_conditions):
    """A condition's lastTransitionTime changes only when its status does."""
    old = {c["type"]: c for c in old_conditions or []}
    for cond in new_conditions:
        prev = old.get(cond["type"])
        if prev and prev.get("status") == cond["status"] and prev.get("lastTransitionTime"):
            cond["lastTransitionTime"] = prev["lastTransitionTime"]
    return new_conditions


def timeouts_message(route):
    meta = route["metadata"]
    return (f'GWCER104: HTTPRoute "{meta["namespace"]}/{meta["name"]}" is misconfigured, '
            "err: Timeouts are not supported.")


def label_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ============================================================== routing snapshot

@dataclasses.dataclass(frozen=True)
class Endpoint:
    pod: str
    ip: str
    port: int


@dataclasses.dataclass
class Backend:
    kind: str                 # "Service" | "InferencePool" | "Unresolved"
    key: str                  # ns/name (group/ns/name for InferencePools)
    weight: int
    endpoints: list           # [Endpoint]
    health: dict              # {"port", "path", "checkIntervalSec", ...}
    timeout: float
    epp_available: bool = False
    fail_open: bool = True
    epp_weights: dict = None  # scorer -> weight from the EPP's --config-text


@dataclasses.dataclass
class Match:
    route: str
    rule: str
    path_type: str
    path: str
    headers: list
    rewrite: str | None
    backends: list

    def precedence(self):
        exact = 1 if self.path_type == "Exact" else 0
        return (exact, len(self.path), len(self.headers))


def path_matches(path_type, value, request_path):
    if path_type == "Exact":
        return request_path == value
    if value in ("", "/"):
        return True
    value = value.rstrip("/")
    return request_path == value or request_path.startswith(value + "/")


def rewrite_prefix(request_path, prefix, replacement):
    """URLRewrite ReplacePrefixMatch as Gateway API defines it (``/ns/n/v1/models`` - ``/ns/n`` + ``/``)."""
    rest = request_path[len(prefix.rstrip("/")):] if prefix not in ("", "/") else request_path
    if replacement.endswith("/") and rest.startswith("/"):
        rest = rest[1:]
    result = replacement + rest
    return result or "/"


class Snapshot:
    """Immutable routing table built by the controller thread, read by the data plane."""

    def __init__(self, ports=None, matches=None):
        self.ports = set(ports or ())
        self.matches = matches or {}   # port -> [Match] sorted by precedence

    def find(self, port, path, headers):
        for match in self.matches.get(port, []):
            if not path_matches(match.path_type, match.path, path):
                continue
            if all(headers.get(h["name"]) == h["value"] for h in match.headers):
                return match
        return None

    def health_targets(self):
        targets = {}
        for matches in self.matches.values():
            for match in matches:
                for backend in match.backends:
                    for endpoint in backend.endpoints:
                        key = (endpoint.ip, backend.health["port"], backend.health["path"])
                        targets[key] = backend.health
        return targets

    def metrics_targets(self):
        """(ip, port) of every endpoint of an InferencePool backend whose endpoint picker runs."""
        return {(e.ip, e.port) for matches in self.matches.values() for match in matches
                for backend in match.backends if backend.kind == "InferencePool" and backend.epp_available
                for e in backend.endpoints}


# ============================================================== controller

class GatewayController:
    def __init__(self, kube, address, on_snapshot, v1alpha2_pools="accept"):
        self.kube = kube
        self.accept_v1alpha2_pools = v1alpha2_pools == "accept"
        self.address = address
        self.on_snapshot = on_snapshot
        self.bound_ports = set()
        self.bind_ports = None  # callable(ports) -> set of bound ports, set by the data plane
        self.dirty = threading.Event()
        self.informers = {}
        self._pod_views = {}  # (namespace, name) -> what routing reads of the pod (see _pod_changed)

    def _pod_changed(self, kind, pod):
        """Pods informer callback: a sync only when something routing reads changed.

        Backends read a pod's labels, namespace, deletionTimestamp, Ready condition and podIP (ready_pods; the
        container ports it resolves are immutable). Every other pod update in the cluster (restart counts,
        container states, other conditions, probe results of pods no route uses) used to trigger a full sync of
        every class, Gateway, route, pool and policy status.
        """
        meta = pod["metadata"]
        key = (meta.get("namespace"), meta["name"])
        view = None
        if kind != "DELETED":
            status = pod.get("status") or {}
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            view = (meta.get("uid"), tuple(sorted((meta.get("labels") or {}).items())),
                    bool(meta.get("deletionTimestamp")), ready, status.get("podIP"))
        if self._pod_views.get(key) == view:
            return
        if view is None:
            self._pod_views.pop(key, None)
        else:
            self._pod_views[key] = view
        self.dirty.set()

    def start(self):
        def changed(_kind, _obj):
            self.dirty.set()
        specs = {
            "classes": (GATEWAY_GROUP, "v1", "gatewayclasses"),
            "gateways": (GATEWAY_GROUP, "v1", "gateways"),
            "routes": (GATEWAY_GROUP, "v1", "httproutes"),
            "pools": (POOL_GROUP, "v1", "inferencepools"),
            "pools_v1alpha2": (POOL_GROUP_V1ALPHA2, "v1alpha2", "inferencepools"),
            "services": ("", "v1", "services"),
            "pods": ("", "v1", "pods"),
            "namespaces": ("", "v1", "namespaces"),
            "healthchecks": (GKE_GROUP, "v1", "healthcheckpolicies"),
            "backendpolicies": (GKE_GROUP, "v1", "gcpbackendpolicies"),
        }
        for key, (group, version, plural) in specs.items():
            callback = self._pod_changed if key == "pods" else changed
            self.informers[key] = Informer(self.kube, group, version, plural, callback, name=key).start()
        for informer in self.informers.values():
            informer.synced.wait()
        self.sync()  # listeners bound and statuses written before the process reports ready
        threading.Thread(target=self._loop, name="gateway-controller", daemon=True).start()

    def _loop(self):
        while True:
            self.dirty.wait(timeout=5)
            time.sleep(0.1)  # coalesce bursts of watch events
            self.dirty.clear()
            try:
                self.sync()
            except Exception:
                LOG.exception("gateway sync failed")
                time.sleep(1)

    # ---------------------------------------------------------------- lookups

    def ours(self, gateway):
        cls = self.informers["classes"].get(None, gateway["spec"].get("gatewayClassName"))
        return cls is not None and cls["spec"].get("controllerName") == CONTROLLER_NAME

    def gateway_for(self, route, parent):
        if parent.get("kind", "Gateway") != "Gateway" or parent.get("group", GATEWAY_GROUP) != GATEWAY_GROUP:
            return None
        gateway = self.informers["gateways"].get(parent.get("namespace") or route["metadata"]["namespace"],
                                                 parent["name"])
        return gateway if gateway is not None and self.ours(gateway) else None

    def listeners_for(self, gateway, parent, route_namespace):
        chosen = []
        for listener in gateway["spec"].get("listeners") or []:
            if parent.get("sectionName") and listener["name"] != parent["sectionName"]:
                continue
            if parent.get("port") and listener.get("port") != parent["port"]:
                continue
            if self._namespace_allowed(listener, gateway["metadata"]["namespace"], route_namespace):
                chosen.append(listener)
        return chosen

    def _namespace_allowed(self, listener, gateway_namespace, route_namespace):
        namespaces = ((listener.get("allowedRoutes") or {}).get("namespaces") or {})
        source = namespaces.get("from", "Same")
        if source == "All":
            return True
        if source == "Same":
            return route_namespace == gateway_namespace
        selector = (namespaces.get("selector") or {}).get("matchLabels") or {}
        ns = self.informers["namespaces"].get(None, route_namespace) or {"metadata": {}}
        return label_match(selector, ns["metadata"].get("labels") or {}) if selector else True

    def ready_pods(self, namespace, selector):
        pods = []
        for pod in self.informers["pods"].items():
            meta = pod["metadata"]
            if meta.get("namespace") != namespace or meta.get("deletionTimestamp"):
                continue
            if not label_match(selector, meta.get("labels") or {}):
                continue
            status = pod.get("status") or {}
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
            if ready and status.get("podIP"):
                pods.append(pod)
        return sorted(pods, key=lambda p: p["metadata"]["name"])

    def pool_groups(self):
        """InferencePool API groups this gateway builds backends for (v1alpha2 per the setting)."""
        return (POOL_GROUP, POOL_GROUP_V1ALPHA2) if self.accept_v1alpha2_pools else (POOL_GROUP,)

    def pool(self, group, namespace, name):
        informer = "pools" if group == POOL_GROUP else "pools_v1alpha2"
        return self.informers[informer].get(namespace, name)

    def policy_for(self, informer, namespace, group, kind, name):
        for policy in self.informers[informer].items():
            ref = (policy.get("spec") or {}).get("targetRef") or {}
            if (policy["metadata"]["namespace"] == namespace and ref.get("kind") == kind and ref.get("name") == name
                    and (ref.get("group") or "") == group):
                return policy
        return None

    # ---------------------------------------------------------------- status

    def sync(self):
        classes = [c for c in self.informers["classes"].items() if c["spec"].get("controllerName") == CONTROLLER_NAME]
        for cls in classes:
            self._write_class_status(cls)
        gateways = [g for g in self.informers["gateways"].items() if self.ours(g)]
        wanted_ports = {listener["port"] for g in gateways for listener in g["spec"].get("listeners") or []
                        if listener.get("protocol") in ("HTTP", None)}
        if self.bind_ports is not None:
            self.bound_ports = self.bind_ports(wanted_ports)
        accepted_routes = []
        attached = {}
        for route in self.informers["routes"].items():
            parents, accepted = self._route_parents(route, attached)
            self._write_route_status(route, parents)
            if accepted:
                accepted_routes.append((route, accepted))
        for gateway in gateways:
            self._write_gateway_status(gateway, attached)
        for pool in self.informers["pools"].items():
            self._write_pool_status(pool, accepted_routes)
        if self.accept_v1alpha2_pools:
            for pool in self.informers["pools_v1alpha2"].items():
                self._write_pool_status(pool, accepted_routes, POOL_GROUP_V1ALPHA2)
        targets = _backend_targets(accepted_routes)
        for informer, plural, kind in (("healthchecks", "healthcheckpolicies", "HealthCheckPolicy"),
                                       ("backendpolicies", "gcpbackendpolicies", "GCPBackendPolicy")):
            for policy in self.informers[informer].items():
                self._write_policy_status(policy, plural, kind, targets)
        self.on_snapshot(self._build_snapshot(accepted_routes))

    def _write_status(self, group, version, plural, obj, status):
        if (obj.get("status") or {}) == status:
            return
        meta = obj["metadata"]
        path = resource_path(group, version, plural, meta.get("namespace"), meta["name"], "status")
        try:
            self.kube.merge_patch(path, {"status": status})
        except Exception as exc:  # object deleted meanwhile, API server restarting: next sync retries
            LOG.warning("status of %s %s/%s not written: %s", plural, meta.get("namespace"), meta["name"], exc)
            self.dirty.set()

    def _write_class_status(self, cls):
        old = (cls.get("status") or {}).get("conditions")
        conds = keep_transition_times([condition("Accepted", "True", "Accepted", "", cls["metadata"]["generation"])],
                                      old)
        self._write_status(GATEWAY_GROUP, "v1", "gatewayclasses", cls, {**(cls.get("status") or {}),
                                                                        "conditions": conds})

    def _write_gateway_status(self, gateway, attached):
        gen = gateway["metadata"]["generation"]
        old = gateway.get("status") or {}
        old_listeners = {entry["name"]: entry for entry in old.get("listeners") or []}
        listeners = []
        all_programmed = True
        for listener in gateway["spec"].get("listeners") or []:
            bound = listener.get("port") in self.bound_ports and listener.get("protocol") in ("HTTP", None)
            all_programmed &= bound
            conds = [
                condition("Accepted", "True", "Accepted", "", gen),
                condition("Conflicted", "False", "NoConflicts", "", gen),
                condition("Programmed", "True" if bound else "False", "Programmed" if bound else "Invalid",
                          "" if bound else f"listener port {listener.get('port')} could not be served", gen),
                condition("ResolvedRefs", "True", "ResolvedRefs", "", gen),
            ]
            previous = (old_listeners.get(listener["name"]) or {}).get("conditions")
            listeners.append({"name": listener["name"],
                              "attachedRoutes": attached.get((gateway["metadata"]["namespace"],
                                                              gateway["metadata"]["name"], listener["name"]), 0),
                              "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}],
                              "conditions": keep_transition_times(conds, previous)})
        conds = keep_transition_times([
            condition("Accepted", "True", "Accepted", "", gen),
            condition("Programmed", "True" if all_programmed else "False",
                      "Programmed" if all_programmed else "Invalid", "", gen),
        ], old.get("conditions"))
        status = {"addresses": [{"type": "IPAddress", "value": self.address}], "conditions": conds,
                  "listeners": listeners}
        self._write_status(GATEWAY_GROUP, "v1", "gateways", gateway, status)

    def _route_parents(self, route, attached):
        """status.parents entries this controller owns, and the (gateway, listeners) that accepted the route."""
        meta = route["metadata"]
        gen = meta["generation"]
        entries, accepted = [], []
        for parent in route["spec"].get("parentRefs") or []:
            gateway = self.gateway_for(route, parent)
            if gateway is None:
                continue
            listeners = self.listeners_for(gateway, parent, meta["namespace"])
            if any("timeouts" in rule for rule in route["spec"].get("rules") or []):
                accepted_cond = condition("Accepted", "False", "UnsupportedValue", timeouts_message(route), gen)
            elif not listeners:
                accepted_cond = condition("Accepted", "False", "NotAllowedByListeners",
                                          "No listeners included by this parent ref allowed this attachment.", gen)
            else:
                accepted_cond = condition("Accepted", "True", "Accepted", "", gen)
            resolved_cond = self._resolved_refs(route, gateway, gen)
            ref = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": parent["name"],
                   "namespace": parent.get("namespace") or meta["namespace"]}
            for optional in ("sectionName", "port"):
                if parent.get(optional):
                    ref[optional] = parent[optional]
            old = next((p for p in (route.get("status") or {}).get("parents") or []
                        if p.get("parentRef") == ref and p.get("controllerName") == CONTROLLER_NAME), {})
            entries.append({"parentRef": ref, "controllerName": CONTROLLER_NAME,
                            "conditions": keep_transition_times([accepted_cond, resolved_cond], old.get("conditions"))})
            if accepted_cond["status"] == "True":
                accepted.append((gateway, listeners))
                for listener in listeners:
                    key = (gateway["metadata"]["namespace"], gateway["metadata"]["name"], listener["name"])
                    attached[key] = attached.get(key, 0) + 1
        return entries, accepted

    def _resolved_refs(self, route, gateway, gen):
        namespace = route["metadata"]["namespace"]
        regional = gateway["spec"].get("gatewayClassName") in REGIONAL_CLASSES
        for rule in route["spec"].get("rules") or []:
            for backend in rule.get("backendRefs") or []:
                group, kind = backend.get("group") or "", backend.get("kind") or "Service"
                ns, name = backend.get("namespace") or namespace, backend["name"]
                if group == "" and kind == "Service":
                    if self.informers["services"].get(ns, name) is None:
                        return condition("ResolvedRefs", "False", "BackendNotFound",
                                         f'Service "{ns}/{name}" not found', gen)
                elif group in self.pool_groups() and kind == "InferencePool":
                    if not regional:
                        return condition("ResolvedRefs", "False", "InvalidKind",
                                         f'InferencePool backends are not supported by GatewayClass '
                                         f'"{gateway["spec"].get("gatewayClassName")}"', gen)
                    if self.pool(group, ns, name) is None:
                        return condition("ResolvedRefs", "False", "BackendNotFound",
                                         f'InferencePool "{ns}/{name}" ({group}) not found', gen)
                else:
                    return condition("ResolvedRefs", "False", "InvalidKind",
                                     f'Unsupported backend kind "{kind}" in group "{group}"', gen)
        return condition("ResolvedRefs", "True", "ResolvedRefs", "", gen)

    def _write_route_status(self, route, entries):
        old_parents = (route.get("status") or {}).get("parents") or []
        foreign = [p for p in old_parents if p.get("controllerName") != CONTROLLER_NAME]
        if not entries and not any(p.get("controllerName") == CONTROLLER_NAME for p in old_parents):
            return
        self._write_status(GATEWAY_GROUP, "v1", "httproutes", route, {"parents": foreign + entries})

    def _write_pool_status(self, pool, accepted_routes, group=POOL_GROUP):
        """Parents of a pool; v1alpha2 keeps them in ``status.parent`` (gateway-api-inference-extension
        v1.4.0 config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml), v1 in ``status.parents``."""
        meta = pool["metadata"]
        gen = meta["generation"]
        gateways = {}
        parents_key, version = ("parents", "v1") if group == POOL_GROUP else ("parent", "v1alpha2")
        for route, accepted in accepted_routes:
            if (route["metadata"]["namespace"] != meta["namespace"]
                    or not _references_pool(route, meta["name"], group)):
                continue
            for gateway, _listeners in accepted:
                if gateway["spec"].get("gatewayClassName") in REGIONAL_CLASSES:
                    gateways[(gateway["metadata"]["namespace"], gateway["metadata"]["name"])] = gateway
        old_parents = (pool.get("status") or {}).get(parents_key) or []
        our_keys = {(g["metadata"]["namespace"], g["metadata"]["name"])
                    for g in self.informers["gateways"].items() if self.ours(g)}
        foreign = [p for p in old_parents if ((p.get("parentRef") or {}).get("namespace"),
                                               (p.get("parentRef") or {}).get("name")) not in our_keys]
        entries = []
        for (ns, name) in sorted(gateways):
            ref = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": name, "namespace": ns}
            old = next((p for p in old_parents if p.get("parentRef") == ref), {})
            conds = [condition("Accepted", "True", "SupportedByParent", "", gen),
                     condition("ResolvedRefs", "True", "ResolvedRefs", "", gen)]
            entries.append({"parentRef": ref, "conditions": keep_transition_times(conds, old.get("conditions"))})
        if not entries and len(foreign) == len(old_parents):
            return
        self._write_status(group, version, "inferencepools", pool, {parents_key: foreign + entries})

    def _write_policy_status(self, policy, plural, kind, targets):
        """GKE reports whether a policy took effect: its target must be a backend behind a GKE Gateway."""
        meta = policy["metadata"]
        ref = (policy.get("spec") or {}).get("targetRef") or {}
        key = (meta["namespace"], ref.get("group") or "", ref.get("kind"), ref.get("name"))
        if key in targets:
            cond = condition("Attached", "True", "Attached",
                             f'Application of {kind} "{meta["namespace"]}/{meta["name"]}" was a success',
                             meta["generation"])
        else:
            cond = condition("Attached", "False", "GatewayNotFound",
                             f'{kind} "{meta["namespace"]}/{meta["name"]}" targets {ref.get("kind")} '
                             f'"{ref.get("name")}", which is not a backend of any route attached to a GKE Gateway',
                             meta["generation"])
        conds = keep_transition_times([cond], (policy.get("status") or {}).get("conditions"))
        self._write_status(GKE_GROUP, "v1", plural, policy, {"conditions": conds})

    # ---------------------------------------------------------------- routing table

    def _build_snapshot(self, accepted_routes):
        matches = {}
        for route, accepted in accepted_routes:
            meta = route["metadata"]
            ports = {listener["port"] for _gw, listeners in accepted for listener in listeners}
            for index, rule in enumerate(route["spec"].get("rules") or []):
                backends = [self._backend(meta["namespace"], ref) for ref in rule.get("backendRefs") or []]
                rewrite = None
                for flt in rule.get("filters") or []:
                    path = ((flt.get("urlRewrite") or {}).get("path") or {})
                    if flt.get("type") == "URLRewrite" and path.get("type") == "ReplacePrefixMatch":
                        rewrite = path.get("replacePrefixMatch", "/")
                for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
                    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
                    headers = [{"name": h["name"].lower(), "value": h["value"]} for h in match.get("headers") or []
                               if h.get("type", "Exact") == "Exact"]
                    entry = Match(route=f"{meta['namespace']}/{meta['name']}", rule=rule.get("name") or str(index),
                                  path_type=path.get("type", "PathPrefix"), path=path.get("value", "/"),
                                  headers=headers, rewrite=rewrite if path.get("type") != "Exact" else None,
                                  backends=backends)
                    for port in ports:
                        matches.setdefault(port, []).append(entry)
        for port in matches:
            matches[port].sort(key=lambda m: m.precedence(), reverse=True)
        return Snapshot(self.bound_ports, matches)

    def _backend(self, namespace, ref):
        group, kind = ref.get("group") or "", ref.get("kind") or "Service"
        ns, name = ref.get("namespace") or namespace, ref["name"]
        weight = ref.get("weight", 1)
        if group == "" and kind == "Service":
            service = self.informers["services"].get(ns, name)
            if service is None:
                return Backend("Unresolved", f"{ns}/{name}", weight, [], {}, DEFAULT_TIMEOUT_SEC)
            port = _service_target_port(service, ref.get("port"))
            pods = self.ready_pods(ns, (service["spec"].get("selector") or {}))
            endpoints = [Endpoint(p["metadata"]["name"], p["status"]["podIP"], _resolve_port(p, port)) for p in pods]
            serving_port = endpoints[0].port if endpoints else (port if isinstance(port, int) else 0)
            return Backend("Service", f"{ns}/{name}", weight, endpoints,
                           self._health(ns, "", "Service", name, serving_port),
                           self._timeout(ns, "", "Service", name))
        if group in self.pool_groups() and kind == "InferencePool":
            pool = self.pool(group, ns, name)
            if pool is None:
                return Backend("Unresolved", f"{ns}/{name}", weight, [], {}, DEFAULT_TIMEOUT_SEC)
            port, selector, picker = _pool_spec(group, pool.get("spec") or {})
            pods = self.ready_pods(ns, selector)
            # Policies attach to the exact group/kind/name of the backendRef: a policy on the v1 pool does
            # not configure the backend built for the v1alpha2 pool of the same name, and vice versa.
            return Backend("InferencePool", f"{group}/{ns}/{name}", weight,
                           [Endpoint(p["metadata"]["name"], p["status"]["podIP"], port) for p in pods],
                           self._health(ns, group, "InferencePool", name, port),
                           self._timeout(ns, group, "InferencePool", name),
                           epp_available=self._epp_available(ns, picker.get("name")),
                           fail_open=picker.get("failureMode", "FailClose") == "FailOpen",
                           epp_weights=self._epp_weights(ns, picker.get("name")))
        return Backend("Unresolved", f"{ns}/{name}", weight, [], {}, DEFAULT_TIMEOUT_SEC)

    def _epp_available(self, namespace, service_name):
        service = self.informers["services"].get(namespace, service_name) if service_name else None
        return bool(service and self.ready_pods(namespace, service["spec"].get("selector") or {}))

    def _epp_weights(self, namespace, service_name):
        """Scorer weights the pool's endpoint picker runs with: its pods' ``--config-text`` (what KServe writes into
        the scheduler Deployment), KServe's default profile when the pods carry none."""
        service = self.informers["services"].get(namespace, service_name) if service_name else None
        pods = self.ready_pods(namespace, service["spec"].get("selector") or {}) if service else []
        for pod in pods:
            for container in pod["spec"].get("containers") or []:
                args = list(container.get("args") or [])
                for index in range(len(args) - 1):
                    if args[index] in ("--config-text", "-config-text", "--configText", "-configText"):
                        try:
                            weights, ignored = weights_from_config(args[index + 1])
                        except (ValueError, yaml.YAMLError) as exc:
                            LOG.warning("EPP pod %s/%s: --config-text not usable (%s); KServe's default profile "
                                        "is simulated", namespace, pod["metadata"]["name"], exc)
                            return dict(KSERVE_DEFAULT_WEIGHTS)
                        if ignored:
                            LOG.info("EPP pod %s/%s: scorers %s are not simulated", namespace,
                                     pod["metadata"]["name"], ", ".join(ignored))
                        return weights
        return dict(KSERVE_DEFAULT_WEIGHTS)

    def _health(self, namespace, group, kind, name, serving_port):
        policy = self.policy_for("healthchecks", namespace, group, kind, name)
        default = ((policy or {}).get("spec") or {}).get("default") or {}
        cfg = default.get("config") or {}
        http = cfg.get("httpHealthCheck") or cfg.get("http2HealthCheck") or {}
        health = {k: default.get(k, v) for k, v in HEALTH_DEFAULTS.items()}
        health["port"] = http.get("port") or serving_port
        health["path"] = http.get("requestPath") or "/"
        return health

    def _timeout(self, namespace, group, kind, name):
        policy = self.policy_for("backendpolicies", namespace, group, kind, name)
        return float((((policy or {}).get("spec") or {}).get("default") or {}).get("timeoutSec") or DEFAULT_TIMEOUT_SEC)


def _backend_targets(accepted_routes):
    """(namespace, group, kind, name) of every backend of an accepted route (what GKE builds backends for)."""
    targets = set()
    for route, _accepted in accepted_routes:
        namespace = route["metadata"]["namespace"]
        for rule in route["spec"].get("rules") or []:
            for backend in rule.get("backendRefs") or []:
                targets.add((backend.get("namespace") or namespace, backend.get("group") or "",
                             backend.get("kind") or "Service", backend["name"]))
    return targets


def _references_pool(route, pool_name, group=POOL_GROUP):
    return any(b.get("group") == group and b.get("kind") == "InferencePool" and b.get("name") == pool_name
               for rule in route["spec"].get("rules") or [] for b in rule.get("backendRefs") or [])


def _pool_spec(group, spec):
    """(target port, pod selector, endpoint picker {name, failureMode}) of an InferencePool of either group.

    v1: targetPorts[].number, selector.matchLabels, endpointPickerRef (gateway-api-inference-extension v1.5.0
    config/crd/bases/inference.networking.k8s.io_inferencepools.yaml); v1alpha2: targetPortNumber, a flat
    selector map and extensionRef (v1.4.0 .../inference.networking.x-k8s.io_inferencepools.yaml). Both default
    the failure mode to FailClose.
    """
    if group == POOL_GROUP:
        port = ((spec.get("targetPorts") or [{}])[0]).get("number", 8000)
        return port, (spec.get("selector") or {}).get("matchLabels") or {}, spec.get("endpointPickerRef") or {}
    return spec.get("targetPortNumber", 8000), dict(spec.get("selector") or {}), spec.get("extensionRef") or {}


def _service_target_port(service, port_number):
    ports = service["spec"].get("ports") or []
    entry = next((p for p in ports if p.get("port") == port_number), ports[0] if ports else {})
    return entry.get("targetPort", entry.get("port", port_number))


def _resolve_port(pod, port):
    if isinstance(port, int):
        return port
    for container in pod["spec"].get("containers") or []:
        for entry in container.get("ports") or []:
            if entry.get("name") == port:
                return entry["containerPort"]
    return 8000


# ============================================================== data plane

class ConnectFailed(Exception):
    """No connection to the backend endpoint could be made (nothing was sent)."""


class HealthChecker:
    """GKE-style load-balancer health checks of every backend endpoint, independent of pod probes."""

    def __init__(self, time_scale):
        self.time_scale = time_scale
        self.state = {}  # (ip, port, path) -> {"healthy", "ok", "fail", "next", "busy"}
        self.tasks = set()

    def healthy(self, endpoint, health):
        entry = self.state.get((endpoint.ip, health.get("port"), health.get("path")))
        return bool(entry and entry["healthy"])

    def mark_failed(self, endpoint, health):
        """A refused connection counts as a failed probe."""
        entry = self.state.get((endpoint.ip, health.get("port"), health.get("path")))
        if entry:
            entry["ok"], entry["fail"] = 0, entry["fail"] + 1
            if entry["fail"] >= int(health.get("unhealthyThreshold", 2)):
                entry["healthy"] = False

    async def run(self, get_snapshot, session):
        while True:
            targets = get_snapshot().health_targets()
            for key in list(self.state):
                if key not in targets:
                    del self.state[key]
            now = time.monotonic()
            for key, cfg in targets.items():
                entry = self.state.setdefault(key, {"healthy": False, "ok": 0, "fail": 0, "next": 0, "busy": False})
                if entry["next"] <= now and not entry["busy"]:
                    entry["busy"] = True  # a slow backend must not hold up the other probes
                    task = asyncio.ensure_future(self._probe(session, key, cfg, entry))
                    self.tasks.add(task)  # asyncio keeps only weak references to running tasks
                    task.add_done_callback(self.tasks.discard)
            await asyncio.sleep(0.2)

    async def _probe(self, session, key, cfg, entry):
        ip, port, path = key
        entry["next"] = time.monotonic() + max(0.5, float(cfg["checkIntervalSec"]) * self.time_scale)
        timeout = aiohttp.ClientTimeout(total=max(0.5, min(float(cfg["timeoutSec"]), 5.0)))
        try:
            async with session.get(f"http://{ip}:{port}{path}", timeout=timeout) as resp:
                await resp.read()
                ok = resp.status == 200
        except Exception:
            ok = False
        entry["busy"] = False
        if ok:
            entry["ok"], entry["fail"] = entry["ok"] + 1, 0
            if entry["ok"] >= int(cfg["healthyThreshold"]):
                entry["healthy"] = True
        else:
            entry["ok"], entry["fail"] = 0, entry["fail"] + 1
            if entry["fail"] >= int(cfg["unhealthyThreshold"]):
                entry["healthy"] = False


class MetricsScraper:
    """The EPP's metrics refresh: scrapes every pool endpoint's ``/metrics`` for the scorers' inputs.

    gateway-api-inference-extension refreshes every 50 ms by default (``--refresh-metrics-interval``,
    DefaultRefreshMetricsInterval in pkg/epp/server/runserver.go). The interval is NOT scaled by
    LOCALCLUSTER_TIME_SCALE: what it must keep in ratio with is request latency (how stale the queue and KV-cache
    figures are while requests run), and the simulated vLLM's request latencies are real time. Scaled, it was a
    scrape every 20 ms of every endpoint, which cost the simulators a core's worth of CPU. A failed scrape keeps
    the last values (the EPP keeps stale metrics too).

    The scores only matter when a request is picked, so the refresh pauses after ``idle_after`` seconds without
    an InferencePool request and the next such request waits (at most ``resume_wait`` s) for one fresh round
    before it is picked: every pick sees figures at most one interval old, as with the real EPP, while an idle
    cluster is not scraped 20 times a second per endpoint (that was most of the node agent's CPU).
    """

    def __init__(self, interval=0.05, idle_after=5.0, resume_wait=0.5):
        self.interval = interval
        self.idle_after = idle_after
        self.resume_wait = resume_wait
        self.values = {}  # "ip:port" -> {metric: value}
        self.rounds = 0  # completed scrape rounds (tests, diagnostics)
        self.last_used = time.monotonic()
        self.paused = False
        self._wake = asyncio.Event()
        self._round_done = asyncio.Event()

    def used(self):
        """An InferencePool request arrived: keep refreshing (or resume)."""
        self.last_used = time.monotonic()
        self._wake.set()

    async def fresh(self):
        """Mark use; when the refresh was paused, wait for one fresh round (bounded) before the caller picks."""
        self.used()
        if not self.paused:
            return
        done = self._round_done
        with contextlib.suppress(TimeoutError):  # then pick with the last values, like an EPP whose scrape is late
            await asyncio.wait_for(done.wait(), timeout=self.resume_wait)

    async def run(self, get_snapshot, session):
        timeout = aiohttp.ClientTimeout(total=2)
        while True:
            if time.monotonic() - self.last_used > self.idle_after:
                self.paused = True
                self._wake.clear()
                await self._wake.wait()
            targets = get_snapshot().metrics_targets()
            for key in [k for k in self.values if tuple(k.rsplit(":", 1)) not in
                        {(ip, str(port)) for ip, port in targets}]:
                del self.values[key]
            results = await asyncio.gather(*(self._scrape(session, ip, port, timeout) for ip, port in targets))
            for (ip, port), values in zip(targets, results, strict=True):
                if values is not None:
                    self.values[f"{ip}:{port}"] = values
            self.rounds += 1
            self.paused = False
            done, self._round_done = self._round_done, asyncio.Event()
            done.set()
            await asyncio.sleep(self.interval)

    @staticmethod
    async def _scrape(session, ip, port, timeout):
        try:
            async with session.get(f"http://{ip}:{port}/metrics", timeout=timeout) as resp:
                if resp.status != 200:
                    return None
                return parse_metrics(await resp.text())
        except Exception:
            return None


class DataPlane:
    def __init__(self, address, time_scale):
        self.address = address
        self.snapshot = Snapshot()
        self.health = HealthChecker(time_scale)
        self.metrics = MetricsScraper()
        self.inflight = {}
        self.pickers = {}
        self.round_robin = {}
        self.sites = {}
        self.loop = None
        self.session = None
        self.runner = None

    async def start(self):
        self.loop = asyncio.get_running_loop()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                             auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        self.loop.create_task(self.health.run(lambda: self.snapshot, self.session))
        self.loop.create_task(self.metrics.run(lambda: self.snapshot, self.session))

    def bind_ports_threadsafe(self, ports):
        future = asyncio.run_coroutine_threadsafe(self._bind(ports), self.loop)
        return future.result(timeout=30)

    async def _bind(self, ports):
        for port in ports - set(self.sites):
            site = web.TCPSite(self.runner, self.address, port, reuse_address=True)
            try:
                await site.start()
                self.sites[port] = site
                LOG.info("serving listener %s:%s", self.address, port)
            except OSError as exc:
                LOG.error("cannot listen on %s:%s: %s", self.address, port, exc)
        for port in set(self.sites) - ports:
            await self.sites.pop(port).stop()
        return set(self.sites)

    def set_snapshot(self, snapshot):
        self.snapshot = snapshot

    # ---------------------------------------------------------------- request path

    async def handle(self, request):
        started = time.monotonic()
        if request.version < aiohttp.HttpVersion11:
            return self._log(request, None, None, web.Response(status=426, text="Upgrade Required"), started)
        port = request.transport.get_extra_info("sockname")[1] if request.transport else 80
        headers = {k.lower(): v for k, v in request.headers.items()}
        match = self.snapshot.find(port, request.path, headers)
        if match is None:
            return self._log(request, None, None, web.Response(status=404, text="default backend - 404"), started)
        backend = self._choose_backend(match)
        if backend is None or backend.kind == "Unresolved":
            return self._log(request, match, None, web.Response(status=500, text="Internal Server Error"), started)
        if backend.kind == "InferencePool" and backend.epp_available:
            await self.metrics.fresh()
        body = await request.read()
        path = request.path
        if match.rewrite is not None:
            path = rewrite_prefix(request.path, match.path, match.rewrite)
        tried = set()
        for _attempt in range(2):  # like Google's load balancers: one retry elsewhere on a connect failure
            endpoint, picker = self._pick_endpoint(backend, request.path, body, exclude=tried)
            if endpoint is None:
                return self._log(request, match, None, web.Response(status=503, text="no healthy upstream"), started)
            url = f"http://{endpoint.ip}:{endpoint.port}{path}"
            if request.query_string:
                url += f"?{request.query_string}"
            key = (endpoint.ip, endpoint.port)
            self.inflight[key] = self.inflight.get(key, 0) + 1
            try:
                response = await self._proxy(request, url, body, backend.timeout)
            except ConnectFailed as exc:
                LOG.info("cannot connect to %s (%s)", url, exc)
                self.health.mark_failed(endpoint, backend.health)
                tried.add(endpoint)
                continue
            finally:
                self.inflight[key] -= 1
            return self._log(request, match, endpoint, response, started, picker)
        response = web.Response(status=503, text="upstream connect error or disconnect/reset before headers")
        return self._log(request, match, endpoint, response, started, picker)

    def _choose_backend(self, match):
        candidates = [b for b in match.backends if b.weight > 0]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return random.choices(candidates, weights=[b.weight for b in candidates])[0]

    def _pick_endpoint(self, backend, path, body, exclude=()):
        """(endpoint or None, how it was picked) among the backend's healthy endpoints."""
        healthy = [e for e in backend.endpoints if self.health.healthy(e, backend.health) and e not in exclude]
        if not healthy:
            return None, "-"
        if backend.kind == "InferencePool":
            if backend.epp_available:
                try:
                    payload = json.loads(body) if body else {}
                except ValueError:
                    payload = {}
                weights = KSERVE_DEFAULT_WEIGHTS if backend.epp_weights is None else backend.epp_weights
                picker = self.pickers.setdefault((backend.key, tuple(sorted(weights.items()))),
                                                 PrefixAwarePicker(weights=weights))
                picker.index.forget_missing({f"{e.ip}:{e.port}" for e in backend.endpoints})
                by_name = {f"{e.ip}:{e.port}": e for e in healthy}
                metrics = {name: self.metrics.values.get(name, {}) for name in by_name}
                chosen, matched, total = picker.pick(list(by_name), prompt_text(path, payload), metrics)
                return by_name[chosen], f"epp(prefix {matched}/{total} blocks)"
            if not backend.fail_open:
                return None, "epp-unavailable"
            rotation = self.round_robin.setdefault(backend.key, RoundRobin())
            return rotation.pick(healthy), "failopen-round-robin"
        rotation = self.round_robin.setdefault(backend.key, RoundRobin())
        return rotation.pick(healthy), "round-robin"

    async def _proxy(self, request, url, body, timeout):
        """Forward and stream the answer back; the backend timeout covers the whole response (GKE semantics)."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = request.remote or ""
        state = {"response": None}
        try:
            async with asyncio.timeout(timeout):
                for attempt in (1, 2):
                    try:
                        return await self._exchange(request, url, body, headers, state)
                    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                        # a pooled keep-alive connection the backend had closed: retry once on a new one
                        started = state["response"] is not None
                        if isinstance(exc, aiohttp.ClientConnectorError) or attempt == 2 or started:
                            raise
        except TimeoutError:
            if state["response"] is None:
                return web.Response(status=504, text="upstream request timeout")
            LOG.info("backend timeout after %ss mid-stream for %s", timeout, url)
            if request.transport:
                request.transport.close()
            return state["response"]
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(str(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            if state["response"] is None:
                LOG.info("upstream connect error for %s: %s", url, exc)
                return web.Response(status=503, text="upstream connect error or disconnect/reset before headers")
            if request.transport:
                request.transport.close()
            return state["response"]

    async def _exchange(self, request, url, body, headers, state):
        async with self.session.request(request.method, url, data=body or None, headers=headers,
                                        allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            if upstream.headers.get("Content-Length") is not None:
                response.content_length = int(upstream.headers["Content-Length"])
            state["response"] = response
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    def _log(self, request, match, endpoint, response, started, picker="-"):
        elapsed = (time.monotonic() - started) * 1000
        ACCESS_LOG.info("%s %s route=%s rule=%s backend=%s picker=%s status=%s ms=%.1f", request.method,
                        request.path_qs, match.route if match else "-", match.rule if match else "-",
                        f"{endpoint.pod}@{endpoint.ip}:{endpoint.port}" if endpoint else "-", picker,
                        response.status, elapsed)
        return response


async def serve(address, time_scale, state_dir):
    plane = DataPlane(address, time_scale)
    await plane.start()
    controller = GatewayController(Kube(), address, plane.set_snapshot, v1alpha2_pool_mode())
    controller.bind_ports = plane.bind_ports_threadsafe
    await asyncio.get_running_loop().run_in_executor(None, controller.start)
    if state_dir:
        os.makedirs(os.path.join(state_dir, "ready"), exist_ok=True)
        with open(os.path.join(state_dir, "ready", "gateway"), "w") as handle:
            handle.write(str(os.getpid()))
    LOG.info("gateway controller %s serving on %s", CONTROLLER_NAME, address)
    await asyncio.Event().wait()


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    address = os.environ.get("GATEWAY_ADDRESS", "127.0.0.1")
    time_scale = float(os.environ.get("LOCALCLUSTER_TIME_SCALE", "0.02"))
    asyncio.run(serve(address, time_scale, os.environ.get("LOCALCLUSTER_STATE_DIR")))


if __name__ == "__main__":
    main()
