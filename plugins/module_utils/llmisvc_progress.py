# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Progress of a wait in words: per-pod stages, the signature that tells whether anything moves, the
progress line and the failure message.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_hints import accelerator_requests
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import (
    conditions_of,
    container_state,
    events_for,
    live_pods,
    meta,
    one_line,
    pod_component,
)


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
