"""Collection pins live in galaxy.yml; the other requirements files repeat them, and the EE names no version."""
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(path):
    with open(os.path.join(ROOT, path)) as handle:
        return yaml.safe_load(handle)


GALAXY = read("galaxy.yml")


def pins(path):
    return {c["name"]: c.get("version") for c in read(path)["collections"] if c.get("type") != "file"}


def test_galaxy_yml_holds_the_dependencies():
    assert set(GALAXY["dependencies"]) == {"kubernetes.core", "google.cloud", "community.general"}


def test_requirements_files_repeat_the_galaxy_pins():
    for path, extra in (("requirements.yml", {"awx.awx"}), ("collections/requirements.yml", set()),
                        ("ee/requirements.yml", set())):
        found = pins(path)
        assert set(found) - extra == set(GALAXY["dependencies"]), path
        for name, version in GALAXY["dependencies"].items():
            assert found[name] == version, f"{path}: {name} {found[name]!r} != galaxy.yml {version!r}"


def test_the_execution_environment_does_not_hard_code_the_collection_version():
    version = GALAXY["version"]
    for path in ("ee/requirements.yml", "execution-environment.yml"):
        with open(os.path.join(ROOT, path)) as handle:
            assert version not in handle.read(), f"{path} repeats the collection version {version}"
    (own,) = [c for c in read("ee/requirements.yml")["collections"] if c.get("type") == "file"]
    steps = " ".join(read("execution-environment.yml")["additional_build_steps"]["prepend_galaxy"])
    # `make build` writes <namespace>-<name>-<version>.tar.gz; the EE renames it to the name requirements use.
    built = f"{GALAXY['namespace']}-{GALAXY['name']}-*.tar.gz"
    assert re.search(rf"mv \S*/{re.escape(built)} {re.escape(own['name'])}", steps), steps
