# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What to do about a finding: the hints the diagnosis rules attach (vLLM flags, KServe presets, the Gateway
prerequisite, node scale-up for accelerators).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import CONTROLLER, one_line

# vLLM flags users pass that vLLM does not have, with the flag they probably meant.
VLLM_FLAG_SUGGESTIONS = {
    "--prefix-cache-block-size": "--block-size",
    "--enable-prefix-cache": "--enable-prefix-caching",
    "--max-model-length": "--max-model-len",
    "--gpu-memory-util": "--gpu-memory-utilization",
    "--tensor-parallel": "--tensor-parallel-size",
}

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


def unrecognized_flags(text):
    match = re.search(r"unrecognized arguments: (.+)", text or "")
    if not match:
        return []
    return [a.split("=", 1)[0] for a in match.group(1).split() if a.startswith("-")]


def flags_hint(flags):
    parts = []
    for flag in flags:
        suggestion = VLLM_FLAG_SUGGESTIONS.get(flag)
        text = f"remove {flag}: vLLM has no such flag"
        if suggestion:
            text += f" (did you mean {suggestion}?)"
        parts.append(text)
    return "; ".join(parts)
