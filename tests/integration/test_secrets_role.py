"""The secrets role on the local cluster: clean pull secrets, hf-token, idempotence, no leaks, clear failures."""
import base64
import json
import secrets as pysecrets
import uuid

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

PLAYBOOK = "tests/integration/playbooks/secrets_role.yml"


@pytest.fixture
def core(k8s_api_client):
    return CoreV1Api(k8s_api_client)


@pytest.fixture
def namespaces(core):
    suffix = uuid.uuid4().hex[:6]
    names = [f"t-secrets-{suffix}-a", f"t-secrets-{suffix}-b"]
    yield names
    for name in names:
        try:
            core.delete_namespace(name)
        except ApiException as err:
            if err.status != 404:
                raise


def _secret(core, namespace, name):
    try:
        return core.read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _decoded(secret, key):
    return base64.b64decode(secret.data[key]).decode()


def test_clean_copies_of_the_source_and_hf_token_then_no_change(run_playbook, core, namespaces):
    token = "hf_" + pysecrets.token_hex(16)
    extra = {"secrets_namespaces": namespaces, "secrets_hf_token": token}
    first = run_playbook(PLAYBOOK, extra)
    assert first.rc == 0, first.stdout[-3000:]
    assert first.changed == 2  # the namespace task and the Secret task

    source = core.read_namespaced_secret("redhat-pull-secret", "cert-manager")
    for namespace in namespaces:
        pull = _secret(core, namespace, "redhat-pull-secret")
        assert pull.type == "kubernetes.io/dockerconfigjson"
        assert list(pull.data) == [".dockerconfigjson"]
        assert json.loads(_decoded(pull, ".dockerconfigjson")) == json.loads(_decoded(source, ".dockerconfigjson"))
        assert not pull.metadata.owner_references and not pull.metadata.annotations
        assert pull.metadata.labels == {"app.kubernetes.io/managed-by": "llm_serving.gke"}
        hf = _secret(core, namespace, "hf-token")
        assert hf.type == "Opaque" and list(hf.data) == ["HF_TOKEN"] and _decoded(hf, "HF_TOKEN") == token

    versions = {ns: _secret(core, ns, "hf-token").metadata.resource_version for ns in namespaces}
    second = run_playbook(PLAYBOOK, extra)
    assert second.rc == 0, second.stdout[-3000:]
    assert second.changed == 0
    assert {ns: _secret(core, ns, "hf-token").metadata.resource_version for ns in namespaces} == versions


def test_values_never_reach_the_output_even_at_vvv(run_playbook, core, namespaces):
    token = "hf_" + pysecrets.token_hex(16)
    password = "pw-" + pysecrets.token_hex(12)
    extra = {"secrets_namespaces": namespaces[:1], "secrets_hf_token": token,
             "secrets_pull_secret_source": "credentials",
             "secrets_registry_credentials": [{"registry": "registry.example.com", "username": "robot",
                                               "password": password}]}
    result = run_playbook(PLAYBOOK, extra, args=["-vvv"])
    assert result.rc == 0, result.stdout[-3000:]
    auth = base64.b64encode(f"robot:{password}".encode()).decode()
    for value in (token, password, auth, base64.b64encode(token.encode()).decode()):
        assert value not in result.stdout and value not in result.stderr
    pull = json.loads(_decoded(_secret(core, namespaces[0], "redhat-pull-secret"), ".dockerconfigjson"))
    assert pull == {"auths": {"registry.example.com": {"username": "robot", "password": password, "auth": auth}}}


def test_a_sed_style_copy_is_rebuilt_clean(run_playbook, core, namespaces):
    namespace = namespaces[0]
    core.create_namespace({"metadata": {"name": namespace}})
    source = core.read_namespaced_secret("redhat-pull-secret", "cert-manager")
    core.create_namespaced_secret(namespace, {
        "metadata": {"name": "redhat-pull-secret", "annotations": {"meta.helm.sh/release-name": "cert-manager"},
                     "labels": {"app.kubernetes.io/managed-by": "Helm"}},
        "type": "kubernetes.io/dockerconfigjson", "data": source.data})
    result = run_playbook(PLAYBOOK, {"secrets_namespaces": [namespace], "secrets_hf_token_enabled": False})
    assert result.rc == 0, result.stdout[-3000:]
    assert "redhat-pull-secret not clean" in result.stdout
    pull = _secret(core, namespace, "redhat-pull-secret")
    assert not pull.metadata.annotations
    assert pull.metadata.labels == {"app.kubernetes.io/managed-by": "llm_serving.gke"}


def test_check_mode_reports_the_change_and_writes_nothing(run_playbook, core, namespaces):
    extra = {"secrets_namespaces": namespaces[:1], "secrets_hf_token": "hf_old"}
    assert run_playbook(PLAYBOOK, extra).rc == 0
    before = _secret(core, namespaces[0], "hf-token")
    check = run_playbook(PLAYBOOK, {**extra, "secrets_hf_token": "hf_new"}, check=True)
    assert check.rc == 0, check.stdout[-3000:]
    assert check.changed >= 1 and "hf-token data differs" in check.stdout
    after = _secret(core, namespaces[0], "hf-token")
    assert after.metadata.resource_version == before.metadata.resource_version
    assert _decoded(after, "HF_TOKEN") == "hf_old"


@pytest.mark.parametrize(("extra", "message"), [
    ({"secrets_hf_token": "hf_x", "secrets_pull_secret_source_name": "no-such-pull-secret"},
     "Secret cert-manager/no-such-pull-secret (secrets_pull_secret_source_namespace / secrets_pull_secret_source_name)"
     " does not exist"),
    ({"secrets_hf_token": ""}, "secrets_hf_token is empty"),
    ({"secrets_hf_token": "hf_x", "secrets_pull_secret_source": "credentials"},
     "secrets_registry_credentials is empty"),
])
def test_missing_inputs_fail_naming_them(run_playbook, core, namespaces, extra, message):
    result = run_playbook(PLAYBOOK, {"secrets_namespaces": namespaces[:1], **extra})
    assert result.rc != 0
    assert message in result.stdout
    assert _secret(core, namespaces[0], "hf-token") is None


def test_absent_deletes_the_managed_secrets(run_playbook, core, namespaces):
    extra = {"secrets_namespaces": namespaces[:1], "secrets_hf_token": "hf_x"}
    assert run_playbook(PLAYBOOK, extra).rc == 0
    result = run_playbook(PLAYBOOK, {**extra, "secrets_state": "absent"})
    assert result.rc == 0, result.stdout[-3000:]
    assert _secret(core, namespaces[0], "hf-token") is None
    assert _secret(core, namespaces[0], "redhat-pull-secret") is None
