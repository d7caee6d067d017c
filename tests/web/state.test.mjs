// state.js: server frames and what the person does -> the new state and the frames to send.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  pendingFor,
  snapshot,
  totalUnread,
  unread,
} from "../../securechat/server/web/static/state.js";
import { frame, ids, initialState, msg, online, range, reconnect, refOf, run } from "./helpers.mjs";

const WELCOME = frame({ type: "welcome", version: "0.1.0", protocol: 1 });
const GENERAL = { kind: "room", name: "general" };

describe("signing in", () => {
  test("a typed password logs in once welcomed, and a token replaces it", () => {
    let r = run(initialState(), { type: "signin", user: " Alice ", password: "pw", keep: true });
    assert.equal(r.state.phase, "auth");
    assert.equal(r.state.user, "alice");
    assert.deepEqual(r.sent, []); // not connected yet
    r = run(r.state, { type: "connecting" }, WELCOME);
    assert.deepEqual(r.sent, [
      { type: "login", user: "alice", password: "pw", ref: r.sent[0].ref },
    ]);
    r = run(r.state, frame({ type: "login_ok", user: "alice", token: "t0k", ref: r.sent[0].ref }));
    assert.equal(r.state.phase, "ready");
    assert.equal(r.state.token, "t0k");
    assert.equal(r.state.password, null, "the password is not kept once there is a token");
    assert.deepEqual(snapshot(r.state), {
      user: "alice",
      token: "t0k",
      keep: true,
      rooms: [],
      peers: [],
      dmAfter: 0,
    });
    assert.ok(!JSON.stringify(snapshot(r.state)).includes("pw"));
  });

  test("without tokens on the server the password stays in memory for reconnects", () => {
    let r = run(
      initialState(),
      { type: "signin", user: "alice", password: "pw", keep: false },
      WELCOME,
    );
    r = run(r.state, frame({ type: "login_ok", user: "alice", ref: refOf(r.sent, "login") }));
    assert.equal(r.state.token, null);
    r = run(r.state, { type: "closed" }, WELCOME);
    assert.equal(r.state.phase, "auth");
    assert.equal(r.sent.find((f) => f.type === "login").password, "pw");
    assert.equal(snapshot(r.state).token, null);
  });

  test("a saved token logs in by itself; an expired one brings back the form", () => {
    let r = run(initialState({ user: "alice", token: "old", rooms: ["general"] }), WELCOME);
    const login = r.sent[0];
    assert.deepEqual(login, { type: "login", user: "alice", token: "old", ref: login.ref });
    r = run(
      r.state,
      frame({
        type: "error",
        code: "auth_failed",
        message: "wrong user or password",
        ref: login.ref,
      }),
    );
    assert.equal(r.state.phase, "signin");
    assert.equal(r.state.token, null);
    assert.match(r.state.authError, /session has ended/);
    assert.deepEqual(snapshot(r.state).rooms, ["general"], "rooms are kept for the next sign-in");
  });

  test("a wrong password says so; bad names never reach the server", () => {
    let r = run(initialState(), { type: "signin", user: "Bad Name!", password: "x" });
    assert.equal(r.state.phase, "signin");
    assert.match(r.state.authError, /1-32 characters/);
    r = run(r.state, { type: "signin", user: "alice", password: "x" }, WELCOME);
    r = run(
      r.state,
      frame({ type: "error", code: "auth_failed", message: "no", ref: refOf(r.sent, "login") }),
    );
    assert.equal(r.state.authError, "Wrong user name or password.");
    assert.equal(r.state.password, null);
  });

  test("dm_after is sent when DMs are held, and dropped if the server refuses it", () => {
    let r = run(initialState({ user: "alice", token: "t", dmAfter: 41 }), WELCOME);
    assert.equal(r.sent[0].dm_after, 41);
    r = run(
      r.state,
      frame({ type: "error", code: "bad_frame", message: "unknown field", ref: r.sent[0].ref }),
    );
    assert.equal(r.state.features.dmAfter, false);
    assert.equal(r.state.phase, "auth");
    const retry = r.sent.find((f) => f.type === "login");
    assert.equal(retry.token, "t");
    assert.ok(!("dm_after" in retry));
  });

  test("a throttled reconnect login waits retry_after; a typed one shows the wait", () => {
    let r = run(initialState({ user: "alice", token: "t" }), WELCOME);
    r = run(
      r.state,
      frame({
        type: "error",
        code: "rate_limited",
        message: "slow down",
        retry_after: 4,
        ref: r.sent[0].ref,
      }),
    );
    assert.equal(r.close, true);
    assert.equal(r.state.retryAfter, 4);
    assert.equal(r.state.phase, "auth", "still signed in: it tries again later");
    r = run(initialState(), { type: "signin", user: "bob", password: "x" }, WELCOME);
    r = run(
      r.state,
      frame({
        type: "error",
        code: "rate_limited",
        message: "slow down",
        retry_after: 2.5,
        ref: r.sent.at(-1).ref,
      }),
    );
    assert.equal(r.state.phase, "signin");
    assert.match(r.state.authError, /slow down \(try again in 3 s\)/);
  });

  test("a route asked before login is joined and opened after it", () => {
    let r = run(
      initialState({ user: "alice", token: "t" }),
      { type: "open", target: { kind: "room", name: "random" } },
      WELCOME,
    );
    r = run(r.state, frame({ type: "login_ok", user: "alice", ref: r.sent[0].ref }));
    assert.deepEqual(r.state.current, { kind: "room", name: "random" });
    assert.deepEqual(
      r.sent.map((f) => f.type),
      ["join", "rooms"],
    );
    assert.equal(r.sent[0].room, "random");
  });

  test("logout sends logout, forgets everything and closes", () => {
    const r = run(online(), { type: "logout" });
    assert.deepEqual(r.sent, [{ type: "logout" }]);
    assert.equal(r.close, true);
    assert.equal(r.state.phase, "signin");
    assert.equal(snapshot(r.state), null);
    assert.deepEqual(r.state.rooms, {});
  });
});

