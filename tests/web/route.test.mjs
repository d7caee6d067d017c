// route.js: the links people share.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  formatHash,
  parseHash,
  sameTarget,
  targetLabel,
} from "../../securechat/server/web/static/route.js";

test("room and conversation links", () => {
  assert.deepEqual(parseHash("#/room/general"), { kind: "room", name: "general" });
  assert.deepEqual(parseHash("#/dm/bob"), { kind: "dm", name: "bob" });
  assert.deepEqual(
    parseHash("#/room/General/"),
    { kind: "room", name: "general" },
    "names are sent lowercase",
  );
  assert.deepEqual(parseHash("#/room/%23dev-team"), { kind: "room", name: "dev-team" });
});

test("anything else is no route", () => {
  for (const hash of [
    "",
    "#",
    "#/",
    "#/room/",
    "#/room/a/b",
    "#/user/bob",
    "#/room/-x",
    "#/room/a b",
    "#/room/%E0%A4%A",
    `#/room/${"a".repeat(33)}`,
    "#/room/<script>",
  ]) {
    assert.equal(parseHash(hash), null, hash);
  }
});

test("a target formats to the hash that parses back to it", () => {
  for (const target of [
    { kind: "room", name: "general" },
    { kind: "dm", name: "user_7" },
  ]) {
    assert.deepEqual(parseHash(formatHash(target)), target);
  }
  assert.equal(formatHash(null), "");
  assert.equal(targetLabel({ kind: "room", name: "general" }), "#general");
  assert.equal(targetLabel({ kind: "dm", name: "bob" }), "@bob");
  assert.ok(sameTarget({ kind: "dm", name: "bob" }, { kind: "dm", name: "bob" }));
  assert.ok(!sameTarget({ kind: "dm", name: "bob" }, { kind: "room", name: "bob" }));
  assert.ok(!sameTarget(null, { kind: "room", name: "bob" }));
});
