"""playbooks/awx_configure.yml checked offline against the installed awx.awx collection: every awx.awx task, rendered
for every item of its loop (the data of awx/), is validated against that module's own argument spec, so that a
renamed or misspelled option, a wrong type or a value outside the choices fails here, not on a user's first run."""
import importlib
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / "playbooks" / "awx_configure.yml"
# The extra vars the playbook's header documents (docs/awx.md section 5).
EXTRA_VARS = {"awx_project_scm_url": "https://git.example/llm_serving.gke.git", "awx_gke_credential": "gke-prod",
              "awx_gce_credential": "gcp-prod", "awx_hf_token_credential": "hf",
              "awx_registry_credential": "redhat-registry", "awx_execution_environment": "llm-serving-gke-ee"}
OMIT = "__omit_place_holder__awx_configure_test"


class _Spec(Exception):
    def __init__(self, argument_spec, kwargs):
        super().__init__("argument spec captured")
        self.argument_spec = argument_spec
        self.kwargs = kwargs


def module_spec(name):
    """awx.awx.<name>'s full argument spec: what main() hands ControllerAPIModule, plus its AUTH_ARGSPEC."""
    module = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{name}")
    base = module.ControllerAPIModule

    class Capture(base):
        def __init__(self, argument_spec=None, **kwargs):
            raise _Spec(argument_spec, kwargs)

    module.ControllerAPIModule = Capture
    try:
        module.main()
    except _Spec as captured:
        spec = dict(captured.argument_spec)
        spec.update(base.AUTH_ARGSPEC)
        return spec, captured.kwargs
    finally:
        module.ControllerAPIModule = base
    raise AssertionError(f"awx.awx.{name} main() did not build its module")


def play():
    return DataLoader().load_from_file(str(PLAYBOOK), trusted_as_template=True)[0]


def awx_tasks():
    return [task for task in play()["tasks"] if any(str(key).startswith("awx.awx.") for key in task)]


def config_vars():
    variables = dict(play()["vars"])
    variables["playbook_dir"] = str(PLAYBOOK.parent)
    for path in sorted((ROOT / "awx").glob("*.yml")):
        variables.update(DataLoader().load_from_file(str(path), trusted_as_template=True))
    variables.update(EXTRA_VARS)
    variables["omit"] = OMIT
    return variables


def rendered_calls(task):
    """(module name, params) for every loop item, with omitted options dropped, as Ansible would call it."""
    names = [str(key) for key in task if str(key).startswith("awx.awx.")]
    if not names:
        raise ValueError(f"task {task.get('name')!r} calls no awx.awx module")
    module = names[0].split(".")[-1]
    variables = config_vars()
    loop = Templar(loader=DataLoader(), variables=variables).template(task["loop"])
    for item in loop:
        templar = Templar(loader=DataLoader(), variables={**variables, "item": item})
        params = templar.template(task[f"awx.awx.{module}"])
        yield module, {k: v for k, v in params.items() if v != OMIT}


TASKS = awx_tasks()


def test_every_configuration_step_is_checked():
    names = [next(str(k) for k in t if str(k).startswith("awx.awx.")) for t in TASKS]
    assert names == ["awx.awx.credential_type", "awx.awx.project", "awx.awx.inventory", "awx.awx.inventory_source",
                     "awx.awx.job_template", "awx.awx.workflow_job_template"]


@pytest.mark.parametrize("task", TASKS, ids=[t["name"] for t in TASKS])
def test_task_matches_the_module_argument_spec(task):
    calls = list(rendered_calls(task))
    assert calls, f"{task['name']}: its loop is empty"
    for module, params in calls:
        spec, kwargs = module_spec(module)
        result = ArgumentSpecValidator(spec, **{k: v for k, v in kwargs.items() if k in (
            "mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")}
        ).validate(params)
        assert not result.error_messages, f"awx.awx.{module} ({params.get('name')}): {result.error_messages}"


def test_injectors_reach_awx_untemplated():
    """The rendered credential_type call carries the injector templates verbatim (AWX renders them)."""
    task = next(t for t in TASKS if "awx.awx.credential_type" in t)
    injectors = {params["name"]: params["injectors"] for _module, params in rendered_calls(task)}
    assert injectors["LLM Serving - Hugging Face token"]["env"]["LLM_SERVING_HF_TOKEN"] == "{{ hf_token }}"
    assert injectors["LLM Serving - GKE kubeconfig"]["env"]["K8S_AUTH_KUBECONFIG"] == "{{ tower.filename.kubeconfig }}"


def test_a_misspelled_option_is_caught():
    """The check fails on a renamed option (here survey_enabled -> survey_enable), as it would in CI."""
    task = next(t for t in TASKS if "awx.awx.job_template" in t)
    module, params = next(rendered_calls(task))
    params["survey_enable"] = params.pop("survey_enabled")
    spec, _unused = module_spec(module)
    errors = ArgumentSpecValidator(spec).validate(params).error_messages
    assert any("survey_enable" in message for message in errors), errors


def test_job_templates_name_the_options_the_data_sets():
    """Every key a job template sets in awx/job_templates.yml reaches the module (none is silently dropped)."""
    task = next(t for t in TASKS if "awx.awx.job_template" in t)
    passed = set(task["awx.awx.job_template"])
    for template in yaml.safe_load((ROOT / "awx" / "job_templates.yml").read_text())["controller_templates"]:
        missing = sorted(set(template) - passed)
        assert not missing, f"{template['name']}: not passed to awx.awx.job_template: {missing}"
