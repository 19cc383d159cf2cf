"""Preset merge and Go-template rendering of KServe v0.20 LLMInferenceService specs (pure functions).

The simulated llmisvc controller combines the well-known ``kserve-config-llm-*`` presets, the user's
``spec.baseRefs`` and the llmisvc's own spec the way KServe's ``config_merge.go`` does: each layer is
rendered against the llmisvc (``{{ ChildName .ObjectMeta.Name "-x" }}``, ``{{ .Spec.Model.Name }}`` ...)
and merged with strategic-merge-patch semantics (containers, volumes, env ... merged by name; other
lists replaced, so a user's ``route.http.spec.rules`` replaces the preset's).
"""
import copy
import hashlib
import re

PRESET_PREFIX = "kserve-"
TEMPLATE_PRESET = "config-llm-template"
SCHEDULER_PRESET = "config-llm-scheduler"
ROUTER_ROUTE_PRESET = "config-llm-router-route"
WORKER_DP_PRESET = "config-llm-worker-data-parallel"
WORKER_PP_PRESET = "config-llm-worker-pipeline-parallel"
DEFAULT_GLOBAL_CONFIG = {
    "IngressGatewayName": "kserve-ingress-gateway",
    "IngressGatewayNamespace": "kserve",
    "ModelBasedRoutingHeaderName": "X-Gateway-Model-Name",
    "EnableTLS": False,
    "UrlScheme": "http",
}

_LONGEST = 63
_HEAD = _LONGEST - 32


class RenderError(ValueError):
    """A preset template could not be rendered (KServe reports CombineBaseError)."""


def child_name(parent, suffix):
    """knative ``kmeta.ChildName``: ``parent+suffix``, hashed when longer than 63 characters."""
    if len(parent) <= _LONGEST - len(suffix):
        return parent + suffix
    if _HEAD - len(suffix) <= 0:
        return parent[:_HEAD] + hashlib.md5((parent + suffix).encode()).hexdigest()
    ret = parent[:_HEAD - len(suffix)] + hashlib.md5(parent.encode()).hexdigest() + suffix
    if len(ret) < _LONGEST:
        ret += suffix[:_LONGEST - len(ret)]
    return ret.rstrip("-")


# ---------------------------------------------------------------- preset selection

def well_known_presets(spec):
    """Names (without prefix) of the well-known presets KServe v0.20 picks for ``spec``, in merge order."""
    names = []
    if (spec.get("worker") or None) is not None:
        parallelism = spec.get("parallelism") or {}
        names.append(WORKER_PP_PRESET if parallelism.get("pipeline") else WORKER_DP_PRESET)
    else:
        names.append(TEMPLATE_PRESET)
    router = spec.get("router") or {}
    scheduler = router.get("scheduler")
    if scheduler is not None and not ((scheduler.get("pool") or {}).get("ref") or {}).get("name"):
        names.append(SCHEDULER_PRESET)
    route = router.get("route")
    if route is not None and not ((route.get("http") or {}).get("refs")):
        names.append(ROUTER_ROUTE_PRESET)
    return [PRESET_PREFIX + n for n in names]


def config_refs(llmisvc):
    """All LLMInferenceServiceConfig names to combine: well-known presets first, then ``spec.baseRefs``."""
    spec = llmisvc.get("spec") or {}
    refs = well_known_presets(spec)
    refs += [r["name"] for r in spec.get("baseRefs") or [] if r.get("name")]
    return refs


# ---------------------------------------------------------------- strategic merge

# Patch-merge keys of the core/v1 types that appear in llmisvc specs (from k8s.io/api struct tags).
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "ports": "containerPort", "hostAliases": "ip", "resourceClaims": "name",
}


