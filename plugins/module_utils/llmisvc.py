# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""LLMInferenceService readiness and diagnosis: constants and pure functions on dicts.

Nothing here talks to the API server. `assess()` takes a snapshot of the llmisvc and
its children (plain dicts as the API returns them) and says whether it is ready, and if
not, why; `llmisvc_watch.py` feeds it from watches.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 - Ansible module boilerplate

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

# vLLM flags users pass that vLLM does not have, with the flag they probably meant.
VLLM_FLAG_SUGGESTIONS = {
    "--prefix-cache-block-size": "--block-size",
    "--enable-prefix-cache": "--enable-prefix-caching",
    "--max-model-length": "--max-model-len",
    "--gpu-memory-util": "--gpu-memory-utilization",
    "--tensor-parallel": "--tensor-parallel-size",
}

# Log lines of storage-initializer that mean the download will never succeed.
DOWNLOAD_PERMANENT_PATTERNS = (
    r"\b401\b",
    r"\b403\b",
    r"\b404\b",
    r"Repository ?Not ?Found",
    r"GatedRepo",
    r"gated repo",
    r"Unauthorized",
    r"Invalid (user|access) token",
)

# KServe prefers a namespace-local LLMInferenceServiceConfig of the same name (getConfig in kserve/kserve v0.20.0
# pkg/controller/v1alpha2/llmisvc/config_merge.go) and watches LLMInferenceServiceConfig (SetupWithManager and
# enqueueOnLLMInferenceServiceConfigChange in controller.go): applying the preset re-renders the route by itself.
ROUTE_TIMEOUTS_HINT = (
    "apply a namespace-local kserve-config-llm-router-route preset without timeouts "
    "(role llm_serving.gke.llmisvc does this); KServe watches its presets and re-renders the route by itself, "
    "no need to recreate the llmisvc"
)
# The Gateway is a prerequisite of the cluster: no role of this collection creates it (role llm_serving.gke.llmisvc
# only checks it in pre-flight). KServe watches Gateways (controller.go SetupWithManager) and carries on once it
# exists.
GATEWAY_NOT_FOUND_HINT = (
    "create Gateway {name} (a cluster prerequisite: no role of this collection creates it; see "
    "https://cloud.google.com/kubernetes-engine/docs/how-to/deploying-gateways) or point "
    "spec.router.gateway.refs (the pattern's gateway) at an existing Gateway; KServe carries on by itself "
    "once the Gateway exists"
)


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


# ---------------------------------------------------------------- small helpers


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


# ---------------------------------------------------------------- readiness


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


def readiness_gaps(snapshot, require_rollout=True, require_url=True):
    """Findings that keep a llmisvc from counting as ready; empty list = ready."""
    llmisvc = snapshot.llmisvc
    name = snapshot.name
    gaps = []
    if not generation_observed(llmisvc):
        gaps.append(generation_finding(llmisvc, name))
        return gaps
    presets = find_condition(llmisvc, "PresetsCombined")
    if presets and presets.get("status") == "False":
        gaps.append(presets_finding(presets, name))
    ready = find_condition(llmisvc, "Ready")
    if not ready or ready.get("status") != "True":
        gaps.append(condition_finding(llmisvc, name))
    tokenizer = find_condition(llmisvc, "TokenizerReady")
    if tokenizer and tokenizer.get("status") == "False":
        gaps.append(condition_finding(llmisvc, name, only="TokenizerReady"))
    if require_rollout and ready and ready.get("status") == "True":
        # Only once KServe says Ready: before that, the conditions and pods explain the wait better.
        gaps.extend(rollout_findings(snapshot))
    if require_url and not ((llmisvc.get("status") or {}).get("url")):
        gaps.append(
            Finding(
                "url",
                f"llmisvc {name}",
                "URLPending",
                "status.url is empty",
                "the gateway has not published an address yet (GKE load balancers take a few minutes); "
                "check the Gateway's status.addresses",
                STUCK,
            )
        )
    return gaps


def rollout_findings(snapshot):
    if uses_leaderworkerset(snapshot.llmisvc):
        return []
    if not snapshot.deployments:
        return [
            Finding(
                "rollout",
                f"llmisvc {snapshot.name}",
                "RolloutIncomplete",
                f"no Deployment labelled {child_selector(snapshot.name)} found yet",
                "the controller has not created the workload yet",
                TRANSIENT,
            )
        ]
    findings = []
    for dep in snapshot.deployments:
        if rollout_complete(dep):
            continue
        row = workload_summary(dep)
        findings.append(
            Finding(
                "rollout/{}".format(row["name"]),
                "deployment {}".format(row["name"]),
                "RolloutIncomplete",
                "{}/{} replicas updated, {} available, {} ready (observedGeneration {} of {})".format(
                    row["updated_replicas"],
                    row["replicas"],
                    row["available_replicas"],
                    row["ready_replicas"],
                    row["observed_generation"],
                    row["generation"],
                ),
                "wait for the rollout; old replicas are still being replaced",
                TRANSIENT,
            )
        )
    return findings


# ---------------------------------------------------------------- llmisvc-level findings


def generation_finding(llmisvc, name):
    observed = ((llmisvc or {}).get("status") or {}).get("observedGeneration")
    return Finding(
        "generation",
        f"llmisvc {name}",
        "GenerationNotObserved",
        "the controller has not reconciled generation {} yet (status.observedGeneration is {})".format(
            meta(llmisvc, "generation"), observed
        ),
        f"check Deployment {CONTROLLER} and the llmisvc's Warning events (reason Error)",
        STUCK,
    )


