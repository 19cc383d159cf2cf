# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""GKE and Google API errors: the GkeError exception, classification of an error answer (stockout, quota,
operation in progress, retryable, fatal) and the user-facing messages for each class.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import re

RETRYABLE_HTTP_STATUS = (429, 500, 502, 503, 504)

# google.rpc.Code numbers (googleapis google/rpc/code.proto): Operation.error.code carries these.
RPC_CODES = {0: "OK", 1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
             6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
             10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
             15: "DATA_LOSS", 16: "UNAUTHENTICATED"}


class GkeError(Exception):
    """A failure to report to the user; ``kind`` is one of stockout, quota, in_progress, timeout, invalid, auth, api."""

    def __init__(self, message, kind="api", status=None, details=None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status
        self.details = details or {}


_STOCKOUT = re.compile(r"GCE_STOCKOUT|ZONE_RESOURCE_POOL_EXHAUSTED|STOCKOUT|does not have enough resources available",
                       re.IGNORECASE)
_QUOTA = re.compile(r"insufficient\s+(?:regional\s+|zonal\s+|project\s+)?quota|QUOTA_EXCEEDED|Quota '[^']+' exceeded",
                    re.IGNORECASE)
_IN_PROGRESS = re.compile(r"incompatible operation|CLUSTER_ALREADY_HAS_OPERATION|already has an operation|"
                          r"another operation|operation .* (?:is )?(?:currently )?in progress|concurrent operations",
                          re.IGNORECASE)


def error_parts(payload):
    """(code, status, message) from a Google API error body ``{"error": {code, message, status}}`` or text."""
    if isinstance(payload, dict):
        err = payload.get("error") if isinstance(payload.get("error"), dict) else payload
        details = " ".join(str(d) for d in err.get("details") or [])
        return err.get("code"), err.get("status") or "", "{} {}".format(err.get("message") or "", details)
    return None, "", str(payload or "")


def classify(http_status, status, message):
    """stockout | quota | in_progress | retry | fatal.

    GKE runs one operation per cluster at a time and answers a second mutating call with HTTP 400
    FAILED_PRECONDITION, in several wordings: "Cluster is running incompatible operation ...", "Operation
    operation-... is currently upgrading cluster X / creating a node pool / deleting a node pool for cluster X.
    Please wait and try again once it is done." (hashicorp/terraform-provider-google issues #3650 and #10366,
    prometheus/test-infra#84), or a bare status with only a RequestInfo detail. Like Terraform
    (retryWhileIncompatibleOperation in google/services/container/resource_container_node_pool.go, which retries on
    the status code alone), any HTTP 400 FAILED_PRECONDITION is "in progress", whatever its text.
    """
    text = f"{status} {message}"
    if _STOCKOUT.search(text):
        return "stockout"
    if http_status == 400 and status == "FAILED_PRECONDITION":
        return "in_progress"
    if _IN_PROGRESS.search(text):
        return "in_progress"
    if _QUOTA.search(text):
        return "quota"
    if http_status in RETRYABLE_HTTP_STATUS or status in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
        return "retry"
    return "fatal"


def _zone_from(message, fallback):
    match = re.search(r"zones?/([a-z]+-[a-z]+[0-9]+-[a-z])", message) or re.search(
        r"\b([a-z]+-[a-z]+[0-9]+-[a-z])\b", message)
    return match.group(1) if match else fallback


def _quota_resource(message):
    match = re.search(r"resource:?\s*\\?\"?([A-Z0-9_]+)\\?\"?", message) or re.search(r"Quota '([^']+)'", message)
    return match.group(1) if match else "unknown"


def describe_resource(ctx):
    what = ctx.get("machine_type") or "the requested machine type"
    acc = ctx.get("accelerator")
    if acc:
        what += " with {} x {}".format(acc.get("count") or 1, acc.get("type"))
    return what


def stockout_message(message, ctx):
    zone = _zone_from(message, ctx.get("location"))
    return (
        f"GKE could not get capacity for node pool '{ctx.get('name')}' in zone {zone}: {describe_resource(ctx)} is "
        f"out of stock there (GCE_STOCKOUT). What to try: capacity you reserved (reservation_affinity: consume "
        f"ANY_RESERVATION or a SPECIFIC_RESERVATION), fallback_locations (other zones of the region that offer "
        f"{ctx.get('machine_type')}, tried in order on a stockout), another zone (location / node_locations), spot: "
        "true (separate capacity), a smaller pool (lower initial_node_count or min_node_count), or retry later. GKE "
        "may have left the pool in ERROR state: delete it (state: absent) or rerun with recreate: true. "
        f"API said: {message.strip()}")


def quota_message(message, ctx):
    resource = _quota_resource(message)
    return (
        f"Not enough quota for node pool '{ctx.get('name')}' in {ctx.get('location')}: quota {resource} is "
        f"exhausted. What to try: request more {resource} quota for project {ctx.get('project')} (IAM & Admin > "
        "Quotas), a smaller pool (lower max_node_count / initial_node_count), spot: true (spot VMs and GPUs have "
        f"their own quota), or another region. API said: {message.strip()}")


def in_progress_message(message, ctx):
    return (
        "Cluster '{}' in {} kept answering FAILED_PRECONDITION (another operation is running on it) until the "
        "timeout; GKE allows one mutating operation at a time. Wait for it (gcloud container operations list "
        "--location {}) and rerun, or raise timeout. API said: {}".format(
            ctx.get("cluster"), ctx.get("location"), ctx.get("location"), message.strip() or "(no message)"))


def raise_classified(http_status, payload, ctx, action):
    code, status, message = error_parts(payload)
    if http_status == 401:
        raise GkeError(f"{action} failed. " + auth_message(ctx.get("auth_kind"), message.strip()), kind="auth",
                       status=401, details={"error": payload})
    kind = classify(http_status, status, message)
    if kind == "stockout":
        raise GkeError(stockout_message(message, ctx), kind="stockout", status=http_status)
    if kind == "quota":
        raise GkeError(quota_message(message, ctx), kind="quota", status=http_status)
    if kind == "in_progress":
        raise GkeError(in_progress_message(message, ctx), kind="in_progress", status=http_status)
    raise GkeError(f"{action} failed with HTTP {http_status} {status}: {message.strip()}",
                   kind="api", status=http_status, details={"error": payload})


def auth_message(auth_kind, detail):
    """What a 401 (or a failed credential refresh) means for the given auth_kind."""
    if auth_kind == "accesstoken":
        return ("GCP refused the access token (auth_kind=accesstoken, option access_token or GCP_ACCESS_TOKEN) with "
                "HTTP 401: it has expired or was revoked, and a bare access token cannot be refreshed (they last one "
                "hour by default). Pass a fresh token, or use auth_kind application or serviceaccount, whose tokens "
                f"are refreshed during long waits. API said: {detail}")
    return (f"GCP authentication failed (auth_kind={auth_kind}): the credentials were refused or could not be "
            f"refreshed. Check them (gcloud auth application-default login, or the service account key). {detail}")
