# -*- coding: utf-8 -*-
# Copyright (c) 2026, llm_serving.gke maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""HTTP transport of the load generator: a pool of keep-alive HTTP/1.1 connections parsed by httptools on
one asyncio event loop, and one streamed request (Server-Sent Events) with its timings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type  # noqa: UP001 (Ansible module boilerplate)

import asyncio
import json
import ssl
import time
import traceback
import urllib.parse

from ansible_collections.llm_serving.gke.plugins.module_utils.inference_workload import endpoint_path, request_body

try:
    import httptools

    HTTPTOOLS_IMPORT_ERROR = None
except ImportError:  # reported by the module through missing_required_lib
    httptools = None
    HTTPTOOLS_IMPORT_ERROR = traceback.format_exc()


def _chunk_text(choice):
    if "text" in choice:
        return choice.get("text") or ""
    delta = choice.get("delta") or choice.get("message") or {}
    return delta.get("content") or ""


class _StreamState:
    """Accumulates one response: event arrival times, token counts, completion markers.

    Streamed events are kept as raw bytes with their arrival time and decoded together when the response
    ends: one JSON decode per response instead of one per token keeps the client cheap.
    """

    def __init__(self, started):
        self.started = started
        self.pending = []
        self.token_times = []
        self.usage = None
        self.finished = False
        self.saw_choices = False

    def feed_line(self, payload, now):
        if payload == b"[DONE]":
            self.finished = True
        elif payload:
            self.pending.append((payload, now))

    def flush(self):
        """Decode the streamed events received so far, in order."""
        if not self.pending:
            return
        payloads, times = zip(*self.pending, strict=True)
        self.pending = []
        events = json.loads(b"[" + b",".join(payloads) + b"]")
        for event, now in zip(events, times, strict=True):
            self.feed(event, now)

    def feed(self, event, now):
        if not isinstance(event, dict):
            raise ValueError(f"event is not a JSON object: {event!r:.80}")
        if event.get("error"):
            raise _ServerError(event["error"])
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            self.saw_choices = True
            if _chunk_text(choice):
                self.token_times.append(now)
            if choice.get("finish_reason"):
                self.finished = True


class _ServerError(Exception):
    pass


def _new_record(step, prompt):
    return {
        "step": step, "start_s": None, "ok": False, "status": None, "error": None, "error_detail": None,
        "ttft_s": None, "e2e_s": None, "itl_s": [], "output_tokens": 0, "prompt_tokens": None,
        "prompt_chars": len(prompt),
    }


async def send_request(pool, config, prompt, step, clock_zero):
    """Send one request and return its record; never raises for request failures (they are classified)."""
    record = _new_record(step, prompt)
    started = time.perf_counter()
    record["start_s"] = started - clock_zero
    body = json.dumps(request_body(config, prompt)).encode()
    state = _StreamState(started)
    try:
        exchange = await pool.post(body, state)
        record["status"] = exchange.status
        if exchange.status != 200:
            record["error"] = f"http_{exchange.status}"
            record["error_detail"] = exchange.error_body().decode("utf-8", "replace")[:200]
        else:
            exchange.finish()
            _finish_record(record, state)
    except TimeoutError:
        record["error"] = "timeout"
    except _ServerError as exc:
        record["error"], record["error_detail"] = "server_error", str(exc)[:200]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        record["error"], record["error_detail"] = "protocol_error", str(exc)[:200]
    except IncompleteResponse as exc:
        record["error"], record["error_detail"] = "incomplete_stream", str(exc)[:200]
    except OSError as exc:
        record["error"], record["error_detail"] = "connection_error", f"{type(exc).__name__}: {str(exc)[:200]}"
    record["e2e_s"] = time.perf_counter() - started
    record["ok"] = record["error"] is None
    return record


def _finish_record(record, state):
    times = state.token_times
    if times:
        record["ttft_s"] = times[0] - state.started
        record["itl_s"] = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    usage = state.usage or {}
    record["output_tokens"] = usage.get("completion_tokens", len(times))
    record["prompt_tokens"] = usage.get("prompt_tokens")
    if not state.saw_choices:
        record["error"] = "no_choices"
    elif not state.finished:
        record["error"] = "incomplete_stream"
    elif not times:
        record["error"] = "empty_output"


# aiohttp's ClientSession costs about as much CPU per streamed request as the seed's thread pool. A benchmark
# client must stay far below the server's capacity, so requests go over keep-alive connections parsed by
# httptools (llhttp, the C parser uvicorn uses) straight from asyncio protocol callbacks.


class IncompleteResponse(Exception):
    """The connection ended before the response did."""


