# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Diagnosis rules on the LLMInferenceService itself: readiness gaps, generation, presets, conditions,
controller errors and Warning events.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_hints import condition_hint, missing_kind
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import (
    CONFIG_GRACE,
    CONTROLLER,
    CONTROLLER_NAMESPACE,
    GRACE,
    PERMANENT,
    ROUTER_CONDITIONS,
    STUCK,
    TRANSIENT,
    WORKLOAD_CONDITIONS,
    Finding,
    child_selector,
    event_count,
    event_time,
    events_for,
    find_condition,
    generation_observed,
    meta,
    one_line,
    rollout_complete,
    uses_leaderworkerset,
    workload_summary,
)


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
