# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Google Cloud REST transport: credentials (google.cloud's GcpSession / google-auth), the
``transport(method, url, body) -> (status, payload)`` callable, and the project default.

Everything above the transport is plain Python so that it can be unit tested without HTTP.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import random
import time

from ansible_collections.llm_serving.gke.plugins.module_utils.gke_errors import (
    GkeError,
    auth_message,
    classify,
    error_parts,
    raise_classified,
)

try:
    import requests
except ImportError:  # reported by the modules with missing_required_lib
    requests = None

DEFAULT_COMPUTE_ENDPOINT = "https://compute.googleapis.com"
DEFAULT_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class GcpClient:
    """Calls to one Google Cloud REST API for one project, with retries until a deadline.

    ``transport(method, url, body)`` returns ``(http_status, parsed_json_or_text)`` and raises
    ``ConnectionError``/``OSError`` on network failures (see session_transport). HTTP 429/5xx, network errors and
    "operation in progress" answers are retried with jittered exponential backoff until ``timeout`` seconds have
    passed; other errors raise GkeError classified by gke_errors. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(self, transport, project, endpoint=DEFAULT_COMPUTE_ENDPOINT, timeout=2700, clock=time.monotonic,
                 sleep=time.sleep, initial_delay=1.0, max_delay=30.0, poll_interval=2.0, max_poll_interval=15.0):
        self.transport = transport
        self.project = project
        self.endpoint = endpoint.rstrip("/")
        self.clock, self.sleep = clock, sleep
        self.deadline = clock() + timeout
        self.initial_delay, self.max_delay = initial_delay, max_delay
        self.poll_interval, self.max_poll_interval = poll_interval, max_poll_interval
        self.context = {"project": project}
        self.retries = []  # (method, path, reason) of every retried call, returned to the user

    # Core request with retries ------------------------------------------------------------------------------
    def remaining(self):
        return self.deadline - self.clock()

    def _backoff(self, attempt):
        delay = min(self.max_delay, self.initial_delay * (2 ** attempt))
        return random.uniform(delay / 2, delay)  # jittered like amazon.aws AWSRetry.jittered_backoff

    def call(self, method, path, body=None, action=None, base=None, allow_404=False):
        """One API call; retries 429/5xx, network errors and 'operation in progress' until the deadline."""
        url = (base or self.endpoint) + path
        action = action or f"{method} {path}"
        attempt = 0
        while True:
            try:
                status, payload = self.transport(method, url, body)
            except (ConnectionError, OSError) as exc:
                status, payload, kind = None, {"error": {"message": str(exc), "status": "UNAVAILABLE"}}, "retry"
            else:
                if status < 400:
                    return payload if payload is not None else {}
                if status == 404 and allow_404:
                    return None
                kind = classify(status, *error_parts(payload)[1:])
            if kind not in ("retry", "in_progress"):
                raise_classified(status, payload, self.context, action)
            delay = self._backoff(attempt)
            if self.remaining() <= delay:
                raise_classified(status, payload, self.context, action + " (retried until timeout)")
            self.retries.append({"method": method, "path": path, "status": status, "reason": kind})
            self.sleep(delay)
            attempt += 1


def session_transport(authed, product="container", auth_kind=None):
    """``transport(method, url, body)`` over a google-auth ``AuthorizedSession``.

    The session is made once per task and reused for every call, so credentials that can refresh (auth_kind
    application, serviceaccount, machineaccount) get a new token when the old one is about to expire - google-auth's
    ``Credentials.before_request`` refreshes a token that is no longer valid, and ``AuthorizedSession`` refreshes and
    retries once on a 401 (google.auth.transport.requests in googleapis/google-auth-library-python). A bare access
    token cannot refresh: that ends in GkeError(kind='auth') saying so. Network errors become ConnectionError for
    the retry loop (GcpSession's own full_* helpers fail the module, and crash on SSLError).
    """
    try:
        from google.auth.exceptions import RefreshError
    except ImportError:  # google-auth is required by GcpSession itself

        class RefreshError(Exception):
            """Stand-in so that the except clause below stays valid."""

    headers = {"User-Agent": f"llm_serving.gke/{product}"}

    def transport(method, url, body):
        try:
            response = authed.request(method, url, json=body, headers=headers, timeout=60)
        except RefreshError as exc:
            raise GkeError(auth_message(auth_kind, str(exc)), kind="auth", status=401) from exc
        except requests.exceptions.RequestException as exc:
            raise ConnectionError(f"{method} {url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return response.status_code, payload

    return transport


def make_transport(module, product="container"):
    """HTTP with google.cloud's GcpSession credentials (see session_transport)."""
    from ansible_collections.google.cloud.plugins.module_utils.gcp_utils import GcpSession

    if not module.params.get("scopes"):
        module.params["scopes"] = list(DEFAULT_SCOPES)
    authed = GcpSession(module, product).session()
    return session_transport(authed, product, module.params.get("auth_kind"))


def default_project(module):
    """The project of Application Default Credentials (auth_kind application), as google.auth.default() finds it
    (GOOGLE_CLOUD_PROJECT, the key file's project_id, gcloud's configured project); None when there is none."""
    if module.params.get("auth_kind") != "application":
        return None
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        return None
    try:
        _credentials, project = google.auth.default(scopes=module.params.get("scopes") or list(DEFAULT_SCOPES))
    except DefaultCredentialsError:
        return None
    return project
