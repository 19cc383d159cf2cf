#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: gke_node_pool
short_description: Create, update, resize and delete GKE node pools for GPU and TPU inference
version_added: 0.1.0
description:
  - Manages one node pool of a GKE cluster through the Container API v1.
  - Reads the pool, computes a per-field difference and applies it with the call GKE expects for each field
    (C(POST .../nodePools) to create, C(:setAutoscaling), C(:setSize), C(PUT .../nodePools/NAME) for labels,
    taints, node locations, machine type, accelerator, image and disk), waiting on every returned operation with
    a timeout.
  - O(machine_type), O(accelerator), O(disk_size_gb), O(disk_type) and O(image_type) are changed in place with one
    C(nodePools.update) (C(UpdateNodePoolRequest)), which "initiates an upgrade operation that migrates the nodes"
    (Container API v1 discovery document) - GKE replaces every node, node by node as the pool's C(upgradeSettings)
    say (surge - by default one new node is created and Ready before an old one is drained). Such changes carry
    C(replaces_nodes=true) in RV(changes). Pods move; capacity is kept, but a stockout during the surge ends the
    operation with the old nodes still serving and the pool in C(RUNNING_WITH_ERROR).
  - Fields GKE cannot change on an existing pool (O(spot), O(tpu_topology), O(service_account), O(oauth_scopes), and
    a machine type change between TPU and non-TPU machine types) fail with a message naming the field, unless
    O(recreate=true) (delete, then create - all capacity is gone first, and a TPU re-create risks a stockout).
  - Retries with jittered backoff on HTTP 429 and 5xx and while another operation runs on the cluster.
    Stockout and quota errors fail at once with the zone, the resource and what to try.
  - GKE runs one operation per cluster at a time and answers a second write with HTTP 400 C(FAILED_PRECONDITION),
    worded in several ways (C(Cluster is running incompatible operation ...), C(Operation operation-... is
    currently upgrading cluster X. Please wait and try again once it is done.), or no text at all). Every
    HTTP 400 C(FAILED_PRECONDITION) is retried until O(timeout), whatever its wording, as Terraform's
    C(google_container_node_pool) does (C(retryWhileIncompatibleOperation) in
    C(google/services/container/resource_container_node_pool.go) of hashicorp/terraform-provider-google).
  - Before changing or deleting an existing pool the module waits until the pool is at rest (status
    C(RUNNING), C(RUNNING_WITH_ERROR) or C(ERROR), not C(PROVISIONING), C(RECONCILING) or C(STOPPING)), as
    Terraform does (C(containerNodePoolAwaitRestingState)). Check mode does not wait.
author:
  - llm_serving.gke maintainers (@llm-serving)
extends_documentation_fragment:
  - google.cloud.gcp
  - llm_serving.gke.gcp
  - llm_serving.gke.gcp.cluster
  - llm_serving.gke.gcp.attributes
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  check_mode:
    details: Reads the pool and reports what would change; sends no write.
  diff_mode:
    support: full
    details: Before and after of the fields the task sets.
