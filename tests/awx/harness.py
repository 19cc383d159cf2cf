"""Launch the job templates of awx/ the way AWX launches them, without an AWX server.

What AWX does for a job, and where it is written (ansible/awx at commit e21dd0a0933f, 24.6.1-145; the built-in
credential injectors live in ansible/awx-plugins at commit c7fc0a10a526, v0.0.1a4):

- Survey answers. The UI turns an ``integer`` answer into a JSON number, ``float`` likewise, ``multiselect`` into a
  list, everything else stays a string. The API then validates each question
  (awx/main/models/mixins.py ``SurveyJobTemplateMixin._survey_element_validation``: ``'%s' value missing``,
  ``Value %s for '%s' expected to be an integer.``, ``'%s' value %s is too small (must be at least %s).``,
  ``Value %s for '%s' expected to be one of %s.``) and refuses the launch when one fails
  (``_accept_or_ignore_variables`` -> ``variables_needed_to_start``).
- Extra vars precedence (mixins.py ``_update_unified_job_kwargs``): template extra_vars, then survey defaults
  (only a default that passes validation), then the launch's answers / extra vars. In a workflow
  (awx/main/models/workflow.py ``WorkflowJobNode.get_job_kwargs``) the ancestors' artifacts (``set_stats``) are
  added to the node's extra vars, over the node's ``extra_data``.
- The extra vars file (awx/main/tasks/jobs.py ``RunJob.build_extra_vars_file`` -> ``_write_extra_vars_file`` ->
  awx/main/utils/safe_yaml.py ``safe_dump``): every string not set in the template's own extra_vars is tagged
  ``!unsafe``; meta vars ``awx_job_id``, ``awx_job_template_name``, ... are added (``awx_meta_vars``).
- Arguments (jobs.py ``RunJob.build_args``): ``--check`` for job_type check, ``-u root``, ``-l limit``,
  ``-v`` x verbosity, ``-t job_tags``, ``--skip-tags``; written to ``env/cmdline``.
- Environment (jobs.py ``BaseTask.build_env`` / ``RunJob.build_env``): the ``ANSIBLE_*`` settings
  (awx/settings/defaults.py: ANSIBLE_HOST_KEY_CHECKING=False, ANSIBLE_FORCE_COLOR=True,
  ANSIBLE_INVENTORY_UNPARSED_FAILED=True, ...), JOB_ID, INVENTORY_ID, ANSIBLE_RETRY_FILES_ENABLED=False,
  ANSIBLE_COLLECTIONS_PATHS with the project's requirements_collections first.
- Credentials (awx/main/models/credential.py ``CredentialType.inject_credential``): custom types render ``file``
  injectors into ``env/`` temp files (``tower.filename`` for one file, ``tower.filename.<label>`` for
  ``template.<label>``), then ``env`` and ``extra_vars`` injectors, all with Jinja's
  ``ImmutableSandboxedEnvironment``; ``extra_vars`` go to a file passed as ``-e @file``. The built-in GCE
  credential runs awx-plugins src/awx_plugins/credentials/injectors.py ``gce``: a service-account JSON file in
  ``env/`` and GCE_EMAIL, GCE_PROJECT, GCE_CREDENTIALS_FILE_PATH, GCP_SERVICE_ACCOUNT_FILE,
  GOOGLE_APPLICATION_CREDENTIALS, GCP_AUTH_KIND=serviceaccount, GCP_PROJECT, GCP_ENV_TYPE=tower.
- Private data dir (jobs.py ``build_private_data_dir``, ``build_project_dir``, ``build_inventory``): ``project/``
  (the project checkout), ``inventory/hosts`` (an executable script printing the inventory as JSON),
  ``env/`` (extravars, cmdline, settings, credential files); ``ansible_runner.interface.run`` with
  ``fact_cache_type='jsonfile'`` when the template uses the fact cache.

What differs from a real AWX: no container (the playbook runs with this checkout's .venv, standing in for the
execution environment; the collection comes from the project checkout instead of the EE's tarball), no database
(job events are read from the runner's artifacts directory), no project sync from git (tracked files of the
working tree are copied).

"""
import itertools
import json
import os
import shutil
import stat
import subprocess
import tempfile
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
import yaml
from jinja2 import sandbox

