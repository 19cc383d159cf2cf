"""The AWX configuration in awx/ fits the collection: templates name real playbooks, survey variables
are role options (or variables the playbook itself declares), credential injectors feed variables that
inventories or modules read, and injector templates reach AWX untemplated."""
import re
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import is_trusted_as_template

ROOT = Path(__file__).resolve().parents[3]
AWX = ROOT / "awx"
# Environment variables read directly by module auth code: kubernetes.core (K8S_AUTH_*) and
# google.cloud (GCP_*), as AWX's own Kubernetes and GCE credential types inject them.
MODULE_ENV_PREFIXES = ("K8S_AUTH_", "GCP_")
ENV_LOOKUP = re.compile(r"lookup\('ansible\.builtin\.env',\s*'([A-Z0-9_]+)'")


def load(name, trusted=False):
    return DataLoader().load_from_file(str(AWX / name), trusted_as_template=trusted)


def role_options():
    options = set()
    for spec_file in ROOT.glob("roles/*/meta/argument_specs.yml"):
        specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
        for entry in specs.values():
            options.update(entry.get("options", {}))
    return options


REQUIRED_CHECK = re.compile(r"\b([a-z_][a-z0-9_]*) is defined\b")


def playbook_declared_vars(playbook):
    """Variables a playbook declares itself (play vars), requires and checks in an assert, or that the
    playbooks it imports declare."""
    names = set()
    for play in yaml.safe_load((ROOT / playbook).read_text()):
        names.update(play.get("vars", {}))
        for task in play.get("tasks", []):
            that = task.get("ansible.builtin.assert", {}).get("that", [])
            names.update(REQUIRED_CHECK.findall(" ".join([that] if isinstance(that, str) else that)))
        if "ansible.builtin.import_playbook" in play:
            names.update(playbook_declared_vars(Path(playbook).parent / play["ansible.builtin.import_playbook"]))
    return names


TEMPLATES = load("job_templates.yml")["controller_templates"]


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_template_names_an_existing_playbook(template):
    assert (ROOT / template["playbook"]).is_file(), f"{template['name']}: {template['playbook']} does not exist"


@pytest.mark.parametrize("template", TEMPLATES, ids=[t["name"] for t in TEMPLATES])
def test_survey_variables_are_accepted(template):
    accepted = role_options() | playbook_declared_vars(template["playbook"])
    survey = template.get("survey_spec", {}).get("spec", [])
    unknown = [q["variable"] for q in survey if q["variable"] not in accepted]
    assert not unknown, f"{template['name']}: survey variables no role or playbook accepts: {unknown}"


def test_workflow_nodes_name_job_templates():
    names = {t["name"] for t in TEMPLATES}
    for workflow in load("workflows.yml")["controller_workflows"]:
        for node in workflow["workflow_nodes"]:
            assert node["unified_job_template"]["name"] in names, node["identifier"]


def injected_env():
    for credential_type in load("credential_types.yml")["controller_credential_types"]:
        for variable in credential_type["injectors"].get("env", {}):
            yield credential_type["name"], variable


def inventory_env_reads():
    reads = set()
    for group_vars in ROOT.glob("inventories/*/group_vars/**/*.yml"):
        reads.update(ENV_LOOKUP.findall(group_vars.read_text()))
    return reads


@pytest.mark.parametrize("credential_type,variable", list(injected_env()))
def test_injected_variable_is_read(credential_type, variable):
    assert variable.startswith(MODULE_ENV_PREFIXES) or variable in inventory_env_reads(), (
        f"{credential_type} injects {variable}, but no inventory reads it and no module auth code does")


def test_injector_templates_are_not_templated_by_ansible():
    """awx_configure.yml passes injectors to AWX as data: Ansible must not render '{{ hf_token }}' itself."""
    for credential_type in load("credential_types.yml", trusted=True)["controller_credential_types"]:
        for kind in ("env", "file", "extra_vars"):
            for key, value in credential_type["injectors"].get(kind, {}).items():
                if "{{" in value:
                    assert not is_trusted_as_template(value), f"{credential_type['name']} {kind}.{key} is templatable"


def test_secret_inputs_are_marked_secret():
    for credential_type in load("credential_types.yml")["controller_credential_types"]:
        for field in credential_type["inputs"]["fields"]:
            if re.search(r"token|password|kubeconfig", field["id"]):
                assert field.get("secret"), f"{credential_type['name']}: {field['id']} must be secret"


def test_every_playbook_has_a_template():
    templated = {t["playbook"] for t in TEMPLATES}
    # render.yml writes a plan to files for a reviewer; in AWX they would vanish with the job's container.
    runnable = {f"playbooks/{p.name}" for p in (ROOT / "playbooks").glob("*.yml")
                if p.name not in ("deploy_pattern.yml", "awx_configure.yml", "render.yml")}
    assert not runnable - templated, f"playbooks without a job template: {sorted(runnable - templated)}"


def test_env_lookup_regex_matches_inventory_style():
    assert ENV_LOOKUP.findall("x: \"{{ lookup('ansible.builtin.env', 'LLM_SERVING_HF_TOKEN', default='') }}\"") == [
        "LLM_SERVING_HF_TOKEN"]
