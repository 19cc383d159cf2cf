# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Diagnosis rules on the llmisvc's Deployments: progress deadline, startup budgets of probes, pod activity.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_rules_pod import findings_of_pod
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import (
    GRACE,
    PERMANENT,
    STUCK,
    TRANSIENT,
    Finding,
    container_spec,
    container_state,
    deployment_pods,
    events_for,
    find_condition,
    meta,
    one_line,
    parse_time,
)

# Kubernetes defaults (k8s.io/api apps/v1 and core/v1, see pkg/apis/apps/v1/defaults.go and
# pkg/apis/core/v1/defaults.go in kubernetes/kubernetes): a Deployment without progressDeadlineSeconds gets 600,
# a probe without periodSeconds / failureThreshold gets 10 / 3.
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_PROBE_PERIOD = 10
DEFAULT_PROBE_FAILURE_THRESHOLD = 3
# The wait's own default (llmisvc_wait's progress_deadline option).
DEFAULT_WAIT_PROGRESS_DEADLINE = 600


def startup_budget(container_spec):
    """Seconds the kubelet gives a container's startupProbe before it restarts the container, or None."""
    probe = (container_spec or {}).get("startupProbe")
    if not probe:
        return None
    period = probe.get("periodSeconds") or DEFAULT_PROBE_PERIOD
    threshold = probe.get("failureThreshold") or DEFAULT_PROBE_FAILURE_THRESHOLD
    return (probe.get("initialDelaySeconds") or 0) + period * threshold


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
