"""The inventory layout loads an Ansible Vault file (group_vars/all/vault.yml): its Hugging Face token reaches the
hf-token Secret and never appears in the output.

The test inventory is the local one (hosts.yml and group_vars/all/vars.yml linked from the repository) plus a vault
encrypted here with ansible-vault and a password file; the secrets role alone writes the Secret (a few tasks).
"""
import base64
import secrets as pysecrets
import subprocess
import uuid

import pytest
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException

from tests.integration.conftest import ROOT, VENV_BIN

pytestmark = pytest.mark.cluster

PLAYBOOK = "tests/integration/playbooks/secrets_role.yml"


@pytest.fixture
def vault_inventory(tmp_path):
    token = "hf_" + pysecrets.token_hex(16)
    inventory = tmp_path / "inventory"
    group_all = inventory / "group_vars" / "all"
    group_all.mkdir(parents=True)
    # Links: the inventory's own file resolves to the repository (localcluster_repo_root follows realpath).
    (inventory / "hosts.yml").symlink_to(ROOT / "inventories" / "local" / "hosts.yml")
    (group_all / "vars.yml").symlink_to(ROOT / "inventories" / "local" / "group_vars" / "all" / "vars.yml")
    password = tmp_path / "vault-password"
    password.write_text(pysecrets.token_hex(16) + "\n")
    vault = group_all / "vault.yml"
    vault.write_text(f"vault_llm_serving_hf_token: {token}\n")
    subprocess.run([str(VENV_BIN / "ansible-vault"), "encrypt", "--vault-password-file", str(password), str(vault)],
                   check=True, capture_output=True, text=True, cwd=ROOT)
    assert vault.read_text().startswith("$ANSIBLE_VAULT;") and token not in vault.read_text()
    return {"inventory": inventory, "password": password, "token": token}


@pytest.fixture
def namespace(k8s_api_client):
    name = f"t-vault-{uuid.uuid4().hex[:6]}"
    yield name
    try:
        CoreV1Api(k8s_api_client).delete_namespace(name)
    except ApiException as err:
        if err.status != 404:
            raise


def test_vault_token_reaches_the_secret_and_not_the_output(run_playbook, vault_inventory, namespace, k8s_api_client):
    extra = {"secrets_namespaces": [namespace]}
    locked = run_playbook(PLAYBOOK, extra, inventory=vault_inventory["inventory"])
    assert locked.rc != 0  # the vault is loaded: without its password the inventory cannot be read
    assert "vault" in (locked.stdout + locked.stderr).lower()

    result = run_playbook(PLAYBOOK, extra, inventory=vault_inventory["inventory"],
                          args=("--vault-password-file", str(vault_inventory["password"]), "-v"))
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    secret = CoreV1Api(k8s_api_client).read_namespaced_secret("hf-token", namespace)
    assert base64.b64decode(secret.data["HF_TOKEN"]).decode() == vault_inventory["token"]
    assert vault_inventory["token"] not in result.stdout + result.stderr


def test_pattern_without_pull_secret_makes_none(run_playbook, namespace, k8s_api_client):
    """pattern_image_source=public sets pull_secret to '': the secrets role must not look for a registry login (the
    source Secret named here does not exist, which would fail a pull secret copy)."""
    extra = {"secrets_namespaces": [namespace], "pattern_resolved": {"namespace": namespace, "pull_secret": ""},
             "secrets_pull_secret_source_name": "no-such-secret"}
    result = run_playbook(PLAYBOOK, extra)
    assert result.rc == 0, result.stdout[-3000:] + result.stderr[-2000:]
    names = [s.metadata.name for s in CoreV1Api(k8s_api_client).list_namespaced_secret(namespace).items
             if s.type != "kubernetes.io/service-account-token"]
    assert names == ["hf-token"]
