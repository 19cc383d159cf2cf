"""The AWX launch harness (tests/awx/harness.py) does what AWX does with the data of awx/: survey typing and
validation with AWX's messages, extra vars precedence and !unsafe tagging, credential injection (custom types and
the built-in GCE credential), and the pieces of the product they feed (example-gke inventory, node zones text)."""
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.llm_serving.gke.plugins.filter.gcloud_node_pool_create import node_pool_params

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.awx import harness  # noqa: E402

TEMPLATES = harness.job_templates()
DEPLOY = TEMPLATES["LLM serving - deploy pattern 3 GPU"]
VERIFY = TEMPLATES["LLM serving - verify"]
SWITCH = TEMPLATES["LLM serving - switch pattern"]


# ---------------------------------------------------------------- surveys

def test_answers_are_typed_as_the_ui_sends_them():
    extra = harness.launch_extra_vars(DEPLOY, {"pattern_replicas": "2", "nodepool_node_locations": "a, b"})
    assert extra["pattern_replicas"] == 2 and isinstance(extra["pattern_replicas"], int)
    assert extra["nodepool_node_locations"] == "a, b"
    extra = harness.launch_extra_vars(VERIFY, {"verification_max_p95_ms": "250"})
    assert extra["verification_max_p95_ms"] == 250.0 and isinstance(extra["verification_max_p95_ms"], float)
    assert harness.type_answer({"type": "multiselect"}, "a\nb") == ["a", "b"]


def test_survey_defaults_fill_unanswered_questions():
    assert harness.launch_extra_vars(VERIFY)["verification_min_success_rate"] == 0.99
    assert harness.launch_extra_vars(SWITCH, {"switch_from": "p3-gpu", "switch_to": "p1-tpu"})["allow_downtime"] \
        == "false"


@pytest.mark.parametrize("template,answers,message", [
    (DEPLOY, {"pattern_replicas": "-1"}, "'pattern_replicas' value -1 is too small (must be at least 1)."),
    (DEPLOY, {"pattern_replicas": "17"}, "'pattern_replicas' value 17 is too large (must be no more than 16)."),
    (DEPLOY, {"pattern_replicas": "two"}, "Value two for 'pattern_replicas' expected to be an integer."),
    (VERIFY, {"verification_min_success_rate": "1.5"},
     "'verification_min_success_rate' value 1.5 is too large (must be no more than 1)."),
    (SWITCH, {"switch_from": "p3-gpu", "switch_to": "p9-gpu"},
     "Value p9-gpu for 'switch_to' expected to be one of ['p1-tpu', 'p3-tpu', 'p3-gpu']."),
    (SWITCH, {"switch_to": "p1-tpu"}, "'switch_from' value missing"),
])
def test_bad_answers_are_refused_with_awx_message(template, answers, message):
    with pytest.raises(harness.SurveyError) as refused:
        harness.launch_extra_vars(template, answers)
    assert refused.value.errors == [message]


def test_extra_vars_need_a_template_that_prompts_for_them():
    with pytest.raises(harness.SurveyError, match="pattern_name"):
        harness.launch_extra_vars(DEPLOY, runtime_extra_vars={"pattern_name": "p1-tpu"})
    assert harness.launch_extra_vars(VERIFY, runtime_extra_vars={"pattern_name": "p1-tpu"})["pattern_name"] == "p1-tpu"


def test_answers_win_over_template_extra_vars():
    template = {**DEPLOY, "extra_vars": {"pattern_replicas": 5, "kept": "x"}}
    extra = harness.launch_extra_vars(template, {"pattern_replicas": "2"})
    assert extra["pattern_replicas"] == 2 and extra["kept"] == "x"


def test_extra_vars_file_tags_answers_unsafe():
    text = harness.safe_dump({"answer": "{{ lookup('pipe', 'id') }}", "own": "{{ x }}", "n": 2}, {"own": "{{ x }}"})
    assert "!unsafe 'answer': !unsafe '{{ lookup(''pipe'', ''id'') }}'" in text
    assert "own: '{{ x }}'" in text and "!unsafe 'n': 2" in text
    loaded = DataLoader().load(text)
    assert str(loaded["answer"]).startswith("{{")


