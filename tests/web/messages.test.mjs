// messages.js: sorted by id, each id once, whatever order pages and events arrive in.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  insertMessage,
  mergeMessages,
  patchMessage,
  removeMessage,
} from "../../securechat/server/web/static/messages.js";
import { ids, msg, range } from "./helpers.mjs";

test("insert appends, places a late one, and replaces a duplicate", () => {
  let list = insertMessage([], msg("r", 2));
  list = insertMessage(list, msg("r", 5));
  list = insertMessage(list, msg("r", 3));
  list = insertMessage(list, msg("r", 1));
  assert.deepEqual(ids(list), [1, 2, 3, 5]);
  const again = insertMessage(list, msg("r", 3, "bob", "new text"));
  assert.deepEqual(ids(again), [1, 2, 3, 5]);
  assert.equal(again[2].text, "new text");
  assert.equal(list[2].text, "m3", "the old list is unchanged");
});

test("merge dedupes and sorts pages in any order; the page's copy wins", () => {
  const live = [msg("r", 10), msg("r", 11)];
  const page = range(5, 10, "r").map((m) => (m.id === 10 ? { ...m, text: "edited" } : m));
  const merged = mergeMessages(live, page);
  assert.deepEqual(ids(merged), [5, 6, 7, 8, 9, 10, 11]);
  assert.equal(merged.find((m) => m.id === 10).text, "edited");
  assert.equal(mergeMessages(live, []), live, "an empty page without a range changes nothing");
});

test("merge with a range drops held messages the page lacks (deleted meanwhile)", () => {
  const held = range(1, 8, "r");
  const page = range(4, 6, "r").filter((m) => m.id !== 5);
  assert.deepEqual(ids(mergeMessages(held, page, { lo: 4, hi: 6 })), [1, 2, 3, 4, 6, 7, 8]);
  assert.deepEqual(ids(mergeMessages(held, [], { lo: 7, hi: 100 })), [1, 2, 3, 4, 5, 6]);
});

test("remove and patch touch one id; an unknown id leaves the list as it was", () => {
  const list = range(1, 3, "r");
  assert.deepEqual(ids(removeMessage(list, 2)), [1, 3]);
  assert.equal(removeMessage(list, 9), list);
  assert.equal(patchMessage(list, 3, { text: "x" })[2].text, "x");
  assert.equal(patchMessage(list, 9, { text: "x" }), list);
});
