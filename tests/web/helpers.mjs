// Drive state.js the way app.js does: events in, frames out, no DOM and no socket.

import { initialState, update } from "../../securechat/server/web/static/state.js";

export const STATIC = "../../securechat/server/web/static";

/** Apply events in turn; the frames sent along the way, in order, and whether closed. */
export function run(state, ...events) {
  const sent = [];
  let close = false;
  for (const event of events) {
    const result = update(state, event);
    state = result.state;
    sent.push(...result.send);
    close ||= result.close;
  }
  return { state, sent, close };
}

export const frame = (f) => ({ type: "frame", frame: f });

/** The ref the page put on the last frame of `type` it sent. */
export function refOf(sent, type) {
  const found = sent.filter((f) => f.type === type).at(-1);
  if (!found) throw new Error(`no ${type} frame sent: ${JSON.stringify(sent)}`);
  return found.ref;
}

export function msg(room, id, user = "bob", text = `m${id}`) {
  return { room, id, user, text, ts: "2026-11-26T02:20:28.123Z" };
}

export function range(lo, hi, room = "general", user = "bob") {
  const out = [];
  for (let id = lo; id <= hi; id += 1) out.push(msg(room, id, user));
  return out;
}

/**
 * A page logged in as alice (a token login), in `rooms`, synced, each room's last
 * message `lastId` (history: the last 50), with server read markers when `readId` is set.
 */
export function online({ rooms = ["general"], lastId = 10, readId, dmAfter = 0 } = {}) {
  let state = initialState({ user: "alice", token: "tok-1", rooms, dmAfter });
  let r = run(
    state,
    { type: "connecting" },
    frame({ type: "welcome", version: "0.1.0", protocol: 1 }),
  );
  r = run(r.state, frame({ type: "login_ok", user: "alice", ref: refOf(r.sent, "login") }));
  state = r.state;
  const joins = r.sent.filter((f) => f.type === "join");
  for (const join of joins) {
    const joined = {
      type: "joined",
      room: join.room,
      members: ["alice", "bob"],
      last_id: lastId,
      history: range(Math.max(1, lastId - 49), lastId, join.room),
      ref: join.ref,
    };
    if (readId !== undefined) joined.read_id = readId;
    state = run(state, frame(joined)).state;
  }
  state = run(state, frame({ type: "rooms", rooms: [], ref: refOf(r.sent, "rooms") })).state;
  return state;
}

export function reconnect(state) {
  let r = run(
    state,
    { type: "closed" },
    { type: "connecting" },
    frame({ type: "welcome", version: "0.1.0", protocol: 1 }),
  );
  const sent = [...r.sent];
  r = run(r.state, frame({ type: "login_ok", user: "alice", ref: refOf(r.sent, "login") }));
  return { state: r.state, sent: [...sent, ...r.sent] };
}

export function ids(list) {
  return list.map((m) => m.id);
}

export { initialState, update };
