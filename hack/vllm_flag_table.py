"""Regenerate the vLLM version table in plugins/module_utils/vllm_versions.py from real vLLM releases.

The table is derived, never typed: for each release this script opens the release's wheel from PyPI as a
zip file (nothing is installed, nothing is imported) and reads, with Python's ``ast`` module:

* the command-line flags of ``vllm serve`` / ``python -m vllm.entrypoints.openai.api_server``: every
  ``add_argument("--flag", "-f", ...)`` in ``vllm/engine/arg_utils.py``, ``vllm/entrypoints/openai/cli_args.py``
  and ``vllm/entrypoints/cli/serve.py``; the flags that newer releases generate from a dataclass
  (``for key, value in get_kwargs(FrontendArgs).items(): add_argument(f"--{key...}")``); and the ``--no-<flag>``
  twin of every flag that argparse's ``BooleanOptionalAction`` adds (explicit ``action=`` or, through
  ``get_kwargs``, a ``bool`` field of the config dataclass);
* the allowed values (``choices``) of the flags where a wrong value is common (``--dtype``, ``--block-size``,
  ``--kv-cache-dtype``): an explicit ``choices=[...]`` or the ``Literal[...]`` type of the dataclass field;
* the Prometheus metric names of the V0 engine (``vllm/engine/metrics.py``) and the V1 engine
  (``vllm/v1/metrics/loggers.py``), split into shown and hidden (created only under
  ``if self.show_hidden_metrics:``, i.e. with ``--show-hidden-metrics-for-version=<previous minor>``);
* the compute capability below which V1 falls back to V0 (``_is_v1_supported_oracle`` in ``arg_utils.py``:
  ``get_device_capability().major < N``), and whether the release still has the V0 engine at all.

Usage (from the repository root; wheels are ~300-470 MB each, they are read but not installed):

    mkdir -p /tmp/vllm-wheels
    for v in 0.8.4 0.9.0.1 0.10.0 0.10.1.1 0.11.0 0.12.0; do
        pip download --no-deps --only-binary :all: "vllm==$v" -d /tmp/vllm-wheels
    done
    python hack/vllm_flag_table.py --wheels /tmp/vllm-wheels 0.8.4 0.9.0.1 0.10.0 0.10.1.1 0.11.0 0.12.0

It rewrites the block between ``# BEGIN GENERATED`` and ``# END GENERATED`` in
plugins/module_utils/vllm_versions.py and leaves the rest of that file alone. ``--check`` exits 1 when the
committed block differs from what the wheels give.
"""
import argparse
import ast
import glob
import os
import pprint
import re
import sys
import zipfile

TARGET = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "plugins", "module_utils",
                      "vllm_versions.py")
BEGIN, END = "# BEGIN GENERATED", "# END GENERATED"
ARG_FILES = ("vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py", "vllm/entrypoints/cli/serve.py")
V0_METRICS = "vllm/engine/metrics.py"
V1_METRICS = "vllm/v1/metrics/loggers.py"
VALUE_FLAGS = ("--dtype", "--block-size", "--kv-cache-dtype")
METRIC_CLASSES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}


def version_key(version):
    return tuple(int(p) for p in re.findall(r"\d+", version))


class Release:
    """The Python sources of one wheel, read lazily from the zip."""

    def __init__(self, wheel):
        self.zip = zipfile.ZipFile(wheel)
        self.names = set(self.zip.namelist())
        self._trees = {}

    def source(self, name):
        return self.zip.read(name).decode() if name in self.names else None

    def tree(self, name):
        if name not in self._trees:
            text = self.source(name)
            self._trees[name] = ast.parse(text) if text is not None else None
        return self._trees[name]

    def config_trees(self):
        """vllm/config.py (<= 0.10.0) or the modules of the vllm/config/ package (newer)."""
        names = sorted(n for n in self.names if n == "vllm/config.py" or re.match(r"vllm/config/[a-z_]+\.py$", n))
        return [self.tree(n) for n in names]


# --- config dataclasses: field annotations and Literal aliases ----------------------------------------