def presets_finding(cond, name):
    reason = cond.get("reason", "")
    message = cond.get("message", "")
    config = re.search(r'LLMInferenceServiceConfig[^"]*"([^"]+)"', message)
    config_name = config.group(1) if config else "the referenced LLMInferenceServiceConfig"
    if reason == "ConfigNotFound" or "not found" in message:
        return Finding(
            "presets",
            f"llmisvc {name}",
            reason or "ConfigNotFound",
            f"PresetsCombined=False: {message}",
            f"create {config_name} in the llmisvc's namespace or in {CONTROLLER_NAMESPACE} "
            f"(kubectl get llminferenceserviceconfig -n {CONTROLLER_NAMESPACE})",
            GRACE,
            CONFIG_GRACE,
        )
    return Finding(
        "presets",
        f"llmisvc {name}",
        reason or "CombineBaseError",
        f"PresetsCombined=False: {message}",
        "fix spec.baseRefs or the referenced presets; the merged spec is invalid",
        PERMANENT,
    )


def first_unready_condition(llmisvc, only=None):
    types = (only,) if only else WORKLOAD_CONDITIONS + ROUTER_CONDITIONS + ("WorkloadsReady", "RouterReady", "Ready")
    for status in ("False", "Unknown"):
        for ctype in types:
            cond = find_condition(llmisvc, ctype)
            if cond and cond.get("status") == status:
                return cond
    return None


def condition_finding(llmisvc, name, only=None):
    cond = first_unready_condition(llmisvc, only)
    if cond is None:
        return Finding(
            "conditions",
            f"llmisvc {name}",
            "NotReady",
            "no Ready condition yet",
            "the controller has not written status yet",
            TRANSIENT,
        )
    text = "{}={}".format(cond.get("type"), cond.get("status"))
    if cond.get("reason"):
        text += " {}".format(cond["reason"])
    if cond.get("message"):
        text += ": {}".format(cond["message"])
    kind = STUCK if cond.get("status") == "False" else TRANSIENT
    return Finding(
        "condition/{}".format(cond.get("type")),
        f"llmisvc {name}",
        cond.get("reason") or "NotReady",
        text,
        condition_hint(cond),
        kind,
    )


def condition_hint(cond):
    message = cond.get("message", "")
    if "no matches for kind" in message:
        return f"a CRD is missing: {missing_kind(message)}; install it, then restart {CONTROLLER}"
    if cond.get("reason") == "RefsInvalid":
        return f"check that the referenced Gateway exists; if it does, restart {CONTROLLER} (stale cache)"
    return "see the events and the {} condition of the llmisvc".format(cond.get("type"))


def missing_kind(message):
    match = re.search(r'no matches for kind "?([A-Za-z]+)"?( in version "?([^"\s]+)"?)?', message)
    if not match:
        return "unknown kind"
    return f"{match.group(1)} ({match.group(3)})" if match.group(3) else match.group(1)


def controller_error_findings(snapshot):
    """Warning events 'Error' on the llmisvc that point at the controller or a missing CRD."""
    findings = []
    for event in events_for(snapshot.events, "LLMInferenceService", snapshot.name):
        if event.get("type") != "Warning" or event.get("reason") != "Error":
            continue
        message = event.get("message", "")
        if "webhook" in message and ("failed calling" in message or "conversion" in message):
            findings.append(
                Finding(
                    "controller",
                    f"controller {CONTROLLER}",
                    "ControllerUnavailable",
                    message,
                    f"the KServe llmisvc webhook is down: check Deployment {CONTROLLER} "
                    "and its webhook Service endpoints",
                    STUCK,
                )
            )
        elif "no matches for kind" in message:
            findings.append(
                Finding(
                    "crd",
                    f"llmisvc {snapshot.name}",
                    "CRDMissing",
                    message,
                    f"install the CRD for {missing_kind(message)}, then restart {CONTROLLER}",
                    STUCK,
                )
            )
    return findings[-1:]


# ---------------------------------------------------------------- events


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


def related_names(snapshot):
    names = {("LLMInferenceService", snapshot.name)}
    for kind, objs in (
        ("Deployment", snapshot.deployments),
        ("Pod", snapshot.pods),
        ("HTTPRoute", snapshot.routes),
        ("InferencePool", snapshot.pools),
        ("Gateway", snapshot.gateways),
    ):
        names.update((kind, meta(o, "name")) for o in objs)
    # ReplicaSets are named <deployment>-<hash>; FailedCreate (quota, admission) lands on them.
    prefixes = tuple("{}-".format(meta(d, "name")) for d in snapshot.deployments)
    return names, prefixes


def warning_events(snapshot, limit=20):
    names, prefixes = related_names(snapshot)
    rows = []
    for event in snapshot.events:
        obj = event.get("involvedObject") or {}
        key = (obj.get("kind"), obj.get("name"))
        is_rs = obj.get("kind") == "ReplicaSet" and str(obj.get("name", "")).startswith(prefixes or ("\0",))
        if event.get("type") != "Warning" or not (key in names or is_rs):
            continue
        rows.append(
            {
                "time": event_time(event),
                "kind": obj.get("kind"),
                "name": obj.get("name"),
                "namespace": obj.get("namespace") or meta(event, "namespace"),
                "reason": event.get("reason", ""),
                "message": one_line(event.get("message", "")),
                "count": event_count(event),
            }
        )
    rows.sort(key=lambda r: r["time"])
    return rows[-limit:]


# ---------------------------------------------------------------- pods


def pod_component(pod):
    component = (meta(pod, "labels") or {}).get(LABEL_COMPONENT, "")
    return 1 if "scheduler" in component or "tokenizer" in component else 0


def live_pods(pods):
    return sorted(
        (p for p in pods if not meta(p, "deletionTimestamp")), key=lambda p: (pod_component(p), meta(p, "name") or "")
    )


def pod_findings(snapshot):
    findings = []
    for pod in live_pods(snapshot.pods):
        findings.extend(findings_of_pod(snapshot, pod))
    return findings


def findings_of_pod(snapshot, pod):
    findings = list(scheduling_findings(snapshot, pod))
    statuses = [(s, True) for s in (pod.get("status") or {}).get("initContainerStatuses") or []]
    statuses += [(s, False) for s in (pod.get("status") or {}).get("containerStatuses") or []]
    for cstatus, is_init in statuses:
        finding = container_finding(snapshot, pod, cstatus, is_init)
        if finding:
            findings.append(finding)
    return findings