ROOT = Path(__file__).resolve().parents[2]
AWX_DIR = ROOT / "awx"
VENV_BIN = ROOT / ".venv" / "bin"
_JOB_IDS = itertools.count(1000)


class SurveyError(ValueError):
    """A launch AWX refuses (variables_needed_to_start); ``errors`` are AWX's messages."""

    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = errors


# ---------------------------------------------------------------- the awx/ data

def _plain(value):
    """Ansible's tagged strings (from DataLoader, which understands !unsafe) as plain Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    for kind in (bool, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def load_awx(name):
    from ansible.parsing.dataloader import DataLoader

    return _plain(DataLoader().load_from_file(str(AWX_DIR / name)))


def job_templates():
    return {t["name"]: t for t in load_awx("job_templates.yml")["controller_templates"]}


def credential_types():
    return {t["name"]: t for t in load_awx("credential_types.yml")["controller_credential_types"]}


def workflows():
    return {w["name"]: w for w in load_awx("workflows.yml")["controller_workflows"]}


# ---------------------------------------------------------------- surveys

def type_answer(question, answer):
    """The value the AWX UI sends for a typed answer (text as a user types it)."""
    kind = question["type"]
    if answer is None:
        return None
    if kind == "integer":
        return int(answer) if isinstance(answer, str) and answer.strip().lstrip("-").isdigit() else answer
    if kind == "float":
        try:
            return float(answer) if isinstance(answer, str) else answer
        except ValueError:
            return answer
    if kind == "multiselect" and isinstance(answer, str):
        return [line for line in answer.splitlines() if line]
    return answer


def _choices(question):
    choices = copy(question.get("choices", []))
    if isinstance(choices, str):
        choices = [c for c in choices.splitlines() if c.strip() != ""]
    return choices


def validate_element(question, data, validate_required=True):
    """AWX's _survey_element_validation (mixins.py), message for message."""
    errors = []
    var = question["variable"]
    kind = question["type"]
    required = question.get("required", False)
    bounded = {k: question[k] for k in ("min", "max") if question.get(k) not in ("", None)}
    if var not in data and required:
        if validate_required:
            errors.append(f"'{var}' value missing")
    elif var not in data:
        pass
    elif kind in ("textarea", "text", "password"):
        value = data[var]
        if not isinstance(value, str):
            return [f"Value {value} for '{var}' expected to be a string."]
        if "min" in bounded and len(value) < int(bounded["min"]):
            errors.append(f"'{var}' value {value} is too small (length is {len(value)} must be at least "
                          f"{bounded['min']}).")
        if "max" in bounded and len(value) > int(bounded["max"]):
            errors.append(f"'{var}' value {value} is too large (must be no more than {bounded['max']}).")
    elif kind == "integer":
        value = data[var]
        if type(value) is not int:  # pylint: disable=unidiomatic-typecheck  # as AWX: a bool is no integer
            return [f"Value {value} for '{var}' expected to be an integer."]
        if "min" in bounded and value < int(bounded["min"]):
            errors.append(f"'{var}' value {value} is too small (must be at least {bounded['min']}).")
        if "max" in bounded and value > int(bounded["max"]):
            errors.append(f"'{var}' value {value} is too large (must be no more than {bounded['max']}).")
    elif kind == "float":
        value = data[var]
        if type(value) not in (float, int):  # pylint: disable=unidiomatic-typecheck  # as AWX: no bool
            return [f"Value {value} for '{var}' expected to be a numeric type."]
        if "min" in bounded and value < float(bounded["min"]):
            errors.append(f"'{var}' value {value} is too small (must be at least {bounded['min']}).")
        if "max" in bounded and value > float(bounded["max"]):
            errors.append(f"'{var}' value {value} is too large (must be no more than {bounded['max']}).")
    elif kind == "multiselect":
        if not isinstance(data[var], list):
            errors.append(f"'{var}' value is expected to be a list.")
        else:
            errors += [f"Value {v} for '{var}' expected to be one of {_choices(question)}." for v in data[var]
                       if v not in _choices(question)]
    elif kind == "multiplechoice" and data[var] not in _choices(question):
        errors.append(f"Value {data[var]} for '{var}' expected to be one of {_choices(question)}.")
    return errors


