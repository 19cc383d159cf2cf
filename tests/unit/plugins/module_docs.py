"""A module's DOCUMENTATION with the collection's own doc fragments merged in, as Ansible merges them.

Ansible (ansible.utils.plugin_docs.add_fragments) adds each fragment's options under the module's: an option the
module documents too keeps the module's keys over the fragment's. notes and requirements are concatenated.
"""
import yaml

# Imported when the tests are collected: a test that initialises Ansible's plugin loader in-process (init_plugin_loader)
# installs its collection finder, after which a first import of another package of this collection fails.
from ansible_collections.llm_serving.gke.plugins.doc_fragments import gcp, inference

PREFIX = "llm_serving.gke."
FRAGMENT_FILES = {"gcp": gcp, "inference": inference}


def fragment(name):
    """The parsed doc fragment ``llm_serving.gke.<file>[.<attribute>]``."""
    parts = name[len(PREFIX):].split(".")
    holder = FRAGMENT_FILES[parts[0]]
    attribute = parts[1].upper() if len(parts) > 1 else "DOCUMENTATION"
    return yaml.safe_load(getattr(holder.ModuleDocFragment, attribute))


def own_fragments(doc):
    return [name for name in doc.get("extends_documentation_fragment") or [] if name.startswith(PREFIX)]


def merged_documentation(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = doc.setdefault("options", {})
    for name in own_fragments(doc):
        frag = fragment(name)
        for option, spec in (frag.get("options") or {}).items():
            options[option] = {**spec, **options.get(option, {})}
        for key in ("notes", "requirements"):
            if frag.get(key):
                doc[key] = list(doc.get(key) or []) + list(frag[key])
    return doc
