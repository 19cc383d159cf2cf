# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""LLMInferenceService status reading: API constants, the snapshot the wait collects, findings and their
severity, conditions, readiness of the llmisvc and its workloads, events and times.

Nothing here talks to the API server; everything works on plain dicts as the API returns them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import calendar
import re
import time

GROUP = "serving.kserve.io"
KIND = "LLMInferenceService"
PLURAL = "llminferenceservices"
# Newest first: v1alpha2 is the storage version and has the richer status.
SUPPORTED_VERSIONS = ("v1alpha2", "v1alpha1")

LABEL_PART_OF = "app.kubernetes.io/part-of"
PART_OF_VALUE = "llminferenceservice"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
STOP_ANNOTATION = "serving.kserve.io/stop"
POOL_MIGRATED_ANNOTATION = "serving.kserve.io/inference-pool-migrated"

CONTROLLER_NAMESPACE = "kserve"
CONTROLLER_DEPLOYMENT = "llmisvc-controller-manager"
CONTROLLER = CONTROLLER_NAMESPACE + "/" + CONTROLLER_DEPLOYMENT

# KServe's order (DetermineWorkloadReadiness, then DetermineRouterReadiness).
WORKLOAD_CONDITIONS = (
    "MainWorkloadReady",
    "WorkerWorkloadReady",
    "PrefillWorkloadReady",
    "PrefillWorkerWorkloadReady",
    "ScalingReady",
    "PrefillScalingReady",
)
ROUTER_CONDITIONS = (
    "GatewaysReady",
    "HTTPRoutesReady",
    "InferencePoolReady",
    "SchedulerWorkloadReady",
    "TokenizerReady",
)
CONDITION_ORDER = (
    ("PresetsCombined",)
    + WORKLOAD_CONDITIONS
    + ("WorkloadsReady",)
    + ROUTER_CONDITIONS
    + (
        "RouterReady",
        "Ready",
    )
)

# How a finding affects the wait.
PERMANENT = "permanent"  # will not heal by waiting: fail at once when fail_fast
GRACE = "grace"  # permanent once it has lasted `grace` seconds (e.g. a Secret created a moment later)
STUCK = "stuck"  # may heal, but nothing is moving: progress_deadline applies
TRANSIENT = "transient"  # known to take time (node scale-up, model download): wait until timeout

SECRET_GRACE = 30
CONFIG_GRACE = 60
IMAGE_PULL_GRACE = 120
OOM_RESTARTS = 2


class Finding:
    """One reason the llmisvc is not ready, with what to do about it."""

    def __init__(self, key, component, reason, message, hint="", kind=STUCK, grace=0):
        self.key = key
        self.component = component
        self.reason = reason
        self.message = one_line(message)
        self.hint = hint
        self.kind = kind
        self.grace = grace

    def is_permanent(self, age):
        return self.kind == PERMANENT or (self.kind == GRACE and age >= self.grace)

    def as_dict(self):
        return {"component": self.component, "reason": self.reason, "message": self.message, "hint": self.hint}

    def __repr__(self):
        return f"Finding({self.kind}, {self.component}, {self.reason})"


class Snapshot:
    """What the waiter knows: the llmisvc and its children as API dicts."""

    def __init__(
        self,
        name,
        namespace,
        llmisvc=None,
        deployments=None,
        pods=None,
        events=None,
        routes=None,
        pools=None,
        gateways=None,
        logs=None,
        errors=None,
    ):
        self.name = name
        self.namespace = namespace
        self.llmisvc = llmisvc
        self.deployments = deployments or []
        self.pods = pods or []
        self.events = events or []
        self.routes = routes or []
        self.pools = pools or []
        self.gateways = gateways or []
        # {(pod, container): {"text": str or None, "error": str or None}}
        self.logs = logs or {}
        # errors reading children, e.g. {"pods": "403 Forbidden"}
        self.errors = errors or {}


class Assessment:
    def __init__(self, ready, stopped, findings):
        self.ready = ready
        self.stopped = stopped
        self.findings = findings

    def permanent(self, ages):
        return [f for f in self.findings if f.is_permanent(ages.get(f.key, 0))]

    def has_transient(self):
        return any(f.kind == TRANSIENT for f in self.findings)

    def primary(self, ages):
        """The finding to report: the first permanent one, else the first in KServe's order."""
        permanent = self.permanent(ages)
        if permanent:
            return permanent[0]
        return self.findings[0] if self.findings else None


def one_line(text):
    return " ".join(str(text or "").split())


def meta(obj, key, default=None):
    return ((obj or {}).get("metadata") or {}).get(key, default)


def conditions_of(obj):
    return ((obj or {}).get("status") or {}).get("conditions") or []


def find_condition(obj, ctype):
    for cond in conditions_of(obj):
        if cond.get("type") == ctype:
            return cond
    return None


def condition_status(obj, ctype):
    cond = find_condition(obj, ctype)
    return cond.get("status") if cond else None


def parse_api_version(api_version):
    """'serving.kserve.io/v1alpha2' or 'v1alpha2' -> 'v1alpha2'; anything else raises ValueError."""
    version = api_version.split("/", 1)[1] if "/" in api_version else api_version
    group = api_version.split("/", 1)[0] if "/" in api_version else GROUP
    if group != GROUP or version not in SUPPORTED_VERSIONS:
        raise ValueError(
            "api_version must be one of {}, got {!r}".format(
                ", ".join(f"{GROUP}/{v}" for v in SUPPORTED_VERSIONS), api_version
            )
        )
    return version


