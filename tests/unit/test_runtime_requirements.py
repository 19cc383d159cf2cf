"""requirements.txt (what runs on the controller / in the execution environment) holds only what the collection uses."""
import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# distribution -> top-level import name
IMPORT_NAMES = {"google-auth": "google.auth", "PyYAML": "yaml"}
# distributions used by Ansible content rather than a Python import: distribution -> what uses it
USED_BY_CONTENT = {"jmespath": ("roles", "json_query")}


def requirements():
    with open(os.path.join(ROOT, "requirements.txt")) as handle:
        lines = [line.split("#")[0].strip() for line in handle]
    return [re.split(r"[=<>!~ ]", line)[0] for line in lines if line]


def plugin_imports():
    names = set()
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "plugins")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        names.update(alias.name for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                        names.add(node.module)
    return names


def content_uses(folder, word):
    for base, _dirs, files in os.walk(os.path.join(ROOT, folder)):
        for name in files:
            if name.endswith((".yml", ".yaml", ".j2")):
                with open(os.path.join(base, name)) as handle:
                    if word in handle.read():
                        return True
    return False


def test_every_runtime_requirement_is_used_by_the_collection():
    imported = plugin_imports()
    unused = []
    for dist in requirements():
        if dist in USED_BY_CONTENT:
            folder, word = USED_BY_CONTENT[dist]
            if not content_uses(folder, word):
                unused.append(f"{dist} ({word} no longer appears under {folder}/)")
            continue
        module = IMPORT_NAMES.get(dist, dist.lower().replace("-", "_"))
        if not any(name == module or name.startswith(module + ".") for name in imported):
            unused.append(f"{dist} (no plugin imports {module})")
    assert not unused, "requirements.txt lists what no plugin uses (move it to requirements-dev.txt): " + \
        ", ".join(unused)