# ---------------------------------------------------------------- credentials

def test_custom_injectors_env_and_files(tmp_path):
    (tmp_path / "env").mkdir()
    env, args = {}, []
    types = harness.credential_types()
    harness.inject_custom(types["LLM Serving - GKE bearer token"],
                          {"host": "https://k8s", "bearer_token": "tok", "ca_cert": "PEM"}, env, args, str(tmp_path))
    assert env["K8S_AUTH_HOST"] == "https://k8s" and env["K8S_AUTH_API_KEY"] == "tok"
    assert env["K8S_AUTH_VERIFY_SSL"] == "true"
    ca_file = Path(env["K8S_AUTH_SSL_CA_CERT"])
    assert ca_file.parent == tmp_path / "env" and ca_file.read_text() == "PEM"
    assert oct(ca_file.stat().st_mode & 0o777) == "0o600"
    harness.inject_custom(types["LLM Serving - Registry pull secret"], {"username": "u", "password": "p"}, env, args,
                          str(tmp_path))
    assert env["LLM_SERVING_REGISTRY_SERVER"] == "registry.redhat.io"  # the input's default
    assert args == []


def test_credential_value_with_braces_is_not_evaluated(tmp_path):
    """AWX renders an injector once with the credential's values; a token containing '{{' stays as it is."""
    (tmp_path / "env").mkdir()
    env = {}
    harness.inject_custom(harness.credential_types()["LLM Serving - Hugging Face token"], {"hf_token": "a{{ 7*7 }}b"},
                          env, [], str(tmp_path))
    assert env["LLM_SERVING_HF_TOKEN"] == "a{{ 7*7 }}b"


def test_extra_vars_injector_goes_to_an_unsafe_file(tmp_path):
    (tmp_path / "env").mkdir()
    credential_type = {"name": "t", "inputs": {"fields": [{"id": "x", "type": "string"}]},
                       "injectors": {"extra_vars": {"my_var": "{{ x }}"}, "file": {"template": "[{{ x }}]"},
                                     "env": {"MY_FILE": "{{ tower.filename }}"}}}
    env, args = {}, []
    harness.inject_custom(credential_type, {"x": "v"}, env, args, str(tmp_path))
    assert args[0] == "-e" and args[1].startswith("@")
    assert Path(args[1][1:]).read_text() == "!unsafe 'my_var': !unsafe 'v'\n"
    assert Path(env["MY_FILE"]).read_text() == "[v]"


def test_missing_required_credential_input_is_refused(tmp_path):
    (tmp_path / "env").mkdir()
    with pytest.raises(harness.SurveyError, match="password"):
        harness.inject_custom(harness.credential_types()["LLM Serving - Registry pull secret"], {"username": "u"}, {},
                              [], str(tmp_path))


def _rsa_pem():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def gce_env(tmp_path):
    (tmp_path / "env").mkdir()
    env = {}
    harness.inject_gce({"username": "sa@p.iam.gserviceaccount.com", "project": "my-project",
                        "ssh_key_data": _rsa_pem()}, env, str(tmp_path))
    return env


def test_gce_credential_injected_as_awx_does(gce_env):
    assert gce_env["GCP_AUTH_KIND"] == "serviceaccount" and gce_env["GCP_PROJECT"] == "my-project"
    assert gce_env["GCP_SERVICE_ACCOUNT_FILE"] == gce_env["GOOGLE_APPLICATION_CREDENTIALS"] \
        == gce_env["GCE_CREDENTIALS_FILE_PATH"]
    key = json.loads(Path(gce_env["GCP_SERVICE_ACCOUNT_FILE"]).read_text())
    assert key["type"] == "service_account" and key["client_email"] == "sa@p.iam.gserviceaccount.com"
    assert key["token_uri"] == "https://oauth2.googleapis.com/token"