def strategic_merge(base, patch):
    """Merge ``patch`` onto ``base`` like a Kubernetes strategic merge patch (returns a new object)."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in _MERGE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_keyed_list(out[key], value, _MERGE_KEYS[key])
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_keyed_list(base, patch, merge_key):
    merged = [copy.deepcopy(item) for item in base]
    for item in patch:
        key = item.get(merge_key) if isinstance(item, dict) else None
        index = next((i for i, cur in enumerate(merged) if isinstance(cur, dict) and key is not None
                      and cur.get(merge_key) == key), None)
        if index is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


# ---------------------------------------------------------------- Go template subset

_ACTION_RE = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|[^\s()]+')


def go_json_name(field):
    """Go struct field name -> JSON key (``Spec``->``spec``, ``KVCacheOffloading``->``kvCacheOffloading``)."""
    if field == "ObjectMeta":
        return "metadata"
    run = len(field) - len(field.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    if run == len(field):
        return field.lower()
    if run > 1:
        return field[:run - 1].lower() + field[run - 1:]
    return field[:1].lower() + field[1:]


def _resolve_path(data, path):
    value = data
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            value = value[part] if part in value else value.get(go_json_name(part))
        else:
            return None
        if value is None:
            return None
    return value


def _go_string(value):
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _truthy(value):
    return value not in (None, False, 0, "", [], {})


def _shutdown_timeout(template, default):
    grace = (template or {}).get("terminationGracePeriodSeconds")
    return max(int(grace) - 5, 1) if grace else default


def _kv_transfer_config(offloading):
    if not offloading:
        return ""
    return "--kv-transfer-config '{\"kv_connector\":\"OffloadingConnector\",\"kv_role\":\"kv_both\"}'"


_FUNCS = {
    "ChildName": child_name,
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1] if a else None),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1] if a else None),
    "not": lambda x: not _truthy(x),
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "printf": lambda fmt, *a: re.sub(r"%[svd]", "{}", fmt).format(*a),
    "shutdownTimeout": _shutdown_timeout,
    "kvTransferConfig": _kv_transfer_config,
}


def _eval_tokens(tokens, data):
    """Evaluate a pipeline-free Go template command (``fn arg ...`` or a single operand)."""
    args = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                j += 1
            args.append(("value", _eval_tokens(tokens[i + 1:j - 1], data)))
            i = j
            continue
        args.append(("token", tok))
        i += 1
    if not args:
        raise RenderError("empty template action")
    head_kind, head = args[0]
    operands = [_operand(kind, tok, data) for kind, tok in args[1:]]
    if head_kind == "token" and head in _FUNCS:
        return _FUNCS[head](*operands)
    if len(args) > 1:
        raise RenderError(f"unknown template function {head!r}")
    return _operand(head_kind, head, data)


def _operand(kind, tok, data):
    if kind == "value":
        return tok
    if tok.startswith('"'):
        return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
    if tok.startswith("`"):
        return tok[1:-1]
    if tok.startswith("."):
        return _resolve_path(data, tok)
    if tok in ("true", "false"):
        return tok == "true"
    if tok == "nil":
        return None
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok in _FUNCS:
        return _FUNCS[tok]()
    raise RenderError(f"cannot evaluate {tok!r} in template")


def render_template(text, data):
    """Render the Go text/template subset KServe presets use: fields, functions, if/else/end, trim markers.

    KServe renders the JSON-serialized config, where a newline inside a string is the escape ``\\n``: trim
    markers (``{{-``, ``-}}``) therefore only remove spaces on the same line, never line breaks.
    """
    if "{{" not in text:
        return text
    pieces = []  # ("text", str) | ("action", str)
    pos = 0
    for match in _ACTION_RE.finditer(text):
        literal = text[pos:match.start()]
        if match.group(1):
            literal = literal.rstrip(" ")
        if pieces and pieces[-1][0] == "trim_next":
            pieces.pop()
            literal = literal.lstrip(" ")
        pieces.append(("text", literal))
        pieces.append(("action", match.group(2)))
        if match.group(3):
            pieces.append(("trim_next", ""))
        pos = match.end()
    tail = text[pos:]
    if pieces and pieces[-1][0] == "trim_next":
        pieces.pop()
        tail = tail.lstrip(" ")
    pieces.append(("text", tail))
    out, _ = _render_block(pieces, 0, data)
    return out


def _render_block(pieces, index, data, stop=("end", "else")):
    out = []
    while index < len(pieces):
        kind, body = pieces[index]
        if kind == "text":
            out.append(body)
            index += 1
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in stop:
            return "".join(out), index
        if word == "if":
            rendered, index = _render_if(pieces, index, data)
            out.append(rendered)
            continue
        if word.startswith("/*"):
            index += 1
            continue
        out.append(_go_string(_eval_tokens(_TOKEN_RE.findall(body), data)))
        index += 1
    if stop != ("end", "else"):
        raise RenderError("unterminated template block")
    return "".join(out), index


def _render_if(pieces, index, data):
    condition = _truthy(_eval_tokens(_TOKEN_RE.findall(pieces[index][1][2:]), data))
    then_text, index = _render_block(pieces, index + 1, data, stop=("end", "else"))
    else_text = ""
    if index >= len(pieces):
        raise RenderError("if without end in template")
    if pieces[index][1].split(None, 1)[0] == "else":
        else_text, index = _render_block(pieces, index + 1, data, stop=("end",))
    if index >= len(pieces):
        raise RenderError("if without end in template")
    return (then_text if condition else else_text), index + 1


def render_tree(value, data):
    """Render every string leaf of ``value`` (KServe renders the whole serialized config)."""
    if isinstance(value, dict):
        return {k: render_tree(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, data) for v in value]
    if isinstance(value, str):
        return render_template(value, data)
    return value


# ---------------------------------------------------------------- combine

def template_data(llmisvc, global_config=None):
    """The object presets are rendered against: the llmisvc with KServe's defaults applied."""
    data = copy.deepcopy(llmisvc)
    spec = data.setdefault("spec", {})
    model = spec.setdefault("model", {})
    if not model.get("name"):
        model["name"] = data["metadata"]["name"]
    data["GlobalConfig"] = dict(DEFAULT_GLOBAL_CONFIG, **(global_config or {}))
    return data


