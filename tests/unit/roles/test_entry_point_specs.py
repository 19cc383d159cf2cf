"""Every role entry point a playbook, role or molecule scenario includes has an argument spec."""
import functools
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PREFIX = "llm_serving.gke."


def _yaml_files():
    for top in ("playbooks", "roles", "molecule"):
        for folder, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith((".yml", ".yaml")):
                    yield os.path.join(folder, name)


def _includes(node):
    """(role, tasks_from) of every include_role / import_role with tasks_from below ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            is_include = key.split(".")[-1] in ("include_role", "import_role") and isinstance(value, dict)
            if is_include and value.get("tasks_from") and str(value.get("name", "")).startswith(PREFIX):
                yield value["name"][len(PREFIX):], value["tasks_from"]
            yield from _includes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _includes(item)


@functools.cache
def entry_points():
    found = set()
    for path in _yaml_files():
        with open(path) as handle:
            try:
                docs = list(yaml.load_all(handle, Loader=yaml.CSafeLoader))
            except yaml.YAMLError:  # Jinja-templated YAML (molecule files) is not a playbook
                continue
        for role, entry in _includes(docs):
            found.add((role, entry, os.path.relpath(path, ROOT)))
    return found


def test_playbooks_include_role_entry_points():
    pairs = {(role, entry) for role, entry, _path in entry_points()}
    assert {("llmisvc", "render"), ("llmisvc", "preflight"), ("llmisvc", "wait")} <= pairs


def test_every_included_entry_point_has_an_argument_spec():
    missing = []
    for role, entry, path in sorted(entry_points()):
        spec_file = os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")
        with open(spec_file) as handle:
            specs = yaml.safe_load(handle)["argument_specs"]
        if entry not in specs:
            missing.append(f"{path}: llm_serving.gke.{role} tasks_from {entry} (roles/{role}/meta/argument_specs.yml)")
        else:
            assert specs[entry].get("short_description") and specs[entry].get("options"), (role, entry)
    assert not missing, "entry points without argument_specs:\n" + "\n".join(missing)
