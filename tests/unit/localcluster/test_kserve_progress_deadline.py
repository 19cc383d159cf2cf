"""The simulated KServe controller gives its Deployments Kubernetes' default progressDeadlineSeconds, scaled.

KServe v0.20 sets none (the API server defaults it to 600 s); the local cluster's real kube-controller-manager
enforces the value, so it is scaled by LOCALCLUSTER_TIME_SCALE like every simulated delay: max(1, round(600 x s)).
"""
import pytest

from localcluster import kserve_controller as kc


def svc(name="slow", scheduler=False):
    spec = {"model": {"uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"}, "replicas": 1,
            "template": {"containers": [{"name": "main", "image": "vllm"}]}}
    if scheduler:
        spec["router"] = {"scheduler": {"template": {"containers": [{"name": "main", "image": "epp"}]}}}
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
            "metadata": {"name": name, "namespace": "ns", "uid": "u-1"}, "spec": spec}


@pytest.mark.parametrize(("scale", "seconds"), [(1, 600), (0.02, 12), (0.05, 30), (0.5, 300), (0.001, 1),
                                                (0.0001, 1), (2, 1200)])
def test_scaled_default(scale, seconds):
    assert kc.progress_deadline_seconds(scale) == seconds


def test_default_scale_when_unset(monkeypatch):
    monkeypatch.delenv("LOCALCLUSTER_TIME_SCALE", raising=False)
    assert kc.progress_deadline_seconds() == 12


@pytest.mark.parametrize(("scale", "seconds"), [("0.02", 12), ("0.1", 60), ("1", 600)])
def test_workload_and_scheduler_deployments_carry_the_scaled_deadline(monkeypatch, scale, seconds):
    monkeypatch.setenv("LOCALCLUSTER_TIME_SCALE", scale)
    controller = kc.Controller(kube=None)
    main = controller.expected_main_deployment(svc())
    assert main["spec"]["progressDeadlineSeconds"] == seconds
    epp = controller.expected_scheduler_deployment(svc(scheduler=True))
    assert epp["spec"]["progressDeadlineSeconds"] == seconds
    # A deadline change keeps the pod template: the real Deployment controller makes no new ReplicaSet.
    monkeypatch.setenv("LOCALCLUSTER_TIME_SCALE", "1")
    assert controller.expected_main_deployment(svc())["spec"]["template"] == main["spec"]["template"]
