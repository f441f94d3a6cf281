"""The daemon's ADD slots (addWorkers): ADD and CHECK wait for one, DEL and the rest never do, and an ADD
that finds none free before its request's deadline is answered code 11 (HTTP 504: retried by the runtime,
no thin fallback beside a daemon that may still get to it), having run nothing."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

from multipy.daemon import routes
from multipy.daemon.metrics import Metrics
from multipy.daemon.settings import Settings


def make_routes(add_workers: int, request_timeout: float) -> routes.Routes:
    daemon = SimpleNamespace(settings=Settings(add_workers=add_workers, request_timeout=request_timeout),
                             metrics=Metrics(), pool=SimpleNamespace(etcd=None, kube=None))  # fmt: skip
    return routes.Routes(daemon)


def body(command: str) -> bytes:
    return json.dumps({"env": {"CNI_COMMAND": command}, "config": "{}"}).encode()


def test_adds_past_the_slots_wait_and_dels_do_not():
    served = make_routes(add_workers=1, request_timeout=30)
    release, inside, order = threading.Event(), threading.Event(), []

    def slow(environ, raw, doc, fds, deadline):
        order.append(environ["CNI_COMMAND"])
        if len(order) == 1:
            inside.set()
            release.wait(10)
        return routes.Reply(204)

    first = threading.Thread(target=served._timed, args=("cni", body("ADD"), [], slow))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=served._timed, args=("cni", body("CHECK"), [], slow))
    second.start()
    time.sleep(0.2)
    assert served._timed("cni", body("DEL"), [], slow).status == 204  # not held back by the busy slot
    assert order == ["ADD", "DEL"] and served.daemon.metrics.add_waiting._value.get() == 1
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["ADD", "DEL", "CHECK"]


def test_an_add_that_gets_no_slot_before_its_deadline_is_code_11_and_runs_nothing():
    served = make_routes(add_workers=1, request_timeout=0.3)
    assert served._add_slots.acquire(timeout=1)  # the one slot, taken
    ran = []
    started = time.monotonic()
    reply = served._timed("cni", body("ADD"), [], lambda *a: ran.append(a) or routes.Reply(204))
    assert 0.25 <= time.monotonic() - started < 5
    assert reply.status == 504 and not ran
    doc = json.loads(reply.body)
    assert doc["code"] == 11 and "addWorkers" in doc["msg"]
