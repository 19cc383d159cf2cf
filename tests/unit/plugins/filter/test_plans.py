"""pattern_problems and secrets_desired / secret_plan (plugins/filter/plans.py)."""
import base64
import copy
import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llm_serving.gke.plugins.filter.plans import (
    FilterModule,
    pattern_problems,
    secret_plan,
    secrets_desired,
)

P3_GPU = {
    "llmisvc_name": "qwen2-3b-pattern3-gpu", "namespace": "llm-d-inference-scheduling",
    "model_uri": "hf://Qwen/Qwen2.5-3B-Instruct", "model_name": "Qwen/Qwen2.5-3B-Instruct", "replicas": 3,
    "machine_type": "n1-standard-4", "accelerator_type": "nvidia-tesla-t4", "accelerator_count": 1,
    "accelerator": {"type": "nvidia-tesla-t4", "resource_name": "nvidia.com/gpu", "per_node_count": 1,
                    "startup_budget_seconds": 600},
    "nodepool": {"name": "gpu-t4-pool", "min_node_count": 0, "max_node_count": 5},
}
P1_TPU = dict(P3_GPU, machine_type="ct6e-standard-4t", accelerator_type="tpu-v6e-slice", accelerator_count=4,
              replicas=1, accelerator={"type": "tpu-v6e-slice", "resource_name": "google.com/tpu", "per_node_count": 4,
                                       "tpu_topology": "2x2", "startup_budget_seconds": 1200})
LABELS = {"app.kubernetes.io/managed-by": "llm_serving.gke"}


def changed(base, **over):
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = dict(out[key], **value)
        else:
            out[key] = value
    return out


def test_registered_under_their_names():
    assert set(FilterModule().filters()) == {"pattern_problems", "secret_plan", "secrets_desired"}


# ------------------------------------------------------------------ pattern_problems

def test_catalog_patterns_have_no_problems():
    assert pattern_problems(P3_GPU) == []
    assert pattern_problems(P1_TPU) == []


@pytest.mark.parametrize(("over", "message"), [
    ({"llmisvc_name": "Qwen-GPU"}, "llmisvc_name Qwen-GPU must be a DNS label of at most 43 characters"),
    ({"llmisvc_name": "a" * 44}, "must be a DNS label of at most 43"),
    ({"namespace": "LLM_Serving"}, "namespace LLM_Serving must be a DNS label"),
    ({"model_uri": "Qwen/Qwen2.5-3B-Instruct"}, "model_uri Qwen/Qwen2.5-3B-Instruct needs a scheme"),
    ({"model_name": ""}, "model_name must not be empty"),
    ({"replicas": -1}, "replicas must be >= 0"),
    ({"accelerator_count": 2}, "accelerator_count 2 must be between 1 and accelerator.per_node_count 1"),
    ({"accelerator_type": "nvidia-l4"}, "accelerator.type nvidia-tesla-t4 differs from accelerator_type nvidia-l4"),
    ({"accelerator": {"startup_budget_seconds": 0}}, "accelerator.startup_budget_seconds must be > 0"),
    ({"nodepool": {"min_node_count": 6}}, "nodepool.max_node_count must be >= nodepool.min_node_count"),
    ({"replicas": 9}, "9 replicas x 1 nvidia.com/gpu need 9 nodes but nodepool.max_node_count is 5"),
])
def test_each_problem_names_the_key(over, message):
    problems = pattern_problems(changed(P3_GPU, **over))
    assert len(problems) == 1
    assert message in problems[0]


def test_multi_host_topology_is_refused_with_its_chip_count():
    problems = pattern_problems(changed(P1_TPU, accelerator={"tpu_topology": "4x4"}))
    assert problems == ["accelerator.tpu_topology 4x4 is a multi-host slice (16 chips, 4 per node of "
                        "ct6e-standard-4t): a single-node LLMInferenceService needs a single-host topology"]


def test_malformed_topology_is_a_problem_naming_the_key():
    problems = pattern_problems(changed(P1_TPU, accelerator={"tpu_topology": "big"}))
    assert problems == ["accelerator.tpu_topology: 'big' is not a TPU topology such as 4x4 or 2x2x4"]


def test_all_problems_are_reported_together():
    assert len(pattern_problems(changed(P3_GPU, namespace="X", model_name="", replicas=-1))) == 3


def test_nodes_needed_counts_replicas_per_node():
    two_per_node = changed(P3_GPU, accelerator={"per_node_count": 4}, accelerator_count=2, replicas=10,
                           nodepool={"max_node_count": 5})
    assert pattern_problems(two_per_node) == []
    assert "need 6 nodes" in pattern_problems(changed(two_per_node, replicas=11))[0]


