"""Unit tests of the abuse limits (TokenBucket, LoginThrottle, BcryptGate) and of the
Session's use of them, driven by a fake clock: no sockets and no sleeping."""

import json
import threading

import pytest

from securechat.exceptions import ProtocolError
from securechat.server.hub import Hub
from securechat.server.limits import BcryptGate, LoginThrottle, TokenBucket
from securechat.server.session import MAX_REFUSALS, Session
from tests.conftest import wait_until
from tests.outbox import Outbox

PASSWORDS = {"ann": "ann-pw", "bob": "bob-pw"}


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- TokenBucket --------------------------------------------------------------------------


def test_bucket_allows_the_burst_then_refuses_with_the_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=20, clock=clock)  # (binary fractions: exact sums)
    assert [bucket.take() for _ in range(20)] == [0.0] * 20
    assert bucket.take() == 0.25  # one token takes 1/rate seconds
    clock.advance(0.125)
    assert bucket.take() == 0.125  # the wait shrinks as the token refills
    clock.advance(0.125)
    assert bucket.take() == 0.0
    assert bucket.take() == 0.25


def test_bucket_refills_at_the_rate_and_never_above_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    for _ in range(20):
        bucket.take()
    clock.advance(0.5)  # five tokens
    assert [bucket.take() for _ in range(6)][:5] == [0.0] * 5
    clock.advance(3600)  # an hour idle still buys only a burst
    allowed = sum(1 for _ in range(30) if bucket.take() == 0.0)
    assert allowed == 20


def test_bucket_at_exactly_the_rate_is_never_refused() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    for _ in range(1000):
        assert bucket.take() == 0.0
        clock.advance(0.1)


def test_refused_takes_do_not_consume_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(50):  # hammering while empty does not push the next token further away
        assert bucket.take() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take() == 0.0


# --- LoginThrottle ------------------------------------------------------------------------


def fail(throttle: LoginThrottle, user: str, address: str, times: int = 1) -> None:
    for _ in range(times):
        throttle.failed(user, address)


def test_throttle_starts_after_five_failures_then_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(4):
        fail(throttle, "ann", "10.0.0.1")
        assert throttle.retry_after("ann", "10.0.0.1") == 0.0
    delays = []
    for _ in range(12):
        fail(throttle, "ann", "10.0.0.1")
        delays.append(throttle.retry_after("ann", "10.0.0.1"))
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_throttle_wait_counts_from_the_last_failure() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "ann", "10.0.0.1", 6)  # 2 s after the sixth failure
    clock.advance(0.5)
    assert throttle.retry_after("ann", "10.0.0.1") == pytest.approx(1.5)
    clock.advance(1.5)
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0


def test_throttle_forgets_failures_older_than_the_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "ann", "10.0.0.1", 4)
    clock.advance(200)
    fail(throttle, "ann", "10.0.0.1")  # five in the window: throttled
    assert throttle.retry_after("ann", "10.0.0.1") == 1.0
    clock.advance(101)  # the first four are now older than 300 s
    fail(throttle, "ann", "10.0.0.1")
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0  # two in the window
    clock.advance(300)
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0
    assert throttle._failures == {}  # expired keys are dropped, not kept empty


def test_guesser_on_one_address_does_not_block_the_user_elsewhere() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "ann", "10.0.0.66", 10)
    assert throttle.retry_after("ann", "10.0.0.66") == 32  # the guesser waits
    assert throttle.retry_after("bob", "10.0.0.66") == 32  # so does its whole address
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0  # the real ann elsewhere does not
    assert throttle.retry_after("bob", "10.0.0.1") == 0.0


def test_distributed_guessing_slows_the_user_only_briefly() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for n in range(19):  # one failure from each of 19 addresses: no address is throttled
        fail(throttle, "ann", f"10.1.0.{n}")
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0
    fail(throttle, "ann", "10.1.0.19")  # the 20th: the per-user count starts
    assert throttle.retry_after("ann", "10.0.0.1") == 1.0
    assert throttle.retry_after("bob", "10.0.0.1") == 0.0  # another user is not affected
    for n in range(20, 60):
        fail(throttle, "ann", f"10.1.0.{n}")
    assert throttle.retry_after("ann", "10.0.0.1") == 30.0  # capped at user_max_delay
    clock.advance(30)
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0