def scheduling_findings(snapshot, pod):
    status = pod.get("status") or {}
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if status.get("phase") != "Pending" or not scheduled or scheduled.get("status") != "False":
        return []
    pod_name = meta(pod, "name")
    events = events_for(snapshot.events, "Pod", pod_name)
    failed = [e for e in events if e.get("reason") == "FailedScheduling"]
    message = (failed[-1].get("message") if failed else "") or scheduled.get("message", "") or "pod is unschedulable"
    autoscaler = [e for e in events if e.get("reason") in ("TriggeredScaleUp", "NotTriggerScaleUp", "FailedScaleUp")]
    resource = insufficient_resource(message)
    component = f"pod {pod_name}"
    if autoscaler and autoscaler[-1].get("reason") == "TriggeredScaleUp":
        return [
            Finding(
                f"sched/{pod_name}",
                component,
                "FailedScheduling",
                "{}; cluster-autoscaler: {}".format(message, autoscaler[-1].get("message", "")),
                "a node is being added; TPU and GPU nodes take 5-15 minutes",
                TRANSIENT,
            )
        ]
    if autoscaler:
        last = autoscaler[-1]
        return [
            Finding(
                f"sched/{pod_name}",
                component,
                last.get("reason"),
                "{}; cluster-autoscaler: {}".format(message, last.get("message", "")),
                scale_up_hint(last, resource, pod),
                STUCK,
            )
        ]
    return [
        Finding(f"sched/{pod_name}", component, "FailedScheduling", message, scale_up_hint(None, resource, pod), STUCK)
    ]


def insufficient_resource(message):
    match = re.search(r"Insufficient ([\w./-]+)", message or "")
    return match.group(1) if match else None


def accelerator_requests(pod):
    """Extended resources (GPU, TPU) the pod's containers ask for, e.g. ['google.com/tpu: 4']."""
    found = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        for amounts in (resources.get("limits") or {}, resources.get("requests") or {}):
            for name, amount in amounts.items():
                if "/" in name and not name.startswith(("hugepages-", "ephemeral-storage")):
                    found[name] = amount
    return [f"{name}: {amount}" for name, amount in sorted(found.items())]


def scale_up_hint(event, resource, pod=None):
    message = (event or {}).get("message", "")
    if event and event.get("reason") == "FailedScaleUp":
        return (
            f"the node pool could not grow (stockout or quota: {one_line(message)}); try another zone or reservation, "
            "or lower the replicas"
        )
    wanted = ", ".join(accelerator_requests(pod or {})) or resource
    selector = ", ".join(f"{k}={v}" for k, v in sorted(((pod or {}).get("spec") or {}).get("nodeSelector", {}).items()))
    if wanted or selector:
        return (
            f"no node pool offers {wanted or 'the requested resources'}"
            + (f" with node labels {selector}" if selector else "")
            + ": create or scale one that does, with matching taints/tolerations (role llm_serving.gke.nodepool)"
        )
    return "check the pod's node selector, tolerations and resource requests against the node pools"


def container_state(cstatus):
    state = cstatus.get("state") or {}
    for key in ("waiting", "terminated", "running"):
        if key in state and state[key] is not None:
            return key, state[key]
    return None, {}


def container_finding(snapshot, pod, cstatus, is_init):
    state, detail = container_state(cstatus)
    reason = detail.get("reason", "")
    last = (cstatus.get("lastState") or {}).get("terminated") or {}
    pod_name = meta(pod, "name")
    component = f"pod {pod_name}"
    key = "{}/{}".format(pod_name, cstatus.get("name"))
    if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        return image_pull_finding(snapshot, pod, cstatus, detail, key, component)
    if reason == "CreateContainerConfigError":
        return config_error_finding(snapshot, pod, detail, key, component)
    if reason in ("CreateContainerError", "RunContainerError"):
        return Finding(
            key,
            component,
            reason,
            "container {}: {}".format(cstatus.get("name"), detail.get("message", "")),
            "check the container's command, volumes and security context",
            STUCK,
        )
    crashed = reason == "CrashLoopBackOff" or (state == "terminated" and detail.get("exitCode", 0) != 0)
    if crashed or (is_init and last.get("exitCode", 0) != 0 and state != "running"):
        return crash_finding(snapshot, pod, cstatus, is_init, key, component)
    if is_init and state == "running":
        return Finding(
            key,
            component,
            "ModelDownloading" if cstatus.get("name") == "storage-initializer" else "InitContainerRunning",
            "init container {} is running".format(cstatus.get("name")),
            "the model is being downloaded; large models take several minutes",
            TRANSIENT,
        )
    if not is_init and state == "running" and not cstatus.get("ready"):
        return starting_finding(snapshot, pod, cstatus, key, component)
    if not is_init and state == "waiting" and reason in ("ContainerCreating", "PodInitializing"):
        return Finding(
            key,
            component,
            reason,
            "container {} is {}".format(cstatus.get("name"), reason),
            "the pod is starting",
            TRANSIENT,
        )
    return None


def pull_failures(snapshot, pod_name):
    return sum(
        event_count(e)
        for e in events_for(snapshot.events, "Pod", pod_name)
        if e.get("reason") == "Failed" and "Failed to pull image" in e.get("message", "")
    )


def image_pull_finding(snapshot, pod, cstatus, detail, key, component):
    image = cstatus.get("image") or container_image(pod, cstatus.get("name"))
    secrets = [s.get("name") for s in (pod.get("spec") or {}).get("imagePullSecrets") or [] if s.get("name")]
    pull_events = [
        e
        for e in events_for(snapshot.events, "Pod", meta(pod, "name"))
        if e.get("reason") == "Failed" and "Failed to pull image" in e.get("message", "")
    ]
    cause = one_line(pull_events[-1].get("message")) if pull_events else one_line(detail.get("message", ""))
    message = "{} for {}".format(detail.get("reason"), image)
    if cause:
        message += f" ({cause})"
    if secrets:
        hint = "check the image name and the pull secret {}".format(", ".join(secrets))
    else:
        hint = "check the image name; the pod has no imagePullSecrets (private registries need one)"
    # The kubelet backs off after a failed pull; a second failure means it is not a blip.
    repeated = detail.get("reason") == "ImagePullBackOff" and pull_failures(snapshot, meta(pod, "name")) >= 2
    if detail.get("reason") == "InvalidImageName" or repeated:
        return Finding(key, component, detail.get("reason"), message, hint, PERMANENT)
    return Finding(key, component, detail.get("reason"), message, hint, GRACE, IMAGE_PULL_GRACE)


