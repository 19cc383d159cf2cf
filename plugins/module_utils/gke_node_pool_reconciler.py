# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Node pool reconciliation: read the pool, diff it against the module parameters, apply each change with
the right verb (or recreate), with check mode, diff and the capacity fallback over zones.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from functools import partial

from ansible_collections.llm_serving.gke.plugins.module_utils.gke_client import TERMINAL_POOL_STATUSES
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import (
    after_view,
    autoscaling_body,
    build_node_pool,
    compute_diff,
    current_view,
    desired_view,
    update_body,
    validate_params,
)

APPLY_ORDER = ("node_locations", "labels", "taints", "machine_type", "accelerator", "image_type", "disk_type",
               "disk_size_gb", "autoscaling", "node_count")


def _managed(view, desired):
    """Restrict a view to the fields the user manages (diff mode shows only those)."""
    return {k: view.get(k) for k, v in desired.items() if v is not None}


def _record(result, operation, verb, field=None):
    result["operations"].append({
        "name": operation.get("name"),
        "operation_type": operation.get("operationType"),
        "status": operation.get("status"),
        "verb": verb,
        "field": field,
        "target_link": operation.get("targetLink"),
    })


class NodePoolReconciler:
    """Brings one node pool to the state described by the module parameters."""

    def __init__(self, client, params, check_mode=False):
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.name = params["name"]
        self.ctx = {"name": self.name, "machine_type": params.get("machine_type"),
                    "accelerator": params.get("accelerator")}
        self.result = {"changed": False, "operations": [], "node_pool": {}, "diff": {"before": {}, "after": {}}}

    def run(self):
        if self.params["state"] == "present":
            validate_params(self.params)
        pool = self.client.get_pool(self.name)
        if pool is not None and not self.check_mode:
            pool = self.client.wait_pool_at_rest(self.name, pool)
        if self.params["state"] == "absent":
            self._absent(pool)
        elif pool is None:
            self._create()
        else:
            self._converge(pool)
        self.result["retries"] = self.client.retries
        return self.result

    # Steps -----------------------------------------------------------------------------------------------------
    def _submit(self, verb, call, field=None, wait=True):
        operation = call()
        if wait:
            operation = self.client.wait(operation, self.ctx)
        _record(self.result, operation, verb, field)
        return operation

    def _absent(self, pool):
        if pool is None:
            return
        self.result["changed"] = True
        self.result["diff"] = {"before": {"name": self.name, "status": pool.get("status")}, "after": {}}
        self.result["node_pool"] = pool
        if not self.check_mode:
            self._submit("delete", partial(self.client.delete_pool, self.name), wait=self.params["wait"])
            self.result["node_pool"] = {}

    def _create(self, replacing=False):
        if not self.params.get("machine_type"):
            raise GkeError(f"machine_type is required to create node pool '{self.name}'", kind="invalid")
        body = build_node_pool(self.params)
        self.result["changed"] = True
        desired = desired_view(self.params)
        if not replacing:
            self.result["diff"] = {"before": {}, "after": dict(_managed(desired, desired), name=self.name)}
        self.result["node_pool"] = body
        if self.check_mode:
            return
        fallback = [z for z in self.params.get("fallback_locations") or [] if z not in (body.get("locations") or [])]
        if not fallback or not self.params["wait"]:
            self._submit("create", partial(self.client.create_pool, body), wait=self.params["wait"])
            self._refresh()
            return
        self._create_with_fallback(body, fallback)
        self._refresh()

    def _create_with_fallback(self, body, fallback):
        """Create; on GCE_STOCKOUT delete what GKE left (a pool in ERROR) and create again in the next zone of
        fallback_locations, in order. Reported as result.capacity_fallback {tried: [{zone, error}], used}."""
        report = {"tried": [], "used": None}
        self.result["capacity_fallback"] = report
        attempts = [None] + list(fallback)  # None: the locations the task asked for (or the cluster's)
        for index, zone in enumerate(attempts):
            attempt = dict(body, locations=[zone]) if zone else body
            try:
                self._submit("create", partial(self.client.create_pool, attempt), wait=True)
            except GkeError as exc:
                if exc.details.get("operation"):
                    _record(self.result, exc.details["operation"], "create")
                if exc.kind != "stockout" or index == len(attempts) - 1:
                    if exc.kind == "stockout":
                        exc.message += " (fallback_locations tried: {})".format(
                            ", ".join(t["zone"] for t in report["tried"] + [{"zone": zone or "requested"}]))
                    raise
                report["tried"].append({"zone": zone or ",".join(body.get("locations") or [self.client.location]),
                                        "error": exc.message})
                if self.client.get_pool(self.name) is not None:  # GKE keeps the failed pool, in ERROR
                    self._submit("delete", partial(self.client.delete_pool, self.name), wait=True)
                continue
            report["used"] = zone or ",".join(body.get("locations") or [self.client.location])
            if zone:
                self.result["node_pool"] = attempt
            return

    def _converge(self, pool):
        desired = desired_view(self.params)
        size = self.client.current_size(pool) if desired["node_count"] is not None else None
        current = current_view(pool, size)
        changes = compute_diff(desired, current)
        self.result["node_pool"] = pool
        self.result["diff"] = {"before": _managed(current, desired), "after": _managed(after_view(current, changes),
                                                                                       desired)}
        self.result["changes"] = changes
        immutable = [c["field"] for c in changes if c["verb"] == "recreate"]
        broken = pool.get("status") in TERMINAL_POOL_STATUSES
        if immutable or broken:
            self._recreate(pool, immutable, changes)
            return
        if not changes:
            return
        self.result["changed"] = True
        if self.check_mode:
            return
        ordered = sorted(changes, key=lambda c: APPLY_ORDER.index(c["field"]))
        replacing = [c for c in ordered if c.get("replaces_nodes")]
        steps = []
        for change in ordered:  # one surge upgrade for all node-replacing fields, where the first of them stands
            if not change.get("replaces_nodes"):
                steps.append(change)
            elif change is replacing[0]:
                steps.append({"group": replacing})
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            wait = self.params["wait"] or not last
            if "group" in step:
                self._apply_replacing(step["group"], desired, current, wait)
            else:
                self._apply(step, desired, current, wait=wait)
        self._refresh()

    def _apply_replacing(self, changes, desired, current, wait):
        """One UpdateNodePoolRequest with every node-replacing field (a single surge upgrade of the pool)."""
        body = {}
        for change in changes:
            body.update(update_body(change["field"], desired, current))
        fields = ",".join(c["field"] for c in changes)
        self._submit("update", partial(self.client.update_pool, self.name, body), field=fields, wait=wait)

    def _apply(self, change, desired, current, wait):
        field, verb = change["field"], change["verb"]
        if verb == "setAutoscaling":
            call = partial(self.client.set_autoscaling, self.name,
                           autoscaling_body(self.params["autoscaling"], current.get("autoscaling")))
        elif verb == "setSize":
            call = partial(self.client.set_size, self.name, desired["node_count"])
        else:
            call = partial(self.client.update_pool, self.name, update_body(field, desired, current))
        self._submit(verb, call, field=field, wait=wait)

    def _recreate(self, pool, immutable, changes):
        if not self.params.get("recreate"):
            if immutable:
                details = "; ".join("{}: {} -> {}".format(c["field"], c["before"], c["after"])
                                    for c in changes if c["verb"] == "recreate")
                raise GkeError(
                    f"Node pool '{self.name}' differs in field(s) GKE cannot change in place: {details}. Nothing "
                    "was changed. Set recreate: true to delete and recreate the pool (its nodes and their pods go "
                    "away), or create a pool under a new name.", kind="immutable",
                    details={"fields": immutable})
            # NodePool.conditions says why (statusMessage is deprecated: "Use conditions instead").
            reason = _conditions_text(pool) or pool.get("statusMessage") or "GKE gives no reason"
            state = ("only partially usable (RUNNING_WITH_ERROR: some nodes could not be created or updated)"
                     if pool.get("status") == "RUNNING_WITH_ERROR" else "in status ERROR (it may be unusable)")
            raise GkeError(f"Node pool '{self.name}' is {state}: {reason}. Delete it (state: absent) or rerun with "
                           "recreate: true.", kind="api", details={"node_pool": pool})
        self.result["changed"] = True
        self.result["recreated"] = True
        if self.check_mode:
            return
        self._submit("delete", partial(self.client.delete_pool, self.name), wait=True)
        self._create(replacing=True)

    def _refresh(self):
        if self.params["wait"] and not self.check_mode:
            self.result["node_pool"] = self.client.get_pool(self.name) or {}


def _conditions_text(pool):
    return "; ".join("{} {}".format(c.get("code") or "", c.get("message") or "") for c in pool.get("conditions") or [])