def test_refused_tries_do_not_lengthen_any_wait() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "ann", "10.0.0.66", 5)  # the guesser's address is throttled
    for n in range(15):  # and with these, ann's per-user count reaches 20
        fail(throttle, "ann", f"10.1.0.{n}")
    assert throttle.retry_after("ann", "10.0.0.1") == 1.0
    assert throttle.retry_after("ann", "10.0.0.66") == 1.0
    for _ in range(30):  # the guesser asks on while refused: only retry_after is called
        clock.advance(0.01)
        throttle.retry_after("ann", "10.0.0.66")
    assert throttle.retry_after("ann", "10.0.0.66") == pytest.approx(0.7)  # the same promise
    assert throttle.retry_after("ann", "10.0.0.1") == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("failures", "expected_waits"),
    [
        # user+address (and the address): 5 failures, then each checked failure doubles
        ([("ann", "10.0.0.1")] * 5, {("ann", "10.0.0.1"): 1.0, ("bob", "10.0.0.1"): 1.0}),
        # the address alone: five users from one address
        ([(u, "10.0.0.2") for u in ("a", "b", "c", "d", "e")], {("ann", "10.0.0.2"): 1.0}),
        # the user alone: 20 addresses, four failures each below their own thresholds
        ([("ann", f"10.5.{n // 4}.{n % 4}") for n in range(20)], {("ann", "10.9.9.9"): 1.0}),
    ],
)
def test_a_client_obeying_retry_after_is_checked_then_waits_longer(
    failures: list[tuple[str, str]], expected_waits: dict[tuple[str, str], float]
) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for user, address in failures:
        throttle.failed(user, address)
    for (user, address), wait in expected_waits.items():
        assert throttle.retry_after(user, address) == wait
    user, address = next(iter(expected_waits))
    clock.advance(throttle.retry_after(user, address))  # obeys exactly
    assert throttle.retry_after(user, address) == 0.0  # so it is checked ...
    throttle.failed(user, address)  # ... and wrong again: the next wait doubles
    assert throttle.retry_after(user, address) == 2.0
    clock.advance(2.0)
    assert throttle.retry_after(user, address) == 0.0
    throttle.succeeded(user, address)  # right this time


def test_the_longest_of_several_waits_is_given() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "ann", "10.0.0.1", 7)  # pair and address: 4 s
    fail(throttle, "bob", "10.0.0.1", 1)  # the address: 8 failures, 8 s
    assert throttle.retry_after("ann", "10.0.0.1") == 8.0
    assert throttle.retry_after("bob", "10.0.0.1") == 8.0
    assert throttle.retry_after("ann", "10.0.0.2") == 0.0  # from elsewhere: free


def test_success_clears_the_users_count() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for n in range(19):
        fail(throttle, "ann", f"10.1.0.{n}")
    throttle.succeeded("ann", "10.0.0.1")
    for n in range(19, 38):  # 38 failures in the window, but only 19 since the success
        fail(throttle, "ann", f"10.1.0.{n}")
    assert throttle.retry_after("ann", "10.0.0.1") == 0.0
    fail(throttle, "ann", "10.1.0.99")
    assert throttle.retry_after("ann", "10.0.0.1") == 1.0


def test_success_does_not_clear_a_guessing_address() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    fail(throttle, "bob", "10.0.0.66", 5)
    throttle.succeeded("ann", "10.0.0.66")  # a success for another user there
    assert throttle.retry_after("bob", "10.0.0.66") == 1.0
    assert throttle.retry_after("ann", "10.0.0.66") == 1.0


def test_throttle_table_is_bounded_and_keeps_the_newest_guesser() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_keys=50, clock=clock)
    for n in range(200):  # 600 keys' worth of one-off failures
        clock.advance(0.001)
        fail(throttle, f"u{n}", f"10.2.{n // 250}.{n % 250}")
        assert len(throttle._failures) <= throttle.max_keys + 2
    for _ in range(5):
        clock.advance(0.001)
        fail(throttle, "ann", "10.0.0.66")
        assert len(throttle._failures) <= throttle.max_keys + 2
    assert throttle.retry_after("ann", "10.0.0.66") == pytest.approx(1.0)  # not pruned


def test_throttle_pruning_drops_expired_entries_first() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_keys=50, clock=clock)
    for n in range(17):  # 51 keys: the table is full
        fail(throttle, f"u{n}", f"10.2.0.{n}")
    assert len(throttle._failures) == 51
    clock.advance(301)
    fail(throttle, "bob", "10.0.0.1")
    assert sorted(throttle._failures) == [
        ("address", "10.0.0.1"), ("pair", "bob", "10.0.0.1"), ("user", "bob"),
    ]  # fmt: skip


def test_throttle_pruning_work_is_amortised_when_the_table_stays_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_keys=1000, clock=clock)
    for n in range(400):  # the table fills with keys no failure has expired yet
        clock.advance(0.001)
        fail(throttle, f"u{n}", f"10.3.{n // 250}.{n % 250}")
    examined = 0
    recent = throttle._recent

    def counting(key: tuple[str, ...], now: float) -> object:
        nonlocal examined
        examined += 1
        return recent(key, now)

    monkeypatch.setattr(throttle, "_recent", counting)
    for n in range(100):  # a distributed guesser keeps the table full
        clock.advance(0.001)
        throttle.failed("ann", f"10.4.0.{n}")
    assert examined <= 100 * 20  # a few keys per failure on average, not the whole table


