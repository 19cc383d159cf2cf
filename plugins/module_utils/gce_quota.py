# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Regional Compute Engine quota: metric names for a node pool, the quota table of a region, and whether new nodes fit.

A region as ``regions.get`` returns it (https://cloud.google.com/compute/docs/reference/rest/v1/regions/get) carries
``quotas``: a list of ``{"metric": str, "limit": number, "usage": number, "owner": str}`` (the ``Quota`` object of the
Compute API v1; metric names are the values of its ``Quota.metric`` enum, e.g. ``CPUS``, ``N2_CPUS``,
``NVIDIA_T4_GPUS``, ``PREEMPTIBLE_NVIDIA_T4_GPUS``, ``TPU_LITE_PODSLICE_V5``). Everything here is plain Python over
that payload, so it is unit tested without HTTP; the module ``gce_region_quota`` reads the region with the GKE
client's transport and retries.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

# GPU accelerator type (GKE / Compute acceleratorTypes) -> regional quota metric (Compute API v1 Quota.metric enum).
GPU_QUOTA_METRICS = {
    "nvidia-tesla-k80": "NVIDIA_K80_GPUS",
    "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}
# TPU accelerator (GKE node label cloud.google.com/gke-tpu-accelerator) -> regional quota metric, in chips.
# TPU_LITE_PODSLICE_V5 is a value of the Quota.metric enum. The Compute API documents no v6e or TPU7x metric for
# regions.get; TPU_V6E_SLICE is the name the local simulator uses and is NOT verified against a real project (users
# report that on-demand v6e is metered only in the Cloud Quotas API, quota TPUS-PER-TPU-FAMILY-per-project-region,
# which this module does not read). A metric the region does not list is reported as unchecked, never as a pass.
TPU_QUOTA_METRICS = {
    "tpu-v5-lite-podslice": "TPU_LITE_PODSLICE_V5",
    "tpu-v6e-slice": "TPU_V6E_SLICE",
}
# Machine family -> CPU metric. N1 VMs count against CPUS ("Guest CPUs"); other families have their own
# <FAMILY>_CPUS metric (N2_CPUS, E2_CPUS, C3_CPUS, ... in the Quota.metric enum), checked when the region lists it.
CPU_FAMILY_METRICS = {"n1": "CPUS"}

_ZONE = re.compile(r"^([a-z]+-[a-z]+[0-9]+)-[a-z]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")


class QuotaInputError(ValueError):
    """An option that cannot name a region, machine or count (the message names the option)."""


def region_of(location):
    """europe-west4-a -> europe-west4; a region passes through."""
    location = (location or "").strip()
    match = _ZONE.match(location)
    if match:
        return match.group(1)
    if _REGION.match(location):
        return location
    raise QuotaInputError(f"location '{location}' is neither a zone (europe-west4-a) nor a region (europe-west4)")


def machine_family(machine_type):
    return (machine_type or "").split("-", 1)[0].lower()


def cpu_metric(machine_type):
    """The regional CPU metric a node of ``machine_type`` uses (None without a machine type)."""
    family = machine_family(machine_type)
    if not family:
        return None
    return CPU_FAMILY_METRICS.get(family, f"{family.upper()}_CPUS")


def accelerator_metric(accelerator_type, spot=False):
    """The regional metric of an accelerator (GPU or TPU chips); Spot uses the PREEMPTIBLE_ metric.

    Unknown GPU types follow the enum's pattern (nvidia-<model> -> NVIDIA_<MODEL>_GPUS); unknown TPU types return
    None (no pattern is documented).
    """
    accelerator_type = (accelerator_type or "").strip().lower()
    if not accelerator_type:
        return None
    if accelerator_type in GPU_QUOTA_METRICS:
        metric = GPU_QUOTA_METRICS[accelerator_type]
    elif accelerator_type in TPU_QUOTA_METRICS:
        metric = TPU_QUOTA_METRICS[accelerator_type]
    elif accelerator_type.startswith("nvidia-"):
        model = re.sub(r"^nvidia-(tesla-)?", "", accelerator_type)
        metric = "NVIDIA_" + model.upper().replace("-", "_") + "_GPUS"
    else:
        return None
    return "PREEMPTIBLE_" + metric if spot else metric


def quota_table(region):
    """{metric: {"limit", "usage", "available"}} of a regions.get payload (floats; available never negative)."""
    table = {}
    for entry in (region or {}).get("quotas") or []:
        metric = entry.get("metric")
        if not metric:
            continue
        limit = float(entry.get("limit") or 0.0)
        usage = float(entry.get("usage") or 0.0)
        table[metric] = {"limit": limit, "usage": usage, "available": max(limit - usage, 0.0)}
    return table


def _whole(value, option, minimum=0):
    if isinstance(value, bool):
        raise QuotaInputError(f"{option} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise QuotaInputError(f"{option} must be a whole number, got {value!r}") from None
    if number < minimum:
        raise QuotaInputError(f"{option} must be >= {minimum}, got {number}")
    return number


def node_requirements(machine_type, accelerator_type=None, accelerator_count=0, guest_cpus=None, spot=False,
                      accelerator_metric_name=None, cpu_metric_name=None):
    """Regional quota one node uses: a list of {"kind", "metric", "per_node"} (accelerator first, then CPU).

    ``guest_cpus`` is the machine type's vCPU count (Compute machineTypes.get ``guestCpus``); None leaves the CPU
    requirement with ``per_node`` None (unchecked). The ``*_metric_name`` options replace the derived names.
    """
    requirements = []
    count = _whole(accelerator_count or 0, "accelerator_count")
    if accelerator_type and count > 0:
        metric = accelerator_metric_name or accelerator_metric(accelerator_type, spot)
        requirements.append({"kind": "accelerator", "metric": metric, "per_node": float(count),
                             "resource": accelerator_type})
    if machine_type:
        requirements.append({"kind": "cpu", "metric": cpu_metric_name or cpu_metric(machine_type),
                             "per_node": float(guest_cpus) if guest_cpus is not None else None,
                             "resource": machine_type})
    return requirements


def _fallback_metric(metric, table):
    """PREEMPTIBLE_X falls back to X when the region has no preemptible quota for it: Spot VMs use preemptible quota
    when the project has it, else standard quota (https://cloud.google.com/compute/docs/instances/spot)."""
    if metric and metric.startswith("PREEMPTIBLE_") and metric not in table:
        standard = metric[len("PREEMPTIBLE_"):]
        if standard in table:
            return standard
    return metric


def fit(table, requirements, new_nodes):
    """Whether ``new_nodes`` more nodes fit the region's quota.

    Returns {"fits", "required", "shortfalls", "unchecked"}: ``required`` lists {kind, metric, resource, per_node,
    needed, limit, usage, available} per checked metric; ``shortfalls`` those whose ``needed`` exceeds
    ``available``; ``unchecked`` lists {kind, metric, resource, reason} for what could not be checked (metric
    unknown or not listed by the region, vCPU count unknown). ``fits`` is False only on a real shortfall.
    """
    new_nodes = _whole(new_nodes, "new_nodes")
    required, shortfalls, unchecked = [], [], []
    for req in requirements:
        metric = _fallback_metric(req["metric"], table)
        base = {"kind": req["kind"], "metric": metric, "resource": req["resource"]}
        if not metric:
            unchecked.append(dict(base, reason=f"no regional quota metric is known for {req['resource']}"))
            continue
        if metric not in table:
            unchecked.append(dict(base, reason=f"the region lists no quota metric {metric}"))
            continue
        if req["per_node"] is None:
            unchecked.append(dict(base, reason=f"the vCPU count of {req['resource']} is unknown"))
            continue
        entry = dict(base, per_node=req["per_node"], needed=req["per_node"] * new_nodes, **table[metric])
        required.append(entry)
        if entry["needed"] > entry["available"]:
            shortfalls.append(entry)
    return {"fits": not shortfalls, "required": required, "shortfalls": shortfalls, "unchecked": unchecked}


def _num(value):
    return f"{value:g}"


def shortfall_text(shortfall):
    return (f"{shortfall['metric']} needs {_num(shortfall['needed'])} ({_num(shortfall['per_node'])} per node of "
            f"{shortfall['resource']}), {_num(shortfall['available'])} available (limit {_num(shortfall['limit'])}, "
            f"usage {_num(shortfall['usage'])})")


def refusal_message(project, region, result, new_nodes, what=None):
    """The failure message of a run that would not fit: metric, region, needed vs available, and what to do."""
    metrics = ", ".join(s["metric"] for s in result["shortfalls"])
    subject = f" of {what}" if what else ""
    return (f"Not enough regional quota in {region} (project {project}) for {new_nodes} new node(s){subject}: "
            + "; ".join(shortfall_text(s) for s in result["shortfalls"])
            + f". Nothing was created. Request more {metrics} quota "
            f"(https://console.cloud.google.com/iam-admin/quotas?project={project}), free some (other node pools "
            "in the region), lower the replicas, or use another region.")
