# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Filters of ``playbooks/teardown.yml``: ``teardown_namespaces``, ``teardown_plan``, ``teardown_billable``.

The logic lives in ``plugins/module_utils/teardown_plan.py`` (unit-tested); these wrap it for Jinja.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.module_utils import teardown_plan as tp


def _wrap(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except tp.TeardownError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def teardown_namespaces(patterns, catalog, overrides=None):
    return _wrap(tp.namespaces_to_read, patterns, catalog, overrides)


def teardown_plan(patterns, catalog, deployed, overrides=None, delete_pools=False):
    return _wrap(tp.plan, patterns, catalog, deployed, overrides, bool(delete_pools))


def teardown_billable(plan, catalog, overrides=None, cluster=None, location=None, project=None, cluster_pools=None):
    return _wrap(tp.billable_report, plan, catalog, overrides, cluster, location, project, cluster_pools)


class FilterModule:
    def filters(self):
        return {
            "teardown_namespaces": teardown_namespaces,
            "teardown_plan": teardown_plan,
            "teardown_billable": teardown_billable,
        }