describe("rooms and messages", () => {
  test("joining shows members and the last messages, in id order, each once", () => {
    let state = online({ lastId: 3 });
    const room = state.rooms.general;
    assert.deepEqual(ids(room.messages), [1, 2, 3]);
    assert.deepEqual(room.members, ["alice", "bob"]);
    state = run(state, frame({ type: "message", ...msg("general", 5) })).state;
    state = run(state, frame({ type: "message", ...msg("general", 4) })).state; // late
    state = run(state, frame({ type: "message", ...msg("general", 5, "bob", "dup") })).state; // twice
    assert.deepEqual(ids(state.rooms.general.messages), [1, 2, 3, 4, 5]);
    assert.equal(state.rooms.general.lastId, 5);
  });

  test("edits change text and mark it edited; deletions remove", () => {
    let state = online({ lastId: 3 });
    state = run(
      state,
      frame({
        type: "edited",
        room: "general",
        id: 2,
        user: "bob",
        text: "fixed",
        ts: "2026-11-26T03:00:00.000Z",
      }),
    ).state;
    const edited = state.rooms.general.messages.find((m) => m.id === 2);
    assert.equal(edited.text, "fixed");
    assert.equal(edited.edited_ts, "2026-11-26T03:00:00.000Z");
    state = run(
      state,
      frame({ type: "deleted", room: "general", id: 1, by: "admin", ts: "x" }),
    ).state;
    assert.deepEqual(ids(state.rooms.general.messages), [2, 3]);
    // an edit of a message never held is ignored, not invented
    state = run(
      state,
      frame({ type: "edited", room: "general", id: 99, user: "bob", text: "?", ts: "x" }),
    ).state;
    assert.deepEqual(ids(state.rooms.general.messages), [2, 3]);
  });

  test("presence and members keep the member list", () => {
    let state = online();
    state = run(
      state,
      frame({ type: "presence", room: "general", user: "carol", event: "join", ts: "x" }),
    ).state;
    assert.deepEqual(state.rooms.general.members, ["alice", "bob", "carol"]);
    state = run(
      state,
      frame({ type: "presence", room: "general", user: "bob", event: "leave", ts: "x" }),
    ).state;
    assert.deepEqual(state.rooms.general.members, ["alice", "carol"]);
    state = run(
      state,
      frame({ type: "members", room: "general", members: ["dave", "alice"] }),
    ).state;
    assert.deepEqual(state.rooms.general.members, ["alice", "dave"]);
  });

  test("scrolling back asks for the page before the oldest held, until there is none", () => {
    let r = run(online({ lastId: 120 }), { type: "older" });
    assert.deepEqual(r.sent, [
      { type: "history", room: "general", before: 71, limit: 50, ref: r.sent[0].ref },
    ]);
    assert.equal(run(r.state, { type: "older" }).sent.length, 0, "one page at a time");
    r = run(
      r.state,
      frame({ type: "history", room: "general", messages: range(21, 70), ref: r.sent[0].ref }),
    );
    assert.deepEqual(ids(r.state.rooms.general.messages), ids(range(21, 120)));
    assert.equal(r.state.rooms.general.atStart, false);
    r = run(r.state, { type: "older" });
    r = run(
      r.state,
      frame({ type: "history", room: "general", messages: range(1, 20), ref: r.sent[0].ref }),
    );
    assert.equal(r.state.rooms.general.atStart, true);
    assert.deepEqual(run(r.state, { type: "older" }).sent, []);
  });

  test("leaving while offline forgets the room and what waited to be sent there", () => {
    const r = run(
      online({ rooms: ["general", "random"] }),
      { type: "open", target: GENERAL },
      { type: "closed" },
      { type: "compose", text: "never mind" },
      { type: "leave", room: "general" },
    );
    assert.deepEqual(
      r.sent.map((f) => f.type),
      ["members"],
      "nothing after the connection is gone",
    );
    assert.deepEqual(Object.keys(r.state.rooms), ["random"]);
    assert.deepEqual(r.state.pending, []);
    assert.deepEqual(r.state.current, { kind: "room", name: "random" });
  });

  test("leaving removes the room and picks another", () => {
    let r = run(
      online({ rooms: ["general", "random"] }),
      { type: "open", target: GENERAL },
      { type: "leave", room: "general" },
    );
    assert.equal(r.sent.at(-1).type, "leave");
    r = run(r.state, frame({ type: "left", room: "general", ref: r.sent.at(-1).ref }));
    assert.equal(r.state.rooms.general, undefined);
    assert.deepEqual(r.state.current, { kind: "room", name: "random" });
  });

  test("a forbidden delete just shows; frames of unknown types are ignored", () => {
    let r = run(
      online(),
      { type: "delete-ask", room: "general", id: 3 },
      { type: "delete", room: "general", id: 3 },
    );
    assert.equal(r.state.confirming, null);
    r = run(
      r.state,
      frame({
        type: "error",
        code: "forbidden",
        message: "not yours to delete",
        ref: r.sent[0].ref,
      }),
    );
    assert.deepEqual(
      r.state.notices.map((n) => n.text),
      ["not yours to delete"],
    );
    const before = r.state;
    r = run(before, frame({ type: "shiny_new_thing", x: 1 }));
    assert.equal(r.state, before);
  });

  test("a server ping is answered", () => {
    assert.deepEqual(run(online(), frame({ type: "ping" })).sent, [{ type: "pong" }]);
  });
});

