#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: gke_cluster_info
short_description: Read a GKE cluster and check that its zones offer a machine type and accelerator
version_added: 0.1.0
description:
  - Reads one cluster through the Container API v1 and reports whether it exists, its Gateway API channel and
    node pools; optionally checks with the Compute Engine API that every zone the nodes would use offers
    O(machine_type) and O(accelerator_type).
  - Read-only. Meant for pre-flight checks before creating node pools (used by the C(nodepool) role).
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - google.cloud.gcp
  - llm_serving.gke.gcp
  - llm_serving.gke.gcp.cluster
  - llm_serving.gke.gcp.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  machine_type:
    description: Machine type that every zone in RV(zones) must offer.
    type: str
  accelerator_type:
    description: GPU type that every zone in RV(zones) must offer (for example V(nvidia-tesla-t4)).
    type: str
  node_locations:
    description:
      - Zones to check. Defaults to O(location) for a zonal cluster, else the cluster's node zones.
    type: list
    elements: str
  timeout:
    default: 120
seealso:
  - module: llm_serving.gke.gke_node_pool
"""

EXAMPLES = r"""
- name: Pre-flight for a T4 pool
  llm_serving.gke.gke_cluster_info:
    project: my-project
    location: europe-west4-a
    cluster: llm-serving
    machine_type: n1-standard-4
    accelerator_type: nvidia-tesla-t4
    auth_kind: application
  register: preflight

- name: Fail unless Gateway API is enabled
  ansible.builtin.assert:
    that: preflight.gateway_api_enabled
"""

RETURN = r"""
exists:
  description: Whether the cluster exists.
  returned: always
  type: bool
cluster:
  description: The cluster as GKE reports it (empty when it does not exist).
  returned: always
  type: dict
status:
  description: Cluster status, for example C(RUNNING).
  returned: when the cluster exists
  type: str
gateway_api_channel:
  description: Gateway API channel (C(CHANNEL_STANDARD), C(CHANNEL_DISABLED), ...).
  returned: when the cluster exists
  type: str
gateway_api_enabled:
  description: Whether the Gateway API is enabled on the cluster.
  returned: when the cluster exists
  type: bool
http_load_balancing_enabled:
  description: Whether the HttpLoadBalancing add-on (needed by GKE Gateways) is enabled.
  returned: when the cluster exists
  type: bool
node_pools:
  description: Names of the cluster's node pools.
  returned: when the cluster exists
  type: list
  elements: str
zones:
  description: Zones that were checked.
  returned: when the cluster exists
  type: list
  elements: str
machine_type_missing_zones:
  description: Zones that do not offer O(machine_type).
  returned: when the cluster exists
  type: list
  elements: str
accelerator_missing_zones:
  description: Zones that do not offer O(accelerator_type).
  returned: when the cluster exists
  type: list
  elements: str
"""

from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpModule  # noqa: E402 (imports follow the docs)
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_client import client_from_module, cluster_facts  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import is_zone  # noqa: E402


def zones_to_check(params, facts):
    if params.get("node_locations"):
        return list(params["node_locations"])
    if is_zone(params["location"]):
        return [params["location"]]
    return list(facts["locations"])


def main():
    module = GcpModule(
        argument_spec=dict(
            location=dict(type="str", required=True),
            cluster=dict(type="str", required=True),
            machine_type=dict(type="str"),
            accelerator_type=dict(type="str"),
            node_locations=dict(type="list", elements="str"),
            timeout=dict(type="int", default=120),
            api_endpoint=dict(type="str", default="https://container.googleapis.com"),
            compute_endpoint=dict(type="str", default="https://compute.googleapis.com"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    client = client_from_module(module)
    try:
        cluster = client.get_cluster()
        if cluster is None:
            module.exit_json(changed=False, exists=False, cluster={})
        facts = cluster_facts(cluster)
        zones = zones_to_check(params, facts)
        missing_machine = [z for z in zones if params["machine_type"]
                           and not client.machine_type_exists(z, params["machine_type"])]
        missing_accel = [z for z in zones if params["accelerator_type"]
                         and not client.accelerator_type_exists(z, params["accelerator_type"])]
    except GkeError as exc:
        module.fail_json(msg=exc.message, error_kind=exc.kind)
    module.exit_json(changed=False, exists=True, cluster=cluster, zones=zones,
                     machine_type_missing_zones=missing_machine, accelerator_missing_zones=missing_accel, **facts)


if __name__ == "__main__":
    main()
