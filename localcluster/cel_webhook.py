"""Admission webhook for the CEL rules the local 1.20 API server cannot enforce (`python -m localcluster.cel_webhook`).

kube-apiserver >= 1.25 evaluates the `x-kubernetes-validations` rules of a CRD itself; `crds.py` drops them for
the local 1.20 server. This component puts them back: it compiles every rule of the upstream CRDs once
(`cel.py`), serves admission.k8s.io/v1 AdmissionReviews over HTTPS on 127.0.0.1:`config.CEL_WEBHOOK_PORT`, and
registers the ValidatingWebhookConfiguration `localcluster-cel-validation` for every CRD whose rules were
dropped (CREATE and UPDATE of the resource and its status subresource, failurePolicy Fail). A refusal carries
kube-apiserver's own status (422 Invalid, `<Kind>.<group> "<name>" is invalid: <field>: Invalid value:
"object": <message>`, one cause per rule); the API server prefixes it with `admission webhook
"cel.localcluster.llm-serving-gke.io" denied the request: `
(k8s.io/apiserver/pkg/admission/plugin/webhook/errors/statuserror.go).

Rules that cannot be compiled or evaluated here are written, with CRD, path, rule and reason, to
`$LOCALCLUSTER_STATE_DIR/cel/unevaluable.txt`; `cel/summary.json` has the counts that `status` prints.
"""
import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import cel, config, crds
from .kube import Kube

CONFIGURATION_NAME = config.CEL_WEBHOOK_CONFIGURATION
WEBHOOK_NAME = "cel.localcluster.llm-serving-gke.io"
VWC_COLLECTION = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
# A real deadline on real CPU work (a Python evaluator on a shared 2-core machine; a large HTTPRoute takes
# 0.3-1.7 s under load 11), so it is not scaled by LOCALCLUSTER_TIME_SCALE. 10 s is kube-apiserver's
# default `timeoutSeconds` (admissionregistration.k8s.io/v1 ValidatingWebhook).
TIMEOUT_SECONDS = 10
PROBE_ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
    "metadata": {"name": "localcluster-cel-probe", "namespace": "default"},
    "spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "no-leading-slash"}}]}]},
}


_EVALUATING = threading.Lock()


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# ---------------------------------------------------------------- AdmissionReview

def review_response(registry, review):
    """The AdmissionReview answer for one request (allowed, or kube-apiserver's Invalid status)."""
    request = review.get("request") or {}
    uid = request.get("uid", "")
    obj = request.get("object") or {}
    old = request.get("oldObject") if request.get("operation") == "UPDATE" else None
    response = {"uid": uid, "allowed": True}
    started = time.monotonic()
    try:
        with _EVALUATING:  # one evaluation at a time: the GIL serialises them anyway, and the caches are shared
            errors = registry.validate(obj, old)
    except Exception as exc:  # noqa: BLE001 - an evaluator bug must refuse with its cause, not crash the server
        errors = [cel.FieldError("FieldValueInvalid", "<nil>", "object",
                                 f"local CEL evaluator failed: {type(exc).__name__}: {exc}")]
    if errors:
        kind = request.get("kind") or {}
        message = cel.error_message(obj, errors, kind.get("kind"), kind.get("group"))
        meta = obj.get("metadata") or {}
        log(f"DENIED {request.get('operation')} {kind.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '')}"
            f"{' (' + request['subResource'] + ')' if request.get('subResource') else ''} in "
            f"{(time.monotonic() - started) * 1000:.0f} ms: {message}")
        response.update(allowed=False, status={
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": 422,
            "reason": "Invalid", "message": message,
            "details": {"name": (obj.get("metadata") or {}).get("name", ""), "group": kind.get("group", ""),
                        "kind": kind.get("kind", ""),
                        "causes": [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]}})
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def make_handler(registry):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 - http.server API
            length = int(self.headers.get("Content-Length") or 0)
            try:
                review = json.loads(self.rfile.read(length))
                body = review_response(registry, review)
                status = 200
            except ValueError as exc:
                body, status = {"error": f"request body is not an AdmissionReview: {exc}"}, 400
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 - /healthz
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            pass

    return Handler


def serve(registry, port, tls_context):
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(registry))
    server.daemon_threads = True
    server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    return server


def tls_material():
    """(ssl server context, CA PEM) of a serving certificate for 127.0.0.1, made per process start."""
    import ssl

    import trustme

    ca = trustme.CA(organization_name="llm-serving-gke local cluster CEL webhook")
    cert = ca.issue_cert("127.0.0.1", "localhost", common_name="localcluster-cel-webhook")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context, ca.cert_pem.bytes()


# ---------------------------------------------------------------- registration

