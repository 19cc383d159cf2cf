# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of the verification role: what one ``k8s_read`` run returns, turned into the URL, the Ready workload
pods, the routing checks and the GKE policy check (formerly Jinja loops in roles/verification/tasks).

Documentation: the sidecar files verification_queries.yml, verification_discover.yml,
verification_workload_replicas.yml, verification_routing_checks.yml, verification_policy_check.yml and
verification_requests.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import math
import re

from ansible.errors import AnsibleFilterError

WORKLOAD_SELECTORS = ("app.kubernetes.io/part-of=llminferenceservice",
                      "app.kubernetes.io/component=llminferenceservice-workload")
POOL_GROUP_V1 = "inference.networking.k8s.io"
POOL_GROUP_V1ALPHA2 = "inference.networking.x-k8s.io"
POLICY_KINDS = ("HealthCheckPolicy", "GCPBackendPolicy")


def _selectors(name):
    return [WORKLOAD_SELECTORS[0], f"app.kubernetes.io/name={name}", WORKLOAD_SELECTORS[1]]


def verification_queries(llmisvc_name, namespace, api_version="v1alpha1", gateway_name="inference-gateway",
                         gateway_namespace="opendatahub", routing=False, policies=False):
    """The ``k8s_read`` queries of everything the verification reads, each with an ``id``."""
    queries = [
        {"id": "llmisvc", "api_version": f"serving.kserve.io/{api_version}", "kind": "LLMInferenceService",
         "namespace": namespace, "name": llmisvc_name},
        {"id": "gateway", "api_version": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "namespace": gateway_namespace, "name": gateway_name},
        {"id": "pods", "kind": "Pod", "namespace": namespace, "label_selectors": _selectors(llmisvc_name)},
        {"id": "deployments", "api_version": "apps/v1", "kind": "Deployment", "namespace": namespace,
         "label_selectors": _selectors(llmisvc_name)},
    ]
    if routing:
        queries.append({"id": "routes", "api_version": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                        "namespace": namespace,
                        "label_selectors": [f"app.kubernetes.io/name={llmisvc_name}",
                                            "app.kubernetes.io/component=llminferenceservice-router"]})
        # KServe v0.20 creates the pool in both API groups under one name and points the route at the
        # inference.networking.x-k8s.io/v1alpha2 pool until the gateway rejects that group (kserve/kserve v0.20.0
        # pkg/controller/v1alpha2/llmisvc/router.go): both are read, the one the route uses is judged.
        for api in (f"{POOL_GROUP_V1}/v1", f"{POOL_GROUP_V1ALPHA2}/v1alpha2"):
            queries.append({"id": "pools", "api_version": api, "kind": "InferencePool", "namespace": namespace})
        if policies:
            for kind in POLICY_KINDS:
                queries.append({"id": "policies", "api_version": "networking.gke.io/v1", "kind": kind,
                                "namespace": namespace})
    return queries


def _by_id(results, query_id):
    return [r for r in results or [] if (r.get("item") or {}).get("id") == query_id]


def _resources(results, query_id):
    return [obj for r in _by_id(results, query_id) for obj in r.get("resources") or []]


def ready_pod_ips(pods):
    """IPs of the pods that are Running, not terminating, have an IP and the condition Ready=True."""
    ips = []
    for pod in pods or []:
        status = pod.get("status") or {}
        if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Running":
            continue
        if not status.get("podIP"):
            continue
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            ips.append(status["podIP"])
    return ips


def _probe_period(pods):
    """Longest readinessProbe.periodSeconds of the pods' containers; 10 (the Kubernetes default) without one."""
    periods = [int((c.get("readinessProbe") or {}).get("periodSeconds") or 10)
               for pod in pods or [] for c in (pod.get("spec") or {}).get("containers") or []
               if c.get("readinessProbe")]
    return max(periods) if periods else 10