def test_pattern_problems_refuses_an_unvalidated_pattern():
    with pytest.raises(AnsibleFilterError, match="pattern entry schema"):
        pattern_problems({"llmisvc_name": "x"})
    with pytest.raises(AnsibleFilterError, match="must be a pattern"):
        pattern_problems("p3-gpu")


# ------------------------------------------------------------------ secrets

AUTH = {"auths": {"registry.redhat.io": {"auth": "dTpw"}}}
SPEC = {"pull_secret": {"namespaces": ["ns", "ns"], "name": "redhat-pull-secret", "value": AUTH},
        "hf_token": {"namespaces": ["ns"], "name": "hf-token", "key": "HF_TOKEN", "value": " hf_abc \n"}}


def b64(text):
    return base64.b64encode(text.encode()).decode()


def secret(name, kind, key, text, labels=None, **metadata):
    return {"kind": "Secret", "type": kind, "data": {key: b64(text)},
            "metadata": dict({"name": name, "namespace": "ns", "labels": LABELS if labels is None else labels},
                             **metadata)}


PULL_OK = secret("redhat-pull-secret", "kubernetes.io/dockerconfigjson", ".dockerconfigjson",
                 json.dumps(AUTH, indent=2))
HF_OK = secret("hf-token", "Opaque", "HF_TOKEN", "hf_abc")


def results(desired, *objects):
    return [{"item": want, "resources": [obj] if obj else []} for want, obj in zip(desired, objects, strict=True)]


def test_desired_secrets_once_per_namespace_and_token_trimmed():
    desired = secrets_desired(SPEC)
    assert [(d["namespace"], d["name"], d["type"]) for d in desired] == [
        ("ns", "redhat-pull-secret", "kubernetes.io/dockerconfigjson"), ("ns", "hf-token", "Opaque")]
    assert desired[1]["value"] == "hf_abc"
    assert secrets_desired({"pull_secret": None, "hf_token": None}) == []


def test_equal_secrets_are_ok_comparing_decoded_json():
    desired = secrets_desired(SPEC)
    plan = secret_plan(desired, results(desired, PULL_OK, HF_OK), LABELS)
    assert [(p["action"], p["reason"]) for p in plan] == [("ok", "up to date"), ("ok", "up to date")]


def test_missing_type_changed_data_changed_and_unclean_secrets():
    desired = secrets_desired(SPEC)
    opaque_pull = secret("redhat-pull-secret", "Opaque", ".dockerconfigjson", json.dumps(AUTH))
    plan = secret_plan(desired, results(desired, opaque_pull, None), LABELS)
    assert [(p["action"], p["reason"]) for p in plan] == [("recreate", "type is Opaque"), ("create", "missing")]
    stale = secret("hf-token", "Opaque", "HF_TOKEN", "hf_old")
    copied = secret("redhat-pull-secret", "kubernetes.io/dockerconfigjson", ".dockerconfigjson", json.dumps(AUTH),
                    ownerReferences=[{"kind": "X"}])
    plan = secret_plan(desired, results(desired, copied, stale), LABELS)
    assert [(p["action"], p["reason"]) for p in plan] == [
        ("replace", "not clean (annotations, ownerReferences or labels)"), ("replace", "data differs")]
    extra_key = dict(HF_OK, data=dict(HF_OK["data"], other=b64("x")))
    assert secret_plan(desired[1:], results(desired[1:], extra_key), LABELS)[0]["action"] == "replace"
    undecodable = dict(HF_OK, data={"HF_TOKEN": "%%%"})
    assert secret_plan(desired[1:], results(desired[1:], undecodable), LABELS)[0]["reason"] == "data differs"


def test_plan_definitions_encode_the_value_and_carry_the_labels():
    desired = secrets_desired(SPEC)
    plan = secret_plan(desired, results(desired, None, None), LABELS)
    assert json.loads(base64.b64decode(plan[0]["definition"]["data"][".dockerconfigjson"])) == AUTH
    assert base64.b64decode(plan[1]["definition"]["data"]["HF_TOKEN"]).decode() == "hf_abc"
    assert plan[1]["definition"]["metadata"] == {"name": "hf-token", "namespace": "ns", "labels": LABELS}


def test_secrets_in_namespaces_not_read_are_left_out():
    desired = secrets_desired(SPEC)
    skipped = [{"item": want, "skipped": True} for want in desired]
    assert secret_plan(desired, skipped, LABELS) == []
