# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What ``playbooks/teardown.yml`` may remove, and what stays billable afterwards.

Patterns share node pools (``p1-tpu`` and ``p3-tpu`` both run on ``tpu-v6e-pool``): a pool is scaled to zero or
deleted only when no LLMInferenceService of a pattern that is *not* being torn down still runs on it. Which pool
an llmisvc uses is read from the cluster object itself: its ``llm-serving.gke/pattern`` label names a catalog
entry (the llmisvc role writes it), else its ``spec.template.nodeSelector`` is compared with the pool's
``cloud.google.com/gke-nodepool`` label and with the accelerator node selector of the patterns that use the pool.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import copy

PATTERN_LABEL = "llm-serving.gke/pattern"
NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
EXAMPLE = "-e '{\"teardown_patterns\": [\"p3-gpu\"]}'"


class TeardownError(Exception):
    pass


def _deep_merge(base, override):
    """Dicts merged recursively, lists and scalars replaced (``combine(recursive=true, list_merge='replace')``)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def merged_catalog(catalog, overrides=None):
    """Every catalog entry with the inventory's ``pattern_overrides`` applied, as the pattern role does."""
    return {name: _deep_merge(entry, overrides or {}) for name, entry in (catalog or {}).items()}


def requested_patterns(patterns, catalog):
    """The patterns to tear down, in order and without repeats; refuses none and unknown names."""
    choices = ", ".join(sorted(catalog or {}))
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",")]
    names = []
    for name in patterns or []:
        if name and name not in names:
            names.append(name)
    if not names:
        raise TeardownError(
            "teardown_patterns is empty: teardown removes only the patterns it is given (there is no implicit "
            f"'all'). Name them, e.g. {EXAMPLE} or -e pattern_name=p3-gpu; choices: {choices}")
    unknown = [n for n in names if n not in (catalog or {})]
    if unknown:
        raise TeardownError(f"teardown_patterns names {', '.join(unknown)}, not in the pattern catalog "
                            f"(pattern_catalog + pattern_catalog_extra); choices: {choices}")
    return names


def namespaces_to_read(patterns, catalog, overrides=None):
    """Namespaces whose LLMInferenceServices tell which pools are still in use (validates ``patterns``)."""
    entries = merged_catalog(catalog, overrides)
    requested_patterns(patterns, entries)
    return sorted({entry["namespace"] for entry in entries.values() if entry.get("namespace")})


def _pool_of_entry(entry):
    return (entry.get("nodepool") or {}).get("name")


def _selector_of_entry(entry):
    return dict((entry.get("accelerator") or {}).get("node_selector") or {})


