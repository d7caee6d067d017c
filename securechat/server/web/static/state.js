// The page's state and the one function that changes it: update(state, event) gives the
// new state and the frames to send. No DOM, no socket, no timers: app.js feeds it server
// frames and what the person did, sends what it returns and renders the state.
//
// An event is {type: "frame", frame} for a server frame, or one of the local events
// below (EVENTS). Requests carry a `ref`; `state.requests` remembers what each ref asked,
// so a reply or an `error` is understood in its context (a refused `send` marks that
// message failed, a refused `history` stops the spinner, a refused `login` shows the
// form). Refs are unique for the page's life, so a late answer is never misread.
//
// Catch-up after a reconnect, each message once and in order: per room, `seen` is the id
// up to which everything is held. On `joined` (the last 50 and `last_id`) a gap between
// `seen` and the first message given is filled with `history after=seen`, page by page;
// lists are kept sorted by id and deduplicated (messages.js), so live events that arrive
// meanwhile simply land in their place. Messages typed while offline wait in `pending`
// and are sent once their room has caught up.
//
// Protocol extensions used where the server has them and tolerated where not: login
// tokens (`login_ok.token`, `login {user, token}`), read markers (`mark_read`, `read`,
// `joined.read_id`), `login.dm_after`, and the `unavailable` error.

import {
  firstId,
  insertMessage,
  lastId,
  mergeMessages,
  patchMessage,
  removeMessage,
} from "./messages.js";
import { NAME_RE, sameTarget } from "./route.js";

export const HISTORY_PAGE = 50;
export const CATCHUP_PAGE = 200;
const MAX_NOTICES = 4;
// Errors after which the server closes the connection: the status line says why.
const CLOSING = new Set(["shutting_down", "slow_consumer", "server_busy", "frame_too_large"]);

function newRoom(name) {
  return {
    name,
    joined: false, // this connection is in it (false while offline: it will be rejoined)
    joining: false,
    members: [],
    lastId: 0, // the newest id known
    seen: null, // everything up to this id is held; null: never joined on this page
    messages: [],
    catchingUp: false,
    loadingOlder: false,
    atStart: false, // the oldest message is held
  };
}

function newConversation(peer) {
  return { peer, messages: [], loaded: false, loadingOlder: false, atStart: false };
}

export function initialState(saved = {}) {
  const rooms = {};
  for (const name of saved.rooms ?? []) rooms[name] = newRoom(name);
  const dms = {};
  for (const peer of saved.peers ?? []) dms[peer] = newConversation(peer);
  return {
    phase: saved.token ? "auth" : "signin", // "signin" (the form), "auth" (logging in), "ready"
    conn: "offline", // "offline", "connecting", "open" (welcomed), "online" (logged in)
    connNote: "", // why the server closed, for the status line
    reconnectIn: null, // seconds, while waiting to reconnect
    retryAfter: 0, // seconds the server asked to wait before logging in again
    user: saved.user ?? "",
    me: null,
    token: saved.token ?? null,
    password: null, // only while the server gives no token: reconnects need it
    keep: saved.keep ?? false,
    interactive: false, // the login in flight was typed (its errors go to the form)
    authError: "",
    features: { dmAfter: true, read: false },
    rooms,
    dms,
    reads: {}, // keyOf(target) -> highest id read
    dmAfter: saved.dmAfter ?? 0, // the highest direct-message id received live
    current: null,
    route: null, // a target asked for before login
    pending: [], // messages typed and not yet acknowledged
    requests: {},
    nextRef: 1,
    nextPid: 1,
    synced: false, // the first answers after login are in: queued messages may go
    directory: null, // the `rooms` answer
    notices: [],
    nextNotice: 1,
    editing: null, // {room, id}
    confirming: null, // {room, id}: delete asked, not yet confirmed
  };
}

export function keyOf(target) {
  return `${target.kind}:${target.name}`;
}

export function isOnline(state) {
  return state.conn === "online";
}