def launch_extra_vars(template, answers=None, runtime_extra_vars=None):
    """Extra vars of a launch: template extra_vars < valid survey defaults < typed answers / runtime extra vars.

    ``answers`` are keyed by survey variable, given as the user types them (strings are typed as the UI does).
    Raises SurveyError with AWX's messages when a question's answer is refused.
    """
    spec = template.get("survey_spec", {}).get("spec", []) if template.get("survey_enabled") else []
    by_var = {q["variable"]: q for q in spec}
    # The launch form shows each question with its default filled in, so the UI sends it unless the user changed
    # it (over the API a required question left out is refused: "'%s' value missing"). In a workflow the job gets
    # the survey defaults in _update_unified_job_kwargs; the effect on the extra vars is the same.
    answers = {**{q["variable"]: q["default"] for q in spec if q.get("default") not in (None, "")}, **(answers or {})}
    typed = {k: type_answer(by_var[k], v) if k in by_var else v for k, v in answers.items()}
    unknown = [k for k in {**(runtime_extra_vars or {}), **typed} if k not in by_var]
    if unknown and not template.get("ask_variables_on_launch"):
        raise SurveyError([f"'{k}' is not a survey question of '{template['name']}' and the template does not "
                           "prompt for variables" for k in unknown])
    data = {**(runtime_extra_vars or {}), **typed}
    errors = []
    for question in spec:
        errors += validate_element(question, data)
    if errors:
        raise SurveyError(errors)
    extra_vars = dict(template.get("extra_vars") or {})
    for question in spec:
        default = question.get("default")
        if default is not None and not validate_element(question, {question["variable"]: default}):
            extra_vars[question["variable"]] = default
    extra_vars.update(data)
    return extra_vars


# ---------------------------------------------------------------- YAML as AWX writes it

class _UnsafeDumper(yaml.SafeDumper):
    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def safe_dump(values, safe_dict=None):
    """awx/main/utils/safe_yaml.py safe_dump: strings are !unsafe unless the template's own extra_vars set them."""
    safe_dict = safe_dict or {}
    parts = []
    for key, value in values.items():
        dumper = yaml.SafeDumper if key in safe_dict and safe_dict[key] == value else _UnsafeDumper
        parts.append(yaml.dump_all([{key: value}], None, Dumper=dumper, default_flow_style=False))
    return "".join(parts)


# ---------------------------------------------------------------- credentials

@dataclass
class Credential:
    """An AWX credential: a custom type from awx/credential_types.yml by name, or ``gce`` (built-in)."""
    credential_type: str
    inputs: dict


def _private_file(private_data_dir, content, mode=stat.S_IRUSR | stat.S_IWUSR):
    handle, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
    with os.fdopen(handle, "w") as out:
        out.write(content)
    os.chmod(path, mode)
    return path


def inject_gce(inputs, env, private_data_dir):
    """awx-plugins src/awx_plugins/credentials/injectors.py gce()."""
    project = inputs.get("project", "")
    username = inputs.get("username", "")
    json_cred = {"type": "service_account", "private_key": inputs.get("ssh_key_data", ""),
                 "client_email": username, "project_id": project,
                 "token_uri": "https://oauth2.googleapis.com/token"}
    path = _private_file(private_data_dir, json.dumps(json_cred, indent=2))
    env.update({"GCE_EMAIL": username, "GCE_PROJECT": project, "GCE_CREDENTIALS_FILE_PATH": path,
                "GCP_SERVICE_ACCOUNT_FILE": path, "GOOGLE_APPLICATION_CREDENTIALS": path,
                "GCP_AUTH_KIND": "serviceaccount", "GCP_PROJECT": project, "GCP_ENV_TYPE": "tower"})


