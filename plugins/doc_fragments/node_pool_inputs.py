# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The node pool profile and the nodepool role's pool inputs, as the filters node_pool_params and
gcloud_node_pool_create take them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)


class ModuleDocFragment:
    # llm_serving.gke.node_pool_inputs
    DOCUMENTATION = r"""
options:
  _input:
    description: The node pool profile (C(nodepool_profile) - machine_type, accelerator_type, accelerator_count,
      gpu_driver_version, tpu_topology, labels, taints).
    type: dict
    required: true
  min_node_count:
    description: Autoscaling minimum.
    type: int
    default: 0
  max_node_count:
    description: Autoscaling maximum.
    type: int
    default: 1
  initial_node_count:
    description: Nodes created with the pool (default O(min_node_count)).
    type: int
  spot:
    description: Spot VMs.
    type: bool
    default: false
  location_policy:
    description: Autoscaling location policy (C(BALANCED) or C(ANY)).
    type: str
  node_locations:
    description: Zones of the pool.
    type: list
    elements: str
  labels:
    description: Extra node labels.
    type: dict
  reservation_affinity:
    description: Reservation affinity as M(llm_serving.gke.gke_node_pool) takes it.
    type: dict
"""