/** Apply one event: {state, send: [frames], close: bool}. */
export function update(state, event) {
  const tx = { state, send: [], close: false };
  const handle = EVENTS[event.type];
  if (!handle) throw new Error(`unknown event: ${event.type}`);
  handle(tx, event);
  return tx;
}

// ------------------------------------------------------------------ small helpers

function patch(tx, fields) {
  tx.state = { ...tx.state, ...fields };
}

function patchRoom(tx, name, fields) {
  const room = tx.state.rooms[name] ?? newRoom(name);
  patch(tx, { rooms: { ...tx.state.rooms, [name]: { ...room, ...fields } } });
}

function dropRoom(tx, name) {
  const { [name]: _, ...rooms } = tx.state.rooms;
  const gone = { kind: "room", name };
  // messages waiting for a room left will never be sent: they go with it
  patch(tx, { rooms, pending: tx.state.pending.filter((p) => !sameTarget(p.target, gone)) });
  if (sameTarget(tx.state.current, gone)) {
    const next = Object.keys(rooms).sort()[0];
    patch(tx, { current: next ? { kind: "room", name: next } : null });
  }
}

function patchDm(tx, peer, fields) {
  const conv = tx.state.dms[peer] ?? newConversation(peer);
  patch(tx, { dms: { ...tx.state.dms, [peer]: { ...conv, ...fields } } });
}

function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([k, v]) => [k, fn(v)]));
}

function request(tx, frame, info) {
  const ref = `r${tx.state.nextRef}`;
  patch(tx, { nextRef: tx.state.nextRef + 1, requests: { ...tx.state.requests, [ref]: info } });
  tx.send.push({ ...frame, ref });
  return ref;
}

/** What the request `ref` asked, now answered (undefined for none or unknown). */
function answered(tx, ref) {
  if (ref === undefined || !(ref in tx.state.requests)) return undefined;
  const { [ref]: info, ...requests } = tx.state.requests;
  patch(tx, { requests });
  return info;
}

function notice(tx, text) {
  const id = tx.state.nextNotice;
  const notices = [...tx.state.notices, { id, text }].slice(-MAX_NOTICES);
  patch(tx, { notices, nextNotice: id + 1 });
}

function maxId(a, b) {
  return Math.max(a ?? 0, b ?? 0);
}

function roomRecord(frame) {
  const { room, id, user, text, ts, edited_ts } = frame;
  const record =
    edited_ts === undefined
      ? { room, id, user, text, ts }
      : { room, id, user, text, ts, edited_ts };
  return withFile(record, frame);
}

function dmRecord(frame) {
  const { id, from, to, text, ts } = frame;
  return withFile({ id, from, to, text, ts }, frame);
}

/** A shared file the frame carries ({id, name, size, sha256, mime}; files.js) goes along. */
function withFile(record, frame) {
  return frame.file && typeof frame.file === "object" ? { ...record, file: frame.file } : record;
}

// ------------------------------------------------------------------ login

function sendLogin(tx) {
  const s = tx.state;
  const frame = { type: "login", user: s.user };
  if (s.token) frame.token = s.token;
  else frame.password = s.password;
  if (s.features.dmAfter && s.dmAfter > 0) frame.dm_after = s.dmAfter;
  request(tx, frame, { kind: "login", token: !!s.token, dmAfter: "dm_after" in frame });
}

function loginRefused(tx, info, frame) {
  const s = tx.state;
  const why = frame.message || frame.code;
  if (frame.code === "bad_frame" && info.dmAfter) {
    // a server without the dm_after extension: log in without it
    patch(tx, { features: { ...s.features, dmAfter: false } });
    sendLogin(tx);
    return;
  }
  const wait = frame.retry_after ? ` (try again in ${Math.ceil(frame.retry_after)} s)` : "";
  if (["rate_limited", "server_busy", "unavailable", "internal"].includes(frame.code)) {
    if (s.interactive) {
      patch(tx, { phase: "signin", password: null, authError: why + wait });
    } else {
      // a reconnect: try again later, with the same credentials
      patch(tx, { retryAfter: frame.retry_after ?? 0, connNote: why + wait });
      tx.close = true;
    }
    return;
  }
  let authError = why;
  if (info.token) authError = "Your session has ended: please sign in again.";
  else if (frame.code === "auth_failed") authError = "Wrong user name or password.";
  patch(tx, { phase: "signin", token: null, password: null, authError, interactive: false });
}

