#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: gce_region_quota
short_description: Read the regional Compute Engine quota and check that new GKE nodes fit it
version_added: 0.2.0
description:
  - Reads one region with the Compute Engine API v1 (C(GET /compute/v1/projects/P/regions/R), see
    U(https://cloud.google.com/compute/docs/reference/rest/v1/regions/get)) and returns its C(quotas) as a table of
    limit, usage and available per metric.
  - With O(machine_type) (and O(accelerator_type), O(accelerator_count)) and O(nodes), works out the quota that many
    nodes need - the accelerator's metric (GPUs, TPU chips) and the machine family's vCPU metric (C(CPUS) for N1,
    C(<FAMILY>_CPUS) otherwise; the vCPU count is read from C(machineTypes.get)) - and whether it fits what is
    available. With O(cluster) and O(node_pool) only the nodes the pool does not have yet are counted (its size is
    read from its managed instance groups, as M(llm_serving.gke.gke_node_pool) does).
  - A metric the region does not list (for example TPU v6e, which the regional quota list does not document) or an
    unknown vCPU count is reported in RV(unchecked), never counted as a pass or a failure.
  - With O(fail_on_shortfall=true) the task fails when the nodes do not fit, naming each metric, the region, what is
    needed and what is available. Read-only; runs in check mode.
  - Same client, authentication and retries as M(llm_serving.gke.gke_node_pool) (C(google.cloud) C(GcpSession),
    HTTP 429/5xx retried with jittered backoff until O(timeout)); HTTP 401 fails with C(error_kind=auth).
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - google.cloud.gcp
  - llm_serving.gke.gcp
  - llm_serving.gke.gcp.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  location:
    description: Zone or region of the cluster (a zone is reduced to its region, C(europe-west4-a) -> C(europe-west4)).
    type: str
    required: true
  machine_type:
    description: Machine type of the nodes; selects the vCPU metric. Without it only the quota table is returned.
    type: str
  accelerator_type:
    description:
      - GPU type (C(nvidia-tesla-t4)) or TPU accelerator (C(tpu-v6e-slice), C(tpu-v5-lite-podslice)) of the nodes.
    type: str
  accelerator_count:
    description: GPUs or TPU chips per node.
    type: int
    default: 0
  spot:
    description:
      - Spot nodes use the C(PREEMPTIBLE_) metric of the accelerator, or the standard one when the region lists no
        preemptible metric for it.
    type: bool
    default: false
  nodes:
    description: Nodes the pool must have; the quota of the ones it does not have yet is checked.
    type: int
    default: 0
  cluster:
    description: Cluster of O(node_pool) (with O(node_pool), its current size is subtracted from O(nodes)).
    type: str
  node_pool:
    description: Node pool whose current size counts against O(nodes) (a pool that does not exist has 0 nodes).
    type: str
  cluster_resource:
    description:
      - The cluster as M(llm_serving.gke.gke_cluster_info) returned it in this run
        (RV(llm_serving.gke.gke_cluster_info#module:cluster)); when its C(name) is O(cluster), O(node_pool) is taken
        from its C(nodePools) instead of being read again (its size still comes from its instance groups).
    type: dict
    version_added: 0.3.0
  accelerator_metric:
    description: Quota metric of the accelerator, replacing the derived one (for example C(NVIDIA_T4_GPUS)).
    type: str
  cpu_metric:
    description: Quota metric of the vCPUs, replacing the derived one (for example C(N2_CPUS)).
    type: str
  fail_on_shortfall:
    description: Fail when the new nodes do not fit (RV(fits) false).
    type: bool
    default: false
  purpose:
    description: What the nodes are for, used in the failure message (for example C(pattern p3-gpu)).
    type: str
  timeout:
    default: 120
  api_endpoint:
    description: Base URL of the Container API (for O(node_pool)).
    type: str
    default: https://container.googleapis.com
seealso:
  - module: llm_serving.gke.gke_node_pool
  - name: Compute Engine API regions.get
    description: The region resource and its quotas.
    link: https://cloud.google.com/compute/docs/reference/rest/v1/regions/get
"""

EXAMPLES = r"""
- name: Refuse before any write when 3 T4 nodes do not fit the region's quota
  llm_serving.gke.gce_region_quota:
    project: my-project
    auth_kind: application
    location: europe-west4-a
    machine_type: n1-standard-4
    accelerator_type: nvidia-tesla-t4
    accelerator_count: 1
    nodes: 3
    cluster: llm-serving
    node_pool: gpu-t4-pool
    fail_on_shortfall: true
    purpose: pattern p3-gpu

- name: Read the quota table only
  llm_serving.gke.gce_region_quota:
    location: europe-west4
  register: region_quota

- name: Show the free T4 GPUs
  ansible.builtin.debug:
    msg: "{{ region_quota.quotas.NVIDIA_T4_GPUS.available | default('not listed') }}"
"""

RETURN = r"""
region:
  description: The region that was read.
  returned: always
  type: str
  sample: europe-west4
quotas:
  description: Every quota of the region, metric -> C(limit), C(usage) and C(available) (limit - usage, at least 0).
  returned: always
  type: dict
  sample: {"NVIDIA_T4_GPUS": {"limit": 16.0, "usage": 3.0, "available": 13.0}}
current_nodes:
  description: Nodes O(node_pool) has now, summed over its zones (0 without O(node_pool) or when it does not exist).
  returned: always
  type: int
new_nodes:
  description: O(nodes) minus RV(current_nodes), at least 0 - the nodes whose quota is checked.
  returned: always
  type: int
required:
  description:
    - One entry per checked metric - C(kind) (accelerator or cpu), C(metric), C(resource), C(per_node), C(needed)
      (per_node x new_nodes), C(limit), C(usage), C(available).
  returned: always
  type: list
  elements: dict
shortfalls:
  description: The entries of RV(required) whose C(needed) exceeds C(available).
  returned: always
  type: list
  elements: dict
unchecked:
  description: What could not be checked - C(kind), C(metric), C(resource), C(reason).
  returned: always
  type: list
  elements: dict
fits:
  description: False when at least one metric falls short.
  returned: always
  type: bool
retries:
  description: API calls that were retried (C(method), C(path), C(status), C(reason)).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpModule  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import gcp_client  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gce_quota import (  # noqa: E402
    QuotaInputError,
    fit,
    node_requirements,
    quota_table,
    refusal_message,
    region_of,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_client import ContainerClient  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError, auth_message  # noqa: E402

ARGUMENT_SPEC = dict(
    location=dict(type="str", required=True),
    machine_type=dict(type="str"),
    accelerator_type=dict(type="str"),
    accelerator_count=dict(type="int", default=0),
    spot=dict(type="bool", default=False),
    nodes=dict(type="int", default=0),
    cluster=dict(type="str"),
    node_pool=dict(type="str"),
    cluster_resource=dict(type="dict"),
    accelerator_metric=dict(type="str"),
    cpu_metric=dict(type="str"),
    fail_on_shortfall=dict(type="bool", default=False),
    purpose=dict(type="str"),
    timeout=dict(type="int", default=120),
    api_endpoint=dict(type="str", default="https://container.googleapis.com"),
    compute_endpoint=dict(type="str", default="https://compute.googleapis.com"),
)


def make_client(module):
    """ContainerClient on a Compute-product transport (the gke_node_pool client, auth and retries)."""
    params = module.params
    if not params.get("project"):
        params["project"] = gcp_client.default_project(module)
    if not params.get("project"):
        module.fail_json(msg="project is required: set the option project or the environment variable GCP_PROJECT "
                             "(with auth_kind application the project of Application Default Credentials is used "
                             "when it has one; none was found)")
    if gcp_client.requests is None:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("requests"))
    try:
        from google.auth.exceptions import GoogleAuthError
    except ImportError:  # GcpSession reports the missing library
        GoogleAuthError = GkeError  # noqa: N806 (a stand-in exception class)
    try:
        transport = gcp_client.make_transport(module, product="compute")
    except GoogleAuthError as exc:
        module.fail_json(msg=auth_message(params.get("auth_kind"), str(exc)), error_kind="auth")
    client = ContainerClient(transport, params["project"], params["location"], params.get("cluster"),
                             endpoint=params["api_endpoint"], compute_endpoint=params["compute_endpoint"],
                             timeout=params["timeout"])
    client.context["auth_kind"] = params.get("auth_kind")
    return client


def read_region(client, region):
    path = f"/compute/v1/projects/{client.project}/regions/{region}"
    payload = client.call("GET", path, base=client.compute_endpoint, action=f"read region {region}",
                          allow_404=True)
    if payload is None:
        raise GkeError(f"Region '{region}' does not exist in project {client.project} (Compute API "
                       "regions.get answered 404); check location.", kind="invalid", status=404)
    return payload


def guest_cpus(client, location, region_payload, machine_type):
    """vCPUs of machine_type from machineTypes.get in the location's zone (or the region's first zone)."""
    zone = location if location != region_payload.get("name") else None
    if zone is None:
        zones = [url.rstrip("/").rsplit("/", 1)[-1] for url in region_payload.get("zones") or []]
        zone = sorted(zones)[0] if zones else None
    if not zone:
        return None
    path = f"/compute/v1/projects/{client.project}/zones/{zone}/machineTypes/{machine_type}"
    payload = client.call("GET", path, base=client.compute_endpoint, action=f"read machine type {machine_type}",
                          allow_404=True)
    if not payload or "guestCpus" not in payload:
        return None
    return int(payload["guestCpus"])


def current_nodes(client, name, cluster_resource=None):
    """Nodes of pool ``name`` now; the pool comes from ``cluster_resource`` (a cluster already read) when given."""
    if cluster_resource:
        pool = next((p for p in cluster_resource.get("nodePools") or [] if p.get("name") == name), None)
    else:
        pool = client.get_pool(name)
    if pool is None:
        return 0
    sizes = client.zone_sizes(pool)
    # Unreadable instance groups count as no nodes: the check then asks for more quota, never less.
    return sum(sizes.values()) if sizes else 0


def run(module, client):
    params = module.params
    region = region_of(params["location"])
    payload = read_region(client, region)
    table = quota_table(payload)
    result = {"changed": False, "region": region, "quotas": table, "current_nodes": 0, "new_nodes": 0,
              "required": [], "shortfalls": [], "unchecked": [], "fits": True}
    if not params.get("machine_type") and not params.get("accelerator_type"):
        return result
    if params["nodes"] < 0:
        raise QuotaInputError(f"nodes must be >= 0, got {params['nodes']}")
    cpus = guest_cpus(client, params["location"], payload, params["machine_type"]) if params.get("machine_type") \
        else None
    given = params.get("cluster_resource") or {}
    given = given if given.get("name") == params.get("cluster") else None
    now = current_nodes(client, params["node_pool"], given) if params.get("cluster") and params.get("node_pool") \
        else 0
    new_nodes = max(params["nodes"] - now, 0)
    requirements = node_requirements(params.get("machine_type"), params.get("accelerator_type"),
                                     params["accelerator_count"], guest_cpus=cpus, spot=params["spot"],
                                     accelerator_metric_name=params.get("accelerator_metric"),
                                     cpu_metric_name=params.get("cpu_metric"))
    result.update(fit(table, requirements, new_nodes), current_nodes=now, new_nodes=new_nodes)
    return result


def main():
    module = GcpModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                       required_together=[("cluster", "node_pool")])
    try:
        region_of(module.params["location"])
    except QuotaInputError as exc:
        module.fail_json(msg=str(exc), error_kind="invalid")
    client = make_client(module)
    try:
        result = run(module, client)
    except QuotaInputError as exc:
        module.fail_json(msg=str(exc), error_kind="invalid")
    except GkeError as exc:
        module.fail_json(msg=exc.message, error_kind=exc.kind, retries=client.retries)
    result["retries"] = client.retries
    if module.params["fail_on_shortfall"] and not result["fits"]:
        what = module.params.get("purpose")
        if module.params.get("node_pool"):
            what = (what + ", " if what else "") + f"node pool {module.params['node_pool']}"
        module.fail_json(msg=refusal_message(client.project, result["region"], result, result["new_nodes"], what),
                         error_kind="quota", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
