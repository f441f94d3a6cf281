"""API faults on ADD with a kubeconfig (the local Kubernetes API inside the node): slow answers, 500s,
500s on the status write only, dropped connections. ADD fails within kubeTotalTimeout with code 11 and is
rolled back; DEL, which never calls the API, then succeeds and leaves nothing."""

from __future__ import annotations

import time

import pytest

from multipy.net.netns import run_in
from multipy.testing.kube_api import KubeAPIServer

from .conftest import TALLY, cni_error

KUBE_TIMEOUT, KUBE_TOTAL = 1, 3
BOUND = KUBE_TOTAL + 7.0


@pytest.fixture
def api_world(local_world, tmp_path):
    api = KubeAPIServer(directory=str(tmp_path / "kube"))
    (tmp_path / "kube").mkdir()
    try:
        run_in(local_world.where, api.start)
        api.add_pod("default", "web", uid="uid-web")
        yield local_world, api
    finally:
        api.close()


ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=uid-web"


def _fault(api, kind):
    if kind == "slow":
        api.delay = KUBE_TIMEOUT + 1.5
    elif kind == "500":
        api.fail_with(500)
    elif kind == "500 on the status write":
        api.fail_with(500, methods=("PATCH", "PUT"))
    elif kind == "dropped connections":
        run_in_stop = api.stop
        run_in_stop()


@pytest.mark.parametrize("kind", ["slow", "500", "500 on the status write", "dropped connections"])
def test_api_fault_on_add(api_world, kind):
    world, api = api_world
    figures = TALLY.of("API faults")
    conf = world.conf(kubeconfig=api.kubeconfig, kubeTimeout=KUBE_TIMEOUT, kubeTotalTimeout=KUBE_TOTAL)
    env = {"CNI_ARGS": ARGS}
    assert world.run("ADD", "ok", conf=conf, env=env).ok  # the API works: the path is real
    assert world.run("DEL", "ok", conf=conf).ok
    world.forget("ok")
    _fault(api, kind)
    figures.faults += 1
    started = time.monotonic()
    outcome = world.run("ADD", "a1", conf=conf, env=env, bound=BOUND + 30)
    took = time.monotonic() - started
    figures.runs += 1
    doc = cni_error(outcome)
    assert doc["code"] == 11, doc
    assert took <= BOUND, f"{kind}: ADD took {took:.1f} s with kubeTotalTimeout {KUBE_TOTAL}"
    problems = world.check(figures, what=f"{kind}: after the failed ADD")
    assert world.run("DEL", "a1", conf=conf).ok  # DEL never calls the API
    world.forget("a1")
    problems += world.check(figures, what=f"{kind}: after DEL")
    assert not problems, "\n".join(problems)