/** Make `target` current: join a room not joined, fetch a conversation not loaded. */
function openTarget(tx, target) {
  if (!target) {
    patch(tx, { current: null });
    return;
  }
  const online = isOnline(tx.state);
  if (target.kind === "room") {
    const room = tx.state.rooms[target.name];
    if (!room || (!room.joined && !room.joining)) {
      patchRoom(tx, target.name, {});
      if (online) joinRoom(tx, target.name);
    } else if (online && room.joined) {
      request(tx, { type: "members", room: target.name }, { kind: "members" });
    }
  } else {
    const conv = tx.state.dms[target.name];
    if (!conv) patchDm(tx, target.name, {});
    if (online && !conv?.loaded && !conv?.loadingOlder) loadConversation(tx, target.name);
  }
  patch(tx, { current: target, editing: null, confirming: null });
}

function joinRoom(tx, name) {
  request(tx, { type: "join", room: name }, { kind: "join", room: name });
  patchRoom(tx, name, { joining: true });
}

function loadConversation(tx, peer, before = null) {
  const frame = { type: "dm_history", with: peer, limit: HISTORY_PAGE };
  if (before !== null) frame.before = before;
  request(tx, frame, { kind: "dmpage", peer, before });
  patchDm(tx, peer, { loadingOlder: true });
}

// ------------------------------------------------------------------ sending

function canSend(state, target) {
  if (!isOnline(state) || !state.synced) return false;
  if (target.kind === "dm") return true;
  const room = state.rooms[target.name];
  return !!room && room.joined && !room.catchingUp;
}

/** Send every queued message whose room is ready, oldest first. */
function flush(tx) {
  for (const p of tx.state.pending) {
    if (p.status === "queued" && canSend(tx.state, p.target)) {
      const frame =
        p.target.kind === "room"
          ? { type: "send", room: p.target.name, text: p.text }
          : { type: "dm", to: p.target.name, text: p.text };
      request(tx, frame, { kind: "send", pid: p.pid });
      setPending(tx, p.pid, { status: "sending", inflight: false, error: "" });
    }
  }
}

function setPending(tx, pid, fields) {
  patch(tx, { pending: tx.state.pending.map((p) => (p.pid === pid ? { ...p, ...fields } : p)) });
}

function dropPending(tx, pid) {
  patch(tx, { pending: tx.state.pending.filter((p) => p.pid !== pid) });
}

/**
 * A message of mine came without a ref (in a catch-up page, or sent by another tab):
 * if a message cut off by the disconnect has this text, it was stored after all, so it
 * must not be sent again.
 */
function settleInflight(tx, target, text) {
  const found = tx.state.pending.find(
    (p) => p.inflight && p.status === "queued" && p.text === text && sameTarget(p.target, target),
  );
  if (found) dropPending(tx, found.pid);
}

function settlePage(tx, target, page, author) {
  if (!tx.state.pending.some((p) => p.inflight)) return;
  for (const m of page) if (author(m) === tx.state.me) settleInflight(tx, target, m.text);
}

function failPending(tx, pid, frame) {
  const reasons = {
    unavailable: "Not sent: the server could not store it.",
    rate_limited: "Not sent: too fast.",
    no_such_user: "Not sent: there is no such user.",
    not_member: "Not sent: you are not in this room.",
  };
  let error = reasons[frame.code] ?? `Not sent: ${frame.message || frame.code}`;
  if (frame.retry_after) error += ` Retry in ${Math.ceil(frame.retry_after)} s.`;
  setPending(tx, pid, { status: "failed", error, code: frame.code });
}

// ------------------------------------------------------------------ read markers

