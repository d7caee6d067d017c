"""Room feeds and connection mailboxes: order, stand-ins, bounds, trimming, threads."""

import threading
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from securechat.server.mailbox import TRIM_EVERY, Feed, Mailbox


def frame(name: str) -> bytes:
    return f'{{"f":"{name}"}}\n'.encode()


def take_all(mailbox: Mailbox, budget: int = 1 << 30) -> list[bytes]:
    frames: list[bytes] = []
    while data := mailbox.next_chunk(budget):
        frames += data.splitlines(keepends=True)
    return frames


class Recorder:
    """A listener that counts how often each feed told it about a new frame."""

    def __init__(self) -> None:
        self.calls: list[Feed] = []

    def appended(self, feed: Feed) -> None:
        self.calls.append(feed)


def test_followers_get_each_appended_frame_once_in_order() -> None:
    feed, ann, bob = Feed(), Mailbox(), Mailbox()
    feed.append(frame("before"))
    ann.follow(feed)
    bob.follow(feed)
    for n in range(5):
        feed.append(frame(str(n)))
    expected = [frame(str(n)) for n in range(5)]
    assert take_all(ann) == expected
    assert take_all(bob) == expected
    assert ann.idle() and take_all(ann) == []


def test_a_push_comes_after_what_the_rooms_sent_before_it() -> None:
    feed, ann = Feed(), Mailbox()
    ann.follow(feed)
    feed.append(frame("m1"))
    ann.push(frame("reply"))
    feed.append(frame("m2"))
    assert take_all(ann) == [frame("m1"), frame("reply"), frame("m2")]


def test_a_reply_pushed_just_after_follow_comes_before_the_rooms_next_frame() -> None:
    feed, ann = Feed(), Mailbox()
    feed.append(frame("old"))
    ann.follow(feed)
    ann.push(frame("joined"))
    feed.append(frame("new"))
    assert take_all(ann) == [frame("joined"), frame("new")]


def test_following_twice_keeps_the_cursor() -> None:
    feed, ann = Feed(), Mailbox()
    ann.follow(feed)
    feed.append(frame("m1"))
    ann.follow(feed)
    assert take_all(ann) == [frame("m1")]


def test_stand_in_replaces_the_next_frame_for_the_sender_only() -> None:
    feed, sender, other = Feed(), Mailbox(), Mailbox()
    sender.follow(feed)
    other.follow(feed)
    feed.append(frame("m1"))
    sender.stand_in(feed, frame("m2-with-ref"))
    feed.append(frame("m2"))
    feed.append(frame("m3"))
    assert take_all(sender) == [frame("m1"), frame("m2-with-ref"), frame("m3")]
    assert take_all(other) == [frame("m1"), frame("m2"), frame("m3")]


def test_a_run_of_frames_is_one_append_and_the_sender_gets_its_own_run() -> None:
    feed, sender, other, recorder = Feed(), Mailbox(), Mailbox(), Recorder()
    sender.follow(feed)
    other.follow(feed)
    watcher = Mailbox(listener=recorder)
    watcher.follow(feed)
    feed.append(frame("m1"))
    sender.stand_in(feed, frame("m2-own"), frame("m3-own"))
    feed.append(frame("m2"), frame("m3"))
    feed.append(frame("m4"))
    assert recorder.calls == [feed] * 3  # told once per append, not once per frame
    assert take_all(sender) == [frame(n) for n in ("m1", "m2-own", "m3-own", "m4")]
    assert take_all(other) == [frame(n) for n in ("m1", "m2", "m3", "m4")]
    chunks = []  # a one-byte budget takes one frame a chunk: each frame's end is right
    while data := watcher.next_chunk(1):
        chunks.append(data)
    assert chunks == [frame(n) for n in ("m1", "m2", "m3", "m4")]
    assert feed.behind(0) == (4, sum(len(frame(n)) for n in ("m1", "m2", "m3", "m4")))


def test_stand_in_with_the_plain_frame_not_appended_yet_gives_nothing_early() -> None:
    feed, sender = Feed(), Mailbox()
    sender.follow(feed)
    sender.stand_in(feed, frame("own"))
    assert take_all(sender) == [frame("own")]  # the writer runs before the append
    feed.append(frame("plain"))
    assert take_all(sender) == []
    feed.append(frame("next"))
    assert take_all(sender) == [frame("next")]


def test_stand_in_does_nothing_for_a_feed_not_followed() -> None:
    feed, sender = Feed(), Mailbox()
    sender.stand_in(feed, frame("own"))
    feed.append(frame("plain"))
    assert take_all(sender) == []


