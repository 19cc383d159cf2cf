# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Diagnosis rules on the llmisvc's pods: scheduling, image pulls, configuration errors, crashes (with the
log tail and unknown vLLM flags), model downloads and slow starts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_hints import (
    flags_hint,
    insufficient_resource,
    scale_up_hint,
    unrecognized_flags,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import (
    GRACE,
    IMAGE_PULL_GRACE,
    OOM_RESTARTS,
    PERMANENT,
    SECRET_GRACE,
    STUCK,
    TRANSIENT,
    Finding,
    container_state,
    event_count,
    events_for,
    live_pods,
    meta,
    one_line,
)

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