def inject_custom(credential_type, inputs, env, args, private_data_dir):
    """CredentialType.inject_credential (awx/main/models/credential.py) for a custom credential type."""
    defaults = {f["id"]: f["default"] for f in credential_type["inputs"]["fields"] if "default" in f}
    missing = [f for f in credential_type["inputs"].get("required", []) if not {**defaults, **inputs}.get(f)]
    if missing:
        raise SurveyError([f"credential of type '{credential_type['name']}' lacks required input(s) {missing}"])

    class Tower:
        pass

    tower = Tower()
    namespace = {"tower": tower}
    for name, value in {**defaults, **inputs}.items():
        if isinstance(value, bool) or len(value):
            namespace[name] = value
    sandbox_env = sandbox.ImmutableSandboxedEnvironment()
    for label, template in credential_type["injectors"].get("file", {}).items():
        path = _private_file(private_data_dir, sandbox_env.from_string(template).render(**namespace))
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = Tower()
            setattr(tower.filename, label.split(".")[1], path)
    for var, template in credential_type["injectors"].get("env", {}).items():
        env[var] = sandbox_env.from_string(template).render(**namespace)

    def render(node):
        if isinstance(node, dict):
            return {render(k): render(v) for k, v in node.items()}
        if isinstance(node, list):
            return [render(v) for v in node]
        return sandbox_env.from_string(node).render(**namespace)

    extra_vars = render(credential_type["injectors"].get("extra_vars", {}))
    if extra_vars:
        args += ["-e", "@" + _private_file(private_data_dir, safe_dump(extra_vars), stat.S_IRUSR)]


# ---------------------------------------------------------------- the job

@dataclass
class JobResult:
    status: str
    rc: int
    private_data_dir: Path
    ident: str
    extra_vars: dict
    cmdline: list
    events: list = field(default_factory=list)

    @property
    def artifact_dir(self):
        return self.private_data_dir / "artifacts" / self.ident

    @property
    def stdout(self):
        path = self.artifact_dir / "stdout"
        return path.read_text() if path.exists() else ""

    @property
    def artifacts(self):
        """set_stats data (AWX's job.artifacts), from the playbook_on_stats event."""
        for event in self.events:
            if event.get("event") == "playbook_on_stats":
                return event.get("event_data", {}).get("artifact_data", {}) or {}
        return {}

    def failed_tasks(self):
        return [e["event_data"] for e in self.events if e.get("event") in ("runner_on_failed", "runner_on_unreachable")
                and not e["event_data"].get("ignore_errors")]

    def failure_messages(self):
        return [str(e.get("res", {}).get("msg", e.get("res"))) for e in self.failed_tasks()]


