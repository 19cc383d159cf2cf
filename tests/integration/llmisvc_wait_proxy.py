"""A counting reverse proxy on loopback in front of the local cluster's API server.

Clients talk plain HTTP to the proxy with the cluster's bearer token; the proxy forwards over TLS and
streams responses (watches included). It records every request, and can drop every open connection and
refuse new ones for a while, which is what a client sees when the API server restarts or a load balancer
cuts idle connections. Used by the llmisvc_wait integration tests and benchmarks/wait_latency.py.
"""

import asyncio
import base64
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass

import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


@dataclass
class Request:
    at: float
    method: str
    path: str
    query: str
    status: int = 0

    @property
    def is_watch(self):
        return "watch=true" in self.query or "watch=1" in self.query


def read_kubeconfig(path):
    with open(path) as handle:
        config = yaml.safe_load(handle)
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
    else:
        with open(cluster["certificate-authority"]) as handle:
            ca = handle.read()
    return cluster["server"], ca, user["token"]


class CountingProxy:
    def __init__(self, kubeconfig):
        self.upstream, ca, self.token = read_kubeconfig(kubeconfig)
        self.ssl = ssl.create_default_context(cadata=ca)
        self.requests = []
        self.refuse_until = 0.0
        self._open = set()
        self._loop = None
        self._thread = None
        self._runner = None
        self.port = None
        self._ready = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self):
        self._thread = threading.Thread(target=self._run, name="counting-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("counting proxy did not start")
        return self

    def stop(self):
        if self._loop:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, directory=None):
        """A kubeconfig that points at the proxy (plain HTTP on loopback, same token)."""
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {"token": self.token}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        }
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig", dir=directory, delete=False) as handle:
            yaml.safe_dump(config, handle)
        return handle.name

    # ------------------------------------------------------------ control

    def reset(self):
        self.requests = []

    def drop_connections(self, refuse_for=0.0):
        """Close every open client and upstream connection; refuse new ones for `refuse_for` seconds."""
        self.refuse_until = time.monotonic() + refuse_for
        asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result(10)

    def count(self, since=0.0, until=None, path_contains=""):
        until = until or float("inf")
        return sum(1 for r in self.requests if since <= r.at <= until and path_contains in r.path)

    # ------------------------------------------------------------ server

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        self._ready.set()
        self._loop.run_forever()

    async def _startup(self):
        self.session = ClientSession(connector=TCPConnector(ssl=self.ssl, limit=0),
                                     timeout=ClientTimeout(total=None, sock_read=None), auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self):
        await self._drop()
        await self._runner.cleanup()
        await self.session.close()

    async def _drop(self):
        for transport, upstream in list(self._open):
            transport.close()
            upstream.close()
        self._open.clear()

    async def _handle(self, request):
        record = Request(time.monotonic(), request.method, request.path, request.query_string)
        self.requests.append(record)
        if time.monotonic() < self.refuse_until:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        try:
            upstream = await self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                                  data=body or None)
        except ClientError:  # API server down (restarting): the client sees a dropped connection
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=502)
        record.status = upstream.status
        entry = (request.transport, upstream)
        self._open.add(entry)
        try:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        except (ClientError, ConnectionError, asyncio.CancelledError, RuntimeError):
            # Dropped on purpose (drop_connections), by the API server or by the client: end it quietly.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)
        finally:
            self._open.discard(entry)
            upstream.close()
