# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter ``tpu_topology_error``: why a TPU topology does not fit a machine type ('' when it does).

The TPU machine-type table lives in one place, ``plugins/module_utils/tpu_topology.py`` (``TPU_MACHINE_TYPES``),
which the ``gke_node_pool`` module validates with; this filter lets the nodepool role check its inputs with the
same table before the module runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils.tpu_topology import tpu_topology_error


def tpu_topology_error_filter(topology, machine_type, option="tpu_topology", max_node_count=None):
    if topology in (None, ""):
        return ""
    if not isinstance(topology, str):
        raise AnsibleFilterError(f"{option} must be a string such as 4x4 or 2x2x1, got {topology!r}")
    if max_node_count in ("", None):
        max_node_count = None
    else:
        try:
            max_node_count = int(max_node_count)
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError(f"max_node_count must be an integer, got {max_node_count!r}") from exc
    return tpu_topology_error(topology, machine_type, option, max_node_count)


class FilterModule:
    def filters(self):
        return {"tpu_topology_error": tpu_topology_error_filter}