describe("reconnecting and catching up", () => {
  test("a gap is filled page by page with history after=, each message once, in order", () => {
    let state = online({ lastId: 10 });
    let r = reconnect(state);
    assert.deepEqual(
      r.sent.map((f) => f.type),
      ["login", "join", "rooms"],
    );
    r = run(
      r.state,
      frame({
        type: "joined",
        room: "general",
        members: ["alice"],
        last_id: 300,
        history: range(251, 300),
        ref: refOf(r.sent, "join"),
      }),
    );
    let ask = r.sent.find((f) => f.type === "history");
    assert.deepEqual(
      { ...ask, ref: undefined },
      { type: "history", room: "general", after: 10, limit: 200, ref: undefined },
    );
    assert.equal(r.state.rooms.general.catchingUp, true);
    // a live message arrives while catching up
    r = run(r.state, frame({ type: "message", ...msg("general", 301) }));
    r = run(
      r.state,
      frame({ type: "history", room: "general", messages: range(11, 210), ref: ask.ref }),
    );
    ask = r.sent.find((f) => f.type === "history");
    assert.equal(ask.after, 210);
    r = run(
      r.state,
      frame({ type: "history", room: "general", messages: range(211, 260), ref: ask.ref }),
    );
    assert.equal(r.sent.length, 0, "caught up: no more pages");
    const room = r.state.rooms.general;
    assert.equal(room.catchingUp, false);
    assert.deepEqual(ids(room.messages), ids(range(1, 301)));
    assert.equal(room.seen, 301);
  });

  test("no gap, no history request; messages deleted while away disappear", () => {
    let r = reconnect(online({ lastId: 10 }));
    const history = range(1, 12).filter((m) => m.id !== 7);
    r = run(
      r.state,
      frame({
        type: "joined",
        room: "general",
        members: ["alice"],
        last_id: 12,
        history,
        ref: refOf(r.sent, "join"),
      }),
    );
    assert.ok(!r.sent.some((f) => f.type === "history"));
    assert.deepEqual(ids(r.state.rooms.general.messages), [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]);
  });

  test("typed while offline: queued, then sent once the room has caught up", () => {
    let r = run(
      online({ lastId: 10 }),
      { type: "open", target: GENERAL },
      { type: "closed" },
      { type: "compose", text: "hello" },
    );
    assert.equal(r.sent.filter((f) => f.type === "send").length, 0);
    assert.equal(pendingFor(r.state, GENERAL)[0].status, "queued");
    r = reconnect(r.state);
    assert.equal(
      r.sent.filter((f) => f.type === "send").length,
      0,
      "not before the room is rejoined",
    );
    const joinRef = refOf(r.sent, "join");
    const syncRef = refOf(r.sent, "rooms");
    r = run(
      r.state,
      frame({
        type: "joined",
        room: "general",
        members: ["alice"],
        last_id: 10,
        history: range(1, 10),
        ref: joinRef,
      }),
      frame({ type: "rooms", rooms: [], ref: syncRef }),
    );
    const send = r.sent.find((f) => f.type === "send");
    assert.deepEqual(
      { ...send, ref: undefined },
      { type: "send", room: "general", text: "hello", ref: undefined },
    );
    r = run(
      r.state,
      frame({ type: "message", ...msg("general", 11, "alice", "hello"), ref: send.ref }),
    );
    assert.deepEqual(r.state.pending, []);
    assert.deepEqual(ids(r.state.rooms.general.messages).slice(-1), [11]);
  });

  test("a send cut off by the disconnect that was stored after all is not sent twice", () => {
    let r = run(
      online({ lastId: 10 }),
      { type: "open", target: GENERAL },
      { type: "compose", text: "did it go?" },
    );
    assert.equal(r.sent.at(-1).type, "send");
    r = run(r.state, { type: "closed" });
    assert.equal(r.state.pending[0].inflight, true);
    r = reconnect(r.state);
    r = run(
      r.state,
      frame({
        type: "joined",
        room: "general",
        members: ["alice"],
        last_id: 11,
        history: [...range(1, 10), msg("general", 11, "alice", "did it go?")],
        ref: refOf(r.sent, "join"),
      }),
      frame({ type: "rooms", rooms: [], ref: refOf(r.sent, "rooms") }),
    );
    assert.deepEqual(r.state.pending, []);
    assert.ok(!r.sent.some((f) => f.type === "send"));
  });

  test("a send cut off and not stored is sent again after catching up", () => {
    let r = run(
      online({ lastId: 10 }),
      { type: "open", target: GENERAL },
      { type: "compose", text: "lost" },
      { type: "closed" },
    );
    r = reconnect(r.state);
    r = run(
      r.state,
      frame({
        type: "joined",
        room: "general",
        members: ["alice"],
        last_id: 10,
        history: range(1, 10),
        ref: refOf(r.sent, "join"),
      }),
      frame({ type: "rooms", rooms: [], ref: refOf(r.sent, "rooms") }),
    );
    assert.equal(r.sent.filter((f) => f.type === "send" && f.text === "lost").length, 1);
  });

  test("unavailable marks the message failed with the reason; retry sends it again", () => {
    let r = run(
      online(),
      { type: "open", target: GENERAL },
      { type: "compose", text: "important" },
    );
    const first = r.sent.at(-1);
    r = run(
      r.state,
      frame({
        type: "error",
        code: "unavailable",
        message: "could not store",
        retry_after: 2,
        ref: first.ref,
      }),
    );
    const failed = r.state.pending[0];
    assert.equal(failed.status, "failed");
    assert.equal(failed.error, "Not sent: the server could not store it. Retry in 2 s.");
    r = run(r.state, { type: "retry", pid: failed.pid });
    const again = r.sent.at(-1);
    assert.equal(again.text, "important");
    assert.notEqual(again.ref, first.ref);
    assert.equal(r.state.pending[0].status, "sending");
    r = run(r.state, { type: "discard", pid: failed.pid });
    assert.deepEqual(r.state.pending, []);
  });

  test("a DM conversation held is refreshed when the server has no dm_after", () => {
    let state = online();
    state = run(
      state,
      frame({ type: "dm", id: 4, from: "bob", to: "alice", text: "hi", ts: "x" }),
    ).state;
    let r = run(state, { type: "open", target: { kind: "dm", name: "bob" } });
    r = run(
      r.state,
      frame({
        type: "dm_history",
        with: "bob",
        messages: [{ id: 4, from: "bob", to: "alice", text: "hi", ts: "x" }],
        ref: refOf(r.sent, "dm_history"),
      }),
    );
    r = run(r.state, { type: "closed" }, WELCOME);
    assert.equal(r.sent[0].dm_after, 4, "the highest DM id held");
    r = run(
      r.state,
      frame({ type: "error", code: "bad_frame", message: "unknown field", ref: r.sent[0].ref }),
    );
    r = run(r.state, frame({ type: "login_ok", user: "alice", ref: refOf(r.sent, "login") }));
    const refresh = r.sent.find((f) => f.type === "dm_history");
    assert.equal(refresh.with, "bob");
    r = run(
      r.state,
      frame({
        type: "dm_history",
        with: "bob",
        messages: [
          { id: 4, from: "bob", to: "alice", text: "hi", ts: "x" },
          { id: 9, from: "bob", to: "alice", text: "missed", ts: "x" },
        ],
        ref: refresh.ref,
      }),
    );
    assert.deepEqual(ids(r.state.dms.bob.messages), [4, 9]);
  });
});