def container_image(pod, container):
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if c.get("name") == container:
            return c.get("image")
    return "<unknown image>"


def config_error_finding(snapshot, pod, detail, key, component):
    message = detail.get("message", "")
    missing = re.search(r'(secret|configmap) "([^"]+)" not found', message, re.IGNORECASE)
    if missing:
        kind = "Secret" if missing.group(1).lower() == "secret" else "ConfigMap"
        hint = f"create {kind} {missing.group(2)} in namespace {snapshot.namespace}"
        if kind == "Secret" and missing.group(2) == "hf-token":
            hint += " (role llm_serving.gke.secrets creates it from llm_serving_hf_token)"
        reason = "SecretNotFound" if kind == "Secret" else "ConfigMapNotFound"
        return Finding(key, component, reason, f"CreateContainerConfigError: {message}", hint, GRACE, SECRET_GRACE)
    return Finding(
        key,
        component,
        "CreateContainerConfigError",
        message,
        "check the Secrets, ConfigMaps and env references of the pod",
        STUCK,
    )


def log_tail(snapshot, pod_name, cstatus, lines=10):
    """(text, source): the container's last log lines, or its termination message if logs are unavailable."""
    entry = snapshot.logs.get((pod_name, cstatus.get("name"))) or {}
    if entry.get("text"):
        tail = [line for line in entry["text"].splitlines() if line.strip()][-lines:]
        return "\n".join(tail), "log"
    last = (cstatus.get("lastState") or {}).get("terminated") or (cstatus.get("state") or {}).get("terminated") or {}
    text = last.get("message") or ""
    if entry.get("error"):
        return text, "termination message (logs unavailable: {})".format(one_line(entry["error"])[:120])
    return text, "termination message"


def unrecognized_flags(text):
    match = re.search(r"unrecognized arguments: (.+)", text or "")
    if not match:
        return []
    return [a.split("=", 1)[0] for a in match.group(1).split() if a.startswith("-")]


def crash_finding(snapshot, pod, cstatus, is_init, key, component):
    pod_name = meta(pod, "name")
    container = cstatus.get("name")
    text, source = log_tail(snapshot, pod_name, cstatus)
    last = (cstatus.get("lastState") or {}).get("terminated") or (cstatus.get("state") or {}).get("terminated") or {}
    restarts = cstatus.get("restartCount", 0)
    flags = unrecognized_flags(text)
    if flags:
        line = next(line for line in text.splitlines() if "unrecognized arguments" in line)
        return Finding(
            key,
            component,
            "UnrecognizedArguments",
            f"CrashLoopBackOff: container {container}: {line.strip()} (from the {source})",
            flags_hint(flags),
            PERMANENT,
        )
    if last.get("reason") == "OOMKilled":
        return Finding(
            key,
            component,
            "OOMKilled",
            f"container {container} was OOMKilled ({restarts} restarts)",
            "raise the container's memory limit or lower --max-model-len / --gpu-memory-utilization",
            PERMANENT if restarts >= OOM_RESTARTS else STUCK,
        )
    tail = " | ".join(line.strip() for line in text.splitlines()[-3:] if line.strip())
    detail = "exit code {}".format(last.get("exitCode", "?"))
    if tail:
        detail += f", last lines ({source}): {tail}"
    if is_init:
        permanent = any(re.search(p, text, re.IGNORECASE) for p in DOWNLOAD_PERMANENT_PATTERNS)
        hint = (
            "check spec.model.uri and the HF token: the download is refused"
            if permanent
            else "see the init container's log"
        )
        return Finding(
            key,
            component,
            "InitContainerFailed",
            f"init container {container} failed: {detail}",
            hint,
            PERMANENT if permanent else STUCK,
        )
    return Finding(
        key,
        component,
        "CrashLoopBackOff",
        f"container {container} keeps crashing ({restarts} restarts): {detail}",
        "read the container log (kubectl logs --previous) and fix the arguments or image",
        STUCK,
    )


def flags_hint(flags):
    parts = []
    for flag in flags:
        suggestion = VLLM_FLAG_SUGGESTIONS.get(flag)
        text = f"remove {flag}: vLLM has no such flag"
        if suggestion:
            text += f" (did you mean {suggestion}?)"
        parts.append(text)
    return "; ".join(parts)


def starting_finding(snapshot, pod, cstatus, key, component):
    unhealthy = [e for e in events_for(snapshot.events, "Pod", meta(pod, "name")) if e.get("reason") == "Unhealthy"]
    message = "container {} is running, not ready yet".format(cstatus.get("name"))
    if unhealthy:
        message += " ({})".format(one_line(unhealthy[-1].get("message")))
    return Finding(
        key,
        component,
        "Starting",
        message,
        "vLLM is loading the model; TPU start-up with XLA compilation takes several minutes",
        TRANSIENT,
    )


# ---------------------------------------------------------------- deployments


# Kubernetes defaults (k8s.io/api apps/v1 and core/v1, see pkg/apis/apps/v1/defaults.go and
# pkg/apis/core/v1/defaults.go in kubernetes/kubernetes): a Deployment without progressDeadlineSeconds gets 600,
# a probe without periodSeconds / failureThreshold gets 10 / 3.
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_PROBE_PERIOD = 10
DEFAULT_PROBE_FAILURE_THRESHOLD = 3
# The wait's own default (llmisvc_wait's progress_deadline option).
DEFAULT_WAIT_PROGRESS_DEADLINE = 600


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