def workload_replicas(results, spec_replicas=None, probe_period_scale=1.0):
    """Ready workload pods against the expected replicas: ``ips``, ``ready``, ``expected`` (the llmisvc's
    ``spec_replicas``, by default 1, or the workload Deployments' readyReplicas when they say more), ``listed`` (pods
    listed) and ``relist_delay`` (seconds until the kubelet probes readiness again: the pods' readiness probe
    period times ``probe_period_scale``, at least 1)."""
    pods = _resources(results, "pods")
    ips = ready_pod_ips(pods)
    expected = 1 if spec_replicas in (None, "") else int(spec_replicas)
    deployment_ready = sum(int((d.get("status") or {}).get("readyReplicas") or 0)
                           for d in _resources(results, "deployments"))
    try:
        scale = float(probe_period_scale)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"verification_probe_period_scale must be a number, got {probe_period_scale!r}") \
            from exc
    return {"ips": ips, "ready": len(ips), "expected": max(expected, deployment_ready), "listed": len(pods),
            "spec_replicas": expected, "deployment_ready_replicas": deployment_ready,
            "relist_delay": max(1, math.ceil(_probe_period(pods) * scale))}


def verification_discover(results, llmisvc_name, namespace, gateway_name="inference-gateway",
                          gateway_namespace="opendatahub", base_url="", gateway_scheme="http", probe_period_scale=1.0):
    """URL, Ready workload pods and routing objects from the ``results`` of the ``verification_queries`` read.
    ``error`` is '' or the reason the verification cannot go on (the llmisvc is missing, or no URL is known)."""
    if not isinstance(results, list):
        raise AnsibleFilterError("verification_discover expects the results list of llm_serving.gke.k8s_read, got "
                                 f"{type(results).__name__}")
    llmisvcs = _resources(results, "llmisvc")
    llmisvc = llmisvcs[0] if llmisvcs else None
    out = {"found": llmisvc is not None, "error": "", "url": "", "url_source": ""}
    out["replicas"] = workload_replicas(results, ((llmisvc or {}).get("spec") or {}).get("replicas"),
                                        probe_period_scale)
    out["pod_ips"] = out["replicas"]["ips"]
    if llmisvc is None:
        out["error"] = (f"LLMInferenceService {namespace}/{llmisvc_name} was not found (verification_llmisvc_name / "
                        "verification_namespace).")
        return out
    status_url = ((llmisvc.get("status") or {}).get("url") or "")
    gateways = _resources(results, "gateway")
    addresses = ((gateways[0].get("status") or {}).get("addresses") or []) if gateways else []
    gateway_address = str((addresses[0] or {}).get("value") or "").strip() if addresses else ""
    gateway_url = f"{gateway_scheme}://{gateway_address}/{namespace}/{llmisvc_name}" if gateway_address else ""
    out["url"] = re.sub(r"/+$", "", base_url or status_url or gateway_url)
    out["url_source"] = ("verification_base_url" if base_url else "status.url" if status_url
                         else f"gateway {gateway_namespace}/{gateway_name}")
    if not out["url"]:
        out["error"] = (f"No URL for {namespace}/{llmisvc_name}: its status.url is empty and Gateway "
                        f"{gateway_namespace}/{gateway_name} has no address yet. Wait for the llmisvc "
                        "(llm_serving.gke.llmisvc_wait) or set verification_base_url.")
    routes = _resources(results, "routes")
    refs, names = [], []
    for route in routes:
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("kind") != "InferencePool":
                    continue
                entry = {"group": ref.get("group") or "", "kind": ref["kind"], "name": ref.get("name")}
                if entry not in refs:
                    refs.append(entry)
                if ref.get("name") not in names:
                    names.append(ref.get("name"))
    out["routes"] = len(routes)
    out["pool_refs"] = refs
    out["pool_names"] = names
    pool = {}
    if refs:
        group = refs[0]["group"] or POOL_GROUP_V1
        for candidate in _resources(results, "pools"):
            if (str(candidate.get("apiVersion", "")).split("/", maxsplit=1)[0] == group
                    and (candidate.get("metadata") or {}).get("name") == names[0]):
                pool = candidate
                break
    out["pool"] = pool
    # Shaped like the former looped kubernetes.core.k8s_info register (item = kind), which policy_check reads.
    out["policies"] = {"results": [{"item": r["item"]["kind"], "resources": r.get("resources") or []}
                                   for r in _by_id(results, "policies")]}
    return out