def _per_node(entry):
    accelerator = entry.get("accelerator") or {}
    per_node = int(accelerator.get("per_node_count") or 1)
    per_replica = int(entry.get("accelerator_count") or 1)
    return max(per_node // max(per_replica, 1), 1)


def _uses_pool(obj, pool, pool_entries, entries):
    """Why the llmisvc ``obj`` runs on ``pool`` ('' when it does not)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    pattern = labels.get(PATTERN_LABEL)
    if pattern in entries:
        return f"pattern {pattern}" if _pool_of_entry(entries[pattern]) == pool else ""
    selector = ((obj.get("spec") or {}).get("template") or {}).get("nodeSelector") or {}
    if selector.get(NODEPOOL_LABEL):
        return f"nodeSelector {NODEPOOL_LABEL}={pool}" if selector[NODEPOOL_LABEL] == pool else ""
    for entry in pool_entries:
        wanted = _selector_of_entry(entry)
        if wanted and all(selector.get(k) == v for k, v in wanted.items()):
            return "nodeSelector " + ",".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    return ""


def plan(patterns, catalog, deployed, overrides=None, delete_pools=False):
    """The teardown plan.

    ``deployed`` is the list of LLMInferenceService objects read from the cluster (any namespaces). Returns::

        {"patterns": [...],                       # in the order given, without repeats
         "pool_step": {pattern: action},          # node pool action at that pattern's step: scaled_to_zero,
                                                  # absent or none (pool kept, or handled at a later step)
         "pools": [{"name", "patterns", "action", "step", "kept_for": [{"llmisvc", "reason", "replicas",
                    "nodes"}], "nodes_needed"}]}

    A pool is handled once, at the step of the last given pattern that uses it, after every llmisvc of the given
    patterns on it is gone.
    """
    entries = merged_catalog(catalog, overrides)
    names = requested_patterns(patterns, entries)
    removed = {(entries[n]["namespace"], entries[n]["llmisvc_name"]) for n in names}
    pools = {}
    for name in names:
        pool = _pool_of_entry(entries[name])
        if not pool:
            continue
        info = pools.setdefault(pool, {"name": pool, "patterns": [], "kept_for": []})
        info["patterns"].append(name)
        info["step"] = name
    for pool, info in pools.items():
        pool_entries = [e for e in entries.values() if _pool_of_entry(e) == pool]
        for obj in deployed or []:
            meta = obj.get("metadata") or {}
            if (meta.get("namespace"), meta.get("name")) in removed or meta.get("deletionTimestamp"):
                continue
            reason = _uses_pool(obj, pool, pool_entries, entries)
            if not reason:
                continue
            replicas = (obj.get("spec") or {}).get("replicas")
            replicas = 1 if replicas is None else int(replicas)
            pattern = (meta.get("labels") or {}).get(PATTERN_LABEL)
            per_node = _per_node(entries[pattern]) if pattern in entries else 1
            info["kept_for"].append({
                "llmisvc": f"{meta.get('namespace')}/{meta.get('name')}",
                "pattern": pattern if pattern in entries else None,
                "reason": reason,
                "replicas": replicas,
                "nodes": (replicas + per_node - 1) // per_node,
            })
        info["nodes_needed"] = sum(k["nodes"] for k in info["kept_for"])
        if info["kept_for"]:
            info["action"] = "keep"
        else:
            info["action"] = "absent" if delete_pools else "scaled_to_zero"
    pool_step = {}
    for name in names:
        pool = _pool_of_entry(entries[name])
        info = pools.get(pool)
        pool_step[name] = info["action"] if info and info["step"] == name and info["action"] != "keep" else "none"
    return {"patterns": names, "pool_step": pool_step,
            "pools": [pools[p] for p in sorted(pools)]}


def billable_report(teardown, catalog, overrides=None, cluster=None, location=None, project=None,
                    cluster_pools=None):
    """Lines naming what still costs money after the teardown, each with the command that removes it.

    Prices are not computed here: the items are the GKE cluster fee, the Compute Engine VMs of node pools, the
    load balancer's forwarding rule and proxies of the Gateway, and Cloud Logging ingestion of load balancer logs
    (https://cloud.google.com/kubernetes-engine/pricing, https://cloud.google.com/vpc/network-pricing#lb,
    https://cloud.google.com/stackdriver/pricing).
    """
    entries = merged_catalog(catalog, overrides)
    cluster = cluster or "<cluster>"
    where = f"--cluster {cluster} --location {location or '<location>'}" + (f" --project {project}" if project
                                                                            else "")
    lines = []
    for info in teardown.get("pools", []):
        if info["action"] == "keep":
            users = "; ".join(f"{k['llmisvc']} ({k['reason']}, {k['replicas']} replica(s), {k['nodes']} node(s))"
                              for k in info["kept_for"])
            lines.append(f"Node pool {info['name']}: KEPT as it is, still used by {users}; it bills its nodes "
                         f"({info['nodes_needed']} needed). Remove it after those: ansible-playbook "
                         f"playbooks/teardown.yml -e '{{\"teardown_patterns\": [...]}}', or gcloud container "
                         f"node-pools delete {info['name']} {where}")
        elif cluster_pools is not None and info["name"] not in cluster_pools:
            lines.append(f"Node pool {info['name']}: does not exist in cluster {cluster} (nothing to remove).")
        elif info["action"] == "scaled_to_zero":
            lines.append(f"Node pool {info['name']}: scaled to 0 nodes (no VM charge while empty; autoscaling is "
                         f"off). Delete it: gcloud container node-pools delete {info['name']} {where} (or rerun "
                         "with teardown_delete_pools=true)")
        else:
            lines.append(f"Node pool {info['name']}: deleted.")
    handled = {info["name"] for info in teardown.get("pools", [])}
    for pool in sorted(set(cluster_pools or []) - handled):
        why = " (it runs the cluster's system pods: keep at least one node)" if pool == "default-pool" else ""
        lines.append(f"Node pool {pool}: not touched by this teardown; its nodes bill{why}. "
                     f"Shrink it: gcloud container clusters resize {cluster} --node-pool "
                     f"{pool} --num-nodes 0 --location {location or '<location>'}, or delete it: gcloud container "
                     f"node-pools delete {pool} {where}")
    if not cluster_pools:
        lines.append(f"Other node pools of {cluster} (default-pool at least): their nodes bill; list them with "
                     f"gcloud container node-pools list {where}")
    gateways = sorted({(entries[n]["gateway"]["namespace"], entries[n]["gateway"]["name"])
                       for n in teardown.get("patterns", []) if entries[n].get("gateway")})
    for namespace, name in gateways:
        lines.append(f"Gateway {namespace}/{name}: its load balancer (forwarding rule, target proxy, URL map; "
                     "regional classes also use a proxy-only subnet) bills per hour while the Gateway exists, "
                     "used or not. It is shared platform, not removed by teardown: kubectl delete gateway "
                     f"{name} -n {namespace} (GKE then deletes the load balancer)")
    lines.append("Load balancer logging: the GCPBackendPolicies of the removed patterns (logging.enabled) were "
                 "deleted with them; backends of remaining llmisvcs keep logging, and ingested logs stay in Cloud "
                 "Logging for the bucket's retention (gcloud logging buckets describe _Default --location global)")
    lines.append(f"GKE cluster {cluster}: the cluster management fee and its default pool bill until the cluster is "
                 f"deleted: gcloud container clusters delete {cluster} --location {location or '<location>'}"
                 + (f" --project {project}" if project else ""))
    return lines