def test_gke_modules_build_service_account_credentials_from_the_gce_file(gce_env):
    """google.cloud's GcpSession (the collection's GKE transport) accepts what AWX's GCE credential injects, with
    the auth kind example-gke reads from GCP_AUTH_KIND. (The token exchange with Google needs a real key.)"""
    from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpSession

    def fail_json(**kwargs):
        raise AssertionError(kwargs["msg"])

    module = SimpleNamespace(params={"auth_kind": gce_env["GCP_AUTH_KIND"],
                                     "service_account_file": gce_env["GCP_SERVICE_ACCOUNT_FILE"],
                                     "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                                     "service_account_email": None, "service_account_contents": None,
                                     "access_token": None}, fail_json=fail_json)
    credentials = GcpSession(module, "container")._credentials()
    assert credentials.service_account_email == "sa@p.iam.gserviceaccount.com"


def test_example_gke_inventory_reads_the_injected_environment(gce_env, tmp_path, monkeypatch):
    """Inventory variables of inventories/example-gke, rendered under the credentials' environment."""
    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader()
    (tmp_path / "env2").mkdir()
    env = dict(gce_env)
    types = harness.credential_types()
    for name, inputs in (("LLM Serving - Hugging Face token", {"hf_token": "hf_x"}),
                         ("LLM Serving - Registry pull secret", {"username": "u", "password": "pw"}),
                         ("LLM Serving - GKE kubeconfig", {"kubeconfig": "apiVersion: v1\n"})):
        harness.inject_custom(types[name], inputs, env, [], str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _hosts, group_vars = harness.scm_inventory("inventories/example-gke/hosts.yml")
    (tmp_path / "group_vars.yml").write_text(yaml.safe_dump(group_vars))
    trusted = DataLoader().load_from_file(str(tmp_path / "group_vars.yml"), trusted_as_template=True)
    templar = Templar(loader=DataLoader(), variables=trusted)
    rendered = {k: templar.template(v) for k, v in trusted.items()}
    assert rendered["llm_serving_gcp_auth_kind"] == "serviceaccount"
    assert rendered["llm_serving_gcp_project"] == "my-project"
    assert rendered["llm_serving_kubeconfig"] == os.environ["K8S_AUTH_KUBECONFIG"]
    assert rendered["llm_serving_hf_token"] == "hf_x"
    assert rendered["secrets_pull_secret_source"] == "credentials"
    assert rendered["secrets_registry_credentials"] == [{"registry": "registry.redhat.io", "username": "u",
                                                         "password": "pw"}]


# ---------------------------------------------------------------- the node zones survey answer

@pytest.mark.parametrize("answer,zones", [
    ("europe-west4-a, europe-west4-b", ["europe-west4-a", "europe-west4-b"]),
    ("europe-west4-b", ["europe-west4-b"]),
    ("", []),
    (" europe-west4-a ,, ", ["europe-west4-a"]),
    (["europe-west4-c"], ["europe-west4-c"]),
])
def test_nodepool_reads_the_zone_text_answer_as_zones(answer, zones):
    """The nodepool role's zones are node_pool_params' node_locations (roles/nodepool/vars/main.yml; the role's task
    templated with a survey text answer: tests/unit/roles/test_nodepool_params_agree.py)."""
    assert (node_pool_params({}, "pool", node_locations=answer)["node_locations"] or []) == zones


def test_project_ansible_cfg_parses_the_inventory_awx_writes(tmp_path):
    """AWX hands ansible-runner an executable inventory script; the project's ansible.cfg must enable the script
    inventory plugin, or the job finds no hosts (ANSIBLE_INVENTORY_UNPARSED_FAILED makes it fail)."""
    import subprocess

    script = tmp_path / "hosts"
    script.write_text(harness.inventory_script({"localhost": {"ansible_connection": "local"}}, {"marker": "x"}))
    script.chmod(0o700)
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    listed = subprocess.run([str(ROOT / ".venv/bin/ansible-inventory"), "-i", str(script), "--list"], cwd=ROOT,
                            env=env, capture_output=True, text=True, check=False)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["_meta"]["hostvars"]["localhost"]["marker"] == "x"
