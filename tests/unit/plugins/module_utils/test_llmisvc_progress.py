"""Progress a person can watch (issue 11, item 9): where the deployment is, while llmisvc_wait waits."""

import json
import os

import yaml
from test_llmisvc_diagnosis import NAMESPACE, snapshot_of
from test_llmisvc_watch import becoming_ready, make_waiter, waiter_api

from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc as lm
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_progress as lmp
from ansible_collections.llm_serving.gke.plugins.module_utils import llmisvc_status as lms

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "llmisvc")
TPU = {"limits": {"google.com/tpu": "4"}}


def load(name):
    with open(os.path.join(FIXTURES, name + ".yaml")) as handle:
        return yaml.safe_load(handle)


def pod(name, node=None, phase="Running", ready=False, state=None, init=None, tpu=True, scheduled=True):
    conditions = [{"type": "PodScheduled", "status": "True" if scheduled else "False"}]
    if ready:
        conditions.append({"type": "Ready", "status": "True"})
    status = {"phase": phase, "conditions": conditions}
    if node:
        status["nodeName"] = node
    if state:
        status["containerStatuses"] = [{"name": "main", "ready": ready, "restartCount": 0, "state": state}]
    if init:
        status["initContainerStatuses"] = [{"name": "storage-initializer", "restartCount": 0, "state": init}]
    spec = {"containers": [{"name": "main", "resources": TPU if tpu else {}}]}
    return {"metadata": {"name": f"tpu-kserve-5f7c9-{name}", "labels": {}}, "spec": spec, "status": status}


def three_tpu_replicas():
    events = [{"involvedObject": {"kind": "Pod", "name": "tpu-kserve-5f7c9-c"}, "type": "Normal",
               "reason": "TriggeredScaleUp", "message": "pod triggered scale-up: [{tpu-grp 1->2 (max: 3)}]"}]
    pods = [
        pod("a", node="gke-tpu-1", ready=True, state={"running": {}}),
        pod("b", node="gke-tpu-2", state={"running": {}}),
        pod("c", phase="Pending", scheduled=False),
    ]
    llmisvc = {"metadata": {"name": "tpu", "generation": 1},
               "status": {"observedGeneration": 1, "conditions": [
                   {"type": "Ready", "status": "False", "reason": "MinimumReplicasUnavailable"}]}}
    deployments = [{"metadata": {"name": "tpu-kserve"}, "spec": {"replicas": 3},
                    "status": {"readyReplicas": 1, "replicas": 3}}]
    return lms.Snapshot("tpu", NAMESPACE, llmisvc=llmisvc, deployments=deployments, pods=pods, events=events)


def test_summary_counts_nodes_of_needed_and_pods_by_stage():
    snap = three_tpu_replicas()
    summary = lmp.progress_summary(snap, lm.assess(snap), elapsed=312.4)
    assert summary["nodes"] == {"ready": 2, "needed": 3, "being_added": 1}
    assert {k: v for k, v in summary["pods"].items() if v} == {"ready": 1, "starting": 1, "scaling-up": 1}
    assert summary["workloads"] == [{"name": "tpu-kserve", "ready_replicas": 1, "replicas": 3}]
    assert summary["diagnosis"]["reason"] == "Starting"
    line = summary["line"]
    assert line.startswith("tpu after 312s: nodes ready 2 of 3 needed (1 being added); pods 3: ")
    assert "1 ready, 1 starting, 1 scaling-up" in line
    assert "pod tpu-kserve-5f7c9-b: Starting" in line


def test_stages_of_pulling_and_downloading_pods():
    snap = lms.Snapshot("tpu", NAMESPACE, llmisvc={"metadata": {"name": "tpu"}}, pods=[
        pod("p", node="n1", state={"waiting": {"reason": "ContainerCreating"}}),
        pod("d", node="n2", init={"running": {}}, state={"waiting": {"reason": "PodInitializing"}}),
        pod("x", node="n3", state={"waiting": {"reason": "ImagePullBackOff"}}),
    ])
    assert [lmp.pod_stage(snap, p) for p in snap.pods] == ["pulling", "initializing", "failing"]


def test_summary_of_recorded_fixtures():
    case = load("gpu_scale_up")
    snap = snapshot_of(case)
    summary = lmp.progress_summary(snap, lm.assess(snap))
    assert summary["pods"]["scaling-up"] == 1 and summary["nodes"]["being_added"] == 1
    assert summary["nodes"]["needed"] is None  # no accelerator request recorded in this fixture
    case = load("progress_deadline_slow_start")
    snap = snapshot_of(case)
    summary = lmp.progress_summary(snap, lm.assess(snap, **case["options"]))
    assert summary["pods"]["starting"] == 1
    assert "Starting" in summary["line"] and "\n" not in summary["line"]


def test_wait_writes_the_progress_file_and_keeps_the_progress_in_the_result(tmp_path):
    case = load("gpu_scale_up")
    api = waiter_api(case["llmisvc"], [], pods=case["pods"], events=case["events"])
    path = tmp_path / "progress.json"
    result = make_waiter(api, "qwen2-3b-pattern3-gpu", timeout=1, progress_file=str(path), progress_interval=1).run()
    written = json.loads(path.read_text())
    assert written["final"] is True
    assert written["line"].startswith("qwen2-3b-pattern3-gpu after ")
    assert "1 scaling-up" in written["line"] and "FailedScheduling" in written["line"]
    assert written["pods"]["scaling-up"] == 1
    assert result["progress"] and "1 scaling-up" in result["progress"][-1]["line"]
    assert result["timeline"], "the timeline stays in the result"
    assert not list(tmp_path.glob("*.tmp"))


def test_progress_records_each_change_until_ready(tmp_path):
    api, gate = becoming_ready()
    path = tmp_path / "progress.json"
    result = make_waiter(api, "qwen2-3b-pattern3-gpu", gate=gate, progress_file=str(path)).run()
    assert result["outcome"] == "ready"
    lines = [p["line"] for p in result["progress"]]
    assert len(lines) >= 2 and "MinimumReplicasUnavailable" in lines[0] and lines[-1].endswith("; ready")
    assert json.loads(path.read_text())["ready"] is True
