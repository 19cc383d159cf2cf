"""The simulated kubelet writes its pod status again when someone else changed it, as the kubelet's status manager
does (kubernetes/kubernetes v1.20.2 pkg/kubelet/status/status_manager.go, syncBatch / needsReconcile): the node
lifecycle controller marks the pods of a node whose heartbeats lapsed Ready=False (MarkPodsNotReady), and without
the reconcile a pod whose containers are ready stays unready after the node is back (a Deployment never Available).
"""
import asyncio
from types import SimpleNamespace

from localcluster.node_agent import NodeAgent, PodWorker

WRITTEN = {"phase": "Running", "conditions": [
    {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-02T10:00:00Z"},
    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T10:00:01Z"},
    {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-02T10:00:01Z"},
    {"type": "PodScheduled", "status": "True"}]}


def _pod(conditions, phase="Running"):
    return {"metadata": {"uid": "u1", "name": "p", "namespace": "n"}, "spec": {"nodeName": "node-a"},
            "status": {"phase": phase, "conditions": conditions}}


def _drifted(pod, written=WRITTEN, terminating=False):
    return PodWorker.status_drifted(SimpleNamespace(_last_written=written, terminating=terminating), pod)


def test_ready_false_set_by_the_node_controller_is_a_drift():
    marked = [dict(c, status="False") if c["type"] == "Ready" else c for c in WRITTEN["conditions"]]
    assert _drifted(_pod(marked))


def test_own_status_other_timestamps_and_conditions_others_own_are_no_drift():
    same = [dict(c, lastTransitionTime="2026-12-02T10:00:00.000000Z") for c in WRITTEN["conditions"]]
    assert not _drifted(_pod(same))
    assert not _drifted(_pod(same + [{"type": "DisruptionTarget", "status": "True"}]))
    assert not _drifted(_pod([], phase="Pending"), written=None)  # nothing written yet: nothing to reconcile
    assert not _drifted(_pod([]), terminating=True)


def test_a_drifted_pod_event_makes_the_worker_write_its_status_again():
    calls = []

    class Worker:
        terminating = False

        def status_drifted(self, pod):
            return pod["status"]["phase"] == "Pending"

        async def sync_status(self, force=False):
            calls.append(force)

    agent = SimpleNamespace(workers={"u1": Worker()}, nodes={"node-a": {}}, unplaced={})

    async def events():
        await NodeAgent.handle_pod(agent, "MODIFIED", _pod(WRITTEN["conditions"]))
        await NodeAgent.handle_pod(agent, "MODIFIED", _pod([], phase="Pending"))
        await asyncio.sleep(0)

    asyncio.run(events())
    assert calls == [True]