def verification_routing_checks(discovered):
    """The checks route_to_inference_pool and inference_pool_accepted from ``verification_discover``'s result."""
    pool = discovered.get("pool") or {}
    status = pool.get("status") or {}
    # v1 keeps the parents in status.parents, v1alpha2 in status.parent (gateway-api-inference-extension
    # v1.4.0 config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml).
    parents = status.get("parents", status.get("parent")) or []
    accepted = [p for p in parents if any(c.get("type") == "Accepted" and c.get("status") == "True"
                                          for c in p.get("conditions") or [])]
    names = discovered.get("pool_names") or []
    return [
        {"name": "route_to_inference_pool", "passed": bool(names),
         "expected": "the llmisvc's HTTPRoute has an InferencePool backend (scheduler configured)",
         "measured": f"{discovered.get('routes', 0)} route(s), InferencePool backends: {', '.join(names) or 'none'}"},
        {"name": "inference_pool_accepted", "passed": bool(accepted),
         "expected": "the InferencePool has a parent Gateway with Accepted=True",
         "measured": "pool not found" if not pool else f"{len(parents)} parent(s), {len(accepted)} accepted"},
    ]


def verification_policy_check(policies, pool_refs):
    """The check gke_policies_target_route_backend: a HealthCheckPolicy and a GCPBackendPolicy whose targetRef
    (group/kind/name) equals each InferencePool backendRef of the route. ``policies`` is shaped like a looped
    k8s_info register over the two kinds (``results`` of ``item`` = kind and ``resources``)."""
    found = {}
    for result in (policies or {}).get("results") or []:
        for policy in result.get("resources") or []:
            ref = (policy.get("spec") or {}).get("targetRef") or {}
            found.setdefault(result.get("item"), []).append(
                {"group": ref.get("group") or "", "kind": ref.get("kind") or "", "name": ref.get("name") or ""})
    refs = [{"group": r.get("group") or "", "kind": r.get("kind") or "", "name": r.get("name") or ""}
            for r in pool_refs or []]
    missing = [f"{kind} for {ref['group'] or 'core'}/{ref['kind']} {ref['name']}"
               for ref in refs for kind in POLICY_KINDS if ref not in found.get(kind, [])]
    backends = ", ".join("/".join((r["group"], r["kind"], r["name"])) for r in refs) or "none"
    return {"name": "gke_policies_target_route_backend", "passed": bool(refs) and not missing,
            "expected": "a HealthCheckPolicy and a GCPBackendPolicy whose targetRef (group/kind/name) equals each "
                        "InferencePool backendRef of the llmisvc's HTTPRoute",
            "measured": f"route backends: {backends}; "
                        + (f"missing: {', '.join(missing)}" if missing else "every backend has both policies")}


def verification_requests(url, model, gateway_health=True, pod_ips=(), pod_scheme="http", pod_port=8000):
    """The requests of the functional checks for llm_serving.gke.http_checks: /v1/models, /v1/completions,
    /v1/chat/completions and (``gateway_health``) /health through ``url``, and /health on each pod of ``pod_ips``
    with ``use_headers: false`` (the module's headers, credentials, are the gateway's, never sent to a pod)."""
    requests = [
        {"name": "models", "url": f"{url}/v1/models"},
        {"name": "completions", "url": f"{url}/v1/completions", "method": "POST",
         "body": {"model": model, "prompt": "Hello, how are you?", "max_tokens": 16, "temperature": 0}},
        {"name": "chat", "url": f"{url}/v1/chat/completions", "method": "POST",
         "body": {"model": model, "messages": [{"role": "user", "content": "What is Kubernetes?"}], "max_tokens": 16}},
    ]
    if gateway_health:
        requests.append({"name": "gateway_health", "url": f"{url}/health"})
    for ip in pod_ips or []:
        requests.append({"name": "pod_health", "item": ip, "url": f"{pod_scheme}://{ip}:{pod_port}/health",
                         "use_headers": False})
    return requests


class FilterModule:
    def filters(self):
        return {"verification_queries": verification_queries, "verification_discover": verification_discover,
                "verification_workload_replicas": workload_replicas,
                "verification_routing_checks": verification_routing_checks,
                "verification_policy_check": verification_policy_check,
                "verification_requests": verification_requests}
