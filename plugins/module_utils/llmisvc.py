# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""LLMInferenceService readiness and diagnosis: ``assess()`` runs every diagnosis rule in KServe's order.

Nothing here talks to the API server. ``assess()`` takes a snapshot of the llmisvc and its children (plain dicts
as the API returns them) and says whether it is ready, and if not, why; ``llmisvc_watch.py`` feeds it from
watches. The rules live in ``llmisvc_rules_*.py``, status reading in ``llmisvc_status.py``, hints in
``llmisvc_hints.py`` and the progress wording in ``llmisvc_progress.py``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_rules_pod import pod_findings
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_rules_resource import (
    controller_error_findings,
    readiness_gaps,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_rules_rollout import deployment_findings
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_rules_router import (
    gateway_findings,
    pool_findings,
    route_findings,
)
from ansible_collections.llm_serving.gke.plugins.module_utils.llmisvc_status import (
    PERMANENT,
    ROUTER_CONDITIONS,
    STOP_ANNOTATION,
    STUCK,
    Assessment,
    Finding,
    condition_status,
    is_stopped,
    meta,
)


def router_unready(llmisvc):
    return any(condition_status(llmisvc, c) not in (None, "True") for c in ROUTER_CONDITIONS + ("RouterReady",))


def collect_findings(snapshot, require_rollout=True, require_url=True, now=None, progress_deadline=None):
    """All reasons the llmisvc is not ready, most specific first in KServe's order.

    `now` (epoch seconds or an API timestamp) and `progress_deadline` (seconds) let a Deployment's
    ProgressDeadlineExceeded be judged against the pods' progress; without `now` it is never permanent.
    """
    llmisvc = snapshot.llmisvc
    if llmisvc is None:
        return [
            Finding(
                "notfound",
                f"llmisvc {snapshot.name}",
                "NotFound",
                f"LLMInferenceService {snapshot.namespace}/{snapshot.name} does not exist",
                "create it first (role llm_serving.gke.llmisvc), or check name and namespace",
                STUCK,
            )
        ]
    if meta(llmisvc, "deletionTimestamp"):
        return [
            Finding(
                "deleting",
                f"llmisvc {snapshot.name}",
                "Deleting",
                "the llmisvc is being deleted (finalizers: {})".format(", ".join(meta(llmisvc, "finalizers") or [])),
                "wait for the deletion to finish before creating it again",
                STUCK,
            )
        ]
    gaps = readiness_gaps(snapshot, require_rollout, require_url)
    if not gaps:
        return []
    specific = (
        controller_error_findings(snapshot)
        + pod_findings(snapshot)
        + deployment_findings(snapshot, now, progress_deadline)
    )
    if router_unready(llmisvc) or snapshot.routes:
        specific += route_findings(snapshot) + gateway_findings(snapshot) + pool_findings(snapshot)
    # The drill-down explains the conditions: "pod X: ImagePullBackOff" replaces "MainWorkloadReady=False".
    presets = [g for g in gaps if g.key == "presets"]
    rest = [g for g in gaps if g.key != "presets" and not (specific and g.key.startswith("condition"))]
    return presets + specific + rest


def assess(snapshot, require_rollout=True, require_url=True, now=None, progress_deadline=None):
    if snapshot.llmisvc is not None and is_stopped(snapshot.llmisvc):
        stopped = Finding(
            "stopped",
            f"llmisvc {snapshot.name}",
            "Stopped",
            f'annotation {STOP_ANNOTATION} is "true"',
            "remove the annotation to start it again",
            PERMANENT,
        )
        return Assessment(False, True, [stopped])
    findings = collect_findings(snapshot, require_rollout, require_url, now, progress_deadline)
    return Assessment(not findings, False, findings)