function markRead(tx, target, id) {
  const key = keyOf(target);
  if (id <= (tx.state.reads[key] ?? 0)) return;
  patch(tx, { reads: { ...tx.state.reads, [key]: id } });
  sendMark(tx, target, id);
}

function sendMark(tx, target, id) {
  if (!isOnline(tx.state) || !tx.state.features.read) return;
  const frame =
    target.kind === "room"
      ? { type: "mark_read", room: target.name, id }
      : { type: "mark_read", with: target.name, id };
  request(tx, frame, { kind: "mark", key: keyOf(target), id });
}

// ------------------------------------------------------------------ server frames

const FRAMES = {
  welcome(tx) {
    patch(tx, { conn: "open", reconnectIn: null });
    const s = tx.state;
    if (s.phase !== "auth") return;
    if (s.token || s.password) sendLogin(tx);
    else patch(tx, { phase: "signin" });
  },

  login_ok(tx, frame) {
    const info = answered(tx, frame.ref);
    const s = tx.state;
    const token = typeof frame.token === "string" && frame.token ? frame.token : s.token;
    patch(tx, {
      phase: "ready",
      conn: "online",
      me: frame.user,
      user: frame.user,
      token,
      password: token ? null : s.password,
      interactive: false,
      authError: "",
      connNote: "",
      retryAfter: 0,
    });
    for (const name of Object.keys(s.rooms)) joinRoom(tx, name);
    // without dm_after, direct messages sent while this page was away come from history
    if (!info?.dmAfter) {
      for (const conv of Object.values(s.dms)) if (conv.loaded) loadConversation(tx, conv.peer);
    }
    const first = Object.keys(s.rooms).sort()[0];
    openTarget(tx, s.route ?? s.current ?? (first ? { kind: "room", name: first } : null));
    patch(tx, { route: null });
    request(tx, { type: "rooms" }, { kind: "sync" });
  },

  joined(tx, frame) {
    const info = answered(tx, frame.ref);
    const s = tx.state;
    const name = frame.room;
    const room = s.rooms[name] ?? newRoom(name);
    const history = Array.isArray(frame.history) ? frame.history : [];
    const lastGiven = frame.last_id;
    const lo = history.length ? history[0].id : lastGiven + 1;
    let messages = mergeMessages(room.messages, history, { lo, hi: lastGiven });
    let seen = room.seen;
    let catchingUp = false;
    let lastKnown = Math.max(room.lastId, lastGiven);
    let atStart = room.atStart;
    if (seen !== null && lastGiven < seen) {
      // the server's history was replaced (not something this server does): start over
      messages = history;
      seen = lastGiven;
      lastKnown = lastGiven;
      atStart = false;
    } else if (seen !== null && seen < lo - 1) {
      catchingUp = true;
      const frameOut = { type: "history", room: name, after: seen, limit: CATCHUP_PAGE };
      request(tx, frameOut, { kind: "catchup", room: name, after: seen, until: lo - 1 });
    } else {
      seen = lastGiven;
    }
    if (!messages.length || firstId(messages) === 1) atStart = true;
    settlePage(tx, { kind: "room", name }, history, (m) => m.user);
    patchRoom(tx, name, {
      joined: true,
      joining: false,
      members: [...(frame.members ?? [])].sort(),
      lastId: lastKnown,
      seen,
      messages,
      catchingUp,
      loadingOlder: false,
      atStart,
    });
    const key = keyOf({ kind: "room", name });
    const local = tx.state.reads[key];
    if (Number.isSafeInteger(frame.read_id)) {
      patch(tx, {
        features: { ...tx.state.features, read: true },
        reads: { ...tx.state.reads, [key]: maxId(local, frame.read_id) },
      });
      // read here while offline: tell the server (and the other devices)
      if (local > frame.read_id) sendMark(tx, { kind: "room", name }, local);
    } else if (local === undefined) {
      // no read markers on this server: what was there at joining counts as read
      patch(tx, { reads: { ...tx.state.reads, [key]: lastGiven } });
    }
    if (info?.kind === "join" && !tx.state.current) patch(tx, { current: { kind: "room", name } });
    flush(tx);
  },

  history(tx, frame) {
    const info = answered(tx, frame.ref);
    const room = tx.state.rooms[frame.room];
    if (!info || !room) return;
    const page = Array.isArray(frame.messages) ? frame.messages : [];
    settlePage(tx, { kind: "room", name: room.name }, page, (m) => m.user);
    if (info.kind === "catchup") {
      const hi = page.length ? lastId(page) : info.until;
      const messages = mergeMessages(room.messages, page, { lo: info.after + 1, hi });
      if (page.length && hi < info.until && room.joined) {
        request(
          tx,
          { type: "history", room: room.name, after: hi, limit: CATCHUP_PAGE },
          { ...info, after: hi },
        );
        patchRoom(tx, room.name, { messages, seen: hi });
      } else {
        patchRoom(tx, room.name, {
          messages,
          catchingUp: false,
          seen: Math.max(info.until, room.lastId),
        });
        flush(tx);
      }
    } else if (info.kind === "older") {
      const lo = page.length ? firstId(page) : 1;
      patchRoom(tx, room.name, {
        messages: mergeMessages(room.messages, page, { lo, hi: info.before - 1 }),
        loadingOlder: false,
        atStart: !page.length || firstId(page) === 1,
      });
    }
  },

  message(tx, frame) {
    const info = answered(tx, frame.ref);
    const room = tx.state.rooms[frame.room];
    if (!room) return;
    patchRoom(tx, room.name, {
      messages: insertMessage(room.messages, roomRecord(frame)),
      lastId: Math.max(room.lastId, frame.id),
      seen: room.catchingUp || room.seen === null ? room.seen : Math.max(room.seen, frame.id),
    });
    if (info?.kind === "send") dropPending(tx, info.pid);
    else if (frame.user === tx.state.me)
      settleInflight(tx, { kind: "room", name: room.name }, frame.text);
  },

  edited(tx, frame) {
    answered(tx, frame.ref);
    const room = tx.state.rooms[frame.room];
    if (!room) return;
    patchRoom(tx, room.name, {
      messages: patchMessage(room.messages, frame.id, { text: frame.text, edited_ts: frame.ts }),
    });
  },

  deleted(tx, frame) {
    answered(tx, frame.ref);
    const room = tx.state.rooms[frame.room];
    if (!room) return;
    patchRoom(tx, room.name, { messages: removeMessage(room.messages, frame.id) });
    const gone = (marker) => marker && marker.room === frame.room && marker.id === frame.id;
    if (gone(tx.state.editing)) patch(tx, { editing: null });
    if (gone(tx.state.confirming)) patch(tx, { confirming: null });
  },

  dm(tx, frame) {
    const info = answered(tx, frame.ref);
    const me = tx.state.me;
    const peer = frame.from === me ? frame.to : frame.from;
    const conv = tx.state.dms[peer] ?? newConversation(peer);
    patchDm(tx, peer, { messages: insertMessage(conv.messages, dmRecord(frame)) });
    patch(tx, { dmAfter: Math.max(tx.state.dmAfter, frame.id) });
    if (info?.kind === "send") dropPending(tx, info.pid);
    else if (frame.from === me) settleInflight(tx, { kind: "dm", name: peer }, frame.text);
  },

  dm_history(tx, frame) {
    const info = answered(tx, frame.ref);
    const peer = frame.with;
    const conv = tx.state.dms[peer];
    if (!conv) return;
    const page = (Array.isArray(frame.messages) ? frame.messages : []).map(dmRecord);
    settlePage(tx, { kind: "dm", name: peer }, page, (m) => m.from);
    patchDm(tx, peer, {
      messages: mergeMessages(conv.messages, page),
      loaded: true,
      loadingOlder: false,
      atStart: conv.atStart || !page.length, // an empty page: nothing older
    });
  },

  rooms(tx, frame) {
    const info = answered(tx, frame.ref);
    patch(tx, { directory: Array.isArray(frame.rooms) ? frame.rooms : [] });
    if (info?.kind === "sync") {
      patch(tx, { synced: true });
      flush(tx);
    }
  },

  members(tx, frame) {
    answered(tx, frame.ref);
    if (tx.state.rooms[frame.room]) {
      patchRoom(tx, frame.room, { members: [...(frame.members ?? [])].sort() });
    }
  },

  presence(tx, frame) {
    const room = tx.state.rooms[frame.room];
    if (!room) return;
    const others = room.members.filter((u) => u !== frame.user);
    const members = frame.event === "join" ? [...others, frame.user].sort() : others;
    patchRoom(tx, room.name, { members });
  },

  read(tx, frame) {
    answered(tx, frame.ref);
    const target =
      frame.room !== undefined
        ? { kind: "room", name: frame.room }
        : { kind: "dm", name: frame.with };
    if (!target.name || !Number.isSafeInteger(frame.id)) return;
    const key = keyOf(target);
    // the server echoes our own markers, maybe without the ref: forget those requests
    const requests = Object.fromEntries(
      Object.entries(tx.state.requests).filter(
        ([, info]) => !(info.kind === "mark" && info.key === key && info.id <= frame.id),
      ),
    );
    patch(tx, {
      requests,
      features: { ...tx.state.features, read: true },
      reads: { ...tx.state.reads, [key]: maxId(tx.state.reads[key], frame.id) },
    });
  },

  left(tx, frame) {
    answered(tx, frame.ref);
    dropRoom(tx, frame.room);
  },

  ping(tx) {
    tx.send.push({ type: "pong" });
  },

  error(tx, frame) {
    const info = answered(tx, frame.ref);
    const why = frame.message || frame.code;
    if (CLOSING.has(frame.code)) patch(tx, { connNote: why });
    if (!info) {
      if (!CLOSING.has(frame.code)) notice(tx, why);
      return;
    }
    switch (info.kind) {
      case "login":
        loginRefused(tx, info, frame);
        break;
      case "send":
        failPending(tx, info.pid, frame);
        break;
      case "join": {
        const room = tx.state.rooms[info.room];
        if (room && room.seen === null && !room.messages.length) dropRoom(tx, info.room);
        else patchRoom(tx, info.room, { joining: false });
        notice(tx, `Cannot join #${info.room}: ${why}`);
        break;
      }
      case "catchup":
        patchRoom(tx, info.room, { catchingUp: false });
        notice(tx, `Could not fetch what was missed in #${info.room}: ${why}`);
        flush(tx);
        break;
      case "older":
        patchRoom(tx, info.room, { loadingOlder: false });
        notice(tx, why);
        break;
      case "dmpage": {
        const conv = tx.state.dms[info.peer];
        if (frame.code === "no_such_user" && conv && !conv.messages.length) {
          const { [info.peer]: _, ...dms } = tx.state.dms;
          patch(tx, { dms });
          if (sameTarget(tx.state.current, { kind: "dm", name: info.peer }))
            patch(tx, { current: null });
        } else if (conv) {
          patchDm(tx, info.peer, { loadingOlder: false });
        }
        notice(tx, frame.code === "no_such_user" ? `There is no user ${info.peer}.` : why);
        break;
      }
      case "mark":
        // a server without read markers; a refused marker is otherwise harmless
        if (frame.code === "bad_frame")
          patch(tx, { features: { ...tx.state.features, read: false } });
        break;
      case "sync":
        patch(tx, { synced: true });
        flush(tx);
        break;
      case "members":
        break;
      case "leave":
        if (frame.code === "not_member") dropRoom(tx, info.room);
        else notice(tx, why);
        break;
      default:
        notice(tx, why); // edit and delete: forbidden, not_found, unavailable ... just show
    }
  },
};

