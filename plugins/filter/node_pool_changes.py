# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter ``node_pool_changes``: what llm_serving.gke.gke_node_pool would change on a node pool, decided from a
cluster already read (``gke_cluster_info``'s ``cluster``), or None when only the module can tell.

The comparison is the module's own (``desired_view`` / ``current_view`` / ``compute_diff`` of
``plugins/module_utils/gke_node_pool_spec.py``, on the options normalised with the module's argument spec), so a
rerun whose pool already matches can skip the module run and its background job.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import (
    NODE_POOL_ARGUMENT_SPEC,
    compute_diff,
    current_view,
    desired_view,
    validate_params,
)

# GKE NodePool.status of a pool at rest that the module would converge in place (the reconciler first waits for
# PROVISIONING / RECONCILING / STOPPING and recreates ERROR / RUNNING_WITH_ERROR pools): anything else is left to it.
SETTLED_STATUS = "RUNNING"


def _omitted(value):
    # ansible-core 2.19 hands an omitted value to a filter as its Omit sentinel, older releases as a placeholder.
    return type(value).__name__ == "_OmitType" or (isinstance(value, str) and value.startswith("__omit_place_holder__"))


def _strip_omitted(value):
    if isinstance(value, dict):
        return {k: _strip_omitted(v) for k, v in value.items() if not _omitted(v)}
    if isinstance(value, list):
        return [_strip_omitted(v) for v in value if not _omitted(v)]
    return value


def node_pool_changes(cluster, params):
    """The changes (list of {field, before, after, verb}) gke_node_pool would make to pool ``params['name']`` of
    ``cluster``; [] when it matches; None when the module must decide (no such pool, pool not RUNNING, a size to
    compare, state absent, options the module would refuse or normalise differently)."""
    if not isinstance(params, dict) or not params.get("name"):
        raise AnsibleFilterError("node_pool_changes: the argument must be the gke_node_pool options, with name")
    if not isinstance(cluster, dict):
        return None
    pool = next((p for p in cluster.get("nodePools") or [] if p.get("name") == params["name"]), None)
    if pool is None or pool.get("status") != SETTLED_STATUS:
        return None
    options = {k: v for k, v in _strip_omitted(params).items() if k in NODE_POOL_ARGUMENT_SPEC}
    checked = ArgumentSpecValidator(NODE_POOL_ARGUMENT_SPEC).validate(options)
    if checked.error_messages:
        return None
    options = checked.validated_parameters
    if options.get("state") != "present" or options.get("node_count") is not None or options.get("recreate"):
        return None
    try:
        validate_params(options)
    except GkeError:
        return None
    return compute_diff(desired_view(options), current_view(pool))


class FilterModule:
    def filters(self):
        return {"node_pool_changes": node_pool_changes}