def combine_spec(llmisvc, configs, global_config=None):
    """Merged spec: each config's rendered spec in order, then the llmisvc's own spec on top."""
    data = template_data(llmisvc, global_config)
    merged = {}
    for config in configs:
        merged = strategic_merge(merged, render_tree(config.get("spec") or {}, data))
    own = render_tree(copy.deepcopy(llmisvc.get("spec") or {}), data)
    own.pop("baseRefs", None)
    merged = strategic_merge(merged, own)
    merged.setdefault("model", {}).setdefault("name", data["spec"]["model"]["name"])
    return _apply_fixups(merged, llmisvc)


def _apply_fixups(spec, llmisvc):
    """KServe's post-merge fixups: pool selector default, parentRefs from gateway.refs, Service fallback."""
    name = llmisvc["metadata"]["name"]
    router = spec.get("router") or {}
    scheduler = router.get("scheduler")
    if scheduler is not None:
        pool_spec = (scheduler.get("pool") or {}).get("spec")
        if pool_spec is not None and not (pool_spec.get("selector") or {}).get("matchLabels"):
            pool_spec["selector"] = {"matchLabels": workload_selector(name)}
    route_spec = ((router.get("route") or {}).get("http") or {}).get("spec")
    if route_spec is not None:
        refs = (router.get("gateway") or {}).get("refs") or []
        if refs:
            route_spec["parentRefs"] = [_parent_ref(ref, llmisvc) for ref in refs]
        if scheduler is None:
            _point_pool_backends_at_service(route_spec, name)
    return spec


def _parent_ref(ref, llmisvc):
    parent = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref["name"],
              "namespace": ref.get("namespace") or llmisvc["metadata"]["namespace"]}
    if ref.get("sectionName"):
        parent["sectionName"] = ref["sectionName"]
    return parent


def _point_pool_backends_at_service(route_spec, name):
    pool_name = child_name(name, "-inference-pool")
    for rule in route_spec.get("rules") or []:
        for backend in rule.get("backendRefs") or []:
            if backend.get("kind") == "InferencePool" and backend.get("name") == pool_name:
                backend.clear()
                backend.update({"kind": "Service", "name": child_name(name, "-kserve-workload-svc"), "port": 8000,
                                "weight": 1})


def workload_selector(name):
    """Pod selector of the main workload (Service selector and default pool selector)."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "llminferenceservice",
            "kserve.io/component": "workload"}