def startup_budget(container_spec):
    """Seconds the kubelet gives a container's startupProbe before it restarts the container, or None."""
    probe = (container_spec or {}).get("startupProbe")
    if not probe:
        return None
    period = probe.get("periodSeconds") or DEFAULT_PROBE_PERIOD
    threshold = probe.get("failureThreshold") or DEFAULT_PROBE_FAILURE_THRESHOLD
    return (probe.get("initialDelaySeconds") or 0) + period * threshold


def container_spec(pod, name):
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            return container
    return {}


def pod_activity(snapshot, pod, now):
    """A slow step under way in the pod (node scale-up, image pull, download, start-up within its probe budget).

    Returns a short description, or "" when nothing is under way.
    """
    pod_name = meta(pod, "name")
    status = pod.get("status") or {}
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if status.get("phase") == "Pending" and scheduled and scheduled.get("status") == "False":
        autoscaler = [
            e
            for e in events_for(snapshot.events, "Pod", pod_name)
            if e.get("reason") in ("TriggeredScaleUp", "NotTriggerScaleUp", "FailedScaleUp")
        ]
        if autoscaler and autoscaler[-1].get("reason") == "TriggeredScaleUp":
            return f"pod {pod_name}: the cluster-autoscaler is adding a node"
        return ""
    for cstatus in status.get("initContainerStatuses") or []:
        if container_state(cstatus)[0] == "running":
            return "pod {}: init container {} is running".format(pod_name, cstatus.get("name"))
    for cstatus in status.get("containerStatuses") or []:
        state, detail = container_state(cstatus)
        if state == "waiting" and detail.get("reason") in ("ContainerCreating", "PodInitializing"):
            return "pod {}: container {} is {} (image pull)".format(pod_name, cstatus.get("name"), detail["reason"])
        if state != "running" or cstatus.get("ready") or cstatus.get("started") is not False:
            continue
        # started=false: the startupProbe has not passed yet. The kubelet restarts the container once the probe
        # has failed failureThreshold times, so until then the start is still under way.
        budget = startup_budget(container_spec(pod, cstatus.get("name")))
        started_at = parse_time(detail.get("startedAt"))
        if budget is None or now is None or started_at is None:
            return "pod {}: container {} is starting (startup probe not passed yet)".format(
                pod_name, cstatus.get("name")
            )
        if now < started_at + budget:
            return "pod {}: container {} started {}s ago, within its startup probe budget of {}s".format(
                pod_name, cstatus.get("name"), int(now - started_at), int(budget)
            )
    return ""


def pod_progress_times(pod):
    """Times at which the pod made a step forward. A container restart is not progress."""
    status = pod.get("status") or {}
    times = [parse_time(meta(pod, "creationTimestamp"))]
    times += [
        parse_time(c.get("lastTransitionTime")) for c in status.get("conditions") or [] if c.get("status") == "True"
    ]
    for cstatus in status.get("initContainerStatuses") or []:
        state, detail = container_state(cstatus)
        if state == "terminated" and detail.get("exitCode", 0) == 0:
            times.append(parse_time(detail.get("finishedAt")))
    for cstatus in status.get("containerStatuses") or []:
        state, detail = container_state(cstatus)
        if state == "running" and not cstatus.get("restartCount"):
            times.append(parse_time(detail.get("startedAt")))
    return [t for t in times if t is not None]


