"""The controllers' list+watch cache: relist on 410 Gone, reconnect after connection errors, report deletions."""
import threading
import time

from localcluster.kserve_controller import Informer


def obj(name, rv):
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv)}}


class FakeKube:
    """Scripted API server: each list returns the next snapshot; each watch plays the next script."""

    def __init__(self, lists, watches):
        self.lists = list(lists)
        self.watches = list(watches)
        self.list_calls = 0

    def request(self, method, path, query=None):
        self.list_calls += 1
        items, rv = self.lists.pop(0) if self.lists else self.last
        self.last = (items, rv)
        return {"apiVersion": "v1", "kind": "ThingList", "metadata": {"resourceVersion": str(rv)}, "items": items}

    def watch(self, path, resource_version, query=None):
        script = self.watches.pop(0) if self.watches else "block"
        if script == "block":
            time.sleep(3600)
        if isinstance(script, Exception):
            raise script
        yield from script


def wait_until(predicate, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_relists_after_410_and_reports_deleted_objects():
    kube = FakeKube(
        lists=[([obj("a", 1), obj("b", 1)], 1), ([obj("b", 3)], 3)],
        watches=[[{"type": "MODIFIED", "object": obj("a", 2)},
                  {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}]])
    seen = []
    lock = threading.Lock()

    def on_change(kind, item):
        with lock:
            seen.append((kind, item["metadata"]["name"], item["metadata"]["resourceVersion"]))
    informer = Informer(kube, "", "v1", "things", on_change).start()
    assert wait_until(lambda: kube.list_calls >= 2 and ("DELETED", "a", "2") in seen)
    informer.stop()
    assert ("ADDED", "a", "1") in seen and ("MODIFIED", "a", "2") in seen
    assert ("MODIFIED", "b", "3") in seen
    assert informer.get("ns", "a") is None and informer.get("ns", "b")["metadata"]["resourceVersion"] == "3"


def test_reconnects_after_connection_errors():
    kube = FakeKube(lists=[([obj("a", 1)], 1), ([obj("a", 1), obj("c", 5)], 5)],
                    watches=[ConnectionRefusedError("apiserver restarting")])
    names = set()
    informer = Informer(kube, "", "v1", "things", lambda kind, item: names.add(item["metadata"]["name"])).start()
    assert wait_until(lambda: "c" in names, timeout=5)
    informer.stop()
    assert informer.synced.is_set()