def webhook_configuration(registry, port, ca_pem):
    """The ValidatingWebhookConfiguration for every CRD with rules (resource and status subresource)."""
    rules = []
    for name in sorted(registry.crds):
        crd = registry.crds[name]
        versions = sorted({v["name"] for v in crd["spec"]["versions"]
                           if (crd["spec"]["group"], v["name"], crd["spec"]["names"]["plural"]) in registry.by_plural})
        plural = crd["spec"]["names"]["plural"]
        rules.append({"apiGroups": [crd["spec"]["group"]], "apiVersions": versions,
                      "operations": ["CREATE", "UPDATE"], "resources": [plural, f"{plural}/status"], "scope": "*"})
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME,
                     "labels": {"app.kubernetes.io/managed-by": "llm-serving-gke-localcluster"}},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": {"url": f"https://127.0.0.1:{port}/validate",
                             "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": rules, "failurePolicy": "Fail", "matchPolicy": "Equivalent", "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS, "admissionReviewVersions": ["v1"],
        }],
    }


def register(kube, configuration):
    current = kube.get(f"{VWC_COLLECTION}/{CONFIGURATION_NAME}")
    if current is None:
        kube.request("POST", VWC_COLLECTION, body=configuration)
        return "created"
    configuration = {**configuration, "metadata": {**configuration["metadata"],
                                                   "resourceVersion": current["metadata"]["resourceVersion"]}}
    kube.request("PUT", f"{VWC_COLLECTION}/{CONFIGURATION_NAME}", body=configuration)
    return "replaced"


def unregister(kube):
    """Remove the registration (a cluster started without this component must not point at it)."""
    if kube.get(f"{VWC_COLLECTION}/{CONFIGURATION_NAME}") is None:
        return False
    kube.request("DELETE", f"{VWC_COLLECTION}/{CONFIGURATION_NAME}")
    return True


def wait_enforced(kube, timeout=20.0):
    """Until the API server calls the webhook: a dry-run create of an invalid HTTPRoute is refused by it."""
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes"
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            kube.request("POST", path, body=PROBE_ROUTE, query_params=[("dryRun", "All")])
            last = "the API server admitted the invalid probe HTTPRoute"
        except Exception as exc:  # noqa: BLE001 - the refusal is what we wait for
            last = str(getattr(exc, "body", None) or exc)
            if WEBHOOK_NAME in last and "must be an absolute path" in last:
                return True, ""
        time.sleep(0.3)
    return False, last[-400:]


# ---------------------------------------------------------------- summary for `status`

def summary_dir(state_dir):
    return Path(state_dir) / "cel"


def write_summary(state_dir, registry, registered):
    directory = summary_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    unevaluable = registry.unevaluable
    lines = [f"{r.crd}\t{r.version}\t{r.path}\t{r.text}\t{r.error}" for r in unevaluable]
    (directory / "unevaluable.txt").write_text(
        "# CRD\tversion\tschema path\trule\twhy it is not evaluated\n" + "".join(f"{line}\n" for line in lines))
    summary = {"rules": len(registry.rules), "evaluated": len(registry.rules) - len(unevaluable),
               "unevaluable": len(unevaluable), "crds": sorted(registry.crds), "registered": registered,
               "unevaluable_file": str(directory / "unevaluable.txt")}
    (directory / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def read_summary(state_dir):
    try:
        return json.loads((summary_dir(state_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- main

def main():
    state_dir = os.environ["LOCALCLUSTER_STATE_DIR"]
    started = time.monotonic()
    registry = cel.Registry(cel.upstream_crds())
    log(f"compiled {len(registry.rules)} CEL rules of {len(registry.crds)} CRDs in "
        f"{time.monotonic() - started:.1f}s; not evaluable: {len(registry.unevaluable)}")
    for rule in registry.unevaluable:
        log(f"NOT EVALUATED: {rule.crd} {rule.version} {rule.path}: {rule.text!r}: {rule.error}")
    context, ca_pem = tls_material()
    server = serve(registry, config.CEL_WEBHOOK_PORT, context)
    kube = Kube(os.environ["KUBECONFIG"])
    minor = kube.server_minor_version()
    registered = minor < crds.FIRST_VERSION_WITHOUT_PREPROCESSING
    threading.Thread(target=server.serve_forever, daemon=True).start()
    if registered:
        action = register(kube, webhook_configuration(registry, config.CEL_WEBHOOK_PORT, ca_pem))
        ok, why = wait_enforced(kube)
        while not ok:
            # Keep serving (with failurePolicy Fail, an exit would make every write of these kinds fail) but do not
            # report ready: `up` names this component and quotes this line.
            log(f"ERROR: ValidatingWebhookConfiguration {CONFIGURATION_NAME} {action} but the API server does not "
                f"call https://127.0.0.1:{config.CEL_WEBHOOK_PORT}/validate yet: {why}")
            ok, why = wait_enforced(kube)
        log(f"ValidatingWebhookConfiguration {CONFIGURATION_NAME} {action}; enforced for {', '.join(registry.crds)}")
    else:
        unregister(kube)
        log(f"the API server is 1.{minor}: it enforces the CEL rules itself; nothing registered")
    write_summary(state_dir, registry, registered)
    (Path(state_dir) / "ready" / "cel_webhook").write_text("ready\n")
    log(f"serving https://127.0.0.1:{config.CEL_WEBHOOK_PORT}/validate (ready in {time.monotonic() - started:.1f}s)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
