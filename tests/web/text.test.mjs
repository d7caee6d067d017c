// text.js: what may be sent, where the links are, how times read.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  longTime,
  prepareText,
  sentence,
  shortTime,
  splitLinks,
} from "../../securechat/server/web/static/text.js";

const join = (segments) => segments.map((s) => s.text).join("");

test("prepareText strips, turns CRLF into LF, drops control characters, counts code points", () => {
  assert.deepEqual(prepareText("  hi\r\nthere\r  "), { text: "hi\nthere" });
  assert.deepEqual(prepareText("tab\tand\u0007bell\u009b"), { text: "tab\tandbell" });
  assert.ok(prepareText(" \n\t ").error);
  assert.deepEqual(
    prepareText("😀".repeat(4000)),
    { text: "😀".repeat(4000) },
    "4000 characters, 8000 UTF-16 units",
  );
  assert.match(prepareText("x".repeat(4001)).error, /4001 characters, at most 4000/);
});

test("plain text, and markup, stay text", () => {
  const text = '<img src=x onerror=alert(1)> & <a href="javascript:alert(1)">x</a>';
  assert.deepEqual(splitLinks(text), [{ text }]);
  assert.deepEqual(splitLinks(""), []);
});

test("http and https links are found and the segments give the text back", () => {
  const text = "see https://example.com/a?b=1&c=2#d, and http://127.0.0.1:7443/#/room/general.";
  const segments = splitLinks(text);
  assert.equal(join(segments), text);
  assert.deepEqual(
    segments.filter((s) => s.href).map((s) => [s.text, s.href]),
    [
      ["https://example.com/a?b=1&c=2#d", "https://example.com/a?b=1&c=2#d"],
      ["http://127.0.0.1:7443/#/room/general", "http://127.0.0.1:7443/#/room/general"],
    ],
  );
});

test("trailing punctuation and an unbalanced parenthesis stay outside the link", () => {
  const text = "(see https://en.wikipedia.org/wiki/Tree_(data_structure)) or https://x.org/!";
  const links = splitLinks(text)
    .filter((s) => s.href)
    .map((s) => s.text);
  assert.deepEqual(links, [
    "https://en.wikipedia.org/wiki/Tree_(data_structure)",
    "https://x.org/",
  ]);
  assert.equal(join(splitLinks(text)), text);
});

test("other schemes and look-alikes never become links", () => {
  for (const text of [
    "javascript:alert(1)",
    "data:text/html,hi",
    "ftp://example.com",
    "xhttps://evil.com",
    "https://",
    "mailto:a@b.c",
  ]) {
    assert.ok(!splitLinks(text).some((s) => s.href), text);
  }
  const sneaky = splitLinks('https://example.com/"onmouseover="alert(1)');
  assert.equal(sneaky[0].href, "https://example.com/", "a quote ends the link");
});

test("times: the clock for today, the date as well otherwise", () => {
  const now = new Date(2026, 10, 26, 15, 0, 0);
  assert.equal(shortTime(new Date(2026, 10, 26, 9, 5, 0).toISOString(), now), "09:05");
  assert.equal(shortTime(new Date(2026, 10, 25, 23, 59, 0).toISOString(), now), "2026-11-25 23:59");
  assert.equal(longTime(new Date(2026, 0, 2, 3, 4, 5).toISOString()), "2026-01-02 03:04:05");
  assert.equal(shortTime("not a time", now), "");
});

test("a server's message becomes a sentence for the status line", () => {
  assert.equal(sentence("the server is shutting down"), "The server is shutting down.");
  assert.equal(sentence(" Too fast (try again in 2 s) "), "Too fast (try again in 2 s).");
  assert.equal(sentence("Already one."), "Already one.");
  assert.equal(sentence("what?"), "What?");
  assert.equal(sentence(""), "");
  assert.equal(sentence(undefined), "");
});