def _literal_values(node, aliases, depth=0):
    """Constants of a Literal annotation, following aliases and Optional/SkipValidation/Annotated/unions."""
    if node is None or depth > 8:
        return None
    if isinstance(node, ast.Name):
        return _literal_values(aliases.get(node.id), aliases, depth + 1)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = (_literal_values(n, aliases, depth + 1) for n in (node.left, node.right))
        return (left or []) + (right or []) if (left or right) else None
    if isinstance(node, ast.Subscript):
        head = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            values = [e.value for e in inner if isinstance(e, ast.Constant)]
            return values if len(values) == len(inner) else None
        if head in ("Optional", "SkipValidation", "Annotated"):
            return _literal_values(inner[0], aliases, depth + 1)
        if head == "Union":
            found = [v for e in inner for v in (_literal_values(e, aliases, depth + 1) or [])]
            return found or None
    return None


def _is_bool(node):
    text = ast.unparse(node) if node is not None else ""
    text = re.sub(r"^(SkipValidation|Optional)\[(.*)\]$", r"\2", text)  # get_kwargs looks through both
    return bool(re.fullmatch(r"(Optional\[bool\]|bool( \| None)?|None \| bool)", text))


class Configs:
    """Every dataclass field annotation of the release's config modules and cli_args, by class name."""

    def __init__(self, release):
        self.fields, self.aliases = {}, {}
        trees = release.config_trees() + [release.tree(f) for f in ARG_FILES]
        for tree in filter(None, trees):
            for node in tree.body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    self.aliases.setdefault(node.targets[0].id, node.value)
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    if ast.unparse(node.annotation) in ("TypeAlias", "typing.TypeAlias"):
                        self.aliases.setdefault(node.target.id, node.value)
                elif isinstance(node, ast.ClassDef):
                    fields = {s.target.id: s.annotation for s in node.body
                              if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
                    self.fields.setdefault(node.name, fields)

    def annotation(self, cls, field):
        return self.fields.get(cls, {}).get(field)


# --- flags ----------------------------------------------------------------------------------------------

def _kwargs_sources(func):
    """{variable: dataclass name} for ``variable = get_kwargs(Dataclass)`` inside one function."""
    found = {}
    for node in ast.walk(func):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "get_kwargs" and node.value.args
                and isinstance(node.value.args[0], ast.Name) and isinstance(node.targets[0], ast.Name)):
            found[node.targets[0].id] = node.value.args[0].id
    return found


def _starstar_field(call):
    """(variable, field) for ``add_argument(..., **variable["field"])``, else None."""
    values = [kw.value for kw in call.keywords if kw.arg is None]
    while values:
        value = values.pop()
        if isinstance(value, ast.Dict):  # **{**kwargs["field"], "default": None}
            values += [v for k, v in zip(value.keys, value.values, strict=True) if k is None]
        elif (isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name)
              and isinstance(value.slice, ast.Constant)):
            return value.value.id, value.slice.value
    return None


def _explicit_choices(call):
    for kw in call.keywords:
        if kw.arg == "choices":
            try:
                return list(ast.literal_eval(kw.value))
            except ValueError:
                return None
    return None


def _boolean_optional(call):
    return any(kw.arg == "action" and ast.unparse(kw.value).endswith("BooleanOptionalAction") for kw in call.keywords)


def _get_kwargs_makes_bool_optional(release):
    """True when get_kwargs turns a bool field into BooleanOptionalAction (--flag / --no-flag)."""
    tree = release.tree("vllm/engine/arg_utils.py")
    for node in ast.walk(tree):
        if (isinstance(node, ast.FunctionDef) and node.name in ("get_kwargs", "_compute_kwargs")
                and "BooleanOptionalAction" in ast.unparse(node)):
            return True
    return False


def _short_o_preprocessed(release):
    """True when FlexibleArgumentParser rewrites ``-O3`` / ``-O <n>`` itself (vllm/utils*: ``startswith("-O")``)."""
    names = ("vllm/utils.py", "vllm/utils/__init__.py", "vllm/utils/argparse_utils.py")
    return any(re.search(r"startswith\((['\"])-O\1\)", release.source(n) or "") for n in names)


