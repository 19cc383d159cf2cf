# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Capacity of a pattern switch (the ``switch`` role): can the target node pool hold the new pattern while the
old one still runs (zero downtime), and does the new one fit alone once the old one is gone (downtime)?

Nodes come from ``capacity.pattern_nodes_needed`` (the ``nodes_needed`` filter); quota from the result of the
``gce_region_quota`` module (its ``required`` entries: metric, per_node, limit, usage, available). Pure Python,
unit tested; the role maps Node counts and the module's result onto ``switch_capacity`` and acts on the answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from ansible_collections.llm_serving.gke.plugins.module_utils.capacity import pattern_nodes_needed
from ansible_collections.llm_serving.gke.plugins.module_utils.gce_quota import accelerator_metric


def _num(value):
    return f"{float(value):g}"


def _quota_note(quota, check_quota, metric):
    """Why the quota was not checked ('' when it was)."""
    if not check_quota:
        return "quota not checked: switch_check_quota=false"
    if not quota:
        return "quota not checked: the region was not read"
    if quota.get("failed"):
        return "quota not checked: the region read failed ({})".format(quota.get("msg", "no message"))
    for entry in quota.get("unchecked") or []:
        if entry.get("kind") == "accelerator":
            return "quota not checked: {} (set switch_quota_metric)".format(entry.get("reason"))
    return "quota not checked: no accelerator quota metric for {}".format(metric or "this accelerator")


def switch_capacity(to, frm, same_llmisvc, nodes_now, old_pool_nodes, quota=None, max_nodes=None,
                    check_quota=True, names=("switch_to", "switch_from")):
    """The ``switch_capacity`` fact of the switch role (see the filter's documentation for every key).

    ``to``/``frm`` are resolved patterns; ``nodes_now`` the Nodes of the target pool now; ``old_pool_nodes`` those
    of the old pattern's pool (ignored when it is the same pool); ``quota`` the registered ``gce_region_quota``
    result (None or skipped: not checked); ``max_nodes`` is switch_max_nodes (None: no limit).
    """
    to_name, from_name = names
    to_pool, from_pool = to["nodepool"], frm["nodepool"]
    same_pool = to_pool["name"] == from_pool["name"]
    to_nodes = pattern_nodes_needed(to)
    from_nodes = pattern_nodes_needed(frm) if same_pool and not same_llmisvc else 0
    needed = to_nodes + from_nodes
    normal_max = max(int(to_pool["max_node_count"]), to_nodes)
    nodes_now = int(nodes_now)
    old_pool_nodes = 0 if same_pool else int(old_pool_nodes)
    limit = None if max_nodes in (None, "") else int(max_nodes)

    quota = quota if quota and not quota.get("skipped") else None
    entry = None
    if check_quota and quota and not quota.get("failed"):
        entry = next((e for e in quota.get("required") or [] if e.get("kind") == "accelerator"), None)
    per_node_units = int(to["accelerator"]["per_node_count"])
    metric = entry["metric"] if entry else None
    available = int(entry["available"]) if entry else None
    new_overlap_nodes = max(needed - nodes_now, 0)
    overlap_units = new_overlap_nodes * per_node_units
    # With downtime the old pattern's nodes are freed first (same pool: reused; another pool with the same
    # accelerator: its quota comes back when it scales down).
    downtime_units = max(to_nodes - (nodes_now if same_pool else 0), 0) * per_node_units
    same_kind = frm.get("accelerator_type") == to.get("accelerator_type")
    freed_units = old_pool_nodes * int(frm["accelerator"]["per_node_count"]) if same_kind else 0

    limit_ok = limit is None or needed <= limit
    quota_ok = entry is None or overlap_units <= available
    downtime_limit_ok = limit is None or to_nodes <= limit
    downtime_quota_ok = entry is None or downtime_units <= available + freed_units

    problems = []
    if not limit_ok:
        problems.append(f"running both needs {needed} node(s) in pool {to_pool['name']} ({to_nodes} for {to_name} + "
                        f"{from_nodes} still used by {from_name}) but switch_max_nodes is {limit}")
    if not quota_ok:
        problems.append(f"running both needs {overlap_units} more {metric} ({new_overlap_nodes} new node(s) x "
                        f"{per_node_units}) but the region has {available} available (limit {_num(entry['limit'])}, "
                        f"usage {_num(entry['usage'])})")
    return {
        "both_fit": limit_ok and quota_ok,
        "new_alone_fits": downtime_limit_ok and downtime_quota_ok,
        "same_pool": same_pool,
        "pool": to_pool["name"],
        "nodes_now": nodes_now,
        "new_nodes": to_nodes,
        "old_nodes_in_pool": from_nodes,
        "needed_nodes": needed,
        "raised_max": max(needed, normal_max),
        "normal_max": normal_max,
        "max_nodes_limit": limit,
        "quota_checked": entry is not None,
        "quota_metric": metric or accelerator_metric(to.get("accelerator_type"), bool(to_pool.get("spot"))) or "",
        "quota_limit": entry["limit"] if entry else None,
        "quota_usage": entry["usage"] if entry else None,
        "quota_available": available,
        "quota_needed": overlap_units,
        "quota_freed_by_old": freed_units,
        "quota_note": "" if entry else _quota_note(quota, check_quota, metric),
        "problems": problems,
    }
