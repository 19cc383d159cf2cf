"""The switch role (issue 13 item 2): playbooks/tasks/switch_*.yml became roles/switch with argument specs, the
raw `uri` call to Compute became llm_serving.gke.gce_region_quota, and switch_pattern.yml only calls the role."""
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "switch"


def load(path):
    return yaml.safe_load(path.read_text())


def test_the_switch_task_files_live_in_the_role_and_nowhere_else():
    assert sorted(p.name for p in (ROOT / "playbooks" / "tasks").glob("switch_*.yml")) == []
    assert not (ROOT / "playbooks" / "tasks" / "stable_route.yml").exists()
    tasks = {p.name for p in (ROLE / "tasks").glob("*.yml")}
    assert tasks == {"main.yml", "state.yml", "capacity.yml", "overlap.yml", "downtime.yml", "url.yml",
                     "wait_served.yml", "stable_route.yml"}
    for path in (ROLE / "tasks").glob("*.yml"):
        for target in re.findall(r"include_tasks: (\S+)", path.read_text()):
            assert (ROLE / "tasks" / target).exists(), f"{path.name} includes missing {target}"


def test_the_playbook_only_imports_the_role():
    play = load(ROOT / "playbooks" / "switch_pattern.yml")[0]
    assert "vars" not in play  # the defaults live in the role
    assert play["tasks"] == [{"name": play["tasks"][0]["name"],
                              "ansible.builtin.import_role": {"name": "llm_serving.gke.switch"}}]


def test_argument_specs_cover_every_default_and_the_required_patterns():
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load(ROLE / "defaults" / "main.yml")
    assert set(defaults) | {"switch_from", "switch_to"} == set(options)
    assert options["switch_from"]["required"] and options["switch_to"]["required"]
    for name, value in defaults.items():
        if "default" in options[name]:
            assert options[name]["default"] == value, name


def test_quota_is_read_with_the_module_not_a_bare_uri():
    capacity = (ROLE / "tasks" / "capacity.yml").read_text()
    assert "ansible.builtin.uri" not in capacity and "Authorization" not in capacity
    assert "llm_serving.gke.gce_region_quota:" in capacity
    assert "llm_serving.gke.switch_capacity(" in capacity


def test_missing_switch_to_is_refused_by_the_argument_spec(ansible_playbook):
    play = [{"hosts": "localhost", "gather_facts": False,
             "tasks": [{"ansible.builtin.import_role": {"name": "llm_serving.gke.switch"}}]}]
    proc = ansible_playbook(play, "-e", "switch_from=p1-tpu", "-e", "switch_max_nodes=two")
    assert proc.returncode != 0
    assert "missing required arguments: switch_to" in proc.stdout, proc.stdout[-3000:]
    assert "switch_max_nodes" in proc.stdout, proc.stdout[-3000:]
