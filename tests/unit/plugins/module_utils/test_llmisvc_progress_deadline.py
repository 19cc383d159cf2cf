"""A Deployment's ProgressDeadlineExceeded is a report, not a verdict, while its pods still make progress.

Kubernetes sets Progressing=False/ProgressDeadlineExceeded when progressDeadlineSeconds (600 s by default, which
KServe v0.20 keeps) pass without more updated/ready/available replicas, and keeps rolling out; a TPU replica
needs about 1500 s. These tests use recorded-style fixtures (fixtures/llmisvc/progress_deadline_*.yaml).
"""

import copy
import os

import yaml

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc as lm
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_progress as lmp
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_status as lms
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_watch as lw

from test_llmisvc_diagnosis import NAMESPACE, snapshot_of
from test_llmisvc_watch import make_waiter, waiter_api

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "llmisvc")


def load(name):
    with open(os.path.join(FIXTURES, name + ".yaml")) as handle:
        return yaml.safe_load(handle)


def deployment_finding(assessment):
    found = [f for f in assessment.findings if f.key.startswith("deploy/") and f.reason == "ProgressDeadlineExceeded"]
    assert len(found) == 1, assessment.findings
    return found[0]


def test_slow_start_within_startup_probe_budget_is_not_permanent():
    case = load("progress_deadline_slow_start")
    assessment = lm.assess(snapshot_of(case), **case["options"])
    assert assessment.permanent({}) == []
    finding = deployment_finding(assessment)
    assert finding.kind == lms.TRANSIENT
    assert "still make progress" in finding.message
    assert "within its startup probe budget of 1500s" in finding.message
    assert "started 900s ago" in finding.message
    # The wait's own stall rule does not cut it either: a known slow step is under way.
    assert assessment.has_transient()


def test_no_progress_for_longer_than_progress_deadline_is_permanent_and_named():
    case = load("progress_deadline_no_progress")
    assessment = lm.assess(snapshot_of(case), **case["options"])
    finding = deployment_finding(assessment)
    assert finding.kind == lms.PERMANENT
    assert assessment.primary({}) is finding
    msg = lmp.failure_message("qwen2-3b-pattern1-tpu", finding.as_dict(), "failed", 1600)
    assert msg.startswith("qwen2-3b-pattern1-tpu not ready: deployment qwen2-3b-pattern1-tpu-kserve: ")
    assert "Deployment qwen2-3b-pattern1-tpu-kserve" in msg
    assert "progress_deadline of 600s" in msg and "progressDeadlineSeconds=600s" in msg


def test_the_wait_progress_deadline_decides_not_the_deployments():
    case = load("progress_deadline_no_progress")
    # 1600 s without progress is within a progress_deadline of 1800 s: not permanent yet.
    assessment = lm.assess(snapshot_of(case), now=case["options"]["now"], progress_deadline=1800)
    finding = deployment_finding(assessment)
    assert finding.kind == lms.STUCK
    assert "last progress 1600s ago" in finding.message
    assert assessment.permanent({}) == []


def test_startup_probe_budget_used_up_is_no_longer_progress():
    case = load("progress_deadline_slow_start")
    # 04:13:20 + 1500 s = 04:38:20: past the budget the kubelet would restart the container; by 04:40:00 the
    # container start (the last step forward) is 1600 s old.
    assessment = lm.assess(snapshot_of(case), now="2026-11-27T04:40:00Z", progress_deadline=600)
    assert deployment_finding(assessment).kind == lms.PERMANENT


def test_a_node_scale_up_under_way_is_progress():
    case = load("progress_deadline_pod_explains")
    events = [e for e in case["events"] if e["reason"] != "NotTriggerScaleUp"]
    events.append({"involvedObject": {"kind": "Pod", "name": case["pods"][0]["metadata"]["name"]},
                   "type": "Normal", "reason": "TriggeredScaleUp", "message": "pod triggered scale-up: [tpu 0->1]",
                   "count": 1, "lastTimestamp": "2026-11-27T02:30:00Z"})
    case["events"] = events
    assessment = lm.assess(snapshot_of(case), **case["options"])
    finding = deployment_finding(assessment)
    assert finding.kind == lms.TRANSIENT and "adding a node" in finding.message
    assert assessment.permanent({}) == []


