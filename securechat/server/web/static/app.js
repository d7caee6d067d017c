// The page's edge: the WebSocket, timers, storage, the location hash, focus. Everything
// that decides lives in state.js; this file feeds it events and carries out its answers.

import { Backoff } from "./backoff.js";
import { formatHash, parseHash } from "./route.js";
import { initialState, isOnline, keyOf, snapshot, update } from "./state.js";
import { loadSaved, save } from "./storage.js";
import { createView } from "./view.js";

const KEEPALIVE = 25_000; // ms of our silence before we ping
const DEAD_AFTER = 70_000; // ms without a frame from the server: the connection is gone
const NOTICE_FOR = 8_000;
const SEEN_EVERY = 500; // ms between read-marker updates at most

function storage(name) {
  try {
    return window[name];
  } catch {
    return null; // storage disabled for this site
  }
}

const local = storage("localStorage");
const session = storage("sessionStorage");
let state = initialState(loadSaved(local, session));
let savedJson = JSON.stringify(snapshot(state));
const backoff = new Backoff();
let socket = null;
let reconnectTimer = null;
let lastHeard = 0;
let lastSent = 0;
const queue = [];
let busy = false;
const noticeTimers = new Set();
let seenTimer = null;

const view = createView(dispatch);

/** Apply events in order (an event may cause more, e.g. closing the socket). */
function dispatch(event) {
  queue.push(event);
  if (busy) return;
  busy = true;
  try {
    while (queue.length) {
      const result = update(state, queue.shift());
      state = result.state;
      for (const frame of result.send) transmit(frame);
      if (result.close) dropSocket();
    }
  } finally {
    busy = false;
  }
  afterChange();
}

function afterChange() {
  persist();
  view.render(state);
  syncHash();
  manageConnection();
  scheduleNotices();
  scheduleSeen();
}

function persist() {
  const snap = snapshot(state);
  const json = JSON.stringify(snap);
  if (json === savedJson) return;
  savedJson = json;
  save(local, session, snap);
}

// ------------------------------------------------------------------ the connection

function wanted() {
  return state.phase !== "signin";
}

function manageConnection() {
  if (!wanted()) {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (socket) dropSocket();
    return;
  }
  if (!socket && reconnectTimer === null) connect();
}

function connect() {
  const ws = new WebSocket(`wss://${location.host}/ws`);
  socket = ws;
  lastHeard = lastSent = Date.now();
  ws.addEventListener("message", (event) => {
    if (ws !== socket) return;
    lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // not a frame; the server never sends one
    }
    if (frame?.type === "login_ok") backoff.connected();
    dispatch({ type: "frame", frame });
  });
  ws.addEventListener("close", () => {
    if (ws !== socket) return; // one we dropped already
    socket = null;
    backoff.lost();
    scheduleReconnect();
    dispatch({ type: "closed" });
  });
  dispatch({ type: "connecting" });
}

/** Forget the socket now (the state hears of it at once) and close it. */
function dropSocket() {
  const ws = socket;
  if (!ws) return;
  socket = null;
  ws.close();
  backoff.lost();
  if (wanted()) scheduleReconnect();
  dispatch({ type: "closed" });
}

function scheduleReconnect() {
  if (!wanted() || reconnectTimer !== null) return;
  const delay = Math.max(backoff.nextDelay(), state.retryAfter || 0);
  reconnectTimer = setTimeout(() => {
    reconnectTimer = null;
    manageConnection();
  }, delay * 1000);
  dispatch({ type: "waiting", delay });
}

function reconnectNow() {
  if (socket || !wanted()) return;
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  backoff.reset();
  manageConnection();
}

function transmit(frame) {
  if (socket?.readyState !== WebSocket.OPEN) return; // the close event will tell the state
  socket.send(JSON.stringify(frame));
  lastSent = Date.now();
}

setInterval(() => {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  const now = Date.now();
  if (now - lastHeard > DEAD_AFTER)
    dropSocket(); // asleep laptop, lost Wi-Fi
  else if (now - lastSent > KEEPALIVE) transmit({ type: "ping" });
}, 5_000);

document.getElementById("reconnect-now").addEventListener("click", reconnectNow);
window.addEventListener("online", reconnectNow);

// ------------------------------------------------------------------ location hash

function syncHash() {
  if (!state.me) return; // before login the hash is what was asked for
  const hash = formatHash(state.current);
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname);
}

window.addEventListener("hashchange", () => {
  const target = parseHash(location.hash);
  if (target) dispatch({ type: "open", target });
});

// ------------------------------------------------------------------ notices, read markers

function scheduleNotices() {
  for (const n of state.notices) {
    if (noticeTimers.has(n.id)) continue;
    noticeTimers.add(n.id);
    setTimeout(() => {
      noticeTimers.delete(n.id);
      dispatch({ type: "dismiss", id: n.id });
    }, NOTICE_FOR);
  }
}

/** Mark as read what is in view of the current room or conversation, when the page has focus. */
function reportSeen() {
  seenTimer = null;
  const target = state.current;
  if (!target || !isOnline(state)) return;
  if (document.visibilityState !== "visible" || !document.hasFocus()) return;
  const id = view.visibleLastId();
  if (id !== null && id > (state.reads[keyOf(target)] ?? 0)) dispatch({ type: "seen", target, id });
}

function scheduleSeen() {
  if (seenTimer === null) seenTimer = setTimeout(reportSeen, SEEN_EVERY);
}

view.onScroll = scheduleSeen;
window.addEventListener("focus", scheduleSeen);
document.addEventListener("visibilitychange", scheduleSeen);

// ------------------------------------------------------------------ start

const asked = parseHash(location.hash);
if (asked) dispatch({ type: "open", target: asked });
else afterChange();
