# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Node-pool capacity arithmetic of a pattern: replicas per node, nodes needed, replicas a pool can hold.

One replica of an LLMInferenceService runs on one node and asks for ``accelerator_count`` units of the
accelerator's extended resource (``nvidia.com/gpu``, ``google.com/tpu``); a node of the pattern's machine type has
``accelerator.per_node_count`` units. The pattern role (problems list), the llmisvc pre-flight (pool capacity) and
the switch (nodes during the overlap) all use these functions through the ``llm_serving.gke`` capacity filters.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)


class CapacityError(ValueError):
    """An input that is not a whole number (message names the input)."""


def _int(value, name):
    if isinstance(value, bool):
        raise CapacityError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CapacityError(f"{name} must be an integer, got {value!r}") from None


def replicas_per_node(per_node_count, accelerator_count, floor_one=True):
    """Replicas of ``accelerator_count`` units each that one node of ``per_node_count`` units holds.

    With ``floor_one`` (the default) at least 1, so a replica that asks for more than one node has is counted as
    one node per replica (the pattern's own check refuses such a replica with its own message); without it the
    plain quotient (0 when the replica does not fit a node).
    """
    per_node = _int(per_node_count, "accelerator.per_node_count")
    count = max(_int(accelerator_count, "accelerator_count"), 1)
    fit = per_node // count
    return max(fit, 1) if floor_one else max(fit, 0)


def nodes_needed(replicas, per_node_count, accelerator_count):
    """Nodes that ``replicas`` replicas need: ceil(replicas / replicas_per_node), 0 for 0 replicas."""
    wanted = max(_int(replicas, "replicas"), 0)
    fit = replicas_per_node(per_node_count, accelerator_count)
    return (wanted + fit - 1) // fit


def _allocatable(node, resource_name):
    status = (node or {}).get("status") or {}
    value = (status.get("allocatable") or {}).get(resource_name, 0)
    try:
        return int(str(value))
    except ValueError:
        return 0


def pool_capacity(nodes, resource_name, per_node_count, accelerator_count, max_nodes):
    """Replicas a node pool can hold: those that fit the allocatable resources of its nodes now, plus, for the
    nodes autoscaling may still add (``max_nodes`` minus the nodes there), ``replicas_per_node`` each.

    ``nodes`` are Node objects (``k8s_info`` resources); a node without the resource holds none.
    Returns a dict: ``capacity``, ``fit_now``, ``nodes_now``, ``max_nodes``, ``per_node``.
    """
    nodes = list(nodes or [])
    count = max(_int(accelerator_count, "accelerator_count"), 1)
    per_node = replicas_per_node(per_node_count, count, floor_one=False)
    limit = _int(max_nodes, "max_nodes")
    fit_now = sum(_allocatable(node, resource_name) // count for node in nodes)
    spare_nodes = max(limit - len(nodes), 0)
    return {"capacity": fit_now + spare_nodes * per_node, "fit_now": fit_now, "nodes_now": len(nodes),
            "max_nodes": limit, "per_node": per_node}


def pattern_nodes_needed(pattern, replicas=None):
    """nodes_needed of a resolved pattern (``replicas`` overrides the pattern's own)."""
    pattern = pattern or {}
    accelerator = pattern.get("accelerator") or {}
    return nodes_needed(pattern.get("replicas", 0) if replicas is None else replicas,
                        accelerator.get("per_node_count", 1), pattern.get("accelerator_count", 1))
