# -*- coding: utf-8 -*-
# Copyright (c) 2026 llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The ``gcloud container node-pools create`` command equivalent to what ``gke_node_pool`` would create.

The command is derived from the NodePool resource the module itself POSTs (``gke_node_pool_spec.build_node_pool`` of
the module's parameters), through one table of NodePool field -> gcloud flag below, so the plan shows exactly the
spec the module uses. Flags: https://cloud.google.com/sdk/gcloud/reference/container/node-pools/create
(``--accelerator=type=TYPE,count=COUNT,gpu-driver-version=...``, ``--tpu-topology``, ``--node-taints=KEY=VALUE:EFFECT``,
``--enable-autoscaling --min-nodes --max-nodes --location-policy``, ``--reservation-affinity`` + ``--reservation``).

``nodepool_params`` maps the nodepool role's inputs to the module's parameters the way
``roles/nodepool/tasks/present.yml`` passes them; tests/unit/roles/test_nodepool_params_agree.py templates that task's
options with Ansible and fails when the two differ.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible plugin boilerplate)

import shlex

from ansible_collections.llm_serving.gke.plugins.module_utils.gke_node_pool_spec import (
    TAINT_EFFECTS,
    build_node_pool,
    validate_params,
)

_EFFECT_FLAG = {api: kube for kube, api in TAINT_EFFECTS.items()}
_RESERVATION_FLAG = {"NO_RESERVATION": "none", "ANY_RESERVATION": "any", "SPECIFIC_RESERVATION": "specific",
                     "ANY_RESERVATION_THEN_FAIL": "any"}


def _pairs(mapping):
    return ",".join(f"{k}={v}" for k, v in sorted(mapping.items()))


def _accelerator(items):
    item = items[0]
    parts = [f"type={item['acceleratorType']}", f"count={item['acceleratorCount']}"]
    driver = (item.get("gpuDriverInstallationConfig") or {}).get("gpuDriverVersion")
    if driver:
        # gcloud spells the NodePool enum lower-case; INSTALLATION_DISABLED is "disabled".
        parts.append("gpu-driver-version=" + {"INSTALLATION_DISABLED": "disabled"}.get(driver, driver.lower()))
    return ",".join(parts)


def _taints(taints):
    return ",".join(f"{t['key']}={t['value']}:{_EFFECT_FLAG.get(t['effect'], t['effect'])}" for t in taints)


def _reservation(affinity):
    flags = [("--reservation-affinity", _RESERVATION_FLAG[affinity["consumeReservationType"]])]
    if affinity.get("values"):
        flags.append(("--reservation", ",".join(affinity["values"])))
    return flags


def _autoscaling(autoscaling):
    if not autoscaling.get("enabled"):
        return []
    flags = [("--enable-autoscaling", None)]
    for field, flag in (("minNodeCount", "--min-nodes"), ("maxNodeCount", "--max-nodes"),
                        ("locationPolicy", "--location-policy")):
        if autoscaling.get(field) is not None:
            flags.append((flag, str(autoscaling[field])))
    return flags


# The one table: NodePool field path (Container API v1) -> function of its value giving (flag, value) pairs.
NODE_POOL_FLAGS = (
    (("config", "machineType"), lambda v: [("--machine-type", v)]),
    (("initialNodeCount",), lambda v: [("--num-nodes", str(v))]),
    (("config", "accelerators"), lambda v: [("--accelerator", _accelerator(v))]),
    (("placementPolicy", "tpuTopology"), lambda v: [("--tpu-topology", v)]),
    (("config", "spot"), lambda v: [("--spot", None)] if v else []),
    (("config", "diskSizeGb"), lambda v: [("--disk-size", str(v))]),
    (("config", "diskType"), lambda v: [("--disk-type", v)]),
    (("config", "imageType"), lambda v: [("--image-type", v)]),
    (("config", "serviceAccount"), lambda v: [("--service-account", v)]),
    (("config", "oauthScopes"), lambda v: [("--scopes", ",".join(v))]),
    (("config", "labels"), lambda v: [("--node-labels", _pairs(v))] if v else []),
    (("config", "taints"), lambda v: [("--node-taints", _taints(v))] if v else []),
    (("config", "reservationAffinity"), _reservation),
    (("locations",), lambda v: [("--node-locations", ",".join(v))]),
    (("autoscaling",), _autoscaling),
)


def _get(body, path):
    for key in path:
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def node_pool_create_argv(params, cluster, location, project=None):
    """argv of ``gcloud container node-pools create`` for the module parameters ``params``."""
    validate_params(params)
    body = build_node_pool(params)
    argv = ["gcloud", "container", "node-pools", "create", body["name"], "--cluster", cluster,
            "--location", location]
    if project:
        argv += ["--project", project]
    for path, to_flags in NODE_POOL_FLAGS:
        value = _get(body, path)
        if value is None:
            continue
        for flag, flag_value in to_flags(value):
            argv.append(flag if flag_value is None else f"{flag}={flag_value}")
    return argv


def node_pool_create_command(params, cluster, location, project=None):
    """The same as one shell line (values quoted)."""
    return " ".join(shlex.quote(a) for a in node_pool_create_argv(params, cluster, location, project))


def _zones(node_locations):
    """nodepool_node_locations as a list of zones: an AWX survey's text answer ("europe-west4-a, europe-west4-b") is
    split on commas, blanks around each zone are dropped."""
    items = node_locations.split(",") if isinstance(node_locations, str) else (node_locations or [])
    return [zone.strip() for zone in items if zone.strip()]


def nodepool_params(name, profile, min_node_count=0, max_node_count=1, initial_node_count=None, spot=False,
                    location_policy=None, node_locations=None, labels=None, reservation_affinity=None):
    """gke_node_pool parameters from the nodepool role's inputs: the role's task takes them through the filter
    node_pool_params (roles/nodepool/vars/main.yml ``__nodepool_params``), the gcloud plan through
    gcloud_node_pool_create; tests/unit/roles/test_nodepool_params_agree.py checks that every input gets there."""
    profile = profile or {}
    node_locations = _zones(node_locations)
    accelerator_type = profile.get("accelerator_type") or ""
    accelerator = None
    if accelerator_type.startswith("nvidia-"):
        accelerator = {"type": accelerator_type, "count": int(profile.get("accelerator_count") or 1)}
        if profile.get("gpu_driver_version"):
            accelerator["gpu_driver_version"] = str(profile["gpu_driver_version"]).upper()
    return {
        "name": name,
        "machine_type": profile.get("machine_type"),
        "accelerator": accelerator,
        "tpu_topology": profile.get("tpu_topology") or None,
        "spot": bool(spot),
        # No location_policy key when unset: the module's suboption check refuses a None among its choices.
        "autoscaling": dict({"enabled": True, "min_node_count": int(min_node_count),
                             "max_node_count": int(max_node_count)},
                            **({"location_policy": location_policy} if location_policy else {})),
        "initial_node_count": int(initial_node_count if initial_node_count not in (None, "") else min_node_count),
        "node_locations": list(node_locations) if node_locations else None,
        "labels": dict(profile.get("labels") or {}, **(labels or {})),
        "taints": list(profile.get("taints") or []),
        "reservation_affinity": reservation_affinity or None,
    }
