"""http_checks: every request in one module run, concurrently, each with its status and JSON body; a request
without a response has status -1 and says why; bad requests fail naming the entry."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ansible_collections.llm_serving.gke.plugins.modules import http_checks
from tests.unit.plugins.modules.module_exit import patch_exits, run_main


class Handler(BaseHTTPRequestHandler):
    in_flight = max_in_flight = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _slow(self):
        """Answer after 0.5 s, counting how many requests were being answered at the same time."""
        with Handler.lock:
            Handler.in_flight += 1
            Handler.max_in_flight = max(Handler.max_in_flight, Handler.in_flight)
        time.sleep(0.5)
        with Handler.lock:
            Handler.in_flight -= 1

    def _answer(self, code, body, content_type="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's name)
        if self.path == "/slow":
            self._slow()
        if self.path == "/down":
            return self._answer(503, "no", "text/plain")
        if self.path == "/text":
            return self._answer(200, "fine", "text/plain")
        return self._answer(200, json.dumps({"path": self.path, "auth": self.headers.get("Authorization")}))

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        return self._answer(200, json.dumps({"got": body, "type": self.headers.get("Content-Type")}))


@pytest.fixture(scope="module")
def base():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def module(monkeypatch):
    patch_exits(monkeypatch)
    return lambda args: run_main(http_checks.main, args)


def test_each_request_gets_its_status_and_json_in_order(module, base):
    refused = f"http://127.0.0.1:{_closed_port()}/health"
    result = module({"headers": {"Authorization": "Bearer t"}, "requests": [
        {"name": "models", "url": f"{base}/v1/models"},
        {"name": "completions", "url": f"{base}/v1/completions", "method": "post", "body": {"max_tokens": 16}},
        {"name": "pod_health", "item": "10.0.0.1", "url": f"{base}/down", "use_headers": False},
        {"name": "pod_health", "item": "10.0.0.2", "url": refused, "use_headers": False},
        {"name": "text", "url": f"{base}/text"},
        {"name": "own", "url": f"{base}/own", "use_headers": False, "headers": {"Authorization": "Bearer o"}},
        {"name": "pod", "url": f"{base}/pod", "use_headers": False},
    ], "timeout": 5}).result
    models, completion, down, refused_result, text, own, pod = result["results"]
    assert result["changed"] is False
    assert (models["name"], models["status"], models["json"]) == (
        "models", 200, {"path": "/v1/models", "auth": "Bearer t"})
    assert (own["json"]["auth"], pod["json"]["auth"]) == ("Bearer o", None)  # without the module's headers
    assert not {"headers", "use_headers", "body"} & (set(models) | set(completion) | set(own))
    assert completion["status"] == 200
    assert completion["json"] == {"got": {"max_tokens": 16}, "type": "application/json"}
    assert (down["item"], down["status"], down["json"]) == ("10.0.0.1", 503, None)
    assert down["msg"].startswith("HTTP Error 503")
    assert (refused_result["item"], refused_result["status"], refused_result["json"]) == ("10.0.0.2", -1, None)
    assert refused_result["msg"].startswith("Request failed:")
    assert (text["status"], text["json"], text["msg"]) == (200, None, "OK (4 bytes)")


def test_requests_run_concurrently_up_to_parallel(base):
    for parallel in (4, 2):
        Handler.max_in_flight = 0
        results = http_checks.run([{"url": f"{base}/slow"}] * 4, timeout=5, validate_certs=True, parallel=parallel)
        assert [r["status"] for r in results] == [200] * 4
        assert Handler.max_in_flight == parallel  # the server answered `parallel` requests at the same time


def test_requests_without_url_or_with_bad_headers_fail_naming_the_entry(module):
    result = module({"requests": [{"url": "http://x/ok"}, {"name": "a"}, {"url": "http://x", "headers": "h"},
                                  {"url": "http://x", "use_headers": "no"}]})
    assert result.kind == "fail"
    assert result.result["msg"] == ("http_checks: requests[1] lacks url; requests[2].headers must be a dict; "
                                    "requests[3].use_headers must be true or false")


def test_parallel_below_1_fails_naming_it(module):
    result = module({"requests": [], "parallel": 0})
    assert (result.kind, result.result["msg"]) == ("fail", "http_checks: parallel must be at least 1, got 0")
