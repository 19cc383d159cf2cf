#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: gke_proxy_subnet
short_description: Ensure the proxy-only subnet that regional GKE Gateways need
version_added: 0.2.0
description:
  - Makes sure that O(network) has an active proxy-only subnet (purpose C(REGIONAL_MANAGED_PROXY), role C(ACTIVE)) in
    O(region), as the regional GKE Gateway classes C(gke-l7-rilb) and C(gke-l7-regional-external-managed) need
    (U(https://cloud.google.com/load-balancing/docs/proxy-only-subnets)).
  - Any existing active proxy-only subnet of that network and region is accepted, whatever its name or range (a
    region and network can have only one); otherwise O(name) is created with O(ip_cidr_range) through the Compute
    Engine API (U(https://cloud.google.com/compute/docs/reference/rest/v1/subnetworks/insert)) and the task waits
    for the region operation.
  - Never deletes or changes a subnet.
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - google.cloud.gcp
  - llm_serving.gke.gcp
  - llm_serving.gke.gcp.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  region:
    description: Region of the subnet (the GKE cluster's region; a zone is accepted and its region used).
    type: str
    required: true
  network:
    description: VPC network name of the GKE cluster.
    type: str
    default: default
  name:
    description: Name of the subnet to create when none exists.
    type: str
    default: proxy-only-subnet
  ip_cidr_range:
    description:
      - Primary range of the subnet to create; a /23 is recommended, and it must not overlap another subnet of the
        network.
    type: str
    default: 10.129.0.0/23
  timeout:
    description: Seconds for the whole task, the wait for the operation included.
    default: 300
notes:
  - Needs C(compute.subnetworks.list) and, to create, C(compute.subnetworks.create) (roles/compute.networkAdmin).
seealso:
  - module: llm_serving.gke.gke_platform_check
"""

EXAMPLES = r"""
- name: Proxy-only subnet for a regional Gateway
  llm_serving.gke.gke_proxy_subnet:
    project: my-project
    region: europe-west4
    network: default
    auth_kind: application
"""

RETURN = r"""
subnet:
  description: The active proxy-only subnet (the existing one, or the created one; in check mode the one to create).
  returned: always
  type: dict
created:
  description: Whether the subnet was (or in check mode would be) created.
  returned: always
  type: bool
"""

import time  # noqa: E402 - imports follow the documentation blocks in Ansible modules

from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpModule  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import gke_platform as gp  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gcp_client import (  # noqa: E402
    GcpClient,
    default_project,
    make_transport,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError  # noqa: E402


def subnet_body(project, params):
    return {"name": params["name"], "network": f"projects/{project}/global/networks/{params['network']}",
            "ipCidrRange": params["ip_cidr_range"], "purpose": "REGIONAL_MANAGED_PROXY", "role": "ACTIVE",
            "description": "Proxy-only subnet for regional GKE Gateways (llm_serving.gke)"}


def wait_operation(client, project, region, operation):
    path = f"/compute/v1/projects/{project}/regions/{region}/operations/{operation['name']}"
    while operation.get("status") != "DONE":
        if client.remaining() <= 0:
            raise GkeError(f"timed out waiting for Compute operation {operation['name']} "
                           f"({operation.get('operationType')} {operation.get('targetLink')}); raise timeout or see "
                           f"gcloud compute operations describe {operation['name']} --region {region}", kind="timeout")
        client.sleep(min(client.poll_interval, max(client.remaining(), 0)))
        operation = client.call("GET", path, action=f"read operation {operation['name']}")
    errors = (operation.get("error") or {}).get("errors") or []
    if errors:
        raise GkeError("creating the proxy-only subnet failed: " + "; ".join(e.get("message", "") for e in errors),
                       kind="api", details={"operation": operation})
    return operation


def run(module, client):
    params = module.params
    project, region = client.project, gp.region_of(params["region"])
    path = f"/compute/v1/projects/{project}/regions/{region}/subnetworks"
    listing = client.call("GET", path, action=f"list subnetworks in {region}")
    found = gp.proxy_only_subnets(listing.get("items") or [], params["network"])
    if found:
        return dict(changed=False, created=False, subnet=found[0])
    body = subnet_body(project, params)
    if module.check_mode:
        return dict(changed=True, created=True, subnet=body)
    operation = client.call("POST", path, body=body, action=f"create proxy-only subnet {params['name']} in {region}")
    wait_operation(client, project, region, operation)
    subnet = client.call("GET", f"{path}/{params['name']}", action=f"read subnet {params['name']}")
    return dict(changed=True, created=True, subnet=subnet)


def main():
    module = GcpModule(
        argument_spec=dict(
            region=dict(type="str", required=True),
            network=dict(type="str", default="default"),
            name=dict(type="str", default="proxy-only-subnet"),
            ip_cidr_range=dict(type="str", default="10.129.0.0/23"),
            timeout=dict(type="int", default=300),
            compute_endpoint=dict(type="str", default="https://compute.googleapis.com"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not params.get("project"):
        params["project"] = default_project(module)
    if not params.get("project"):
        module.fail_json(msg="project is required: set the option project or the environment variable GCP_PROJECT")
    try:
        client = GcpClient(make_transport(module, product="compute"), params["project"],
                           endpoint=params["compute_endpoint"], timeout=params["timeout"], sleep=time.sleep)
        module.exit_json(**run(module, client))
    except GkeError as exc:
        module.fail_json(msg=exc.message, error_kind=exc.kind)


if __name__ == "__main__":
    main()
