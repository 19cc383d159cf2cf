# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Capacity filters ``replicas_per_node``, ``nodes_needed`` and ``pool_capacity`` of a resolved pattern.

The arithmetic lives in ``plugins/module_utils/capacity.py``; these filters map a pattern (the pattern role's
``pattern_resolved``) and Node objects onto it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils import capacity


def _pattern_numbers(pattern, name):
    if not isinstance(pattern, dict):
        raise AnsibleFilterError(f"{name}: the input must be a pattern (dict), got {type(pattern).__name__}")
    accelerator = pattern.get("accelerator")
    if not isinstance(accelerator, dict) or "per_node_count" not in accelerator:
        raise AnsibleFilterError(f"{name}: the pattern has no accelerator.per_node_count")
    return accelerator["per_node_count"], pattern.get("accelerator_count", 1)


def replicas_per_node(pattern):
    per_node, count = _pattern_numbers(pattern, "replicas_per_node")
    try:
        return capacity.replicas_per_node(per_node, count)
    except capacity.CapacityError as exc:
        raise AnsibleFilterError(f"replicas_per_node: {exc}") from exc


def nodes_needed(pattern, replicas=None):
    per_node, count = _pattern_numbers(pattern, "nodes_needed")
    try:
        return capacity.nodes_needed(pattern.get("replicas", 0) if replicas is None else replicas, per_node, count)
    except capacity.CapacityError as exc:
        raise AnsibleFilterError(f"nodes_needed: {exc}") from exc


def pool_capacity(nodes, pattern, max_nodes=None):
    per_node, count = _pattern_numbers(pattern, "pool_capacity")
    if max_nodes is None:
        max_nodes = (pattern.get("nodepool") or {}).get("max_node_count", 0)
    resource = (pattern.get("accelerator") or {}).get("resource_name", "")
    if not resource:
        raise AnsibleFilterError("pool_capacity: the pattern has no accelerator.resource_name")
    try:
        return capacity.pool_capacity(nodes, resource, per_node, count, max_nodes)
    except capacity.CapacityError as exc:
        raise AnsibleFilterError(f"pool_capacity: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"replicas_per_node": replicas_per_node, "nodes_needed": nodes_needed,
                "pool_capacity": pool_capacity}
