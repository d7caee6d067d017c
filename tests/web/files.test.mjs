// files.js: where an upload goes, how a file reads, what is previewed; and state.js
// keeps the file a message carries.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  PREVIEW_MAX,
  carriesFiles,
  fileLabel,
  filePath,
  formatSize,
  isPreviewable,
  progressText,
  uploadError,
  uploadPath,
} from "../../securechat/server/web/static/files.js";
import { frame, online, run } from "./helpers.mjs";

const FILE = {
  id: "AbC-12_x",
  name: "notes.pdf",
  size: 48213,
  sha256: "ab".repeat(32),
  mime: "application/octet-stream",
};
const TS = "2026-11-26T02:20:28.123Z";

test("sizes read as the terminal client says them", () => {
  assert.equal(formatSize(0), "0 bytes");
  assert.equal(formatSize(1), "1 byte");
  assert.equal(formatSize(1023), "1023 bytes");
  assert.equal(formatSize(1024), "1.00 KiB");
  assert.equal(formatSize(48213), "47.1 KiB");
  assert.equal(formatSize(25 * 2 ** 20), "25.0 MiB");
  assert.equal(formatSize(2 ** 30), "1.00 GiB");
  assert.equal(fileLabel(FILE), "notes.pdf (47.1 KiB)");
});

test("uploads go to the room or the user, the name and caption encoded", () => {
  assert.equal(
    uploadPath({ kind: "room", name: "general" }, "a b&c=d.pdf"),
    "/api/files?room=general&name=a%20b%26c%3Dd.pdf",
  );
  assert.equal(
    uploadPath({ kind: "dm", name: "bob" }, "r\u00e9sum\u00e9.txt", "for you"),
    "/api/files?to=bob&name=r%C3%A9sum%C3%A9.txt&text=for%20you",
  );
  assert.equal(filePath("AbC-12_x"), "/api/files/AbC-12_x");
  assert.equal(filePath("../x"), "/api/files/..%2Fx");
});

test("only the safe image types, not too large, are previewed", () => {
  for (const mime of ["image/png", "image/jpeg", "image/gif", "image/webp"]) {
    assert.ok(isPreviewable({ ...FILE, mime }), mime);
  }
  for (const mime of ["image/svg+xml", "text/html", "application/octet-stream", "image/png; x"]) {
    assert.ok(!isPreviewable({ ...FILE, mime }), mime);
  }
  assert.ok(!isPreviewable({ ...FILE, mime: "image/png", size: PREVIEW_MAX + 1 }));
  assert.ok(!isPreviewable(undefined));
});

test("progress and refusals are sentences", () => {
  assert.equal(progressText("a.pdf", 0, 0), "Uploading a.pdf…");
  assert.equal(
    progressText("a.pdf", 512 * 1024, 2 ** 20),
    "Uploading a.pdf… 50% (512.0 KiB of 1.00 MiB)",
  );
  assert.equal(
    uploadError("a.pdf", 413, "the file is larger than 25 MiB\n"),
    "a.pdf was not shared: the file is larger than 25 MiB.",
  );
  assert.equal(uploadError("a.pdf", 507, ""), "a.pdf was not shared: there is no space for it.");
  assert.equal(uploadError("a.pdf", 0), "a.pdf was not sent: the connection failed.");
  assert.equal(uploadError("a.pdf", 418), "a.pdf was not shared: error 418.");
});

test("a drag of files, not of text, is a drop of files", () => {
  assert.ok(carriesFiles(["Files"]));
  assert.ok(!carriesFiles(["text/plain", "text/uri-list"]));
  assert.ok(!carriesFiles(undefined));
});

test("a message, a direct message and an edit keep the file they carry", () => {
  let state = online();
  const message = { type: "message", room: "general", id: 11, user: "bob", text: "", ts: TS };
  Object.assign(message, { file: FILE });
  state = run(state, frame(message)).state;
  const kept = state.rooms.general.messages.at(-1);
  assert.deepEqual(kept.file, FILE);
  assert.equal(kept.text, "");
  const text = "now with words";
  const edit = { type: "edited", room: "general", id: 11, user: "bob", text, ts: TS };
  state = run(state, frame(edit)).state;
  assert.deepEqual(state.rooms.general.messages.at(-1).file, FILE);
  assert.equal(state.rooms.general.messages.at(-1).text, "now with words");
  const dm = { type: "dm", id: 5, from: "bob", to: "alice", text: "", ts: TS, file: FILE };
  state = run(state, frame(dm)).state;
  assert.deepEqual(state.dms.bob.messages.at(-1).file, FILE);
  const plain = run(state, frame({ ...message, id: 12, file: undefined, text: "hi" })).state;
  assert.ok(!("file" in plain.rooms.general.messages.at(-1)));
});