def _deprecated(call):
    return any(kw.arg == "deprecated" and isinstance(kw.value, ast.Constant) and kw.value.value is True
               for kw in call.keywords)


def extract_flags(release, configs):
    """(sorted flags, {flag: choices}, sorted deprecated flags) of the OpenAI API server's parser."""
    flags, choices, deprecated = set(), {}, set()
    if _short_o_preprocessed(release):
        flags.add("-O")
    bool_fields_optional = _get_kwargs_makes_bool_optional(release)
    for name in ARG_FILES:
        tree = release.tree(name)
        if tree is None:
            continue
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef):
                continue
            sources = _kwargs_sources(func)
            for call in ast.walk(func):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "add_argument"):
                    continue
                names = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                         and a.value.startswith("-")]
                if any(isinstance(a, ast.JoinedStr) for a in call.args):
                    names += _loop_generated(func, call, sources, configs, bool_fields_optional, choices)
                    if not names:
                        print(f"warning: {name}:{call.lineno}: f-string flag not resolved", file=sys.stderr)
                    flags.update(names)
                    continue
                if not names:
                    continue
                annotation = None
                ref = _starstar_field(call)
                if ref and ref[0] in sources:
                    annotation = configs.annotation(sources[ref[0]], ref[1])
                long_names = [n for n in names if n.startswith("--")]
                flags.update(names)
                if _deprecated(call):
                    deprecated.update(long_names)
                if _boolean_optional(call) or (bool_fields_optional and _is_bool(annotation)):
                    flags.update("--no-" + n[2:] for n in long_names)
                values = _explicit_choices(call) or _literal_values(annotation, configs.aliases)
                for flag in long_names:
                    if flag in VALUE_FLAGS and values:
                        choices[flag] = sorted({str(v) for v in values if v is not None}, key=_choice_key)
    return sorted(flags), choices, sorted(deprecated)


def _loop_generated(func, call, sources, configs, bool_fields_optional, choices):
    """Flags of ``for key, value in <get_kwargs(Dataclass)>.items(): add_argument(f"--{key...}", **value)``."""
    for loop in ast.walk(func):
        if not isinstance(loop, ast.For) or call not in list(ast.walk(loop)):
            continue
        it = loop.iter
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and isinstance(it.func.value, ast.Name):
            cls = sources.get(it.func.value.id)
            if cls and cls in configs.fields:
                out = []
                for field, annotation in configs.fields[cls].items():
                    flag = "--" + field.replace("_", "-")
                    out.append(flag)
                    if bool_fields_optional and _is_bool(annotation):
                        out.append("--no-" + flag[2:])
                    values = _literal_values(annotation, configs.aliases)
                    if flag in VALUE_FLAGS and values:
                        choices[flag] = sorted({str(v) for v in values if v is not None}, key=_choice_key)
                return out
    return []


def _choice_key(value):
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


# --- metrics and engines --------------------------------------------------------------------------------

def extract_metrics(release, path):
    """{"shown": [...], "hidden": [...]} of exposed names (counters get prometheus_client's _total), or None."""
    tree = release.tree(path)
    if tree is None:
        return None
    shown, hidden = set(), set()

    def visit(node, in_hidden):
        if isinstance(node, ast.If) and "show_hidden_metrics" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, in_hidden)
            return
        if (isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["name"]
                and isinstance(node.value, ast.Constant) and str(node.value.value).startswith("vllm:")):
            (hidden if in_hidden else shown).add(node.value.value)  # name = "vllm:cache_config_info" (an Info gauge)
        if isinstance(node, ast.Call):
            name = next((kw.value.value for kw in node.keywords if kw.arg == "name"
                         and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str)), None)
            if name and name.startswith("vllm:"):
                callee = ast.unparse(node.func)
                kind = next((k for c, k in METRIC_CLASSES.items() if c.lower() in callee.lower()), "gauge")
                if kind == "counter" and not name.endswith("_total"):
                    name += "_total"  # prometheus_client exposes a Counter as <name>_total
                (hidden if in_hidden else shown).add(name)
        for child in ast.iter_child_nodes(node):
            visit(child, in_hidden)

    visit(tree, False)
    return {"shown": sorted(shown), "hidden": sorted(hidden - shown)}