options:
  name:
    description: Name of the node pool.
    type: str
    required: true
  state:
    description: Whether the node pool should exist.
    type: str
    choices: [present, absent]
    default: present
  machine_type:
    description:
      - Compute Engine machine type of the nodes, for example V(n1-standard-4) or V(ct6e-standard-4t) (TPU v6e,
        4 chips). Required to create a pool.
    type: str
  accelerator:
    description:
      - GPU attached to each node. Leave unset for TPU pools; TPU chips come with the machine type.
    type: dict
    suboptions:
      type:
        description: Accelerator type, for example V(nvidia-tesla-t4) or V(nvidia-l4).
        type: str
        required: true
      count:
        description: Number of GPUs per node.
        type: int
        default: 1
      gpu_driver_version:
        description:
          - How GKE installs the NVIDIA driver. Unset leaves the choice to GKE and is not compared.
        type: str
        choices: [DEFAULT, LATEST, INSTALLATION_DISABLED]
  tpu_topology:
    description:
      - TPU slice topology. For a multi-host slice (for example V(4x4) on V(ct6e-standard-4t), 4 nodes) the pool
        is that one slice, so O(autoscaling.max_node_count) must equal its node count.
      - The machine type's own single-host topology is accepted and is the same as leaving the option unset; GKE
        derives it from the machine type, so the module does not send it. Google's TPU v6e table
        (U(https://cloud.google.com/tpu/docs/v6e), "Supported configurations") lists V(2x2) for
        V(ct6e-standard-4t), V(1x1) for V(ct6e-standard-1t) and V(2x4) for V(ct6e-standard-8t).
      - Shapes the TPU generation does not have are refused before any call, for example V(2x2x1) on
        V(ct6e-standard-4t) (v6e slices are 2-D; GKE answers C(Could not find TPU topology)). TPU7x
        (V(tpu7x-standard-4t)) places multi-host slices with a workload policy rather than a topology
        (U(https://cloud.google.com/kubernetes-engine/docs/concepts/tpu-ironwood)), so only its own V(2x2x1) is
        accepted.
      - The TPU machine types, their chips per VM and topologies come from one table (C(TPU_MACHINE_TYPES) in
        C(plugins/module_utils/tpu_topology.py)), which the C(nodepool) role also uses.
    type: str
  spot:
    description: Use Spot VMs for the nodes.
    type: bool
  autoscaling:
    description:
      - Cluster autoscaler settings, applied to an existing pool with C(:setAutoscaling).
      - C(:setAutoscaling) replaces the pool's whole autoscaling setting; GKE resets a field the request leaves out
        (only O(autoscaling.max_node_count) would set the minimum to 0 and the location policy back to
        V(BALANCED)). The module therefore always sends minimum, maximum and location policy, taking the
        sub-options left unset from the pool as it is, as Terraform's C(google_container_node_pool) does.
    type: dict
    suboptions:
      enabled:
        description: Enable the autoscaler. V(false) disables it (then O(node_count) sets the size).
        type: bool
        default: true
      min_node_count:
        description: Minimum number of nodes (per zone).
        type: int
      max_node_count:
        description: Maximum number of nodes (per zone). Must be at least the number of replicas to schedule.
        type: int
      location_policy:
        description: How the autoscaler spreads nodes over zones.
        type: str
        choices: [BALANCED, ANY]
  initial_node_count:
    description:
      - Number of nodes created with the pool (per zone). Only used at creation.
      - Defaults to O(node_count), else O(autoscaling.min_node_count), else V(1).
    type: int
  node_count:
    description:
      - Desired number of nodes (per zone), applied with C(:setSize). V(0) with O(autoscaling.enabled=false)
        scales a pool to zero.
      - The current size is read per zone from the C(targetSize) of the pool's zonal managed instance groups
        (one per zone of O(node_locations)), since GKE applies C(setSize.nodeCount) to every zone ("the new size
        represents the number of nodes in the node pool per zone",
        U(https://cloud.google.com/sdk/gcloud/reference/container/clusters/resize)). A pool of 2 zones x 2 nodes
        matches V(2); zones of different sizes are a change. When the size cannot be read, the resize is sent and
        the task reports a change.
    type: int
  node_locations:
    description: Zones of the nodes (must be in the cluster's region).
    type: list
    elements: str
  labels:
    description:
      - Kubernetes labels of the nodes. The whole set is managed; labels under C(cloud.google.com/) that GKE
        adds and that are not named here are kept.
    type: dict
  taints:
    description:
      - Kubernetes taints of the nodes, as V(key=value:Effect) strings or C({key, value, effect}) dicts.
        Effects V(NoSchedule), V(PreferNoSchedule), V(NoExecute) or their API names.
      - The whole set is managed; the V(nvidia.com/gpu) and V(google.com/tpu) taints GKE adds are kept.
    type: list
    elements: raw
  disk_size_gb:
    description: Boot disk size in GB.
    type: int
  disk_type:
    description: Boot disk type, for example V(pd-balanced).
    type: str
  image_type:
    description: Node image, for example V(COS_CONTAINERD).
    type: str
  service_account:
    description: Google service account of the nodes.
    type: str
  oauth_scopes:
    description: OAuth scopes of the nodes.
    type: list
    elements: str
  reservation_affinity:
    description:
      - Which Compute Engine reservations the nodes consume (C(NodeConfig.reservationAffinity)). Reserved capacity is
        how TPU and GPU users avoid stockouts. Set at creation; a change needs O(recreate=true) (GKE's
        C(UpdateNodePoolRequest) has no reservation field).
    type: dict
    suboptions:
      consume_reservation_type:
        description:
          - V(ANY_RESERVATION) consumes any matching reservation, V(SPECIFIC_RESERVATION) only the ones in
            O(reservation_affinity.values), V(NO_RESERVATION) none, V(ANY_RESERVATION_THEN_FAIL) any matching one and
            fails node creation when none is left (ReservationAffinity in the Container API v1 discovery document).
        type: str
        required: true
        choices: [NO_RESERVATION, ANY_RESERVATION, SPECIFIC_RESERVATION, ANY_RESERVATION_THEN_FAIL]
      key:
        description:
          - Label key of the reservation resource; defaults to C(compute.googleapis.com/reservation-name) (target
            reservations by name) when O(reservation_affinity.values) is set.
        type: str
      values:
        description: Reservation names (or label values) for V(SPECIFIC_RESERVATION).
        type: list
        elements: str
  fallback_locations:
    description:
      - Opt-in capacity fallback. Zones of the cluster's region tried in order when creating the pool hits
        C(GCE_STOCKOUT) - the failed pool (which GKE leaves in C(ERROR)) is deleted and the pool is created again
        with C(locations) set to the next zone. RV(capacity_fallback) reports the zones tried and the one used.
      - Only for creation and only with O(wait=true); a stockout of a later scale-up of an existing pool is
        reported, not moved to another zone (moving an existing pool between zones replaces its nodes).
    type: list
    elements: str
  recreate:
    description:
      - Delete and recreate the pool when an immutable field (O(spot), O(tpu_topology), O(service_account),
        O(oauth_scopes)) differs or the pool is in status C(ERROR) or C(RUNNING_WITH_ERROR).
        Its nodes and the pods on them go away.
    type: bool
    default: false
  wait:
    description:
      - Wait for each operation to finish. With V(false) the last operation is left running
        (earlier ones are always awaited, since GKE runs one operation per cluster at a time).
    type: bool
    default: true
  timeout:
    description:
      - Seconds for the whole task, retries and operation waits included. GKE retries a stockout for about
        35 minutes before it gives up, hence the default.
    default: 2700
  compute_endpoint:
    description:
      - Base URL of the Compute Engine API, used to read the current size of the pool.
notes:
  - Failures are read from the operation's C(error), a C(google.rpc.Status) (C(code), C(message), C(details); it
    has no C(status) string), not from the deprecated C(statusMessage) / C(nodepoolConditions) (Operation in the
    Container API v1 discovery document, revision 20261027). C(error.code) 8 (C(RESOURCE_EXHAUSTED)) with
    C(GCE_STOCKOUT) in the message is a stockout, with a quota text a quota error.
  - While GKE itself retries a stockout, the operation stays C(RUNNING) without an error - GKE keeps trying to
    create the VMs for about 35 minutes and then ends the operation with C(Not all instances running in IGM after
    35m ... [GCE_STOCKOUT]) (as reported in NVIDIA/aicr#2764 and akka/akka-core#32992; not a documented limit).
    The module keeps waiting within O(timeout) (default 2700 s, longer than that) and then reports the stockout.
  - A pool in status C(ERROR) or C(RUNNING_WITH_ERROR) (partially usable, for example after a stockout left a zone
    short; both are error states for Terraform's C(containerNodePoolRestingStates)) is not changed; the task fails
    with the pool's C(conditions) unless O(recreate=true).
  - Operations are serialized by GKE per cluster; run several node-pool tasks one after another
    (C(throttle) or a loop), or rely on the retry while another operation is in progress.
  - O(project) may also come from C(GCP_PROJECT), or with O(auth_kind=application) from Application Default
    Credentials.
seealso:
  - module: llm_serving.gke.gke_cluster_info
  - name: Container API v1 node pools
    description: REST reference of the calls this module makes.
    link: https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters.nodePools
"""

EXAMPLES = r"""
- name: TPU v6e-4 pool, one node per replica, scale 0-3 (seed values)
  llm_serving.gke.gke_node_pool:
    project: my-project
    location: europe-west4-a
    cluster: llm-serving
    name: tpu-v6e-pool
    machine_type: ct6e-standard-4t
    initial_node_count: 1
    autoscaling:
      min_node_count: 0
      max_node_count: 3
    taints:
      - google.com/tpu=present:NoSchedule
    auth_kind: application

- name: T4 pool with the GKE-managed driver, on Spot VMs
  llm_serving.gke.gke_node_pool:
    project: my-project
    location: europe-west4-a
    cluster: llm-serving
    name: gpu-t4-pool
    machine_type: n1-standard-4
    accelerator:
      type: nvidia-tesla-t4
      count: 1
      gpu_driver_version: DEFAULT
    spot: true
    autoscaling:
      min_node_count: 0
      max_node_count: 5
    auth_kind: serviceaccount
    service_account_file: /path/to/sa.json

- name: Scale a pool to zero (teardown without deleting it); project from Application Default Credentials
  llm_serving.gke.gke_node_pool:
    location: europe-west4-a
    cluster: llm-serving
    name: tpu-v6e-pool
    autoscaling:
      enabled: false
    node_count: 0
    auth_kind: application

- name: Delete a pool with a short-lived access token (it cannot be refreshed during the wait)
  llm_serving.gke.gke_node_pool:
    project: my-project
    location: europe-west4-a
    cluster: llm-serving
    name: gpu-t4-pool
    state: absent
    auth_kind: accesstoken
    access_token: "{{ lookup('ansible.builtin.env', 'GCP_ACCESS_TOKEN') }}"
"""

RETURN = r"""
node_pool:
  description: The node pool as GKE reports it after the change (the create request in check mode, empty after delete).
  returned: always
  type: dict
  sample:
    name: gpu-t4-pool
    status: RUNNING
    config:
      machineType: n1-standard-4
      accelerators: [{acceleratorType: nvidia-tesla-t4, acceleratorCount: "1"}]
    autoscaling: {enabled: true, minNodeCount: 0, maxNodeCount: 5}
operations:
  description: Operations started by the task, in order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Operation name, for C(gcloud container operations describe).
      type: str
    operation_type:
      description: GKE operation type, for example C(CREATE_NODE_POOL) or C(SET_NODE_POOL_SIZE).
      type: str
    status:
      description: Last status read (C(DONE) when waited for).
      type: str
    verb:
      description: What the module did, one of C(create), C(delete), C(setAutoscaling), C(setSize), C(update).
      type: str
    field:
      description:
        - Module option that caused an update, setAutoscaling or setSize; node-replacing fields changed together
          are comma-separated (one update request, one surge upgrade).
      type: str
    target_link:
      description: Resource the operation acts on.
      type: str
changes:
  description: Per-field differences found on an existing pool.
  returned: when the pool existed
  type: list
  elements: dict
  contains:
    field:
      description: Module option that differs.
      type: str
    verb:
      description: How it is applied, one of C(update), C(setAutoscaling), C(setSize), C(recreate).
      type: str
    before:
      description: Current value.
      type: raw
    after:
      description: Wanted value.
      type: raw
    replaces_nodes:
      description:
        - Present and true when GKE applies the change by replacing every node (surge upgrade per the pool's
          C(upgradeSettings)).
      type: bool
  sample: [{field: autoscaling, verb: setAutoscaling, before: {enabled: true, max_node_count: 1, min_node_count: 0},
            after: {enabled: true, max_node_count: 3, min_node_count: 0}},
           {field: machine_type, verb: update, before: n1-standard-4, after: n1-standard-8, replaces_nodes: true}]
capacity_fallback:
  description: Zones tried because of O(fallback_locations) and the one the pool was created in.
  returned: when fallback_locations was set and the pool was created
  type: dict
  contains:
    tried:
      description: Zones that hit a stockout, with the error, in order.
      type: list
      elements: dict
    used:
      description: Zone (or the requested locations) the pool was created in.
      type: str
recreated:
  description: Whether the pool was (or in check mode would be) deleted and created again.
  returned: when recreate was needed
  type: bool
retries:
  description: Calls that were retried (HTTP 429/5xx, network errors, another operation in progress).
  returned: always
  type: list
  elements: dict
error_kind:
  description:
    - Class of failure, one of C(stockout), C(quota), C(in_progress), C(timeout), C(immutable), C(invalid),
      C(auth), C(api).
  returned: on failure
  type: str
"""

from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpModule  # noqa: E402 (imports follow the docs)
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_client import client_from_module  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import GkeError  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_reconciler import NodePoolReconciler  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import NODE_POOL_ARGUMENT_SPEC  # noqa: E402

try:
    from google.auth.exceptions import GoogleAuthError
except ImportError:  # GcpSession reports the missing library

    class GoogleAuthError(Exception):
        """Stand-in so that the except clause below stays valid."""

# The options, shared with the node_pool_changes filter (plugins/module_utils/gke_node_pool_spec.py).
ARGUMENT_SPEC = NODE_POOL_ARGUMENT_SPEC


def main():
    module = GcpModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    client = client_from_module(module)
    try:
        result = NodePoolReconciler(client, module.params, check_mode=module.check_mode).run()
    except GkeError as exc:
        module.fail_json(msg=exc.message, error_kind=exc.kind, retries=client.retries, **exc.details)
    except GoogleAuthError as exc:
        module.fail_json(msg="GCP authentication failed (auth_kind={}): {}".format(module.params["auth_kind"], exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
