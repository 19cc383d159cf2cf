# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Did a server-side apply change an object? Judged on the object without its volatile fields.

kubernetes.core.k8s reports a (dry-run) server-side apply as changed when only ``metadata.managedFields`` moved
(the API server refreshes its time on every apply), so the llmisvc role compares the object read before the apply
with the applied one, leaving out ``status`` and the metadata the server alone writes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation")


def stable_view(obj, volatile=VOLATILE_METADATA):
    """The object without ``status`` and without the volatile metadata fields."""
    view = {key: value for key, value in (obj or {}).items() if key != "status"}
    if "metadata" in view or obj:
        view["metadata"] = {key: value for key, value in (view.get("metadata") or {}).items() if key not in volatile}
    return view


def apply_changed(reported_changed, before, after, volatile=VOLATILE_METADATA):
    """True when the module reported a change and the object is new or differs from ``before`` in more than
    ``status`` and the ``volatile`` metadata."""
    if not reported_changed:
        return False
    if not before:
        return True
    return stable_view(before, volatile) != stable_view(after, volatile)
