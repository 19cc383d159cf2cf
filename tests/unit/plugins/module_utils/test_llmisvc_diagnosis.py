"""Readiness and diagnosis of LLMInferenceService on recorded status, event, pod and route fixtures."""

import glob
import os

import pytest
import yaml

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc as lm
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_progress as lmp
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_status as lms

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "llmisvc")
NAMESPACE = "llm-d-inference-scheduling"


def load(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def snapshot_of(case):
    llmisvc = case.get("llmisvc")
    name = case.get("name") or lms.meta(llmisvc, "name")
    logs = {(e["pod"], e["container"]): {"text": e.get("text"), "error": e.get("error")} for e in case.get("logs", [])}
    return lms.Snapshot(
        name, NAMESPACE, llmisvc=llmisvc, deployments=case.get("deployments"), pods=case.get("pods"),
        events=case.get("events"), routes=case.get("routes"), pools=case.get("pools"), gateways=case.get("gateways"),
        logs=logs,
    )


CASES = sorted(glob.glob(os.path.join(FIXTURES, "*.yaml")))


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-5] for p in CASES])
def test_fixture(path):
    case = load(path)
    expect = case["expect"]
    options = case.get("options", {})
    assessment = lm.assess(snapshot_of(case), **options)

    assert assessment.ready is expect["ready"], assessment.findings
    if expect["ready"]:
        assert assessment.findings == []
        return
    assert assessment.stopped is expect.get("stopped", False)
    primary = assessment.primary({})
    assert primary.reason == expect["reason"], assessment.findings
    if "component" in expect:
        assert primary.component == expect["component"]
    if "kind" in expect:
        assert primary.kind == expect["kind"]
    for text in expect.get("message_contains", []):
        assert text in primary.message
    for text in expect.get("hint_contains", []):
        assert text in primary.hint
    assert "\n" not in primary.message


@pytest.mark.parametrize(
    "path", [p for p in CASES if "permanent_after" in load(p)["expect"]], ids=lambda p: os.path.basename(p)[:-5]
)
def test_grace_findings_turn_permanent(path):
    case = load(path)
    assessment = lm.assess(snapshot_of(case))
    grace = case["expect"]["permanent_after"]
    key = assessment.primary({}).key
    assert assessment.permanent({key: grace - 1}) == []
    assert [f.reason for f in assessment.permanent({key: grace})] == [case["expect"]["reason"]]


def test_image_pull_one_line_message_names_diagnosis():
    case = load(os.path.join(FIXTURES, "image_pull_backoff.yaml"))
    primary = lm.assess(snapshot_of(case)).primary({})
    line = lmp.failure_message("qwen2-3b-pattern3-gpu", primary.as_dict(), "failed", 42.0)
    assert line.startswith(" ".join(case["expect"]["oneline"].split()))
    assert line.endswith("(hint: check the image name and the pull secret redhat-pull-secret)")
    assert "\n" not in line


def test_ready_requires_ready_replica_unless_scaled_to_zero():
    case = load(os.path.join(FIXTURES, "scaled_to_zero.yaml"))
    case["llmisvc"]["spec"]["replicas"] = 1
    case["deployments"][0]["spec"]["replicas"] = 1
    case["deployments"][0]["status"].update(replicas=1, updatedReplicas=1, availableReplicas=1, readyReplicas=0)
    assessment = lm.assess(snapshot_of(case), require_url=False)
    assert not assessment.ready
    assert assessment.primary({}).reason == "RolloutIncomplete"


def test_require_rollout_false_accepts_minimum_availability():
    case = load(os.path.join(FIXTURES, "rollout_incomplete.yaml"))
    assert lm.assess(snapshot_of(case), require_rollout=False).ready


def test_require_url_false_accepts_missing_url():
    case = load(os.path.join(FIXTURES, "url_pending.yaml"))
    assert lm.assess(snapshot_of(case), require_url=False).ready


def test_presets_combined_false_blocks_even_with_ready_true():
    case = load(os.path.join(FIXTURES, "ready.yaml"))
    for cond in case["llmisvc"]["status"]["conditions"]:
        if cond["type"] == "PresetsCombined":
            cond.update(status="False", reason="CombineBaseError", message="failed to merge specs")
    assessment = lm.assess(snapshot_of(case))
    assert not assessment.ready
    assert assessment.primary({}).reason == "CombineBaseError"
    assert assessment.primary({}).kind == lms.PERMANENT


def test_permanent_finding_wins_over_earlier_transient_one():
    case = load(os.path.join(FIXTURES, "image_pull_backoff.yaml"))
    downloading = load(os.path.join(FIXTURES, "model_downloading.yaml"))["pods"][0]
    downloading["metadata"]["name"] = "aaa-first-pod"
    case["pods"].insert(0, downloading)
    assessment = lm.assess(snapshot_of(case))
    assert assessment.has_transient()
    assert assessment.primary({}).reason == "ImagePullBackOff"


def test_terminating_pods_are_ignored():
    case = load(os.path.join(FIXTURES, "oomkilled.yaml"))
    case["pods"][0]["metadata"]["deletionTimestamp"] = "2026-11-27T03:00:00Z"
    assessment = lm.assess(snapshot_of(case))
    assert assessment.primary({}).reason == "MinimumReplicasUnavailable"
