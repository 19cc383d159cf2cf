# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters ``gcloud_node_pool_create`` (the gcloud command equivalent to the node pool gke_node_pool would create) and
``node_pool_params`` (the gke_node_pool parameters of the nodepool role's inputs, which both the role's task and the
gcloud command take).

The logic lives in ``plugins/module_utils/gcloud_commands.py`` (unit-tested).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils.gcloud_commands import (
    node_pool_create_command,
    nodepool_params,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError


def gcloud_node_pool_create(profile, name, cluster, location, project=None, min_node_count=0, max_node_count=1,
                            initial_node_count=None, spot=False, location_policy=None, node_locations=None,
                            labels=None, reservation_affinity=None):
    if not name or not cluster or not location:
        raise AnsibleFilterError(f"gcloud_node_pool_create needs name, cluster and location (got {name!r}, "
                                 f"{cluster!r}, {location!r}): set llm_serving_gke_cluster and "
                                 "llm_serving_gcp_location")
    params = nodepool_params(name, profile, min_node_count, max_node_count, initial_node_count, spot,
                             location_policy, node_locations, labels, reservation_affinity)
    try:
        return node_pool_create_command(params, cluster, location, project or None)
    except GkeError as exc:
        raise AnsibleFilterError(f"node pool {name}: {exc}") from exc


def node_pool_params(profile, name, min_node_count=0, max_node_count=1, initial_node_count=None, spot=False,
                     location_policy=None, node_locations=None, labels=None, reservation_affinity=None):
    return nodepool_params(name, profile, min_node_count, max_node_count, initial_node_count, spot, location_policy,
                           node_locations, labels, reservation_affinity)


class FilterModule:
    def filters(self):
        return {"gcloud_node_pool_create": gcloud_node_pool_create, "node_pool_params": node_pool_params}