// ------------------------------------------------------------------ local events

const EVENTS = {
  frame(tx, { frame }) {
    if (frame && typeof frame === "object" && Object.hasOwn(FRAMES, frame.type)) {
      FRAMES[frame.type](tx, frame);
    } // a frame type this page does not know is ignored, as the protocol asks
  },

  connecting(tx) {
    patch(tx, { conn: "connecting", reconnectIn: null });
  },

  /** The app waits `delay` seconds before connecting again. */
  waiting(tx, { delay }) {
    patch(tx, { reconnectIn: delay });
  },

  closed(tx) {
    const s = tx.state;
    let phase = s.phase;
    if (phase === "ready") phase = s.token || s.password ? "auth" : "signin";
    patch(tx, {
      conn: "offline",
      phase,
      requests: {},
      synced: false,
      pending: s.pending.map((p) =>
        p.status === "sending" ? { ...p, status: "queued", inflight: true } : p,
      ),
      rooms: mapValues(s.rooms, (r) => ({
        ...r,
        joined: false,
        joining: false,
        catchingUp: false,
        loadingOlder: false,
      })),
      dms: mapValues(s.dms, (c) => ({ ...c, loadingOlder: false })),
    });
  },

  signin(tx, { user, password, keep }) {
    const name = (user ?? "").trim().toLowerCase();
    if (!NAME_RE.test(name)) {
      patch(tx, { authError: "A user name is 1-32 characters: a-z, 0-9, _ and -." });
      return;
    }
    if (!password) {
      patch(tx, { authError: "Enter your password." });
      return;
    }
    const s = tx.state;
    if (name !== s.user) {
      // another person at this browser: nothing of the last one's carries over
      const fresh = initialState({});
      tx.state = {
        ...fresh,
        conn: s.conn,
        route: s.route,
        nextRef: s.nextRef,
        nextPid: s.nextPid,
        features: s.features,
      };
    }
    patch(tx, {
      phase: "auth",
      user: name,
      password,
      keep: !!keep,
      token: null,
      authError: "",
      interactive: true,
    });
    if (tx.state.conn === "open") sendLogin(tx);
  },

  logout(tx) {
    const s = tx.state;
    if (s.conn === "online") tx.send.push({ type: "logout" });
    const fresh = initialState({});
    tx.state = { ...fresh, user: s.user, conn: s.conn, nextRef: s.nextRef, features: s.features };
    tx.close = true;
  },

  /** Open a room or conversation (a link, a click); before login, remember it. */
  open(tx, { target }) {
    if (!target) return;
    if (!tx.state.me) patch(tx, { route: target });
    else openTarget(tx, target);
  },

  compose(tx, { text }) {
    const target = tx.state.current;
    if (!target) {
      notice(tx, "Open a room or a conversation first.");
      return;
    }
    // Answering is having read: what was in front of the person counts as read, also
    // when they switch away before the page reported it seen (app.js waits a moment).
    const held = target.kind === "room" ? tx.state.rooms[target.name] : tx.state.dms[target.name];
    const newest = held ? lastId(held.messages) : null;
    if (newest !== null) markRead(tx, target, newest);
    const pid = tx.state.nextPid;
    const item = { pid, target, text, status: "queued", error: "", inflight: false };
    patch(tx, { nextPid: pid + 1, pending: [...tx.state.pending, item] });
    flush(tx);
  },

  retry(tx, { pid }) {
    setPending(tx, pid, { status: "queued", error: "", inflight: false });
    flush(tx);
  },

  discard(tx, { pid }) {
    dropPending(tx, pid);
  },

  leave(tx, { room }) {
    const r = tx.state.rooms[room];
    if (!r) return;
    if (isOnline(tx.state) && r.joined) {
      request(tx, { type: "leave", room }, { kind: "leave", room });
    } else {
      dropRoom(tx, room);
    }
  },

  /** Fetch the page before the oldest message held in the current room or conversation. */
  older(tx) {
    const target = tx.state.current;
    if (!target || !isOnline(tx.state)) return;
    if (target.kind === "room") {
      const room = tx.state.rooms[target.name];
      if (!room || !room.joined || room.loadingOlder || room.atStart || room.catchingUp) return;
      const before = firstId(room.messages);
      if (before === null || before <= 1) {
        patchRoom(tx, room.name, { atStart: true });
        return;
      }
      request(
        tx,
        { type: "history", room: room.name, before, limit: HISTORY_PAGE },
        { kind: "older", room: room.name, before },
      );
      patchRoom(tx, room.name, { loadingOlder: true });
    } else {
      const conv = tx.state.dms[target.name];
      if (!conv || conv.loadingOlder || conv.atStart) return;
      loadConversation(tx, conv.peer, firstId(conv.messages));
    }
  },

  /** The person has seen up to message `id` of `target` (the page has focus). */
  seen(tx, { target, id }) {
    if (target && Number.isSafeInteger(id)) markRead(tx, target, id);
  },

  "edit-start"(tx, { room, id }) {
    patch(tx, { editing: { room, id }, confirming: null });
  },

  "edit-cancel"(tx) {
    patch(tx, { editing: null });
  },

  edit(tx, { room, id, text }) {
    patch(tx, { editing: null });
    if (!isOnline(tx.state)) {
      notice(tx, "Offline: the edit was not sent.");
      return;
    }
    request(tx, { type: "edit", room, id, text }, { kind: "edit" });
  },

  "delete-ask"(tx, { room, id }) {
    patch(tx, { confirming: { room, id }, editing: null });
  },

  "delete-cancel"(tx) {
    patch(tx, { confirming: null });
  },

  delete(tx, { room, id }) {
    patch(tx, { confirming: null });
    if (!isOnline(tx.state)) {
      notice(tx, "Offline: the message was not deleted.");
      return;
    }
    request(tx, { type: "delete", room, id }, { kind: "delete" });
  },

  browse(tx) {
    if (isOnline(tx.state)) request(tx, { type: "rooms" }, { kind: "rooms" });
  },

  notice(tx, { text }) {
    notice(tx, text);
  },

  dismiss(tx, { id }) {
    patch(tx, { notices: tx.state.notices.filter((n) => n.id !== id) });
  },
};

