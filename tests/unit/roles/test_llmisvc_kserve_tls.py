"""roles/llmisvc pre-flight: KServe's enableLLMInferenceServiceTLS read from ConfigMap inferenceservice-config.

kserve/kserve v0.20.0 pkg/apis/serving/v1beta1/configmap.go: key "ingress" holds JSON; IngressConfig field
enableLLMInferenceServiceTLS (false when absent) becomes GlobalConfig.EnableTLS (config_loader.go), which turns on
the preset's vLLM TLS flags. Runs kserve_tls.yml on the ConfigMap as k8s_info returns it (no cluster).
"""
import json

import pytest

CASE = """
- name: The ConfigMap as preflight.yml registers it
  ansible.builtin.set_fact:
    __llmisvc_isvc_config: "{{ case.given }}"
- name: Run kserve_tls.yml
  ansible.builtin.include_role:
    name: llm_serving.gke.llmisvc
    tasks_from: kserve_tls
  vars:
    llmisvc_pattern: {model_uri: "{{ case.model_uri }}"}
- name: Record the result
  ansible.builtin.set_fact:
    results: >-
      {{ results | default({}) | combine({case.id: {'tls': __llmisvc_kserve_tls,
                                                   'problems': __llmisvc_kserve_tls_problems}}) }}
"""

_CASES = {}


def _case(resources, model_uri="hf://Qwen/Qwen2.5-3B-Instruct"):
    """Register a case for the one playbook run of this module; returns its id."""
    case_id = f"case{len(_CASES)}"
    _CASES[case_id] = {"id": case_id, "given": {"resources": resources}, "model_uri": model_uri}
    return case_id


@pytest.fixture(scope="module")
def results(role_cases):
    # All cases in one ansible-playbook run: kserve_tls.yml sets both facts from scratch in every case, so the
    # cases cannot see each other.
    return role_cases("llmisvc-kserve-tls", CASE, list(_CASES.values()))


CREDENTIALS = json.dumps({"storageSecretNameAnnotation": "serving.kserve.io/storageSecretName",
                          "storageSpecSecretName": "storage-config"})


def _cm(ingress, credentials=CREDENTIALS):
    data = {"ingress": ingress, "credentials": credentials}
    return [{"metadata": {"name": "inferenceservice-config", "namespace": "kserve"}, "data": data}]


@pytest.mark.parametrize(("case_id", "expected"), [
    (_case(_cm(json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway",
                           "enableLLMInferenceServiceTLS": True}))), True),
    (_case(_cm(json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway",
                           "enableLLMInferenceServiceTLS": False}))), False),
    (_case(_cm(json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway"}))), False),
    (_case([]), False),
])
def test_tls_setting_is_read(results, case_id, expected):
    assert results[case_id] == {"tls": expected, "problems": []}


UNREADABLE = _case(_cm("enableLLMInferenceServiceTLS: true"))


def test_unreadable_ingress_is_a_problem_naming_the_configmap(results):
    result = results[UNREADABLE]
    assert result["tls"] is False
    assert len(result["problems"]) == 1
    assert "kserve/inferenceservice-config" in result["problems"][0] and '"ingress"' in result["problems"][0]


@pytest.mark.parametrize(("hf_case", "pvc_case"), [
    # (an hf:// model, a pvc:// model) with each credentials text
    (_case(_cm("{}", credentials)), _case(_cm("{}", credentials), model_uri="pvc://models/qwen"))
    for credentials in (json.dumps({"storageSecretNameAnnotation": "example.com/secret"}), "{}")
], ids=['{"storageSecretNameAnnotation": "example.com/secret"}', "{}"])
def test_storage_secret_annotation_other_than_the_roles_is_a_problem(results, hf_case, pvc_case):
    # kserve/kserve v0.20.0 pkg/credentials/service_account_credentials.go: only the configured annotation is read.
    result = results[hf_case]
    assert len(result["problems"]) == 1
    assert "credentials.storageSecretNameAnnotation" in result["problems"][0]
    assert "serving.kserve.io/storageSecretName" in result["problems"][0] and "401" in result["problems"][0]
    # not an hf:// model: the storage initializer needs no Hugging Face token
    assert results[pvc_case]["problems"] == []