def test_unfollow_still_delivers_what_came_before_and_nothing_after() -> None:
    feed, ann, bob = Feed(), Mailbox(), Mailbox()
    ann.follow(feed)
    bob.follow(feed)
    feed.append(frame("m1"))
    ann.unfollow(feed)
    ann.push(frame("left"))
    feed.append(frame("m2"))
    assert take_all(ann) == [frame("m1"), frame("left")]
    assert take_all(bob) == [frame("m1"), frame("m2")]
    ann.unfollow(feed)  # twice is fine


def test_the_writer_budget_splits_a_backlog_without_losing_or_repeating() -> None:
    feed, ann = Feed(), Mailbox()
    ann.follow(feed)
    frames = [frame(f"{n:04d}") for n in range(300)]
    ann.push(frame("first"))
    for data in frames:
        feed.append(data)
    chunks = []
    while data := ann.next_chunk(100):
        chunks.append(data)
    assert b"".join(chunks).splitlines(keepends=True) == [frame("first"), *frames]
    assert max(len(chunk) for chunk in chunks) < 100 + len(frames[0])
    assert len(chunks) > 30


def test_a_frame_larger_than_the_budget_still_goes() -> None:
    feed, ann = Feed(), Mailbox()
    ann.follow(feed)
    feed.append(b"x" * 500 + b"\n")
    assert ann.next_chunk(10) == b"x" * 500 + b"\n"


def test_a_reader_never_sees_a_frame_whose_size_is_not_recorded_yet() -> None:
    """Another thread's append adds the frame, then its size: in between, wait."""
    feed, ann = Feed(), Mailbox()
    ann.follow(feed)
    _, frames, ends, _ = feed._log
    frames.append(frame("half-appended"))
    assert ann.next_chunk(1 << 20) == b""
    ends.append(len(frame("half-appended")))
    assert ann.next_chunk(1 << 20) == frame("half-appended")


def test_a_follower_too_many_frames_behind_overflows_and_the_others_go_on() -> None:
    feed = Feed()
    slow, fast = Mailbox(max_frames=100), Mailbox(max_frames=100)
    slow.follow(feed)
    fast.follow(feed)
    got = []
    for n in range(3 * TRIM_EVERY):
        feed.append(frame(str(n)))
        got += take_all(fast)
    assert slow.overflow and not fast.overflow
    assert got == [frame(str(n)) for n in range(3 * TRIM_EVERY)]
    assert take_all(slow) == []
    assert len(feed._log[1]) <= TRIM_EVERY  # the slow one no longer holds frames back


def test_a_follower_too_many_bytes_behind_overflows() -> None:
    feed, slow = Feed(), Mailbox(max_bytes=1000)
    slow.follow(feed)
    for _ in range(TRIM_EVERY):
        feed.append(b"y" * 99 + b"\n")
    assert slow.overflow


def test_a_follower_within_the_bounds_holds_the_frames_it_has_not_taken() -> None:
    feed, lagging = Feed(), Mailbox(max_frames=10 * TRIM_EVERY)
    lagging.follow(feed)
    frames = [frame(str(n)) for n in range(4 * TRIM_EVERY)]
    for data in frames:
        feed.append(data)
    assert not lagging.overflow
    assert take_all(lagging) == frames
    feed.append(frame("after"))
    feed.trim()
    assert len(feed._log[1]) <= 1


def test_the_queue_has_the_same_bounds() -> None:
    ann = Mailbox(max_frames=3)
    for n in range(4):
        ann.push(frame(str(n)))
    assert ann.overflow
    assert take_all(ann) == [frame("0"), frame("1"), frame("2")]
    ann.push(frame("more"))
    assert take_all(ann) == []


def test_moving_a_feed_backlog_past_the_bounds_into_the_queue_overflows() -> None:
    feed, ann, bob = Feed(), Mailbox(max_frames=5), Mailbox(max_bytes=50)
    ann.follow(feed)
    bob.follow(feed)
    for n in range(10):  # fewer than TRIM_EVERY: no trim has looked yet
        feed.append(frame(str(n)))
    ann.push(frame("reply"))  # takes the feed's 10 frames into a queue of 5
    bob.push(frame("reply"))  # 10 frames of 10 bytes into 50 bytes
    assert ann.overflow and bob.overflow
    assert take_all(ann) == [] and take_all(bob) == []


def test_the_last_frame_stays_last_and_a_sealed_follower_is_no_slow_consumer() -> None:
    feed, ending, other = Feed(), Mailbox(max_frames=10), Mailbox(max_frames=10)
    ending.follow(feed)
    other.follow(feed)
    feed.append(frame("m1"))
    ending.push_last(frame("bye"))
    ending.push(frame("late"))
    for n in range(2 * TRIM_EVERY):
        feed.append(frame(str(n)))
        take_all(other)
    assert not ending.overflow
    assert take_all(ending) == [frame("m1"), frame("bye")]
    assert ending.idle()
    assert len(feed._log[1]) <= TRIM_EVERY