def deadline_exceeded_finding(snapshot, dep, progressing, now, progress_deadline):
    """Progressing=False/ProgressDeadlineExceeded is a report, not a verdict.

    The Deployment controller (kubernetes/kubernetes pkg/controller/deployment/progress.go, syncRolloutStatus)
    sets it once progressDeadlineSeconds pass without its notion of progress (more updated, ready or available
    replicas: util.DeploymentProgressing), keeps the rollout going, and sets Progressing=True again as soon as a
    pod becomes ready. A pod that is being scheduled onto a new node, pulling an 8 GB image, downloading the
    model or compiling within its startup probe budget is progress it does not count. KServe v0.20 leaves the
    deadline at the default 600 s (pkg/controller/v1alpha2/llmisvc/workload_single_node.go,
    expectedSingleNodeMainDeployment), less than a TPU start. So: transient while a pod has a slow step under
    way, stuck while a pod's own diagnosis explains the stall or the last step is recent, and permanent only
    when no pod of the Deployment has moved for the wait's progress_deadline.
    """
    name = meta(dep, "name")
    key, component = f"deploy/{name}", f"deployment {name}"
    spec_deadline = (dep.get("spec") or {}).get("progressDeadlineSeconds") or DEFAULT_PROGRESS_DEADLINE_SECONDS
    progress_deadline = progress_deadline or DEFAULT_WAIT_PROGRESS_DEADLINE
    now = parse_time(now)
    condition = "Progressing=False/ProgressDeadlineExceeded ({}) after progressDeadlineSeconds={}s".format(
        one_line(progressing.get("message", "")), int(spec_deadline)
    )
    pods = deployment_pods(dep, snapshot.pods)
    resumes = "the Deployment keeps rolling out and reports Progressing=True again when a pod becomes ready"
    activity = next((a for a in (pod_activity(snapshot, p, now) for p in pods) if a), "")
    if activity:
        return Finding(
            key,
            component,
            "ProgressDeadlineExceeded",
            f"{condition}, but its pods still make progress ({activity})",
            "a slow start (node scale-up, image pull, model download, compilation) outlasts the Deployment's "
            f"deadline; {resumes}",
            TRANSIENT,
        )
    explained = [f for p in pods for f in findings_of_pod(snapshot, p) if f.kind in (STUCK, GRACE, PERMANENT)]
    failure = find_condition(dep, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        # Pods cannot even be created (quota, admission): that finding is the diagnosis.
        explained.insert(0, Finding(key, component, failure.get("reason") or "ReplicaFailure", "", kind=STUCK))
    if explained:
        return Finding(
            key,
            component,
            "ProgressDeadlineExceeded",
            f"{condition}: {explained[0].component}: {explained[0].reason}",
            f"see the diagnosis of {explained[0].component}; {resumes}",
            STUCK,
        )
    times = [t for p in pods for t in pod_progress_times(p)]
    updated = parse_time(progressing.get("lastUpdateTime"))
    if updated is not None:
        # The condition's lastUpdateTime is when the controller saw the deadline pass: its last progress was
        # progressDeadlineSeconds before.
        times.append(updated - spec_deadline)
    idle = (now - max(times)) if (now is not None and times) else None
    hint = (
        "none of its pods is being scheduled, pulled, initialised or started: see the pods' events (kubectl "
        f"describe pod) and readiness probe; fix the cause and re-apply the llmisvc; {resumes}"
    )
    if idle is not None and idle >= progress_deadline:
        return Finding(
            key,
            component,
            "ProgressDeadlineExceeded",
            f"Deployment {name}: {condition}, and none of its pods has made progress for {int(idle)}s, longer than "
            f"the wait's progress_deadline of {int(progress_deadline)}s",
            hint,
            PERMANENT,
        )
    since = f"last progress {int(idle)}s ago" if idle is not None else "time of the last progress unknown"
    return Finding(
        key,
        component,
        "ProgressDeadlineExceeded",
        f"{condition}; no pod step is under way ({since}, the wait gives up after {int(progress_deadline)}s)",
        hint,
        STUCK,
    )


def deployment_findings(snapshot, now=None, progress_deadline=None):
    findings = []
    for dep in snapshot.deployments:
        name = meta(dep, "name")
        progressing = find_condition(dep, "Progressing")
        failure = find_condition(dep, "ReplicaFailure")
        if failure and failure.get("status") == "True":
            findings.append(
                Finding(
                    f"deploy/{name}/replica",
                    f"deployment {name}",
                    failure.get("reason", "ReplicaFailure"),
                    failure.get("message", ""),
                    "pods cannot be created: check ResourceQuota, LimitRange and admission webhooks",
                    STUCK,
                )
            )
        if (
            progressing
            and progressing.get("status") == "False"
            and progressing.get("reason") == "ProgressDeadlineExceeded"
        ):
            findings.append(deadline_exceeded_finding(snapshot, dep, progressing, now, progress_deadline))
    return findings


# ---------------------------------------------------------------- router


def route_findings(snapshot):
    findings = []
    for route in snapshot.routes:
        name = meta(route, "name")
        refs = (route.get("spec") or {}).get("parentRefs") or []
        parents = (route.get("status") or {}).get("parents") or []
        component = f"httproute {name}"
        if refs and not parents:
            findings.append(
                Finding(
                    f"route/{name}",
                    component,
                    "NoGatewayController",
                    "no gateway controller has accepted or rejected the route (parents: {})".format(
                        ", ".join(parent_name(r, snapshot.namespace) for r in refs)
                    ),
                    "check that the Gateway API is enabled on the cluster (gcloud container clusters "
                    "update --gateway-api=standard), the GatewayClass exists and the listener's "
                    "allowedRoutes admits this namespace",
                    STUCK,
                )
            )
        for parent in parents:
            finding = parent_finding(route, parent, component, snapshot.namespace)
            if finding:
                findings.append(finding)
    return findings


def parent_name(ref, namespace):
    return "{}/{}".format(ref.get("namespace") or namespace, ref.get("name"))


def parent_finding(route, parent, component, namespace):
    name = meta(route, "name")
    gateway = parent_name(parent.get("parentRef") or {}, namespace)
    accepted = next((c for c in parent.get("conditions") or [] if c.get("type") == "Accepted"), None)
    resolved = next((c for c in parent.get("conditions") or [] if c.get("type") == "ResolvedRefs"), None)
    if accepted and accepted.get("status") == "False":
        reason = accepted.get("reason", "")
        message = "rejected by gateway {}: {}: {}".format(gateway, reason, accepted.get("message", ""))
        if reason == "UnsupportedValue" or "Timeouts are not supported" in accepted.get("message", ""):
            return Finding(
                f"route/{name}", component, "RouteTimeoutsUnsupported", message, ROUTE_TIMEOUTS_HINT, PERMANENT
            )
        if reason in ("NotAllowedByListeners", "NoMatchingListenerHostname", "NoMatchingParent"):
            return Finding(
                f"route/{name}",
                component,
                reason,
                message,
                "the Gateway's listeners do not admit this route: check allowedRoutes.namespaces and "
                f"hostnames of gateway {gateway}",
                PERMANENT,
            )
        return Finding(
            f"route/{name}",
            component,
            reason or "RouteNotAccepted",
            message,
            "see the route's status.parents and the gateway controller's events",
            STUCK,
        )
    if resolved and resolved.get("status") == "False":
        return resolved_refs_finding(route, resolved, component, gateway)
    return None


def resolved_refs_finding(route, resolved, component, gateway):
    name = meta(route, "name")
    reason = resolved.get("reason", "")
    message = "gateway {} cannot resolve the backends: {}: {}".format(gateway, reason, resolved.get("message", ""))
    groups = {
        b.get("group") for rule in (route.get("spec") or {}).get("rules") or [] for b in rule.get("backendRefs") or []
    }
    migrated = (meta(route, "annotations") or {}).get(POOL_MIGRATED_ANNOTATION)
    if "inference.networking.x-k8s.io" in groups and not migrated and reason in ("InvalidKind", "BackendNotFound"):
        return Finding(
            f"route/{name}",
            component,
            "InferencePoolVersionMismatch",
            message,
            f"the gateway does not accept the v1alpha2 InferencePool: kubectl annotate httproute {name} "
            f"{POOL_MIGRATED_ANNOTATION}=v1 (a one-way switch the controller honours)",
            STUCK,
        )
    return Finding(
        f"route/{name}",
        component,
        reason or "RefsNotResolved",
        message,
        "check the route's backendRefs (Service or InferencePool) exist",
        STUCK,
    )


def gateway_findings(snapshot):
    findings = []
    for gateway in snapshot.gateways:
        name = "{}/{}".format(meta(gateway, "namespace"), meta(gateway, "name"))
        if gateway.get("missing"):
            findings.append(
                Finding(
                    f"gateway/{name}",
                    f"gateway {name}",
                    "GatewayNotFound",
                    f"the route's parent Gateway {name} does not exist",
                    GATEWAY_NOT_FOUND_HINT.format(name=name),
                    STUCK,
                )
            )
            continue
        programmed = find_condition(gateway, "Programmed")
        if not programmed or programmed.get("status") != "True":
            detail = (
                "{}: {}".format(programmed.get("reason", ""), programmed.get("message", ""))
                if programmed
                else "no Programmed condition: no controller handles its GatewayClass"
            )
            findings.append(
                Finding(
                    f"gateway/{name}",
                    f"gateway {name}",
                    "GatewayNotProgrammed",
                    f"gateway is not Programmed ({detail})",
                    "the load balancer is being provisioned (minutes on GKE); if it stays, check the "
                    "GatewayClass and the proxy-only subnet",
                    STUCK,
                )
            )
    return findings


def pool_parents(pool):
    status = pool.get("status") or {}
    # v1 has status.parents; v1alpha2 has status.parent (singular).
    return status.get("parents") or status.get("parent") or []


def pool_findings(snapshot):
    if not snapshot.pools:
        return []
    findings = []
    accepted_any = False
    for pool in snapshot.pools:
        for parent in pool_parents(pool):
            cond = next((c for c in parent.get("conditions") or [] if c.get("type") == "Accepted"), None)
            if cond and cond.get("status") == "True":
                accepted_any = True
            elif cond and cond.get("status") == "False":
                name = meta(pool, "name")
                findings.append(
                    Finding(
                        f"pool/{name}",
                        f"inferencepool {name}",
                        "InferencePoolNotAccepted",
                        "Accepted=False ({}: {})".format(cond.get("reason"), cond.get("message")),
                        "see the InferencePool's status.parents",
                        STUCK,
                    )
                )
    if accepted_any:
        return []
    if not findings:
        name = meta(snapshot.pools[0], "name")
        findings.append(
            Finding(
                f"pool/{name}",
                f"inferencepool {name}",
                "InferencePoolWithoutParents",
                "no gateway has accepted the InferencePool (status has no parents)",
                "the gateway does not support InferencePool: on GKE use a regional class "
                "(gke-l7-regional-external-managed or gke-l7-rilb), not the global one",
                STUCK,
            )
        )
    return findings


# ---------------------------------------------------------------- assessment


def router_unready(llmisvc):
    return any(condition_status(llmisvc, c) not in (None, "True") for c in ROUTER_CONDITIONS + ("RouterReady",))


def collect_findings(snapshot, require_rollout=True, require_url=True, now=None, progress_deadline=None):
    """All reasons the llmisvc is not ready, most specific first in KServe's order.

    `now` (epoch seconds or an API timestamp) and `progress_deadline` (seconds) let a Deployment's
    ProgressDeadlineExceeded be judged against the pods' progress; without `now` it is never permanent.
    """
    llmisvc = snapshot.llmisvc
    if llmisvc is None:
        return [
            Finding(
                "notfound",
                f"llmisvc {snapshot.name}",
                "NotFound",
                f"LLMInferenceService {snapshot.namespace}/{snapshot.name} does not exist",
                "create it first (role llm_serving.gke.llmisvc), or check name and namespace",
                STUCK,
            )
        ]
    if meta(llmisvc, "deletionTimestamp"):
        return [
            Finding(
                "deleting",
                f"llmisvc {snapshot.name}",
                "Deleting",
                "the llmisvc is being deleted (finalizers: {})".format(", ".join(meta(llmisvc, "finalizers") or [])),
                "wait for the deletion to finish before creating it again",
                STUCK,
            )
        ]
    gaps = readiness_gaps(snapshot, require_rollout, require_url)
    if not gaps:
        return []
    specific = (
        controller_error_findings(snapshot)
        + pod_findings(snapshot)
        + deployment_findings(snapshot, now, progress_deadline)
    )
    if router_unready(llmisvc) or snapshot.routes:
        specific += route_findings(snapshot) + gateway_findings(snapshot) + pool_findings(snapshot)
    # The drill-down explains the conditions: "pod X: ImagePullBackOff" replaces "MainWorkloadReady=False".
    presets = [g for g in gaps if g.key == "presets"]
    rest = [g for g in gaps if g.key != "presets" and not (specific and g.key.startswith("condition"))]
    return presets + specific + rest


def assess(snapshot, require_rollout=True, require_url=True, now=None, progress_deadline=None):
    if snapshot.llmisvc is not None and is_stopped(snapshot.llmisvc):
        stopped = Finding(
            "stopped",
            f"llmisvc {snapshot.name}",
            "Stopped",
            f'annotation {STOP_ANNOTATION} is "true"',
            "remove the annotation to start it again",
            PERMANENT,
        )
        return Assessment(False, True, [stopped])
    findings = collect_findings(snapshot, require_rollout, require_url, now, progress_deadline)
    return Assessment(not findings, False, findings)


def progress_signature(snapshot):
    """What counts as progress: conditions, generations, replica counts, pod phases and container states.

    Restart counts and repeated events are left out: a crash loop is not progress.
    """
    llmisvc = snapshot.llmisvc or {}
    conds = tuple((c.get("type"), c.get("status"), c.get("reason")) for c in conditions_of(llmisvc))
    deps = tuple(
        (
            meta(d, "name"),
            (d.get("status") or {}).get("updatedReplicas"),
            (d.get("status") or {}).get("readyReplicas"),
            (d.get("status") or {}).get("availableReplicas"),
        )
        for d in snapshot.deployments
    )
    pods = []
    for pod in live_pods(snapshot.pods):
        status = pod.get("status") or {}
        states = tuple(
            (c.get("name"), container_state(c)[0], container_state(c)[1].get("reason"), c.get("ready"))
            for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
        )
        pods.append(
            (
                meta(pod, "name"),
                status.get("phase"),
                (status.get("nodeName") or pod.get("spec", {}).get("nodeName")),
                states,
            )
        )
    return (
        meta(llmisvc, "generation"),
        (llmisvc.get("status") or {}).get("observedGeneration"),
        conds,
        deps,
        tuple(pods),
        bool((llmisvc.get("status") or {}).get("url")),
    )


def pod_stage(snapshot, pod):
    """Where one pod is: unscheduled, scaling-up, pulling, initializing, starting, ready or failing."""
    status = pod.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conds.get("Ready") == "True":
        return "ready"
    on_node = status.get("nodeName") or (pod.get("spec") or {}).get("nodeName") or conds.get("PodScheduled") == "True"
    if not on_node:
        autoscaler = [
            e
            for e in events_for(snapshot.events, "Pod", meta(pod, "name"))
            if e.get("reason") in ("TriggeredScaleUp", "NotTriggerScaleUp", "FailedScaleUp")
        ]
        if autoscaler and autoscaler[-1].get("reason") == "TriggeredScaleUp":
            return "scaling-up"
        return "unscheduled"
    for cstatus in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state, detail = container_state(cstatus)
        if detail.get("reason") in ("CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName") or (
            detail.get("reason") in ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
        ):
            return "failing"
    for cstatus in status.get("initContainerStatuses") or []:
        if container_state(cstatus)[0] == "running":
            return "initializing"
    for cstatus in status.get("containerStatuses") or []:
        state, detail = container_state(cstatus)
        if state == "running" and not cstatus.get("ready"):
            return "starting"
        if state == "waiting" and detail.get("reason") == "PodInitializing":
            return "initializing"
    return "pulling" if status.get("containerStatuses") or status.get("initContainerStatuses") else "scheduled"


PROGRESS_STAGES = ("ready", "starting", "initializing", "pulling", "scheduled", "scaling-up", "unscheduled", "failing")


def progress_summary(snapshot, assessment, elapsed=0.0):
    """What a person watching the wait wants to see: nodes, pods by stage, replicas, the current diagnosis.

    Nodes are counted from the workload pods: a pod with a node is on a Ready node (the scheduler binds only
    to Ready nodes); a workload pod asking for an accelerator needs a node of its own in the catalog's
    patterns (one replica per node), so `needed` is the number of such pods (None without accelerators).
    """
    pods = live_pods(snapshot.pods)
    workload = [p for p in pods if pod_component(p) == 0]
    stages = {}
    for pod in pods:
        stage = pod_stage(snapshot, pod)
        stages[stage] = stages.get(stage, 0) + 1
    nodes = sorted(
        {(p.get("status") or {}).get("nodeName") or (p.get("spec") or {}).get("nodeName") for p in workload} - {None}
    )
    accelerated = [p for p in workload if accelerator_requests(p)]
    scaling = sum(1 for p in workload if pod_stage(snapshot, p) == "scaling-up")
    primary = None if assessment.ready else assessment.primary({})
    summary = {
        "elapsed": round(elapsed, 1),
        "ready": assessment.ready,
        "nodes": {"ready": len(nodes), "needed": len(accelerated) if accelerated else None, "being_added": scaling},
        "pods": {stage: stages.get(stage, 0) for stage in PROGRESS_STAGES},
        "workloads": [
            {
                "name": meta(d, "name"),
                "ready_replicas": (d.get("status") or {}).get("readyReplicas") or 0,
                "replicas": (d.get("spec") or {}).get("replicas"),
            }
            for d in snapshot.deployments
        ],
        "diagnosis": primary.as_dict() if primary else {},
    }
    summary["line"] = progress_line(snapshot.name, summary)
    return summary


def progress_line(name, summary):
    nodes = summary["nodes"]
    node_text = "nodes ready {}".format(nodes["ready"])
    if nodes["needed"] is not None:
        node_text += " of {} needed".format(nodes["needed"])
    if nodes["being_added"]:
        node_text += " ({} being added)".format(nodes["being_added"])
    pods = summary["pods"]
    total = sum(pods.values())
    pod_text = f"pods {total}"
    parts = [f"{count} {stage}" for stage, count in pods.items() if count]
    if parts:
        pod_text += ": " + ", ".join(parts)
    text = "{} after {}s: {}; {}".format(name, int(summary["elapsed"]), node_text, pod_text)
    if summary["ready"]:
        return text + "; ready"
    diagnosis = summary["diagnosis"]
    if diagnosis:
        text += "; {}: {}: {}".format(diagnosis["component"], diagnosis["reason"], diagnosis["message"])
    return one_line(text)[:400]


def crashing_containers(pods):
    """(pod, container, restartCount, is_init) whose previous log the waiter should read."""
    out = []
    for pod in live_pods(pods):
        status = pod.get("status") or {}
        for is_init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
            for c in status.get(key) or []:
                state, detail = container_state(c)
                last = (c.get("lastState") or {}).get("terminated") or {}
                failed = (
                    detail.get("reason") == "CrashLoopBackOff"
                    or (state == "terminated" and detail.get("exitCode", 0) != 0)
                    or (is_init and last.get("exitCode", 0) != 0 and state != "running")
                )
                if failed:
                    out.append((meta(pod, "name"), c.get("name"), c.get("restartCount", 0), is_init))
    return out


def failure_message(name, diagnosis, outcome, elapsed, deadline=None):
    """The one line users see when the wait ends without readiness."""
    if outcome == "timeout" and deadline:
        prefix = f"{name} not ready: no progress for {int(deadline)}s"
    elif outcome == "timeout":
        prefix = f"{name} not ready after {int(elapsed)}s"
    elif outcome == "stopped":
        prefix = f"{name} is stopped"
    else:
        prefix = f"{name} not ready"
    if not diagnosis:
        return prefix
    text = "{}: {}: {}".format(prefix, diagnosis["component"], diagnosis["message"])
    if diagnosis.get("hint"):
        text += " (hint: {})".format(diagnosis["hint"])
    return one_line(text)
