"""The simulated KServe controller gives the storage initializer the HF token like KServe v0.20.

kserve/kserve v0.20.0 pkg/credentials/service_account_credentials.go (CreateSecretVolumeAndEnvFromServiceAccount):
the Secret named by the ``serving.kserve.io/storageSecretName`` annotation wins, else the ServiceAccount's
``secrets``; a Secret with key HF_TOKEN becomes env HF_TOKEN (pkg/credentials/hf/hf_secret.go).
"""
import json

import pytest
from kubernetes.client.rest import ApiException

from localcluster import kserve_controller as kc

TOKEN_ENV = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}


class FakeKube:
    def __init__(self, objects):
        self.objects = objects

    def get(self, path):
        return self.objects.get(path)


def _svc(annotations=None, service_account=None):
    template = {"containers": [{"name": "main", "image": "vllm"}]}
    if service_account:
        template["serviceAccountName"] = service_account
    return {"metadata": {"name": "m", "namespace": "ns", "uid": "u", "annotations": annotations or {}},
            "spec": {"model": {"uri": "hf://meta-llama/Llama-3.2-1B-Instruct"}, "replicas": 1, "template": template}}


def _init_env(objects, svc):
    controller = kc.Controller(kube=FakeKube(objects))
    deployment = controller.expected_main_deployment(svc)
    init = next(c for c in deployment["spec"]["template"]["spec"]["initContainers"]
                if c["name"] == "storage-initializer")
    return init.get("env", [])


SECRET = {"/api/v1/namespaces/ns/secrets/hf-token": {"data": {"HF_TOKEN": "eA=="}}}


def test_annotated_secret_gives_hf_token():
    assert _init_env(SECRET, _svc({"serving.kserve.io/storageSecretName": "hf-token"})) == [TOKEN_ENV]


def test_service_account_secrets_give_hf_token():
    objects = {**SECRET, "/api/v1/namespaces/ns/serviceaccounts/models": {"secrets": [{"name": "hf-token"}]}}
    assert _init_env(objects, _svc(service_account="models")) == [TOKEN_ENV]
    # the default ServiceAccount without secrets: nothing, whatever the main container's env says
    assert _init_env({**SECRET, "/api/v1/namespaces/ns/serviceaccounts/default": {}}, _svc()) == []


def test_secret_without_hf_token_key_gives_nothing():
    objects = {"/api/v1/namespaces/ns/secrets/hf-token": {"data": {"token": "eA=="}}}
    assert _init_env(objects, _svc({"serving.kserve.io/storageSecretName": "hf-token"})) == []


def test_missing_annotated_secret_fails_like_kserve():
    with pytest.raises(ApiException) as err:
        _init_env({}, _svc({"serving.kserve.io/storageSecretName": "hf-token"}))
    assert 'secrets "hf-token" not found' in json.loads(err.value.body)["message"]
