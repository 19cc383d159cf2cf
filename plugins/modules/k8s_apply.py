#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: k8s_apply
short_description: Server-side apply a list of Kubernetes objects in one call, judging change without volatile fields
version_added: 0.3.0
author: llm_serving.gke maintainers (@llm-serving)
description:
  - Reads each object, applies it with server-side apply (field manager O(field_manager)) and reports it changed only
    when it is new or differs from what was read in more than C(status), C(metadata.managedFields),
    C(metadata.resourceVersion) and C(metadata.generation) - C(kubernetes.core.k8s) counts an apply that only
    refreshed the time in C(metadata.managedFields) as a change.
  - One module run for all objects instead of one read and one apply task per object (each Ansible task costs a
    process start and the client's discovery).
  - Uses the client, authentication options and server-side dry run of C(kubernetes.core) (the same as
    C(kubernetes.core.k8s) with O(kubernetes.core.k8s#module:apply=true)).
  - In check mode the apply is a server-side dry run (C(dryRun=All)); nothing is written.
  - Needs get and patch on each object's resource.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  definitions:
    description:
      - The objects to apply, in order. Each needs C(apiVersion), C(kind) and C(metadata.name) (and
        C(metadata.namespace) for namespaced kinds).
    type: list
    elements: dict
    required: true
  field_manager:
    description: Field manager of the server-side apply.
    type: str
    required: true
  force_conflicts:
    description: Take over fields another field manager owns.
    type: bool
    default: true
attributes:
  action_group:
    support: full
    membership: [llm_serving.gke.k8s]
  check_mode:
    support: full
    details: A server-side dry run of each apply (C(dryRun=All)); nothing is written.
  diff_mode:
    support: full
    details: Before and after of each changed object, without status and volatile metadata.
  platform:
    platforms: all
"""

EXAMPLES = r"""
- name: Apply the manifests
  llm_serving.gke.k8s_apply:
    definitions: "{{ objects }}"
    field_manager: llm_serving.gke
"""

RETURN = r"""
results:
  description: One entry per object, in the order of O(definitions).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: Kind of the object.
      type: str
    name:
      description: Name of the object.
      type: str
    namespace:
      description: Namespace of the object (empty for cluster-scoped kinds).
      type: str
    changed:
      description: Whether this object was created or changed.
      type: bool
    method:
      description: C(create) when the object did not exist, else C(apply).
      type: str
    result:
      description: The object after the apply, without C(status) and C(metadata.managedFields).
      type: dict
"""

from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_change  # noqa: E402
from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_client  # noqa: E402

OPTIONS = dict(
    definitions=dict(type="list", elements="dict", required=True),
    field_manager=dict(type="str", required=True),
    force_conflicts=dict(type="bool", default=True),
)


def argument_spec():
    return k8s_client.argument_spec(**OPTIONS)


def definition_errors(definitions):
    """Problems of the definitions, each naming the entry; empty when all can be applied."""
    errors = []
    for index, obj in enumerate(definitions):
        missing = [key for key in ("apiVersion", "kind") if not obj.get(key)]
        if not (obj.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            errors.append(f"definitions[{index}] lacks {', '.join(missing)}")
    return errors


def shown(obj):
    """The object as returned: without status and managedFields."""
    out = {key: value for key, value in (obj or {}).items() if key != "status"}
    if "metadata" in out:
        out["metadata"] = {key: value for key, value in out["metadata"].items() if key != "managedFields"}
    return out


def apply_all(svc, definitions, check_mode=False):
    """(results, diffs) for applying ``definitions`` with the K8sService ``svc``."""
    results, diffs = [], []
    for obj in definitions:
        resource = svc.find_resource(obj["kind"], obj["apiVersion"], fail=True)
        existing = svc.retrieve(resource, obj)
        before = existing.to_dict() if existing else {}
        after, _warnings = svc.apply(resource, obj, existing)
        changed = k8s_change.apply_changed(True, before, after)
        metadata = obj.get("metadata") or {}
        results.append({"kind": obj["kind"], "name": metadata.get("name"), "namespace": metadata.get("namespace", ""),
                        "changed": changed, "method": "apply" if before else "create", "result": shown(after)})
        if changed:
            diffs.append({"before": k8s_change.stable_view(before) if before else {},
                          "after": k8s_change.stable_view(after),
                          "before_header": f"{obj['kind']} {metadata.get('namespace', '')}/{metadata.get('name')}",
                          "after_header": f"{obj['kind']} {metadata.get('namespace', '')}/{metadata.get('name')}"})
    return results, diffs


def main():
    module = k8s_client.k8s_module("k8s_apply", OPTIONS)
    params = module.params
    errors = definition_errors(params["definitions"])
    if errors:
        module.fail_json(msg="k8s_apply: " + "; ".join(errors))
    # K8sService.apply reads the server-side apply settings from the module's parameters, as kubernetes.core.k8s.
    params["server_side_apply"] = {"field_manager": params["field_manager"],
                                   "force_conflicts": params["force_conflicts"]}
    results, diffs = k8s_client.run_with_service(
        module, lambda client, svc: apply_all(svc, params["definitions"], module.check_mode))
    outcome = {"changed": any(r["changed"] for r in results), "results": results}
    if module._diff and diffs:
        outcome["diff"] = diffs
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
