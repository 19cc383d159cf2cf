"""The options the GCP modules and the two load modules share are documented once, in plugins/doc_fragments/."""
import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest
import yaml

from ansible_collections.llm_serving.gke.plugins import modules as modules_package
from tests.unit.plugins.module_docs import fragment, merged_documentation, own_fragments

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MODULES = sorted(m.name for m in pkgutil.iter_modules(modules_package.__path__))
GCP_MODULES = [m for m in MODULES
               if "google.cloud.gcp" in yaml.safe_load(importlib.import_module(
                   f"ansible_collections.llm_serving.gke.plugins.modules.{m}").DOCUMENTATION).get(
                   "extends_documentation_fragment", [])]
LOAD_MODULES = ["inference_benchmark", "prefix_cache_check"]


def load(name):
    return importlib.import_module(f"ansible_collections.llm_serving.gke.plugins.modules.{name}")


def raw_doc(name):
    return yaml.safe_load(load(name).DOCUMENTATION)


def argument_spec(module):
    if hasattr(module, "ARGUMENT_SPEC"):
        return module.ARGUMENT_SPEC
    if hasattr(module, "argument_spec"):
        return module.argument_spec()
    return None


def test_the_gcp_modules_are_found():
    assert {"gke_node_pool", "gke_cluster_info"} <= set(GCP_MODULES)


@pytest.mark.parametrize("name", GCP_MODULES)
def test_gcp_modules_use_the_shared_fragment(name):
    doc = raw_doc(name)
    assert "llm_serving.gke.gcp" in doc["extends_documentation_fragment"], name
    text = load(name).DOCUMENTATION
    # the authentication notes live in the fragment only
    assert "Application Default Credentials is used" not in text and "cannot be refreshed" not in text, name
    merged = merged_documentation(load(name))
    assert {"timeout", "compute_endpoint"} <= set(merged["options"])
    assert any("Application Default Credentials" in note for note in merged["notes"])


@pytest.mark.parametrize("name", GCP_MODULES)
def test_gcp_modules_take_their_attributes_from_the_fragment(name):
    # Before ansible.builtin.action_common_attributes.actiongroups, whose membership [] would win otherwise
    # (ansible.utils.plugin_docs merge_fragment: what the document already has wins over a later fragment).
    fragments = raw_doc(name)["extends_documentation_fragment"]
    assert fragments.index("llm_serving.gke.gcp.attributes") < fragments.index(
        "ansible.builtin.action_common_attributes.actiongroups"), name
    shared = fragment("llm_serving.gke.gcp.attributes")["attributes"]
    for attribute, values in (raw_doc(name).get("attributes") or {}).items():
        same = [key for key, value in values.items() if shared.get(attribute, {}).get(key) == value]
        assert not same, f"{name}: attribute {attribute} repeats {same} of llm_serving.gke.gcp.attributes"


@pytest.mark.parametrize("name", LOAD_MODULES)
def test_load_modules_use_the_shared_fragment(name):
    assert "llm_serving.gke.inference" in raw_doc(name)["extends_documentation_fragment"]
    merged = merged_documentation(load(name))
    assert {"base_url", "model", "endpoint", "request_timeout", "headers", "validate_certs", "measured_on",
            "shared_prefix_tokens"} <= set(merged["options"])


@pytest.mark.parametrize("name", MODULES)
def test_no_module_repeats_what_its_fragments_say(name):
    doc = raw_doc(name)
    for frag_name in own_fragments(doc):
        for option, spec in (fragment(frag_name).get("options") or {}).items():
            own = (doc.get("options") or {}).get(option)
            if own is None:
                continue
            same = [key for key, value in own.items() if spec.get(key) == value]
            assert not same, f"{name}: option {option} repeats {same} of fragment {frag_name}"


# Modules whose argument spec is a module attribute (the others build it inline in main(); ansible-test
# validate-modules compares those).
SPEC_MODULES = [m for m in MODULES if argument_spec(load(m)) is not None]


def test_the_modules_sharing_fragments_expose_their_argument_spec():
    assert {"gke_node_pool", "gce_region_quota", "gke_platform_check", *LOAD_MODULES} <= set(SPEC_MODULES)


@pytest.mark.parametrize("name", SPEC_MODULES)
def test_merged_documentation_matches_the_argument_spec(name):
    module = load(name)
    spec = argument_spec(module)
    for option, doc in merged_documentation(module)["options"].items():
        assert option in spec, f"{name}: documented option {option} is not in the argument spec"
        arg = spec[option]
        assert doc.get("type", "str") == arg.get("type", "str"), (name, option)
        assert doc.get("default") == arg.get("default"), (name, option)
        assert bool(doc.get("required")) == bool(arg.get("required")), (name, option)
        assert doc.get("choices") == arg.get("choices"), (name, option)


def test_ansible_doc_renders_every_module_with_its_fragments():
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_HOME=os.path.join(ROOT, ".cache", "ansible-home"))
    names = [f"llm_serving.gke.{m}" for m in MODULES]
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-doc"), "-t", "module", "--json",
                             *names], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)
    assert set(docs) == set(names)
    node_pool = docs["llm_serving.gke.gke_node_pool"]["doc"]
    assert node_pool["options"]["location"]["required"] is True  # from llm_serving.gke.gcp.cluster
    assert node_pool["options"]["timeout"]["default"] == 2700  # the module's own default wins
    assert "auth_kind" in node_pool["options"]  # google.cloud.gcp
    # Attributes: the fragment's values, the module's own where it differs, ansible-core's descriptions.
    attributes = {name: docs[f"llm_serving.gke.{name}"]["doc"]["attributes"] for name in GCP_MODULES}
    for name, attrs in attributes.items():
        assert attrs["check_mode"]["support"] == "full" and attrs["platform"]["platforms"] == "all", name
        group = attrs["action_group"]
        assert group["support"] == "full" and "llm_serving.gke.gcp" in group["membership"], name
        assert all(attr.get("description") for attr in attrs.values()), name
    assert attributes["gke_cluster_info"]["diff_mode"]["support"] == "none"
    assert attributes["gke_platform_check"]["action_group"]["membership"] == [
        "llm_serving.gke.gcp", "llm_serving.gke.k8s"]
    assert attributes["gke_node_pool"]["diff_mode"]["support"] == "full"
    assert attributes["gke_node_pool"]["check_mode"]["details"].startswith("Reads the pool")
    bench = docs["llm_serving.gke.inference_benchmark"]["doc"]
    assert bench["options"]["max_tokens"]["default"] == 32 and "measured_on" in bench["options"]
