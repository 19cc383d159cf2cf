"""roles/llmisvc pre-flight: KServe's enableLLMInferenceServiceTLS read from ConfigMap inferenceservice-config.

kserve/kserve v0.20.0 pkg/apis/serving/v1beta1/configmap.go: key "ingress" holds JSON; IngressConfig field
enableLLMInferenceServiceTLS (false when absent) becomes GlobalConfig.EnableTLS (config_loader.go), which turns on
the preset's vLLM TLS flags. Runs kserve_tls.yml on the ConfigMap as k8s_info returns it (no cluster).
"""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

PLAYBOOK = """
- name: Evaluate KServe's TLS setting
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The ConfigMap as preflight.yml registers it
      ansible.builtin.set_fact:
        __llmisvc_isvc_config: "{{ given }}"
    - name: Run kserve_tls.yml
      ansible.builtin.include_role:
        name: llm_serving.gke.llmisvc
        tasks_from: kserve_tls
    - name: Write the result
      ansible.builtin.copy:
        content: "{{ {'tls': __llmisvc_kserve_tls, 'problems': __llmisvc_kserve_tls_problems} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def _run(tmp_path, resources, model_uri="hf://Qwen/Qwen2.5-3B-Instruct"):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    extra = {"given": {"resources": resources}, "out": str(tmp_path / "out.json"),
             "llmisvc_pattern": {"model_uri": model_uri}}
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), str(tmp_path / "play.yml"),
                           "-e", f"@{tmp_path}/vars.json"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads((tmp_path / "out.json").read_text())


CREDENTIALS = json.dumps({"storageSecretNameAnnotation": "serving.kserve.io/storageSecretName",
                          "storageSpecSecretName": "storage-config"})


def _cm(ingress, credentials=CREDENTIALS):
    data = {"ingress": ingress, "credentials": credentials}
    return [{"metadata": {"name": "inferenceservice-config", "namespace": "kserve"}, "data": data}]


@pytest.mark.parametrize(("resources", "expected"), [
    (_cm(json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway",
                     "enableLLMInferenceServiceTLS": True})), True),
    (_cm(json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway",
                     "enableLLMInferenceServiceTLS": False})), False),
    (_cm(json.dumps({"ingressGateway": "knative-serving/knative-ingress-gateway"})), False),
    ([], False),
])
def test_tls_setting_is_read(tmp_path, resources, expected):
    assert _run(tmp_path, resources) == {"tls": expected, "problems": []}


def test_unreadable_ingress_is_a_problem_naming_the_configmap(tmp_path):
    result = _run(tmp_path, _cm("enableLLMInferenceServiceTLS: true"))
    assert result["tls"] is False
    assert len(result["problems"]) == 1
    assert "kserve/inferenceservice-config" in result["problems"][0] and '"ingress"' in result["problems"][0]


@pytest.mark.parametrize("credentials", [json.dumps({"storageSecretNameAnnotation": "example.com/secret"}), "{}"])
def test_storage_secret_annotation_other_than_the_roles_is_a_problem(tmp_path, credentials):
    # kserve/kserve v0.20.0 pkg/credentials/service_account_credentials.go: only the configured annotation is read.
    result = _run(tmp_path, _cm("{}", credentials))
    assert len(result["problems"]) == 1
    assert "credentials.storageSecretNameAnnotation" in result["problems"][0]
    assert "serving.kserve.io/storageSecretName" in result["problems"][0] and "401" in result["problems"][0]
    # not an hf:// model: the storage initializer needs no Hugging Face token
    assert _run(tmp_path, _cm("{}", credentials), model_uri="pvc://models/qwen")["problems"] == []
