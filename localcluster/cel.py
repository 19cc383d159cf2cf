"""Kubernetes CEL validation rules (`x-kubernetes-validations`) of custom resources, outside the API server.

The local API server (1.20) has no CEL, and `crds.py` drops the rules from the CRDs it installs. This module
evaluates them as kube-apiserver does, for the admission webhook `localcluster.cel_webhook` and for the unit
tests that check rendered manifests offline. The CEL language itself is cel-python (`celpy`, PyPI); what is
written here is only the Kubernetes glue, each part following the real code of kubernetes/kubernetes v1.34:

- schema walking, `self`/`oldSelf`, transition rules, ratcheting, messages and field paths:
  staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go
- property names escaped in CEL (`namespace` -> `__namespace__`): staging/src/k8s.io/apiserver/pkg/cel/escaping.go
- defaults applied before validation: staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting
- extension libraries (strings, lists, regex, url, quantity): staging/src/k8s.io/apiserver/pkg/cel/library
  and https://kubernetes.io/docs/reference/using-api/cel/

Not modelled: the CEL cost budget (kube-apiserver refuses rules too expensive to run; these CRDs pass it on
GKE) and the `format`, `ip`, `cidr`, `semver` libraries and optionals (no rule of the installed CRDs uses
them: a rule that does is listed by `Registry.unevaluable`, never skipped silently).
"""
import copy
import functools
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from fractions import Fraction

import celpy
import lark
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions

# ---------------------------------------------------------------- escaping (k8s.io/apiserver/pkg/cel/escaping.go)

CEL_RESERVED = frozenset((
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import",
    "let", "loop", "package", "namespace", "return", "var", "void", "while"))
_ESCAPES = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}
_EXPAND = re.compile(r"(__|[-./]|[^a-zA-Z0-9-./_])")


def escape(name):
    """The CEL field name of property ``name``, or None when it cannot be escaped (then CEL cannot see it)."""
    if not name or name[0].isdigit():
        return None
    if name in CEL_RESERVED:
        return f"__{name}__"
    bad = []

    def repl(match):
        text = match.group(0)
        if text in _ESCAPES:
            return _ESCAPES[text]
        bad.append(text)
        return ""

    escaped = _EXPAND.sub(repl, name)
    return None if bad else escaped


# ---------------------------------------------------------------- values