describe("direct messages", () => {
  test("a DM opens a conversation under the other person's name, each once", () => {
    let state = online();
    state = run(
      state,
      frame({ type: "dm", id: 7, from: "bob", to: "alice", text: "psst", ts: "x" }),
    ).state;
    state = run(
      state,
      frame({ type: "dm", id: 8, from: "alice", to: "bob", text: "yes?", ts: "x" }),
    ).state;
    state = run(
      state,
      frame({ type: "dm", id: 7, from: "bob", to: "alice", text: "psst", ts: "x" }),
    ).state;
    assert.deepEqual(Object.keys(state.dms), ["bob"]);
    assert.deepEqual(ids(state.dms.bob.messages), [7, 8]);
    assert.equal(state.dmAfter, 8);
    assert.deepEqual(unread(state, { kind: "dm", name: "bob" }), { count: 1, more: false });
  });

  test("opening a conversation loads its history; sending uses dm", () => {
    let r = run(online(), { type: "open", target: { kind: "dm", name: "carol" } });
    const ask = r.sent.find((f) => f.type === "dm_history");
    assert.equal(ask.with, "carol");
    r = run(
      r.state,
      frame({
        type: "dm_history",
        with: "carol",
        messages: [{ id: 2, from: "carol", to: "alice", text: "old", ts: "x" }],
        ref: ask.ref,
      }),
    );
    assert.equal(r.state.dms.carol.loaded, true);
    r = run(r.state, { type: "compose", text: "hi carol" });
    const dm = r.sent.at(-1);
    assert.deepEqual(
      { ...dm, ref: undefined },
      { type: "dm", to: "carol", text: "hi carol", ref: undefined },
    );
    r = run(
      r.state,
      frame({
        type: "dm",
        id: 12,
        from: "alice",
        to: "carol",
        text: "hi carol",
        ts: "x",
        ref: dm.ref,
      }),
    );
    assert.deepEqual(r.state.pending, []);
    assert.deepEqual(ids(r.state.dms.carol.messages), [2, 12]);
  });

  test("a DM to nobody fails beside the message", () => {
    let r = run(online(), { type: "open", target: { kind: "dm", name: "ghost" } });
    r = run(
      r.state,
      frame({ type: "dm_history", with: "ghost", messages: [], ref: refOf(r.sent, "dm_history") }),
      { type: "compose", text: "hello?" },
    );
    r = run(
      r.state,
      frame({
        type: "error",
        code: "no_such_user",
        message: "no such user",
        ref: r.sent.at(-1).ref,
      }),
    );
    assert.equal(r.state.pending[0].error, "Not sent: there is no such user.");
  });
});

