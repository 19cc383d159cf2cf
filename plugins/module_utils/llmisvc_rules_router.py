# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Diagnosis rules on the llmisvc's router: HTTPRoutes, their parents and backend references, the
Gateway and the InferencePool.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_hints import (
    GATEWAY_NOT_FOUND_HINT,
    ROUTE_TIMEOUTS_HINT,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import (
    PERMANENT,
    POOL_MIGRATED_ANNOTATION,
    STUCK,
    Finding,
    find_condition,
    meta,
)


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