// ------------------------------------------------------------------ selectors

function author(message) {
  return message.user ?? message.from;
}

/**
 * Unread messages of a room or conversation: those after the read marker that others
 * wrote. `more`: the marker is older than the oldest message held, so there are more
 * than `count` (the badge says "50+").
 */
export function unread(state, target) {
  const conv = target.kind === "room" ? state.rooms[target.name] : state.dms[target.name];
  if (!conv) return { count: 0, more: false };
  const read = state.reads[keyOf(target)] ?? 0;
  let count = 0;
  for (const m of conv.messages) if (m.id > read && author(m) !== state.me) count += 1;
  const first = firstId(conv.messages);
  const more =
    target.kind === "room" && count > 0 && !conv.atStart && first !== null && read < first - 1;
  return { count, more };
}

export function totalUnread(state) {
  let total = 0;
  for (const name of Object.keys(state.rooms)) total += unread(state, { kind: "room", name }).count;
  for (const peer of Object.keys(state.dms))
    total += unread(state, { kind: "dm", name: peer }).count;
  return total;
}

/** Whether `user` is in one of this page's rooms (the only presence the protocol has). */
export function isPresent(state, user) {
  return Object.values(state.rooms).some((r) => r.joined && r.members.includes(user));
}

/** Conversations, the latest first. */
export function conversations(state) {
  return Object.values(state.dms).sort(
    (a, b) => (lastId(b.messages) ?? 0) - (lastId(a.messages) ?? 0) || a.peer.localeCompare(b.peer),
  );
}

export function pendingFor(state, target) {
  return state.pending.filter((p) => sameTarget(p.target, target));
}

/** What to keep across a reload (storage.js), or null to forget everything. */
export function snapshot(state) {
  const rooms = Object.keys(state.rooms);
  const peers = Object.keys(state.dms);
  if (!state.user || (!state.me && !state.token && !rooms.length && !peers.length)) return null;
  return {
    user: state.user,
    token: state.token,
    keep: state.keep,
    rooms,
    peers,
    dmAfter: state.dmAfter,
  };
}
