"""The I/O thread's own wake-ups, and what an idle connection keeps (issue 18)."""

import os
import threading

import pytest

from securechat.server.connection import NO_LINES
from securechat.server.mailbox import Feed
from securechat.server.transport import IOThread
from tests.conftest import UNMETERED


def _eventfd_written(loop: IOThread) -> bool:
    try:
        os.eventfd_read(loop._wake_fd)
    except BlockingIOError:
        return False
    return True


def test_a_wake_up_from_the_loops_own_thread_writes_no_eventfd():
    """A commit's callbacks run in the I/O thread at the end of its turn: the feeds they
    grow make it look again without a system call (it sees ``_woken`` before it polls);
    another thread's wake-up still goes through the eventfd, once until the loop looks."""
    loop = IOThread("test")
    try:
        loop._ident = threading.get_ident()  # (as if this were the loop's thread)
        loop.appended(Feed())
        assert loop._woken and not loop._signalled
        assert not _eventfd_written(loop)

        loop._woken = False
        other = threading.Thread(target=loop.appended, args=(Feed(),))
        other.start()
        other.join()
        assert loop._woken and loop._signalled
        assert _eventfd_written(loop)
        loop.appended(Feed())  # woken already: no second write
        assert not _eventfd_written(loop)
    finally:
        loop._epoll.close()
        os.close(loop._wake_fd)


@pytest.mark.limits(io_threads=1, **UNMETERED)
def test_an_idle_connection_keeps_no_queue_of_lines_or_frames(server, connect):
    """After its requests are answered a connection holds the shared empty ``held``
    and empty lists (no 760-byte deques); it still serves the next requests, in order."""
    alice = connect("alice")
    assert alice.request(type="join", room="quiet")["type"] == "joined"
    for n in range(3):
        assert alice.request(type="ping", ref=f"p{n}")["ref"] == f"p{n}"
    (connection,) = [c for c in server.connections() if c.session.user == "alice"]
    assert connection.held is NO_LINES
    assert connection.session._held == []
    assert connection.queue == [] and connection.queued_bytes == 0
    alice.send(type="send", room="quiet", text="one", ref="a")
    alice.send(type="send", room="quiet", text="two", ref="b")
    assert [alice.expect("message")["ref"] for _ in range(2)] == ["a", "b"]
    assert connection.held is NO_LINES