def project_checkout(destination):
    """The project as AWX's project sync leaves it: the files git would commit (tracked and new, not ignored), as
    they are in the working tree, so that the launch tests what the other tests test."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def scm_inventory(source):
    """(hostvars, group vars) of an inventory source file with its group_vars/all.yml, unrendered, as AWX's
    inventory import stores them (ansible-inventory --list --export: ANSIBLE_INVENTORY_EXPORT in
    awx/main/constants.py STANDARD_INVENTORY_UPDATE_ENV)."""
    source = ROOT / source
    hosts = yaml.safe_load(source.read_text())["all"]["hosts"]
    group_vars = {}
    # group_vars/all.yml or every file of group_vars/all/ (vault files excepted: AWX imports no vault secrets).
    for path in sorted((source.parent / "group_vars").glob("all.yml")) + \
            sorted((source.parent / "group_vars").glob("all/*.yml")):
        text = path.read_text()
        if not text.startswith("$ANSIBLE_VAULT"):
            group_vars.update(yaml.safe_load(text) or {})
    return {name: dict(values or {}) for name, values in hosts.items()}, group_vars


def inventory_script(hostvars, group_vars):
    """What RunJob.build_inventory writes: an executable printing the inventory (hostvars included)."""
    data = {"all": {"hosts": sorted(hostvars), "vars": group_vars, "children": ["ungrouped"]},
            "ungrouped": {"hosts": []}, "_meta": {"hostvars": hostvars}}
    return f"#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint({json.dumps(data)!r})\n"


def launch(template, inventory_vars, answers=None, credentials=(), runtime_extra_vars=None, artifacts=None,
           job_type="run", limit="", job_tags="", skip_tags="", verbosity=0, use_fact_cache=False, workdir=None,
           envvars=None, hostvars=None):
    """Launch one job template; returns a JobResult. Raises SurveyError before anything runs when AWX would.

    ``artifacts``: what the workflow's ancestors published with set_stats (added to the extra vars without the
    template prompting for variables, as WorkflowJobNode.get_job_kwargs does).
    """
    extra_vars = {**launch_extra_vars(template, answers, runtime_extra_vars), **(artifacts or {})}
    job_id = next(_JOB_IDS)
    ident = str(job_id)
    private_data_dir = Path(tempfile.mkdtemp(prefix=f"awx_{job_id}_", dir=workdir))
    for sub in ("inventory", "env"):
        (private_data_dir / sub).mkdir()
    project = private_data_dir / "project"
    project.mkdir()
    project_checkout(project)
    # The EE carries llm_serving.gke (ee/requirements.yml, built from the project); here: the project copy.
    collections = private_data_dir / "requirements_collections" / "ansible_collections" / "llm_serving"
    collections.mkdir(parents=True)
    (collections / "gke").symlink_to(project)

    args = ["--check"] if job_type == "check" else []
    args += ["-u", "root"]
    if limit:
        args += ["-l", limit]
    if verbosity:
        args.append("-" + "v" * min(5, verbosity))
    if job_tags:
        args += ["-t", job_tags]
    if skip_tags:
        args.append(f"--skip-tags={skip_tags}")

    env = {"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
           "ANSIBLE_FORCE_COLOR": "True", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
           "AWX_PRIVATE_DATA_DIR": str(private_data_dir), "JOB_ID": ident, "INVENTORY_ID": "1",
           "ANSIBLE_RETRY_FILES_ENABLED": "False",
           "ANSIBLE_COLLECTIONS_PATHS": str(private_data_dir / "requirements_collections"),
           "ANSIBLE_COLLECTIONS_PATH": str(private_data_dir / "requirements_collections"),
           # Stand-in for the EE's PATH: this checkout's .venv. HOME stays the user's: with AWX's `-u root`, Ansible
           # expands the async job directory as ~root while the async wrapper would follow HOME.
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_LOCAL_TEMP": str(private_data_dir / "tmp"),
           "KUBECACHEDIR": str(private_data_dir / "kube-cache")}
    env.update(envvars or {})
    for credential in credentials:
        if credential.credential_type == "gce":
            inject_gce(credential.inputs, env, str(private_data_dir))
        else:
            inject_custom(credential_types()[credential.credential_type], credential.inputs, env, args,
                          str(private_data_dir))

    meta = {"awx_job_id": job_id, "tower_job_id": job_id, "awx_job_launch_type": "manual",
            "awx_job_template_name": template["name"], "awx_inventory_name": template.get("inventory", ""),
            "awx_project_revision": "", "awx_execution_node": "localhost"}
    final_vars = {**extra_vars, **meta}
    (private_data_dir / "env" / "extravars").write_text(safe_dump(final_vars, template.get("extra_vars") or {}))
    (private_data_dir / "env" / "cmdline").write_text(ansible_runner.utils.args2cmdline(*args))
    (private_data_dir / "env" / "settings").write_text(json.dumps({"suppress_ansible_output": True}))
    inventory = private_data_dir / "inventory" / "hosts"
    inventory.write_text(inventory_script(hostvars or {"localhost": {}}, inventory_vars))
    inventory.chmod(0o700)

    runner = ansible_runner.interface.run(
        ident=ident, private_data_dir=str(private_data_dir), playbook=template["playbook"],
        inventory=str(inventory), envvars=env, suppress_env_files=True,
        fact_cache_type="jsonfile" if use_fact_cache else "", quiet=True)
    events = list(runner.events)
    return JobResult(runner.status, runner.rc, private_data_dir, ident, extra_vars, args, events)


def run_workflow(workflow, launch_node, stop_on_failure=True):
    """Run a workflow's nodes from its root along success_nodes; each node gets the ancestors' artifacts.

    ``launch_node(node, extra_data, artifacts)`` launches one node's template (its ``extra_data`` as prompted extra
    vars, the ancestors' ``artifacts`` over them) and returns its JobResult.
    """
    nodes = {n["identifier"]: n for n in workflow["workflow_nodes"]}
    children = {c["identifier"] for n in nodes.values() for c in n.get("related", {}).get("success_nodes", [])}
    order, results, artifacts = [], {}, {}
    current = [n for n in nodes if n not in children]
    while current:
        identifier = current.pop(0)
        node = nodes[identifier]
        result = launch_node(node, node.get("extra_data", {}), dict(artifacts))
        order.append(identifier)
        results[identifier] = result
        if result.status != "successful":
            if stop_on_failure:
                break
            continue
        artifacts.update(result.artifacts)
        current += [c["identifier"] for c in node.get("related", {}).get("success_nodes", [])]
    return order, results