class _StaleConnection(ConnectionResetError):
    """A kept-alive connection closed before any byte of the response: safe to retry on a new one."""


class _Exchange:
    """One request/response: status, SSE lines fed to a _StreamState as they arrive, or a buffered body."""

    def __init__(self, state, event_stream, loop):
        self.state = state
        self.event_stream = event_stream
        self.status = None
        self.buffer = b""
        self.body = []
        self.received = False
        self.close_delimited = True
        self.done = loop.create_future()

    def on_body(self, data, now):
        if self.status != 200 or not self.event_stream:
            self.body.append(data)
            return
        self.buffer += data
        if b"\n" not in self.buffer:
            return
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                self.state.feed_line(line[5:].strip(), now)

    def finish(self):
        """After the response: decode the streamed events (and a last unterminated line), or the JSON body."""
        if self.event_stream:
            line = self.buffer.strip()
            if line.startswith(b"data:"):
                self.state.feed_line(line[5:].strip(), time.perf_counter())
            self.state.flush()
            return
        payload = json.loads(b"".join(self.body))
        if not isinstance(payload, dict):
            raise ValueError("response body is not a JSON object")
        self.state.feed(payload, time.perf_counter())
        self.state.finished = self.state.finished or self.state.saw_choices

    def error_body(self):
        return b"".join(self.body)

    def resolve(self, exc=None):
        if not self.done.done():
            if exc is None:
                self.done.set_result(self)
            else:
                self.done.set_exception(exc)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; httptools calls on_* while data_received feeds it."""

    def __init__(self):
        self.transport = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange = None
        self.closed = False
        self.now = 0.0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.now = time.perf_counter()
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        exchange.received = True
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # malformed HTTP
            self.close()
            exchange.resolve(ValueError(f"malformed HTTP response: {exc}"))

    def on_header(self, name, value):
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.exchange.close_delimited = False

    def on_headers_complete(self):
        self.exchange.status = self.parser.get_status_code()

    def on_body(self, body):
        self.exchange.on_body(body, self.now)

    def on_message_complete(self):
        exchange, self.exchange = self.exchange, None
        if not self.parser.should_keep_alive():
            self.close()
        exchange.resolve()

    def connection_lost(self, exc):
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        if exchange.status is not None and exchange.close_delimited:
            exchange.resolve()  # HTTP/1.0-style body that ends with the connection
        elif not exchange.received:
            exchange.resolve(_StaleConnection("connection closed before the response started"))
        else:
            exchange.resolve(IncompleteResponse("connection closed before the response ended"))

    def expire(self, exchange):
        if self.exchange is exchange:
            self.exchange = None
            self.close()
            exchange.resolve(TimeoutError())

    def close(self):
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to the base URL; POSTs a body to the completions path and awaits the response."""

    def __init__(self, config):
        url = urllib.parse.urlsplit(config["base_url"])
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.timeout = config["request_timeout"]
        self.event_stream = config["stream"]
        self.ssl = _ssl_context(config["validate_certs"]) if self.https else None
        path = url.path.rstrip("/") + endpoint_path(config)
        extra = "".join(f"{name}: {value}\r\n" for name, value in (config["headers"] or {}).items())
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUser-Agent: llm_serving.gke-inference_benchmark\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream, application/json\r\n{extra}"
            "Content-Length: ").encode("latin-1")
        self.idle = []

    async def _connect(self):
        loop = asyncio.get_running_loop()
        transport_and_protocol = await asyncio.wait_for(
            loop.create_connection(_Connection, self.host, self.port, ssl=self.ssl,
                                   server_hostname=self.host if self.https else None), self.timeout)
        return transport_and_protocol[1]

    def _take_idle(self):
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        return None

    async def post(self, body, state):
        loop = asyncio.get_running_loop()
        request = self.head + str(len(body)).encode() + b"\r\n\r\n" + body
        for attempt in (0, 1):
            connection = self._take_idle()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            exchange = _Exchange(state, self.event_stream, loop)
            connection.exchange = exchange
            connection.transport.write(request)
            timer = loop.call_later(self.timeout, connection.expire, exchange)
            try:
                await exchange.done
            except _StaleConnection:
                if reused and attempt == 0:
                    continue  # the server closed an idle connection; HTTP clients retry these
                raise
            finally:
                timer.cancel()
            if not connection.closed:
                self.idle.append(connection)
            return exchange
        raise AssertionError("unreachable")

    def close(self):
        for connection in self.idle:
            connection.close()
        self.idle = []


def _ssl_context(validate_certs):
    context = ssl.create_default_context()
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