def test_a_pod_diagnosis_explains_the_stall_and_stays_primary():
    case = load("progress_deadline_pod_explains")
    assessment = lm.assess(snapshot_of(case), **case["options"])
    finding = deployment_finding(assessment)
    assert finding.kind == lms.STUCK
    assert "NotTriggerScaleUp" in finding.message
    assert assessment.primary({}).reason == "NotTriggerScaleUp"
    assert assessment.permanent({}) == []


def test_without_a_clock_the_deadline_is_never_permanent():
    case = load("progress_deadline_no_progress")
    assessment = lm.assess(snapshot_of(case))
    assert deployment_finding(assessment).kind == lms.STUCK


def test_pods_are_matched_by_selector_then_by_name():
    dep = {"metadata": {"name": "a-kserve"}, "spec": {"selector": {"matchLabels": {"app": "a"}}}}
    pods = [
        {"metadata": {"name": "a-kserve-5f7c9-x1", "labels": {"app": "a"}}},
        {"metadata": {"name": "a-kserve-router-scheduler-5f7c9-x2", "labels": {"app": "a-epp"}}},
    ]
    assert [lms.meta(p, "name") for p in lms.deployment_pods(dep, pods)] == ["a-kserve-5f7c9-x1"]
    unlabelled = [{"metadata": {"name": n}} for n in ("a-kserve-5f7c9-x1", "a-kserve-router-scheduler-5f7c9-x2")]
    assert [lms.meta(p, "name") for p in lms.deployment_pods({"metadata": {"name": "a-kserve"}}, unlabelled)] == [
        "a-kserve-5f7c9-x1"
    ]


def test_parse_time_accepts_api_timestamps():
    assert lms.parse_time("2026-11-27T04:40:00Z") == lms.parse_time("2026-11-27T04:40:00.123456Z")
    assert lms.parse_time("2026-11-27T04:40:01Z") - lms.parse_time("2026-11-27T04:40:00Z") == 1
    assert lms.parse_time(None) is None and lms.parse_time("soon") is None


def test_fail_fast_wait_keeps_waiting_through_a_slow_start():
    case = load("progress_deadline_slow_start")
    now = lms.parse_time(case["options"]["now"])
    api = waiter_api(case["llmisvc"], case["deployments"], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern1-tpu", timeout=1, progress_deadline=600, fail_fast=True,
                         wall=lambda: now).run()
    assert result["outcome"] == "timeout", result.get("msg")
    assert result["msg"].startswith("qwen2-3b-pattern1-tpu not ready after 1s: pod ")
    assert result["diagnosis"]["reason"] == "Starting"


def test_fail_fast_wait_fails_when_nothing_progresses():
    case = load("progress_deadline_no_progress")
    now = lms.parse_time(case["options"]["now"])
    api = waiter_api(case["llmisvc"], case["deployments"], pods=case["pods"], events=case["events"])
    result = make_waiter(api, "qwen2-3b-pattern1-tpu", timeout=20, progress_deadline=600, fail_fast=True,
                         wall=lambda: now).run()
    assert result["outcome"] == "failed"
    assert result["diagnosis"]["component"] == "deployment qwen2-3b-pattern1-tpu-kserve"
    assert "progress_deadline of 600s" in result["msg"]


def test_waiter_passes_its_clock_and_deadline_to_the_assessment():
    case = copy.deepcopy(load("progress_deadline_no_progress"))
    waiter = lw.LlmisvcWaiter(None, "qwen2-3b-pattern1-tpu", NAMESPACE, "v1alpha2", progress_deadline=1800,
                              wall=lambda: lms.parse_time(case["options"]["now"]))
    assessment = waiter._assess(snapshot_of(case))
    assert deployment_finding(assessment).kind == lms.STUCK


def test_replica_failure_explains_the_deadline_and_stays_primary():
    dep = {"metadata": {"name": "q-kserve"}, "spec": {"replicas": 1, "progressDeadlineSeconds": 600},
           "status": {"conditions": [
               {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "message": 'pods "q-kserve-5f7c9-" is forbidden: exceeded quota: compute'},
               {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "q-kserve-5f7c9" has timed out progressing.',
                "lastUpdateTime": "2026-11-27T02:10:00Z"}]}}
    llmisvc = {"metadata": {"name": "q", "generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}
    snap = lms.Snapshot("q", NAMESPACE, llmisvc=llmisvc, deployments=[dep])
    assessment = lm.assess(snap, now="2026-11-27T04:00:00Z", progress_deadline=600)
    assert assessment.primary({}).reason == "FailedCreate"
    assert deployment_finding(assessment).kind == lms.STUCK
    assert assessment.permanent({}) == []