def extract_engine(release):
    """V0 fallback threshold (compute capability major) and whether the V0 engine still exists."""
    text = release.source("vllm/engine/arg_utils.py") or ""
    match = re.search(r"get_device_capability\(\)\.major\s*<\s*(\d+)", text)
    engine = release.source("vllm/engine/llm_engine.py") or ""
    # 0.11.0 keeps vllm/engine/llm_engine.py as ``LLMEngine = V1LLMEngine``: the V0 engine is gone.
    has_v0 = "class LLMEngine" in engine
    return {"has_v0": has_v0, "v1_min_compute_capability_major": int(match.group(1)) if (match and has_v0) else None}


# --- table ----------------------------------------------------------------------------------------------

def build(wheels):
    """The generated data: releases, flags of the first release plus per-release changes, values, metrics."""
    versions = sorted(wheels, key=version_key)
    per_version = {}
    for version in versions:
        release = Release(wheels[version])
        configs = Configs(release)
        flags, choices, deprecated = extract_flags(release, configs)
        per_version[version] = {
            "flags": flags, "choices": choices, "deprecated": deprecated, "engine": extract_engine(release),
            "metrics": {"v0": extract_metrics(release, V0_METRICS), "v1": extract_metrics(release, V1_METRICS)},
        }
        print(f"{version}: {len(flags)} flags, choices for {sorted(choices)}", file=sys.stderr)
    base = versions[0]
    changes, previous = {}, set(per_version[base]["flags"])
    for version in versions[1:]:
        current = set(per_version[version]["flags"])
        changes[version] = {"added": sorted(current - previous), "removed": sorted(previous - current)}
        previous = current
    return {
        "VLLM_RELEASES": versions,
        "BASE_FLAGS": per_version[base]["flags"],
        "FLAG_CHANGES": changes,
        "FLAG_CHOICES": {v: per_version[v]["choices"] for v in versions},
        "DEPRECATED_FLAGS": {v: per_version[v]["deprecated"] for v in versions},
        "ENGINES": {v: per_version[v]["engine"] for v in versions},
        "METRICS": {v: per_version[v]["metrics"] for v in versions},
    }


def render(data):
    lines = [BEGIN + " by hack/vllm_flag_table.py from the vLLM wheels on PyPI: do not edit by hand"]
    for key, value in data.items():  # KEY = (\n    <value>\n): continuation lines indented as pep8 wants
        text = pprint.pformat(value, width=112, sort_dicts=False, compact=True)
        lines.append(f"{key} = (\n" + "\n".join("    " + line for line in text.splitlines()) + "\n)")
    lines.append(END)
    return "\n".join(lines) + "\n"


def find_wheels(directory, versions):
    found = {}
    for version in versions:
        matches = glob.glob(os.path.join(directory, "**", f"vllm-{version}-*.whl"), recursive=True)
        if not matches:
            sys.exit(f"no wheel for vllm=={version} under {directory}: pip download --no-deps --only-binary :all: "
                     f"vllm=={version} -d {directory}")
        found[version] = matches[0]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wheels", required=True, help="directory holding vllm-<version>-*.whl files")
    parser.add_argument("--target", default=TARGET, help="module whose generated block is rewritten")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the block differs")
    parser.add_argument("versions", nargs="+")
    args = parser.parse_args(argv)
    block = render(build(find_wheels(args.wheels, args.versions)))
    with open(args.target, encoding="utf-8") as handle:
        text = handle.read()
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    if args.check:
        same = text[start:end] == block
        print("up to date" if same else f"{args.target}: generated block differs from the wheels")
        return 0 if same else 1
    with open(args.target, "w", encoding="utf-8") as handle:
        handle.write(text[:start] + block + text[end:])
    print(f"wrote {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