def to_cel(value, schema):
    """A JSON value as CEL sees it under ``schema``: object properties by their escaped names."""
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None or schema.get("x-kubernetes-embedded-resource"):
            out = {}
            extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) \
                else None
            for key, item in value.items():
                if props and key in props:
                    name = escape(key)
                    if name is not None:
                        out[celtypes.StringType(name)] = to_cel(item, props[key])
                elif schema.get("x-kubernetes-preserve-unknown-fields") or extra is not None:
                    out[celtypes.StringType(key)] = to_cel(item, extra or {})
            return celtypes.MapType(out)
        item_schema = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) \
            else {}
        return celtypes.MapType({celtypes.StringType(k): to_cel(v, item_schema) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items") or {}) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.DoubleType(value) if schema.get("type") == "number" else celtypes.IntType(value)
    if isinstance(value, float):
        if schema.get("type") == "integer" and value.is_integer():
            return celtypes.IntType(int(value))
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    return value  # None


def apply_defaults(value, schema):
    """Fill in schema defaults in place, as the API server does before it validates (structural defaulting)."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                apply_defaults(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in (schema.get("properties") or {}):
                    apply_defaults(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])
    return value


# ---------------------------------------------------------------- Kubernetes CEL libraries

def _err(message, exc=ValueError):
    return CELEvalError(message, exc, (message,))


def _split(text, sep, limit=None):
    if limit is None:
        return celtypes.ListType([celtypes.StringType(p) for p in str(text).split(str(sep))])
    limit = int(limit)
    if limit == 0:
        return celtypes.ListType()
    parts = str(text).split(str(sep), limit - 1 if limit > 0 else -1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _index_of(target, item, start=None):
    if isinstance(target, celtypes.ListType):
        for i, value in enumerate(target):
            if value == item:
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    return celtypes.IntType(str(target).find(str(item), int(start or 0)))


def _last_index_of(target, item, end=None):
    if isinstance(target, celtypes.ListType):
        for i in range(len(target) - 1, -1, -1):
            if target[i] == item:
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    text = str(target)
    return celtypes.IntType(text.rfind(str(item), 0, len(text) if end is None else int(end) + len(str(item))))


def _substring(text, start, end=None):
    text = str(text)
    start, end = int(start), len(text) if end is None else int(end)
    if not 0 <= start <= end <= len(text):
        return _err(f"index out of range: {start}, {end}")
    return celtypes.StringType(text[start:end])


def _join(items, sep=""):
    return celtypes.StringType(str(sep).join(str(i) for i in items))


def _sum(items):
    items = list(items)
    if not items:
        return celtypes.IntType(0)
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total


def _max(items):
    items = list(items)
    return max(items) if items else _err("max of an empty list")


def _is_sorted(items):
    items = list(items)
    return celtypes.BoolType(all(a <= b for a, b in zip(items, items[1:], strict=False)))


def _find(text, pattern):
    import re2  # google-re2: the regex engine of cel-python and, like Go's regexp, RE2 semantics

    match = re2.search(str(pattern), str(text))
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text, pattern, limit=-1):
    import re2

    found = [celtypes.StringType(m.group(0)) for m in re2.finditer(str(pattern), str(text))]
    return celtypes.ListType(found if int(limit) < 0 else found[:int(limit)])


# Quantity (k8s.io/apimachinery/pkg/api/resource/quantity.go): <number><suffix>, binary Ki..Ei, decimal n..E,
# or an exponent e<int>.
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
           "n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000), "": 1, "k": 10 ** 3,
           "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18}


class Quantity:
    """A Kubernetes resource quantity as an exact fraction (the CEL `quantity` type)."""

    def __init__(self, text):
        match = _QUANTITY.match(str(text))
        if not match:
            raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}'")
        number, suffix = match.group(1), match.group(2) or ""
        factor = Fraction(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") else Fraction(_SUFFIX[suffix])
        self.value = Fraction(number) * factor
        self.text = str(text)

    def __eq__(self, other):
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return f"quantity({self.text!r})"


def _quantity(text):
    try:
        return Quantity(text)
    except ValueError as exc:
        return _err(str(exc))


def _is_quantity(text):
    return celtypes.BoolType(bool(_QUANTITY.match(str(text))))


def _q_add(a, b):
    result = Quantity("0")
    result.value = a.value + (b.value if isinstance(b, Quantity) else Fraction(int(b)))
    return result


def _q_sub(a, b):
    result = Quantity("0")
    result.value = a.value - (b.value if isinstance(b, Quantity) else Fraction(int(b)))
    return result


def _compare_to(a, b):
    return celtypes.IntType((a.value > b.value) - (a.value < b.value))


def _as_integer(q):
    if q.value.denominator != 1 or abs(q.value) >= 2 ** 63:
        return _err("cannot convert value to integer")
    return celtypes.IntType(int(q.value))


class Url:
    """The CEL `URL` type of the Kubernetes url library (Go's url.Parse, absolute URIs or absolute paths)."""

    def __init__(self, text):
        parsed = urllib.parse.urlsplit(str(text))
        if not (parsed.scheme or str(text).startswith("/")):
            raise ValueError(f"URL must be an absolute URI or an absolute path: {text}")
        self.parsed = parsed


def _url(text):
    try:
        return Url(text)
    except ValueError as exc:
        return _err(str(exc))


def _is_url(text):
    try:
        Url(text)
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _get_query(u):
    query = urllib.parse.parse_qs(u.parsed.query, keep_blank_values=True)
    return celtypes.MapType({celtypes.StringType(k): celtypes.ListType([celtypes.StringType(x) for x in v])
                             for k, v in query.items()})


LIBRARY = {
    # strings (cel-go ext.Strings, as Kubernetes enables it)
    "charAt": lambda s, i: celtypes.StringType(str(s)[int(i)] if int(i) < len(str(s)) else ""),
    "indexOf": _index_of, "lastIndexOf": _last_index_of,
    "lowerAscii": lambda s: celtypes.StringType(str(s).lower()),
    "upperAscii": lambda s: celtypes.StringType(str(s).upper()),
    "replace": lambda s, old, new, n=-1: celtypes.StringType(str(s).replace(str(old), str(new), int(n))),
    "split": _split, "substring": _substring, "trim": lambda s: celtypes.StringType(str(s).strip()),
    "join": _join, "reverse": lambda s: celtypes.StringType(str(s)[::-1]),
    # lists (k8s.io/apiserver/pkg/cel/library/lists.go); `min()` is cel-python's own macro
    "isSorted": _is_sorted, "sum": _sum, "max": _max,
    # regex (library/regex.go)
    "find": _find, "findAll": _find_all,
    # url (library/urls.go)
    "url": _url, "isURL": _is_url,
    "getScheme": lambda u: celtypes.StringType(u.parsed.scheme),
    "getHost": lambda u: celtypes.StringType(u.parsed.netloc.rsplit("@", 1)[-1]),
    "getHostname": lambda u: celtypes.StringType(u.parsed.hostname or ""),
    "getPort": lambda u: celtypes.StringType(str(u.parsed.port) if u.parsed.port else ""),
    "getEscapedPath": lambda u: celtypes.StringType(u.parsed.path),
    "getQuery": _get_query,
    # quantity (library/quantity.go)
    "quantity": _quantity, "isQuantity": _is_quantity,
    "isGreaterThan": lambda a, b: celtypes.BoolType(a.value > b.value),
    "isLessThan": lambda a, b: celtypes.BoolType(a.value < b.value),
    "compareTo": _compare_to, "add": _q_add, "sub": _q_sub,
    "sign": lambda q: celtypes.IntType((q.value > 0) - (q.value < 0)),
    "isInteger": lambda q: celtypes.BoolType(q.value.denominator == 1 and abs(q.value) < 2 ** 63),
    "asInteger": _as_integer, "asApproximateFloat": lambda q: celtypes.DoubleType(float(q.value)),
}
MACROS = frozenset(("has", "all", "exists", "exists_one", "map", "filter", "min"))
SUPPORTED_FUNCTIONS = frozenset(base_functions) | frozenset(LIBRARY) | MACROS

# The tree-walking interpreter: cel-python 0.5.0's CompiledRunner mishandles errors inside `||`/`?:` (it refused
# valid HTTPRoutes), so it is not used.
_ENV = celpy.Environment()


def _calls_and_idents(tree):
    """Function/method names a compiled expression calls, and the variables it reads."""
    calls, idents, bound = set(), set(), set()
    for node in tree.iter_subtrees():
        if node.data in ("member_dot_arg", "ident_arg"):
            token = next(c for c in node.children if isinstance(c, lark.Token))
            calls.add(token.value)
            if token.value in MACROS and node.data == "member_dot_arg" and len(node.children) > 2:
                first = node.children[2].children[0]  # the macro's variable: `self.all(x, ...)` binds x
                bound.update(t.value for t in first.scan_values(lambda v: isinstance(v, lark.Token)))
        elif node.data == "ident":
            idents.update(c.value for c in node.children if isinstance(c, lark.Token))
    return calls, idents - bound


# Grammar levels that, with one child, only hand on their child's value (cel-python evaluation.py: expr's
# operands, `conditionalor`, `conditionaland`, `relation`, `addition`, `multiplication`, `unary`, `member`).
# Skipping them halves the evaluation time of a typical rule; `expr` and `primary` nodes are kept because the
# macros and has() read their shape. Not applied to expressions that build messages (`member_object`).
_PASS_THROUGH = frozenset(("conditionalor", "conditionaland", "relation", "addition", "multiplication", "unary",
                           "member"))
COLLAPSE = True


def _collapse(tree):
    for index, child in enumerate(tree.children):
        if isinstance(child, lark.Tree):
            _collapse(child)
            while isinstance(child, lark.Tree) and child.data in _PASS_THROUGH and len(child.children) == 1 \
                    and isinstance(child.children[0], lark.Tree):
                child = child.children[0]
            tree.children[index] = child
    return tree


@functools.cache
def compile_expression(text):
    """(program, uses_old_self) for a CEL expression; raises ValueError naming what cannot be evaluated.

    Memoised: the installed CRDs repeat 80 distinct rules at 672 places (each version, each embedded HTTPRoute),
    and a program holds no evaluation state (cel-python builds an Evaluator per evaluate()).
    """
    try:
        tree = _ENV.compile(text)
    except celpy.CELParseError as exc:
        raise ValueError(f"compilation failed: {exc}") from None
    if COLLAPSE and not any(True for _ in tree.find_data("member_object")):
        tree = _collapse(tree)
    calls, idents = _calls_and_idents(tree)
    unknown = sorted(calls - SUPPORTED_FUNCTIONS)
    if unknown:
        raise ValueError(f"function(s) {', '.join(unknown)} not implemented by the local evaluator")
    undeclared = sorted(idents - {"self", "oldSelf"})
    if undeclared:
        raise ValueError(f"undeclared reference(s) {', '.join(undeclared)}")
    return _ENV.program(tree, functions=LIBRARY), "oldSelf" in idents


# ---------------------------------------------------------------- compiled schema

@dataclass
class Rule:
    crd: str
    version: str
    path: str  # schema path, e.g. spec.rules[*].matches[*].path
    spec: dict  # the x-kubernetes-validations entry
    program: object = None
    message_program: object = None
    uses_old_self: bool = False
    error: str = ""  # why it cannot be evaluated ("" = it can)

    @property
    def text(self):
        return self.spec.get("rule", "")

    def message(self):
        """ruleMessageOrDefault."""
        msg = (self.spec.get("message") or "").strip()
        return msg or f"failed rule: {self.text.strip()}"

    def error_string(self):
        """ruleErrorString."""
        return (self.spec.get("message") or "").strip() or self.text.strip()


@dataclass
class Node:
    schema: dict
    rules: list = field(default_factory=list)
    properties: dict = field(default_factory=dict)
    items: "Node | None" = None
    additional: "Node | None" = None


def _nested_rules(schemas):
    for schema in schemas:
        if isinstance(schema, dict):
            yield from schema.get("x-kubernetes-validations") or ()
            for value in schema.values():
                if isinstance(value, dict):
                    yield from _nested_rules([value])
                elif isinstance(value, list):
                    yield from _nested_rules(value)


def compile_schema(schema, crd, version, path="", sink=None):
    """The validator tree of one schema node (None when no rule is at or below it); rules go to ``sink``."""
    if not isinstance(schema, dict):
        return None
    node = Node(schema)
    for spec in schema.get("x-kubernetes-validations") or ():
        rule = Rule(crd, version, path or "<root>", spec)
        try:
            rule.program, rule.uses_old_self = compile_expression(spec.get("rule", ""))
            if spec.get("messageExpression"):
                rule.message_program, _ = compile_expression(spec["messageExpression"])
            if spec.get("optionalOldSelf"):
                raise ValueError("optionalOldSelf (CEL optionals) is not implemented by the local evaluator")
        except ValueError as exc:
            rule.error = str(exc)
        node.rules.append(rule)
        if sink is not None:
            sink.append(rule)
    for name, sub in (schema.get("properties") or {}).items():
        child = compile_schema(sub, crd, version, f"{path}.{name}" if path else name, sink)
        if child:
            node.properties[name] = child
    if isinstance(schema.get("items"), dict):
        node.items = compile_schema(schema["items"], crd, version, f"{path}[*]", sink)
    if isinstance(schema.get("additionalProperties"), dict):
        node.additional = compile_schema(schema["additionalProperties"], crd, version, f"{path}[*]", sink)
    for keyword in ("allOf", "anyOf", "oneOf", "not"):
        subs = schema.get(keyword) or ()
        for spec in _nested_rules(subs if isinstance(subs, list) else [subs]):
            # No installed CRD has them; listed, never skipped in silence.
            rule = Rule(crd, version, f"{path or '<root>'} ({keyword})", spec,
                        error=f"rules inside {keyword} are not implemented by the local evaluator")
            node.rules.append(rule)
            if sink is not None:
                sink.append(rule)
    if node.rules or node.properties or node.items or node.additional:
        return node
    return None


# ---------------------------------------------------------------- errors, worded as kube-apiserver words them

@dataclass
class FieldError:
    """k8s.io/apimachinery/pkg/util/validation/field.Error for the four reasons a rule can give."""

    reason: str  # FieldValueInvalid | FieldValueRequired | FieldValueForbidden | FieldValueDuplicate
    field: str
    value_type: str
    detail: str

    def body(self):
        if self.reason == "FieldValueRequired":
            return f"Required value: {self.detail}"
        if self.reason == "FieldValueForbidden":
            return f"Forbidden: {self.detail}"
        if self.reason == "FieldValueDuplicate":
            return f"Duplicate value: {json.dumps(self.value_type)}"
        return f"Invalid value: {json.dumps(self.value_type)}: {self.detail}"

    def __str__(self):
        return f"{self.field}: {self.body()}"


def _child(path, name):
    return f"{path}.{name}" if path else name


def _field_path(base, rule_field_path):
    """fieldPath of a rule (".a.b" or "['a.b']") appended to the node's path."""
    out = base
    for dotted, quoted in re.findall(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]", rule_field_path):
        out = _child(out, dotted or quoted)
    return out


def _eval_error_text(err):
    """cel-go's words for the runtime errors the rules can hit (`no such key: x`)."""
    args = getattr(err, "args", ())
    if len(args) > 1 and args[1] is KeyError:
        inner = args[2] if len(args) > 2 else ()
        key = inner[0] if isinstance(inner, tuple) and inner else str(args[0]).rsplit(":", 1)[-1].strip(" '")
        return f"no such key: {key}"
    return str(args[0]) if args else str(err)


def _run(program, activation):
    try:
        result = program.evaluate(activation)
    except CELEvalError as exc:
        return None, exc
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
        return None, exc
    if isinstance(result, CELEvalError):
        return None, result
    return result, None


_RESULTS = {}
_RESULTS_MAX = 50000


def _cached_run(rule, key, activation):
    cache_key = (id(rule), key)
    hit = _RESULTS.get(cache_key)
    if hit is None:
        hit = _run(rule.program, activation)
        if len(_RESULTS) >= _RESULTS_MAX:
            _RESULTS.clear()
        _RESULTS[cache_key] = hit
    return hit


def _map_list_key(item, keys):
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys) if isinstance(item, dict) else None


class Validator:
    """All rules of one version of one CRD; ``validate(obj, old)`` returns FieldErrors (empty = admitted)."""

    def __init__(self, crd_name, version, schema):
        self.crd, self.version, self.schema = crd_name, version, schema
        self.rules = []
        self.root = compile_schema(schema, crd_name, version, "", self.rules)

    def validate(self, obj, old=None):
        obj = apply_defaults(copy.deepcopy(obj), self.schema)
        if old is not None:
            old = apply_defaults(copy.deepcopy(old), self.schema)
        errors = []
        if self.root:
            self._walk(self.root, obj, old, "", False, errors)
        return errors

    def _walk(self, node, value, old, path, ratchet, errors):
        if value is None:
            return
        schema = node.schema
        if node.rules:
            self._rules(node, value, old, path, ratchet, errors)
        correlatable = schema.get("x-kubernetes-map-type") != "atomic"
        if isinstance(value, dict):
            old_map = old if isinstance(old, dict) and correlatable else {}
            for key, item in value.items():
                sub = node.properties.get(key)
                if sub is None and key not in (schema.get("properties") or {}):
                    sub = node.additional
                if sub is None:
                    continue
                old_item = old_map.get(key)
                child_ratchet = (old_item == item) if old_item is not None else ratchet
                child_path = _child(path, key) if key in (schema.get("properties") or {}) else f"{path}[{key}]"
                self._walk(sub, item, old_item, child_path, child_ratchet, errors)
        elif isinstance(value, list) and node.items:
            keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" \
                else None
            old_items = {}
            if keys and isinstance(old, list):
                old_items = {_map_list_key(i, keys): i for i in old}
            for index, item in enumerate(value):
                old_item = old_items.get(_map_list_key(item, keys)) if keys else None
                child_ratchet = (old_item == item) if old_item is not None else ratchet
                self._walk(node.items, item, old_item, f"{path}[{index}]", child_ratchet, errors)

    def _rules(self, node, value, old, path, ratchet, errors):
        schema = node.schema
        value_type = schema.get("type", "")
        self_value = to_cel(value, schema)
        activation = {"self": self_value}
        if old is not None:
            activation["oldSelf"] = to_cel(old, schema)
        key = None
        for rule in node.rules:
            if not rule.uses_old_self and ratchet:
                # Ratcheting (CRDValidationRatcheting, GA in 1.33): a value equal to its old value keeps passing
                # rules that do not read oldSelf, so they are not evaluated again (kube-apiserver evaluates them
                # and only warns).
                continue
            if rule.error:
                errors.append(FieldError("FieldValueInvalid", path, value_type,
                                         f"rule compile error: {rule.error}"))
                continue
            if rule.uses_old_self and old is None:
                continue  # transition rules run only where there is an old value to compare with
            if rule.uses_old_self:
                result, err = _run(rule.program, activation)
            else:  # same rule, same value: same verdict (objects are re-applied often with the same parts)
                key = key or hashlib.blake2b(json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
                                             digest_size=16).digest()  # bounded memory: 16 bytes per value
                result, err = _cached_run(rule, key, activation)
            if err is not None:
                text = _eval_error_text(err)
                if text.startswith("no such overload") or "no matching overload" in text:
                    detail = (f"'{text}': call arguments did not match a supported operator, function or macro "
                              f"signature for rule: {rule.error_string()}")
                else:
                    detail = f"{text} evaluating rule: {rule.error_string()}"
                errors.append(FieldError("FieldValueInvalid", path, value_type, detail))
                continue
            if result is True or (isinstance(result, celtypes.BoolType) and bool(result)):
                continue
            where = _field_path(path, rule.spec["fieldPath"]) if rule.spec.get("fieldPath") else path
            detail = None
            if rule.message_program is not None:
                msg, msg_err = _run(rule.message_program, activation)
                if msg_err is None and isinstance(msg, str) and msg.strip() and "\n" not in msg.strip():
                    detail = msg.strip()
            reason = rule.spec.get("reason") or "FieldValueInvalid"
            if reason not in ("FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden",
                              "FieldValueDuplicate"):
                reason = "FieldValueInvalid"
            errors.append(FieldError(reason, where, value_type, detail or rule.message()))


# ---------------------------------------------------------------- registry of the installed CRDs

def error_message(obj, errors, kind=None, group=None):
    """apierrors.NewInvalid: `<Kind>.<group> "<name>" is invalid: <error>` or `[<error>, <error>]`."""
    kind = kind or obj.get("kind", "")
    group = group if group is not None else obj.get("apiVersion", "").rpartition("/")[0]
    qualified = f"{kind}.{group}" if group else kind
    name = (obj.get("metadata") or {}).get("name", "")
    texts = list(dict.fromkeys(str(e) for e in errors))  # field.ErrorList.ToAggregate drops duplicates
    text = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return f"{qualified} {json.dumps(name)} is invalid: {text}"


class Registry:
    """Validators of every CRD version that carries rules, by (group, version, kind) and (group, version, plural)."""

    def __init__(self, crd_docs):
        self.by_kind, self.by_plural, self.crds = {}, {}, {}
        self.rules = []
        for crd in crd_docs:
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
                validator = Validator(crd["metadata"]["name"], version["name"], schema)
                if not validator.rules:
                    continue
                self.rules += validator.rules
                self.by_kind[(spec["group"], version["name"], spec["names"]["kind"])] = validator
                self.by_plural[(spec["group"], version["name"], spec["names"]["plural"])] = validator
                self.crds.setdefault(crd["metadata"]["name"], crd)

    @property
    def unevaluable(self):
        return [r for r in self.rules if r.error]

    def validator_for(self, obj):
        group, _, version = obj.get("apiVersion", "").rpartition("/")
        return self.by_kind.get((group, version, obj.get("kind")))

    def validate(self, obj, old=None):
        """FieldErrors of ``obj`` (an update when ``old`` is given); [] for kinds without rules."""
        validator = self.validator_for(obj)
        return validator.validate(obj, old) if validator else []

    def check(self, obj, old=None):
        """None when admitted, else kube-apiserver's message for the refusal."""
        errors = self.validate(obj, old)
        return error_message(obj, errors) if errors else None


_DEFAULT = None


def upstream_crds():
    """The CRDs the local cluster installs, with their rules (crds.py's files, not pre-processed)."""
    from . import crds

    docs = [crd for source in crds.CRD_FILES
            for crd in crds.prepared_crds(source, crds.FIRST_VERSION_WITHOUT_PREPROCESSING)]
    return docs


def default_registry():
    """One Registry of the upstream CRDs per process (compiling ~700 rules takes a few seconds)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry(upstream_crds())
    return _DEFAULT


def validate(obj, old=None):
    """Offline check of one manifest: kube-apiserver's messages (as strings) for each violated rule."""
    return [str(e) for e in default_registry().validate(obj, old)]
