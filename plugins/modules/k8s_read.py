#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

DOCUMENTATION = r"""
module: k8s_read
short_description: Read several Kubernetes objects or lists in one call
version_added: 0.3.0
author: llm_serving.gke maintainers (@llm-serving)
description:
  - Runs one C(kubernetes.core.k8s_info) query per entry of O(queries) in a single module run, with the client and
    authentication options of C(kubernetes.core) - one process start and one discovery instead of one per object.
  - Returns C(results) shaped like a looped C(kubernetes.core.k8s_info) register (C(item), C(resources),
    C(api_found)), so tasks that read such a register need no other change.
  - Reads only (get, or list with label selectors); supports check mode (it reads in check mode too).
  - Use C(no_log) on the task when a query reads Secrets.
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
options:
  queries:
    description:
      - One entry per read, in order. Keys C(kind) (required), C(api_version) (default V(v1)), C(name),
        C(namespace), C(label_selectors) (list of C(key=value) strings), C(metadata_only) (V(true) returns only
        C(apiVersion), C(kind) and C(metadata) of each object - to learn whether a Secret exists without its data
        in the result). Other keys are returned unchanged in C(item).
    type: list
    elements: dict
    required: true
  served_kinds:
    description:
      - CRD name (C(<plural>.<group>)) to kind, for example C(llminferenceservices.serving.kserve.io) to
        C(LLMInferenceService). The module then refreshes the API
        discovery (as C(kubernetes.core.k8s_cluster_info) does by default) and returns in RV(served) the versions the
        API server serves for each kind, before running O(queries) on that discovery - one module run for the
        discovery and the reads.
    type: dict
    version_added: 0.3.0
attributes:
  action_group:
    support: full
    membership: [llm_serving.gke.k8s]
  check_mode:
    support: full
    details: Reads in check mode too.
  diff_mode:
    support: none
    details: It changes nothing, so there is no difference to show.
  platform:
    platforms: all
"""

EXAMPLES = r"""
- name: Read the controller Deployment and the nodes of a pool
  llm_serving.gke.k8s_read:
    queries:
      - {api_version: apps/v1, kind: Deployment, namespace: kserve, name: llmisvc-controller-manager}
      - {kind: Node, label_selectors: ["cloud.google.com/gke-nodepool=gpu-t4-pool"]}
  register: __reads

- name: Which versions of the LLMInferenceService and Gateway kinds are served, and the Gateway
  llm_serving.gke.k8s_read:
    served_kinds:
      llminferenceservices.serving.kserve.io: LLMInferenceService
      gateways.gateway.networking.k8s.io: Gateway
    queries:
      - {api_version: gateway.networking.k8s.io/v1, kind: Gateway, namespace: gke-gateway, name: inference-gateway}
  register: __reads
"""

RETURN = r"""
results:
  description: One entry per query, in the order of O(queries).
  returned: always
  type: list
  elements: dict
  contains:
    item:
      description: The query.
      type: dict
    resources:
      description: The objects found (empty when none, or when the API does not serve the kind).
      type: list
      elements: dict
    api_found:
      description: Whether the API server serves the kind.
      type: bool
served:
  description:
    - For each key of O(served_kinds), the versions (such as C(v1)) of its group that serve its kind, in discovery
      order; empty when the API server does not serve it.
  returned: when O(served_kinds) is set
  type: dict
  sample: {llminferenceservices.serving.kserve.io: [v1alpha2], gateways.gateway.networking.k8s.io: [v1, v1beta1]}
"""

from ansible_collections.llm_serving.gke.plugins.module_utils import k8s_client  # noqa: E402

OPTIONS = dict(queries=dict(type="list", elements="dict", required=True), served_kinds=dict(type="dict"))


def argument_spec():
    return k8s_client.argument_spec(**OPTIONS)


def query_errors(queries):
    """Problems of the queries, each naming the entry; empty when all can run."""
    errors = []
    for index, query in enumerate(queries):
        if not query.get("kind"):
            errors.append(f"queries[{index}] lacks kind")
        selectors = query.get("label_selectors")
        if selectors is not None and not isinstance(selectors, list):
            errors.append(f"queries[{index}].label_selectors must be a list of key=value strings")
    return errors


def served_versions(resources, kinds):
    """CRD name -> versions of its group that serve its kind, from the discovered ``resources`` (the dynamic
    client's discoverer, iterated as kubernetes.core k8s_cluster_info does: one list per resource, lists of
    resources (``*List`` kinds) carry no ``group_version``); a kind that is not served gets []."""
    served = {name: [] for name in kinds}
    wanted = {}
    for name, kind in kinds.items():
        wanted.setdefault((name.split(".", 1)[1] if "." in name else "", kind), []).append(name)
    for entry in list(resources):
        resource = entry[0] if isinstance(entry, (list, tuple)) else entry
        group_version = getattr(resource, "group_version", None)
        if not group_version or type(resource).__name__ == "ResourceList":
            continue
        for name in wanted.get((getattr(resource, "group", ""), getattr(resource, "kind", None)), []):
            version = group_version.split("/")[-1]
            if version not in served[name]:
                served[name].append(version)
    return served


def read_all(svc, queries):
    """One k8s_info-shaped result per query, read with the K8sService ``svc``."""
    results = []
    for query in queries:
        found = svc.find(query["kind"], query.get("api_version") or "v1", name=query.get("name") or None,
                         namespace=query.get("namespace") or None, label_selectors=query.get("label_selectors") or [])
        resources = found.get("resources", [])
        if query.get("metadata_only"):
            resources = [{key: obj[key] for key in ("apiVersion", "kind", "metadata") if key in obj}
                         for obj in resources]
        results.append({"item": query, "resources": resources, "api_found": found.get("api_found", True)})
    return results


def read(client, svc, queries, kinds):
    """(results, extra) of the module: the reads, and when ``kinds`` is set the served versions from a refreshed
    discovery (before the reads, which then use it)."""
    extra = {}
    if kinds:
        client.resources.invalidate_cache()
        extra["served"] = served_versions(client.resources, kinds)
    return read_all(svc, queries), extra


def main():
    module = k8s_client.k8s_module("k8s_read", OPTIONS)
    errors = query_errors(module.params["queries"])
    if errors:
        module.fail_json(msg="k8s_read: " + "; ".join(errors))
    kinds = module.params.get("served_kinds") or {}
    bad = [name for name, kind in kinds.items() if "." not in name or not isinstance(kind, str) or not kind]
    if bad:
        module.fail_json(msg="k8s_read: served_kinds keys must be CRD names <plural>.<group> and values kinds; got "
                             + ", ".join(bad))
    results, extra = k8s_client.run_with_service(
        module, lambda client, svc: read(client, svc, module.params["queries"], kinds))
    module.exit_json(changed=False, results=results, **extra)


if __name__ == "__main__":
    main()