describe("read markers and unread counts", () => {
  test("without read markers on the server, history at join counts as read", () => {
    let state = online({ lastId: 10 });
    assert.deepEqual(unread(state, GENERAL), { count: 0, more: false });
    state = run(
      state,
      frame({ type: "message", ...msg("general", 11) }),
      frame({ type: "message", ...msg("general", 12, "alice") }),
    ).state;
    assert.deepEqual(
      unread(state, GENERAL),
      { count: 1, more: false },
      "my own message is not unread",
    );
    const r = run(state, { type: "seen", target: GENERAL, id: 12 });
    assert.deepEqual(r.sent, [], "no mark_read to a server that does not know it");
    assert.equal(unread(r.state, GENERAL).count, 0);
  });

  test("read_id at join gives the count; read from another device clears it", () => {
    let state = online({ lastId: 10, readId: 6 });
    assert.equal(state.features.read, true);
    assert.deepEqual(unread(state, GENERAL), { count: 4, more: false });
    assert.equal(totalUnread(state), 4);
    state = run(state, frame({ type: "read", room: "general", id: 10 })).state;
    assert.equal(unread(state, GENERAL).count, 0);
    state = run(state, frame({ type: "read", room: "general", id: 3 })).state; // older: no effect
    assert.equal(state.reads["room:general"], 10);
  });

  test("a marker older than what is held shows 'more'", () => {
    const state = online({ lastId: 200, readId: 20 });
    assert.deepEqual(unread(state, GENERAL), { count: 50, more: true });
  });

  test("seen sends mark_read once per new id; a refusal turns it off", () => {
    let r = run(online({ lastId: 10, readId: 2 }), { type: "seen", target: GENERAL, id: 8 });
    assert.deepEqual(
      { ...r.sent[0], ref: undefined },
      { type: "mark_read", room: "general", id: 8, ref: undefined },
    );
    r = run(
      r.state,
      { type: "seen", target: GENERAL, id: 8 },
      { type: "seen", target: GENERAL, id: 5 },
    );
    assert.equal(r.sent.length, 0);
    r = run(r.state, { type: "seen", target: { kind: "dm", name: "bob" }, id: 3 });
    assert.deepEqual(
      { ...r.sent[0], ref: undefined },
      { type: "mark_read", with: "bob", id: 3, ref: undefined },
    );
    r = run(
      r.state,
      frame({ type: "error", code: "bad_frame", message: "unknown type", ref: r.sent[0].ref }),
    );
    assert.equal(r.state.features.read, false);
  });

  test("answering marks read what was there, before the message goes", () => {
    let r = run(online({ lastId: 10, readId: 4 }), { type: "compose", text: "on it" });
    assert.deepEqual(
      r.sent.map((f) => ({ ...f, ref: undefined })),
      [
        { type: "mark_read", room: "general", id: 10, ref: undefined },
        { type: "send", room: "general", text: "on it", ref: undefined },
      ],
    );
    assert.equal(unread(r.state, GENERAL).count, 0);
    // a conversation: only what is held counts (a newer DM may be on its way)
    const bob = { kind: "dm", name: "bob" };
    r = run(
      r.state,
      frame({ type: "read", room: "general", id: 10 }),
      frame({ type: "dm", id: 5, from: "bob", to: "alice", text: "late", ts: "x" }),
      { type: "open", target: bob },
    );
    r = run(
      r.state,
      frame({ type: "dm_history", with: "bob", messages: [], ref: refOf(r.sent, "dm_history") }),
      { type: "compose", text: "no problem" },
    );
    assert.deepEqual(r.sent.map((f) => f.type), ["mark_read", "dm"]);
    assert.equal(r.sent[0].with, "bob");
    assert.equal(r.sent[0].id, 5);
    assert.equal(unread(r.state, bob).count, 0);
    // nothing held yet: nothing to mark
    r = run(r.state, { type: "open", target: { kind: "room", name: "new" } });
    r = run(r.state, { type: "compose", text: "first!" });
    assert.deepEqual(r.sent, [], "queued until #new is joined, no marker");
  });

  test("read while offline is told to the server on rejoin", () => {
    let r = run(
      online({ lastId: 10, readId: 2 }),
      { type: "closed" },
      { type: "seen", target: GENERAL, id: 9 },
    );
    assert.equal(r.sent.length, 0);
    r = reconnect(r.state);
    r = run(
      r.state,
      frame({
        type: "joined",
        room: "general",
        members: ["alice"],
        last_id: 10,
        history: range(1, 10),
        read_id: 2,
        ref: refOf(r.sent, "join"),
      }),
    );
    assert.deepEqual(
      { ...r.sent[0], ref: undefined },
      { type: "mark_read", room: "general", id: 9, ref: undefined },
    );
    assert.equal(r.state.reads["room:general"], 9);
  });
});
