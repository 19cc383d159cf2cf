# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What the secrets role does with each Secret it manages: create, recreate (type differs), replace (data differs
or the object is not clean) or nothing (ok).

A Secret's ``type`` is immutable in Kubernetes (https://kubernetes.io/docs/concepts/configuration/secret/
"You cannot change the type of an existing Secret"), so a type change means delete and create. Data are compared
decoded (``.dockerconfigjson`` as JSON) so that an equal Secret is never rewritten; a Secret that carries
ownerReferences, annotations or labels other than the role's (for example a copy of another Secret) is replaced
(PUT) so that they disappear.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import base64
import binascii
import json

DOCKERCONFIG = "kubernetes.io/dockerconfigjson"
REASONS = {"create": "missing", "replace_data": "data differs",
           "replace_clean": "not clean (annotations, ownerReferences or labels)", "ok": "up to date"}


def desired_secrets(pull_secret=None, hf_token=None):
    """The Secrets to manage: ``pull_secret`` = {namespaces, name, value (auth document)}, ``hf_token`` =
    {namespaces, name, key, value}; either may be None (disabled). Namespaces repeat once."""
    out = []
    if pull_secret:
        for namespace in _unique(pull_secret["namespaces"]):
            out.append({"namespace": namespace, "name": pull_secret["name"], "type": DOCKERCONFIG,
                        "key": ".dockerconfigjson", "value": pull_secret["value"]})
    if hf_token:
        for namespace in _unique(hf_token["namespaces"]):
            out.append({"namespace": namespace, "name": hf_token["name"], "type": "Opaque", "key": hf_token["key"],
                        "value": str(hf_token["value"]).strip()})
    return out


def _unique(items):
    seen = []
    for item in items or []:
        if item not in seen:
            seen.append(item)
    return seen


def _decoded(text, as_json):
    try:
        raw = base64.b64decode(str(text), validate=True).decode("utf-8")
        return json.loads(raw) if as_json else raw
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return _Different()


class _Different:
    """Compares unequal to everything (undecodable data differ from what the role writes)."""

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = None


def encoded_value(want):
    text = json.dumps(want["value"]) if want["type"] == DOCKERCONFIG else str(want["value"])
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def plan_one(want, have, labels):
    """(action, reason) for the desired Secret ``want`` and the current object ``have`` ({} when missing)."""
    if not have:
        return "create", REASONS["create"]
    if have.get("type") != want["type"]:
        return "recreate", "type is " + str(have.get("type") or "")
    data = have.get("data") or {}
    same_data = list(data) == [want["key"]] and _decoded(data[want["key"]], want["type"] == DOCKERCONFIG) == \
        want["value"]
    metadata = have.get("metadata") or {}
    clean = not metadata.get("ownerReferences") and not metadata.get("annotations") and \
        (metadata.get("labels") or {}) == labels
    if same_data and clean:
        return "ok", REASONS["ok"]
    return "replace", REASONS["replace_data"] if not same_data else REASONS["replace_clean"]


def secret_plan(desired, current, labels):
    """One entry per desired Secret that was read: namespace, name, action, reason and the definition to write.

    ``current`` maps (namespace, name) to the object read ({} or missing when it does not exist); a desired Secret
    whose key is absent from ``current`` (its namespace is only about to be created) is left out.
    """
    plan = []
    for want in desired:
        key = (want["namespace"], want["name"])
        if key not in current:
            continue
        action, reason = plan_one(want, current[key] or {}, labels)
        plan.append({"namespace": want["namespace"], "name": want["name"], "action": action, "reason": reason,
                     "definition": {"apiVersion": "v1", "kind": "Secret", "type": want["type"],
                                    "metadata": {"name": want["name"], "namespace": want["namespace"],
                                                 "labels": dict(labels)},
                                    "data": {want["key"]: encoded_value(want)}}})
    return plan


def current_from_results(results):
    """(namespace, name) -> object from a looped ``k8s_info`` register whose items are desired Secrets
    (skipped items - namespaces not created yet - are left out)."""
    current = {}
    for result in results or []:
        if result.get("skipped"):
            continue
        item = result.get("item") or {}
        resources = result.get("resources") or []
        current[(item.get("namespace"), item.get("name"))] = resources[0] if resources else {}
    return current
