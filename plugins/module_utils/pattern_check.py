# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The value checks of a merged pattern entry (after the schema check of the pattern role).

Returns every problem at once, each naming the key that is wrong. Node arithmetic comes from ``capacity``,
TPU topology chips from ``tpu_topology.topology_chips`` (the table the ``gke_node_pool`` module validates with).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import re

from ansible_collections.llm_serving.gke.plugins.module_utils.capacity import nodes_needed
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError
from ansible_collections.llm_serving.gke.plugins.module_utils.tpu_topology import topology_chips

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LLMISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# KServe hashes child names longer than a DNS label (<name>-kserve-workload-svc and similar), so the
# llmisvc name keeps 20 characters of room.
LLMISVC_NAME_MAX = 43
MODEL_URI = re.compile(r"^(hf|s3|gs|pvc|oci|https?)://.+")


def pattern_problems(pattern):
    """Problems of a merged pattern entry (empty list when it is valid)."""
    p = pattern
    acc = p["accelerator"]
    pool = p["nodepool"]
    per_node = acc["per_node_count"]
    problems = []
    name = str(p["llmisvc_name"])
    if not (LLMISVC_NAME.match(name) and len(name) <= LLMISVC_NAME_MAX):
        problems.append(f"llmisvc_name {name} must be a DNS label of at most {LLMISVC_NAME_MAX} characters (KServe "
                        "hashes longer child names such as <name>-kserve-workload-svc)")
    namespace = str(p["namespace"])
    if not (DNS_LABEL.match(namespace) and len(namespace) <= 63):
        problems.append(f"namespace {namespace} must be a DNS label")
    if not MODEL_URI.match(str(p["model_uri"])):
        problems.append(f"model_uri {p['model_uri']} needs a scheme such as hf:// s3:// gs:// pvc:// oci://")
    if not str(p["model_name"] or ""):
        problems.append("model_name must not be empty")
    if p["replicas"] < 0:
        problems.append("replicas must be >= 0")
    if not 1 <= p["accelerator_count"] <= per_node:
        problems.append(f"accelerator_count {p['accelerator_count']} must be between 1 and accelerator.per_node_count "
                        f"{per_node} (one replica runs on one node)")
    if acc["type"] != p["accelerator_type"]:
        problems.append(f"accelerator.type {acc['type']} differs from accelerator_type {p['accelerator_type']}")
    if not acc["startup_budget_seconds"] > 0:
        problems.append("accelerator.startup_budget_seconds must be > 0")
    topology = acc.get("tpu_topology")
    if topology:
        # A TPU topology (2x2, 2x2x1, 4x4, ...) describes the whole slice: more chips than one node has means a
        # multi-host slice, which needs a multi-node (LeaderWorkerSet) workload, not this single-node llmisvc.
        try:
            chips = topology_chips(topology, "accelerator.tpu_topology")
        except GkeError as exc:
            problems.append(exc.message)
        else:
            if chips > per_node:
                problems.append(f"accelerator.tpu_topology {topology} is a multi-host slice ({chips} chips, {per_node} "
                                f"per node of {p['machine_type']}): a single-node LLMInferenceService needs a "
                                "single-host topology")
    if not pool["max_node_count"] >= (pool.get("min_node_count") or 0):
        problems.append("nodepool.max_node_count must be >= nodepool.min_node_count")
    needed = nodes_needed(max(p["replicas"], 0), per_node, p["accelerator_count"])
    if needed > pool["max_node_count"]:
        problems.append(f"{p['replicas']} replicas x {p['accelerator_count']} {acc['resource_name']} need {needed} "
                        f"nodes but nodepool.max_node_count is {pool['max_node_count']}")
    return problems