# --- BcryptGate ---------------------------------------------------------------------------


class HeldChecks:
    """A password check that blocks until released, and counts how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started = 0

    def __call__(self, user: str) -> str:
        with self._lock:
            self.running += 1
            self.started += 1
            self.peak = max(self.peak, self.running)
        try:
            assert self.release.wait(10), "the test never released the checks"
            return f"checked {user}"
        finally:
            with self._lock:
                self.running -= 1


def test_gate_caps_concurrent_checks_and_turns_away_past_the_line() -> None:
    gate = BcryptGate(concurrent=2, waiting=3)
    checks = HeldChecks()
    results: dict[str, str] = {}

    def login(user: str) -> None:
        results[user] = gate.run(checks, user)

    threads = [threading.Thread(target=login, args=(f"u{n}",)) for n in range(5)]
    for thread in threads:
        thread.start()
    wait_until(lambda: checks.started == 2 and gate._waiting == 3)
    assert checks.running == 2  # two run, three wait in line
    with pytest.raises(ProtocolError) as busy:  # the line is full: refused at once
        gate.run(checks, "late")
    assert busy.value.code == "server_busy"
    assert busy.value.retry_after and busy.value.retry_after > 0
    assert not busy.value.fatal
    checks.release.set()
    for thread in threads:
        thread.join(10)
    assert results == {f"u{n}": f"checked u{n}" for n in range(5)}
    assert checks.peak == 2
    assert gate._waiting == 0
    assert gate.run(checks, "after") == "checked after"  # every slot came back


def test_gate_releases_the_slot_when_the_check_raises() -> None:
    gate = BcryptGate(concurrent=1, waiting=1)

    def broken(user: str) -> bool:
        raise ValueError(user)

    for _ in range(3):
        with pytest.raises(ValueError):
            gate.run(broken, "ann")
    assert gate.run(lambda user: user == "ann", "ann") is True


def test_gate_without_a_line_runs_checks_while_a_slot_is_free() -> None:
    gate = BcryptGate(concurrent=1, waiting=0)
    assert gate.run(lambda user: user == "ann", "ann") is True  # a free slot: no line needed
    checks = HeldChecks()
    holder = threading.Thread(target=gate.run, args=(checks, "ann"))
    holder.start()
    wait_until(lambda: checks.started == 1)
    with pytest.raises(ProtocolError) as busy:  # the slot is taken and there is no line
        gate.run(checks, "bob")
    assert busy.value.code == "server_busy"
    checks.release.set()
    holder.join(10)
    assert gate.run(lambda user: user == "bob", "bob") is True


# --- Session: frame rate and login throttle -----------------------------------------------


@pytest.fixture
def hub() -> Hub:
    return Hub(user_exists=lambda user: user in PASSWORDS)


def metered(hub: Hub, clock: FakeClock, **kwargs: object) -> tuple[Session, Outbox]:
    outbox = Outbox()
    session = Session(
        hub, outbox, lambda user, password: PASSWORDS.get(user) == password,
        bucket=TokenBucket(rate=10, burst=20, clock=clock), clock=clock, **kwargs,
    )  # fmt: skip
    return session, outbox


def send(session: Session, **frame: object) -> None:
    session.receive_line(json.dumps(frame).encode())


def test_session_refuses_frames_over_the_burst_with_retry_after(hub: Hub) -> None:
    clock = FakeClock()
    session, outbox = metered(hub, clock)
    send(session, type="login", user="ann", password="ann-pw")
    send(session, type="join", room="lobby")
    assert [f["type"] for f in outbox.take()] == ["login_ok", "joined"]
    for n in range(25):
        send(session, type="send", room="lobby", text=f"m{n}", ref=f"s{n}")
    frames = outbox.take()
    messages = [f for f in frames if f["type"] == "message"]
    refused = [f for f in frames if f["type"] == "error"]
    assert [m["id"] for m in messages] == list(range(1, 19))  # 20 - login - join
    assert [m["text"] for m in messages] == [f"m{n}" for n in range(18)]
    assert len(refused) == 7
    for error in refused:
        assert error["code"] == "rate_limited"
        assert error["retry_after"] == pytest.approx(0.1)
    assert not session.closing
    clock.advance(0.1)  # one token back: the next frame goes through
    send(session, type="send", room="lobby", text="after the wait")
    assert outbox.take()[0]["id"] == 19
    clock.advance(0.03)
    send(session, type="ping")
    assert outbox.take()[0]["retry_after"] == pytest.approx(0.07)


def test_session_limits_frames_before_login_too(hub: Hub) -> None:
    clock = FakeClock()
    session, outbox = metered(hub, clock)
    for _ in range(30):
        send(session, type="ping")
    assert [f["type"] for f in outbox.take()] == ["pong"] * 20 + ["error"] * 10


def test_session_drops_a_client_that_keeps_flooding(hub: Hub) -> None:
    assert MAX_REFUSALS == 100
    clock = FakeClock()
    session, outbox = metered(hub, clock)
    for _ in range(20 + MAX_REFUSALS):
        send(session, type="ping")
    frames = outbox.take()
    assert len(frames) == 120 and not session.closing
    send(session, type="ping")  # refusal 101
    (last,) = outbox.take()
    assert last["code"] == "rate_limited" and last["retry_after"] > 0
    assert session.closing
    clock.advance(10)
    send(session, type="ping")  # nothing more after the fatal error
    assert outbox.take() == []


def test_session_refusals_decay_by_one_a_second(hub: Hub) -> None:
    clock = FakeClock()
    session, outbox = metered(hub, clock)
    for _ in range(20 + 100):
        send(session, type="ping")
    clock.advance(50)  # 50 refusals forgiven; the bucket is full again
    for _ in range(20 + 50):
        send(session, type="ping")
    assert not session.closing
    send(session, type="ping")
    assert session.closing
    codes = [f.get("code") for f in outbox.take()]
    assert codes == [None] * 20 + ["rate_limited"] * 100 + [None] * 20 + ["rate_limited"] * 51


def test_session_a_steady_client_just_over_the_rate_is_not_dropped(hub: Hub) -> None:
    clock = FakeClock()
    session, outbox = metered(hub, clock)
    for _ in range(5000):  # 10.5 frames a second for ~8 minutes: ~1 refusal a second
        send(session, type="ping")
        clock.advance(1 / 10.5)
    assert not session.closing
    refused = sum(1 for f in outbox.take() if f["type"] == "error")
    assert 150 < refused < 300


def test_session_throttled_login_counts_as_a_failure_on_the_connection(hub: Hub) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    first, out1 = metered(hub, clock, throttle=throttle, address="10.0.0.66")
    for n in range(5):
        send(first, type="login", user="ann", password=f"guess{n}")
    assert [f["code"] for f in out1.take()] == ["auth_failed"] * 5
    assert first.closing
    second, out2 = metered(hub, clock, throttle=throttle, address="10.0.0.66")
    for _ in range(5):  # even the right password is refused unchecked while throttled
        send(second, type="login", user="ann", password="ann-pw", ref="r")
    frames = out2.take()
    assert [f["code"] for f in frames] == ["rate_limited"] * 5
    assert all(f["ref"] == "r" for f in frames)
    waits = [f["retry_after"] for f in frames]
    assert waits == sorted(waits) and waits[0] == pytest.approx(1.0)
    assert second.closing and not second.logged_in
    elsewhere, out3 = metered(hub, clock, throttle=throttle, address="10.0.0.1")
    send(elsewhere, type="login", user="ann", password="ann-pw")
    assert out3.take()[0]["type"] == "login_ok"


def test_session_refused_frame_error_carries_its_ref(hub: Hub) -> None:
    clock = FakeClock()
    session, outbox = metered(hub, clock)
    for n in range(21):
        send(session, type="ping", ref=f"p{n}")
    assert outbox.take()[-1] == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down: frame refused",
        "retry_after": 0.1,
        "ref": "p20",
    }


@pytest.mark.parametrize("ending", ["logout", "flood"])
def test_final_frame_stays_last_when_another_thread_delivers_meanwhile(
    hub: Hub, ending: str
) -> None:
    """The interleaving is forced: just after the final frame is queued, another
    connection's thread (a presence broadcast, say) that passed the session's unlocked
    ``closing`` check before it was set queues a frame."""
    clock = FakeClock()
    presence = (b'{"type":"presence","room":"lobby","user":"bob","event":"leave",'
                b'"ts":"2026-11-26T00:00:00.000Z"}\n')  # fmt: skip

    class Racing(Outbox):
        def push_last(self, data: bytes) -> None:
            super().push_last(data)
            self.push(presence)

    outbox = Racing()
    session = Session(
        hub, outbox, lambda user, password: PASSWORDS.get(user) == password,
        bucket=TokenBucket(rate=10, burst=20, clock=clock), clock=clock,
    )  # fmt: skip
    send(session, type="login", user="ann", password="ann-pw")
    if ending == "logout":
        send(session, type="logout")
    else:
        for _ in range(20 + MAX_REFUSALS):
            send(session, type="ping")
    assert session.closing
    frames = outbox.take()
    assert frames[-1]["type"] == "bye" or frames[-1].get("code") == "rate_limited", frames[-1]
