"""The browser tests' watchdog on its own, with a fake clock and made-up notebook states: which
kernel states count as a stall, and how soon it says so (no browser needed)."""

from __future__ import annotations

import pytest

from _jupyterlab import KernelStalled, Watchdog


def state(kernel="idle", connection="connected", running=(), busy=False):
    cells = [{"index": i, "count": None if i in running else i, "running": i in running, "empty": False, "outputs": []}
             for i in range(3)]
    return {"kernel": kernel, "connection": connection, "busy": busy, "cells": cells}


class FakeLab:
    def __init__(self, code=None):
        self.proc = type("P", (), {"poll": lambda _: code, "returncode": code})()

    def log_tail(self, n=3000):
        return "[I ServerApp] Kernel started: 1234\n[W ServerApp] Replacing stale connection"


def feed_for(dog, clock, seconds, st):
    """Feed the same state every 0.5 s for `seconds`."""
    for _ in range(int(seconds / 0.5)):
        dog.feed(st)
        clock[0] += 0.5


def test_a_kernel_stuck_starting_fails_after_the_stall_limit_with_the_log():
    clock = [0.0]
    dog = Watchdog(FakeLab(), stall_s=30, clock=lambda: clock[0])
    feed_for(dog, clock, 29, state("starting", "connecting"))  # 29 s: still allowed
    with pytest.raises(KernelStalled) as e:
        feed_for(dog, clock, 2, state("starting", "connecting"))
    msg = str(e.value)
    assert "not ready" in msg and "for 30 s" in msg and "Kernel started: 1234" in msg
    assert "starting/connecting" in msg  # the states it went through


def test_busy_for_minutes_is_work_not_a_stall():
    clock = [0.0]
    dog = Watchdog(FakeLab(), stall_s=30, clock=lambda: clock[0])
    feed_for(dog, clock, 300, state("busy", running=(1, 2)))  # a long training cell
    feed_for(dog, clock, 20, state("restarting", "connecting"))  # a restart, shorter than the limit
    feed_for(dog, clock, 300, state("busy", running=(2,)))


def test_idle_with_cells_waiting_is_a_dead_connection():
    clock = [0.0]
    dog = Watchdog(FakeLab(), stall_s=30, clock=lambda: clock[0])
    feed_for(dog, clock, 10, state("idle", running=(1, 2)))
    feed_for(dog, clock, 1, state("busy", running=(1, 2)))  # it picked one up: the count restarts
    feed_for(dog, clock, 29, state("idle", running=(2,)))
    with pytest.raises(KernelStalled, match="idle for 30 s while cells waited"):
        feed_for(dog, clock, 2, state("idle", running=(2,)))


@pytest.mark.parametrize("bad, match", [
    (state("dead", "disconnected"), "the kernel is dead"),
    (state("idle", "disconnected"), None),  # a lost websocket: a stall, after the limit
])
def test_dead_kernel_fails_at_once_a_lost_socket_after_the_limit(bad, match):
    clock = [0.0]
    dog = Watchdog(FakeLab(), stall_s=30, clock=lambda: clock[0])
    if match:
        with pytest.raises(KernelStalled, match=match):
            dog.feed(bad)
        return
    feed_for(dog, clock, 29, bad)
    with pytest.raises(KernelStalled, match="not ready"):
        feed_for(dog, clock, 2, bad)


def test_a_server_that_exited_fails_at_once():
    dog = Watchdog(FakeLab(code=1), stall_s=30, clock=lambda: 0.0)
    with pytest.raises(KernelStalled, match="server exited with code 1"):
        dog.feed(state("busy", running=(1,)))