def test_a_dropped_mailbox_keeps_nothing() -> None:
    feed, ann = Feed(), Mailbox()
    ann.follow(feed)
    ann.push(frame("queued"))
    ann.drop()
    ann.push(frame("later"))
    feed.append(frame("m"))
    assert take_all(ann) == [] and ann.idle()


def test_a_feed_nobody_follows_keeps_no_frames_and_new_followers_start_at_its_end() -> None:
    feed, ann, bob = Feed(), Mailbox(), Mailbox()
    ann.follow(feed)
    for n in range(10):
        feed.append(frame(str(n)))
    ann.unfollow(feed)
    assert feed._log[1] == [] and feed.end == 10
    bob.follow(feed)
    feed.append(frame("10"))
    assert take_all(bob) == [frame("10")]


def test_listeners_hear_of_each_append_and_followers_are_grouped_by_listener() -> None:
    feed, loop_a, loop_b = Feed(), Recorder(), Recorder()
    ann, bob, cid = Mailbox(listener=loop_a), Mailbox(listener=loop_a), Mailbox(listener=loop_b)
    for mailbox in (ann, bob, cid):
        mailbox.follow(feed)
    assert feed.followers == {loop_a: {ann, bob}, loop_b: {cid}}
    feed.append(frame("m"))
    assert loop_a.calls == [feed] and loop_b.calls == [feed]
    cid.unfollow(feed)
    feed.append(frame("n"))
    assert len(loop_a.calls) == 2 and len(loop_b.calls) == 1
    assert feed.followers == {loop_a: {ann, bob}}


def test_readers_in_other_threads_see_every_frame_once_in_order_while_it_trims() -> None:
    feed = Feed()
    readers = [Mailbox(max_frames=1 << 30, max_bytes=1 << 40) for _ in range(3)]
    for mailbox in readers:
        mailbox.follow(feed)
    total = 30_000
    expected = [frame(str(n)) for n in range(total)]
    got: list[list[bytes]] = [[] for _ in readers]
    errors: list[BaseException] = []

    def read(index: int) -> None:
        try:
            buffer = b""
            while len(got[index]) < total:
                buffer += readers[index].next_chunk(4096)
                lines = buffer.split(b"\n")
                buffer = lines.pop()
                got[index] += [line + b"\n" for line in lines]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(readers))]
    for thread in threads:
        thread.start()
    for data in expected:
        feed.append(data)
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []
    assert all(frames == expected for frames in got)
    feed.trim()
    assert feed._log[1] == []


OPS = st.one_of(
    st.tuples(st.just("append")),
    st.tuples(st.just("push"), st.integers(0, 1)),
    st.tuples(st.just("stand_in"), st.integers(0, 1)),
    st.tuples(st.just("follow"), st.integers(0, 1)),
    st.tuples(st.just("unfollow"), st.integers(0, 1)),
    st.tuples(st.just("take"), st.integers(0, 1), st.integers(1, 40)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_any_sequence_delivers_what_a_simple_model_says(ops: list[tuple]) -> None:
    """One feed, two mailboxes: each gets, in order, its pushes and the frames appended
    while it followed; a stand-in goes out at once and the next append is skipped."""
    feed = Feed()
    boxes = [Mailbox(), Mailbox()]
    expected: list[list[bytes]] = [[], []]
    got = [b"", b""]
    following = [False, False]
    standing_in = [False, False]
    for n, (name, *args) in enumerate(ops):
        index = args[0] if args else 0
        box = boxes[index]
        if name == "append":
            feed.append(frame(f"a{n}"))
            for i in (0, 1):
                if following[i] and not standing_in[i]:
                    expected[i].append(frame(f"a{n}"))
                standing_in[i] = False
        elif name == "push":
            box.push(frame(f"p{n}"))
            expected[index].append(frame(f"p{n}"))
        elif name == "stand_in":
            box.stand_in(feed, frame(f"own{n}"))
            if following[index]:
                expected[index].append(frame(f"own{n}"))
                standing_in[index] = True
        elif name == "follow":
            box.follow(feed)
            following[index] = True
        elif name == "unfollow":
            box.unfollow(feed)
            following[index] = standing_in[index] = False
        else:
            got[index] += box.next_chunk(args[1])
    for i in (0, 1):
        got[i] += b"".join(iter(partial(boxes[i].next_chunk, 1 << 20), b""))
        assert got[i].splitlines(keepends=True) == expected[i]
