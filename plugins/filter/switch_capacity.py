# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filter ``switch_capacity``: the node and quota plan of a pattern switch (``plugins/module_utils/switch_plan.py``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils import capacity, switch_plan


def switch_capacity(to_pattern, from_pattern, same_llmisvc=False, nodes_now=0, old_pool_nodes=0, quota=None,
                    max_nodes=None, check_quota=True, to_name="switch_to", from_name="switch_from"):
    for name, pattern in (("_input", to_pattern), ("from_pattern", from_pattern)):
        if not isinstance(pattern, dict) or "nodepool" not in pattern or "accelerator" not in pattern:
            raise AnsibleFilterError(f"switch_capacity: {name} must be a resolved pattern (with nodepool and "
                                     f"accelerator), got {type(pattern).__name__}")
    try:
        return switch_plan.switch_capacity(to_pattern, from_pattern, bool(same_llmisvc), nodes_now, old_pool_nodes,
                                           quota=quota, max_nodes=max_nodes, check_quota=bool(check_quota),
                                           names=(to_name, from_name))
    except (capacity.CapacityError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"switch_capacity: {exc}") from exc


class FilterModule:
    def filters(self):
        return {"switch_capacity": switch_capacity}
