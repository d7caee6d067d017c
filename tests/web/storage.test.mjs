// storage.js: "keep me signed in" picks the store; nothing else leaks into it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { KEY, loadSaved, save } from "../../securechat/server/web/static/storage.js";

class FakeStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

const SNAP = {
  user: "alice",
  token: "t",
  keep: true,
  rooms: ["general"],
  peers: ["bob"],
  dmAfter: 12,
};

test("keep: localStorage; otherwise sessionStorage; switching clears the other", () => {
  const local = new FakeStorage();
  const session = new FakeStorage();
  save(local, session, SNAP);
  assert.ok(local.getItem(KEY));
  assert.equal(session.getItem(KEY), null);
  assert.deepEqual(loadSaved(local, session), SNAP);
  save(local, session, { ...SNAP, keep: false });
  assert.equal(local.getItem(KEY), null);
  assert.deepEqual(loadSaved(local, session), { ...SNAP, keep: false });
  assert.ok(!("keep" in JSON.parse(session.getItem(KEY))));
});

test("null forgets both", () => {
  const local = new FakeStorage();
  const session = new FakeStorage();
  save(local, session, SNAP);
  save(local, session, null);
  assert.deepEqual(loadSaved(local, session), {});
});

test("damaged or hostile data is read as nothing, or cleaned", () => {
  const local = new FakeStorage();
  local.setItem(KEY, "{not json");
  assert.deepEqual(loadSaved(local, null), {});
  local.setItem(KEY, JSON.stringify({ user: "Not A Name" }));
  assert.deepEqual(loadSaved(local, null), {});
  local.setItem(
    KEY,
    JSON.stringify({ user: "bob", token: 5, rooms: ["ok", "<bad>", 3], peers: "x", dmAfter: -1 }),
  );
  assert.deepEqual(loadSaved(local, null), {
    user: "bob",
    token: null,
    keep: true,
    rooms: ["ok"],
    peers: [],
    dmAfter: 0,
  });
});

test("a store that throws (disabled, full) does not break the page", () => {
  const broken = {
    getItem() {
      throw new Error("denied");
    },
    setItem() {
      throw new Error("full");
    },
    removeItem() {
      throw new Error("denied");
    },
  };
  assert.deepEqual(loadSaved(broken, broken), {});
  save(broken, broken, SNAP);
  save(broken, broken, null);
});