def pick_served_version(group_discovery):
    """From GET /apis/serving.kserve.io, the newest supported version, or None."""
    served = [v.get("version") for v in (group_discovery or {}).get("versions") or []]
    for version in SUPPORTED_VERSIONS:
        if version in served:
            return version
    return None


def child_selector(name):
    return f"{LABEL_PART_OF}={PART_OF_VALUE},{LABEL_NAME}={name}"


def condition_table(llmisvc):
    """Conditions in KServe's order, unknown types last."""
    rank = {ctype: i for i, ctype in enumerate(CONDITION_ORDER)}
    rows = [
        {
            "type": c.get("type"),
            "status": c.get("status"),
            "reason": c.get("reason", ""),
            "message": c.get("message", ""),
            "last_transition_time": c.get("lastTransitionTime", ""),
        }
        for c in conditions_of(llmisvc)
    ]
    return sorted(rows, key=lambda r: (rank.get(r["type"], len(rank)), r["type"] or ""))


def condition_transitions(previous, current):
    """Rows for conditions whose (status, reason) changed between two llmisvc dicts."""
    before = {c.get("type"): (c.get("status"), c.get("reason", "")) for c in conditions_of(previous)}
    changes = []
    for row in condition_table(current):
        if before.get(row["type"]) != (row["status"], row["reason"]):
            changes.append(row)
    return changes


def generation_observed(llmisvc):
    observed = ((llmisvc or {}).get("status") or {}).get("observedGeneration")
    generation = meta(llmisvc, "generation")
    return observed is not None and (generation is None or observed >= generation)


def is_stopped(llmisvc):
    return str((meta(llmisvc, "annotations") or {}).get(STOP_ANNOTATION, "")).lower() == "true"


def workload_summary(deployment):
    spec_replicas = (deployment.get("spec") or {}).get("replicas", 1)
    status = deployment.get("status") or {}
    row = {
        "kind": "Deployment",
        "name": meta(deployment, "name"),
        "component": (meta(deployment, "labels") or {}).get(LABEL_COMPONENT, ""),
        "replicas": spec_replicas,
        "current_replicas": status.get("replicas", 0),
        "updated_replicas": status.get("updatedReplicas", 0),
        "ready_replicas": status.get("readyReplicas", 0),
        "available_replicas": status.get("availableReplicas", 0),
        "generation": meta(deployment, "generation"),
        "observed_generation": status.get("observedGeneration"),
    }
    row["rolled_out"] = rollout_complete(deployment)
    return row


def rollout_complete(deployment):
    """Deployment fully rolled out at spec.replicas (not just minimum availability).

    A Deployment scaled to 0 is complete with no ready replica (Available=True there means nothing serves).
    """
    spec_replicas = (deployment.get("spec") or {}).get("replicas", 1)
    status = deployment.get("status") or {}
    observed = status.get("observedGeneration")
    generation = meta(deployment, "generation")
    if observed is None or (generation is not None and observed < generation):
        return False
    counts = (status.get("updatedReplicas", 0), status.get("availableReplicas", 0), status.get("replicas", 0))
    if any(c != spec_replicas for c in counts):
        return False
    return spec_replicas == 0 or status.get("readyReplicas", 0) > 0


def uses_leaderworkerset(llmisvc):
    workloads = ((llmisvc or {}).get("status") or {}).get("workloads") or {}
    if any((w or {}).get("kind") == "LeaderWorkerSet" for w in workloads.values() if isinstance(w, dict)):
        return True
    return bool(((llmisvc or {}).get("spec") or {}).get("worker"))


def event_time(event):
    return (
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta(event, "creationTimestamp")
        or ""
    )


def events_for(events, kind, name):
    matched = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("name") == name
        and (not kind or (e.get("involvedObject") or {}).get("kind") == kind)
    ]
    return sorted(matched, key=event_time)


def event_count(event):
    return max(event.get("count") or 1, ((event.get("series") or {}).get("count") or 0))


def pod_component(pod):
    component = (meta(pod, "labels") or {}).get(LABEL_COMPONENT, "")
    return 1 if "scheduler" in component or "tokenizer" in component else 0


def live_pods(pods):
    return sorted(
        (p for p in pods if not meta(p, "deletionTimestamp")), key=lambda p: (pod_component(p), meta(p, "name") or "")
    )


def container_state(cstatus):
    state = cstatus.get("state") or {}
    for key in ("waiting", "terminated", "running"):
        if key in state and state[key] is not None:
            return key, state[key]
    return None, {}


def parse_time(value):
    """Seconds since the epoch of an API timestamp (RFC 3339 text, a datetime or a number); None if unknown."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "utctimetuple"):
        return float(calendar.timegm(value.utctimetuple()))
    match = re.match(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})", str(value))
    if not match:
        return None
    parsed = time.strptime(f"{match.group(1)}T{match.group(2)}", "%Y-%m-%dT%H:%M:%S")
    return float(calendar.timegm(parsed))


def deployment_pods(deployment, pods):
    """The live pods of a Deployment: by its selector's matchLabels, else by name (<deployment>-<hash>-<id>)."""
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    name = meta(deployment, "name") or ""
    found = []
    for pod in live_pods(pods):
        labels = meta(pod, "labels") or {}
        pod_name = meta(pod, "name") or ""
        if selector and labels:
            if all(labels.get(k) == v for k, v in selector.items()):
                found.append(pod)
        elif pod_name.startswith(name + "-") and len(pod_name[len(name) + 1 :].split("-")) == 2:
            found.append(pod)
    return found


def container_spec(pod, name):
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            return container
    return {}
