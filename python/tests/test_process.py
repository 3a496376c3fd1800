"""Process-level behaviour: a client keeps working in a forked child (the shim rebuilds
the runtime and the core client there), and Ctrl-C interrupts a blocking call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import gaterouter

from conftest import Emulator

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")


def _wait_child(pid: int, timeout: float = 30.0) -> int:
    """Exit code of a forked child; kills it and fails when it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child still running after {timeout}s (hung on the parent's runtime?)")


def _in_child(body) -> int:  # type: ignore[no-untyped-def]
    """Fork; the child runs ``body()`` and exits 0 on success, 1 on an assertion or error
    (printed), never returning into pytest. Returns the child's pid in the parent."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException as e:  # noqa: BLE001 - report anything, then leave
            print(f"child failed: {e!r}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)
    return pid


@fork_only
def test_client_works_in_forked_child(emulator):
    # A short request timeout: without the rebuild the child's call waits on a pooled
    # connection of the parent's dead runtime until it times out.
    client = gaterouter.Client(emulator.config(timeouts={"request_ms": 5000}, retry={"max_retries": 0}))
    aclient = gaterouter.AsyncClient(emulator.config(timeouts={"request_ms": 5000}, retry={"max_retries": 0}))
    r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "parent before"}])
    assert "parent before" in r.choices[0].message.content
    asyncio.run(aclient.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "warm"}]))

    def child() -> None:
        r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "in the child"}])
        assert "in the child" in r.choices[0].message.content
        chunks = list(client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "s"}], stream=True))
        assert chunks[-1].usage is not None

        async def run() -> str:
            resp = await aclient.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "async child"}])
            return str(resp.choices[0].message.content)

        assert "async child" in asyncio.run(run())

    assert _wait_child(_in_child(child)) == 0
    r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "parent after"}])
    assert "parent after" in r.choices[0].message.content


@fork_only
def test_stream_opened_before_fork_is_refused_in_the_child(emulator):
    client = gaterouter.Client(emulator.config(timeouts={"request_ms": 5000}))
    stream = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "a fox story"}], stream=True)
    first = next(stream)

    def child() -> None:
        # Reading it would wait on the parent's connection: a typed error instead.
        with pytest.raises(gaterouter.InvalidRequestError, match="os.fork"):
            next(stream)
        stream.close()  # harmless in the child
        chunks = list(client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True))
        assert chunks[-1].usage is not None

    assert _wait_child(_in_child(child)) == 0
    rest = list(stream)  # the parent still owns it
    assert first.model == "openai/gpt-4o" and rest[-1].usage is not None


@fork_only
def test_forked_child_reports_its_own_records(emulator, collector, tmp_path, monkeypatch):
    # The default spool location: the child takes the next free slot (the parent holds p0).
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config = collector.config(emulator)
    del config["reporting"]["spool_dir"]
    run = uuid.uuid4().hex
    client = gaterouter.Client(config)
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "p"}], metadata={"run": run, "call": "parent"})

    def child() -> None:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "c"}], metadata={"run": run, "call": "child"})
        assert client.flush(timeout=20).all_delivered

    assert _wait_child(_in_child(child)) == 0
    assert client.flush(timeout=20).all_delivered
    client.close()
    calls = sorted(r["tag"]["call"] for r in collector.records(run))
    assert calls == ["child", "parent"]
    assert sorted(p.name for p in (tmp_path / "data" / "gaterouter" / "spool" / "k_py").iterdir()) == ["p0", "p1"]


@fork_only
def test_parent_objects_dropped_in_the_child_leave_no_trace(emulator, collector):
    # A stream opened before the fork and dropped in the child must not record a
    # "cancelled" call from the child into the parent's spool: the parent finishes it.
    run = uuid.uuid4().hex
    client = gaterouter.Client(collector.config(emulator))
    held = [client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "a long fox story"}], stream=True, metadata={"run": run, "call": "stream"})]
    first = next(held[0])

    def child() -> None:
        import gc

        held.clear()
        gc.collect()

    assert _wait_child(_in_child(child)) == 0
    stream = held[0]
    rest = list(stream)
    assert first.choices and rest[-1].usage is not None
    assert client.flush(timeout=20).all_delivered
    client.close()
    records = collector.records(run)
    assert [(r["tag"]["call"], r["status"]) for r in records] == [("stream", "ok")]
    assert records[0]["completion_tokens"] == rest[-1].usage.completion_tokens


@fork_only
def test_forked_child_cannot_share_an_explicit_spool(emulator, collector):
    # An explicit spool directory belongs to one process: the child's calls fail with a
    # ConfigError that says so instead of writing into the parent's spool.
    client = gaterouter.Client(collector.config(emulator))

    def child() -> None:
        with pytest.raises(gaterouter.ConfigError, match="spool"):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "c"}])

    assert _wait_child(_in_child(child)) == 0
    client.close()


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import json, signal, sys, time
    # An interactive program's Ctrl-C: Python installs this handler only when SIGINT was
    # not ignored at start, and a test run started in the background (`cmd &` in a
    # non-interactive shell) inherits an ignored SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import gaterouter
    client = gaterouter.Client(json.loads(sys.argv[1]))
    stream = sys.argv[2] == "stream"
    print("calling", flush=True)
    t = time.monotonic()
    try:
        r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "slow"}], stream=stream)
        if stream:
            list(r)
        print("finished without interruption", flush=True)
        sys.exit(3)
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - t:.3f}s", flush=True)
    # The client still works after the interruption.
    r = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "after"}])
    assert "after" in r.choices[0].message.content
    print("ok", flush=True)
    """
)


@pytest.mark.parametrize("mode", ["chat", "stream"])
def test_ctrl_c_interrupts_a_blocking_call(mode):
    emu = Emulator()  # its own emulator: the slow fault must not leak into other tests
    try:
        emu.fault(fault="slow", provider="openai", delay_ms=60_000, times=1)
        proc = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_SCRIPT, json.dumps(emu.config()), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "calling"
        time.sleep(0.5)  # the request is now waiting on the emulator's 60 s delay
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("Ctrl-C did not interrupt the blocking call")
        elapsed = time.monotonic() - sent
        assert proc.returncode == 0, f"{out}\n{err}"
        first = out.splitlines()[0]
        assert first.startswith("interrupted after"), out
        # The call started ~0.5 s before SIGINT; it must end long before the 60 s delay.
        assert float(first.split()[-1].rstrip("s")) < 2.5, out
        assert out.splitlines()[-1] == "ok", out
        assert elapsed < 5, f"the process took {elapsed:.2f}s to finish after SIGINT"
    finally:
        emu.stop()


def test_import_does_not_load_asyncio():
    # asyncio is most of a cold `import gaterouter` (the goal is under 50 ms); only the
    # async paths import it.
    code = "import sys, gaterouter; c = gaterouter.Client({}); print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "False"
