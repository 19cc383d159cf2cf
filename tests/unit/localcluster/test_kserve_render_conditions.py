"""knative condition semantics the simulated KServe controller writes (LivingConditionSet, v0.20)."""
from localcluster.kserve_controller import Conditions, is_subset


def test_initialize_sets_ready_and_dependents_unknown():
    status = {}
    Conditions(status).initialize()
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "Unknown", "RouterReady": "Unknown", "WorkloadsReady": "Unknown"}
    assert [c["type"] for c in status["conditions"]] == ["Ready", "RouterReady", "WorkloadsReady"]  # sorted


def test_roll_up_copies_first_false_sub_condition_and_ready_follows():
    status = {}
    conds = Conditions(status)
    conds.initialize()
    conds.mark_false("MainWorkloadReady", "MinimumReplicasUnavailable",
                     "Deployment does not have minimum availability.")
    conds.roll_up("WorkloadsReady", ("MainWorkloadReady", "WorkerWorkloadReady"))
    conds.mark_true("HTTPRoutesReady")
    conds.roll_up("RouterReady", ("GatewaysReady", "HTTPRoutesReady"))
    ready = conds.get("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "MinimumReplicasUnavailable")
    assert conds.get("MainWorkloadReady")["severity"] == "Info"
    assert "severity" not in ready  # knative's Error severity is the empty string
    conds.mark_true("MainWorkloadReady")
    conds.roll_up("WorkloadsReady", ("MainWorkloadReady",))
    assert conds.get("Ready")["status"] == "True"
    assert "reason" not in conds.get("Ready")


def test_last_transition_time_kept_when_nothing_changes():
    status = {}
    conds = Conditions(status)
    conds.mark_false("HTTPRoutesReady", "HTTPRoutesNotReady", "m")
    conds.get("HTTPRoutesReady")["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    conds.mark_false("HTTPRoutesReady", "HTTPRoutesNotReady", "m")
    assert conds.get("HTTPRoutesReady")["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    conds.mark_true("HTTPRoutesReady")
    assert conds.get("HTTPRoutesReady")["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_clear_removes_a_condition():
    status = {}
    conds = Conditions(status)
    conds.mark_true("GatewaysReady")
    conds.clear("GatewaysReady")
    assert conds.get("GatewaysReady") is None


def test_semantic_derivative_ignores_server_defaults():
    expected = {"replicas": 1, "template": {"spec": {"containers": [{"name": "main", "args": ["a"]}]}}}
    current = {"replicas": 1, "strategy": {"type": "RollingUpdate"},
               "template": {"spec": {"containers": [{"name": "main", "args": ["a"], "imagePullPolicy": "Always"}],
                                     "dnsPolicy": "ClusterFirst"}}}
    assert is_subset(expected, current)
    assert not is_subset({"replicas": 2}, current)
    assert is_subset({"limits": {"cpu": 6}}, {"limits": {"cpu": "6"}})
    assert is_subset(None, {"deployment.kubernetes.io/revision": "1"})


def test_ready_keeps_its_transition_time_across_a_generation_bump():
    from localcluster.kserve_controller import _restore_transition_times

    old = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    status = {"conditions": [dict(old["conditions"][0])]}
    conds = Conditions(status)
    conds.set("Ready", "Unknown", "NewObservedGenFailure", "unsuccessfully observed a new generation")
    conds.set("Ready", "True")  # the reconcile finds everything ready again
    _restore_transition_times(status, old)
    assert conds.get("Ready")["lastTransitionTime"] == "2020-01-01T00:00:00Z"
