// Shared files, the pure part: where an upload goes, how a file reads, what may be
// previewed, what an answer of the file API means. No DOM and no network (transfer.js
// does the HTTP), so node tests it.
//
// The file API (docs/protocol.md, "Files"): POST /api/files?room=NAME (or ?to=USER)
// with the login token as a bearer token and the file as the body; the answer is the
// message frame, which the WebSocket brings to every member too. GET /api/files/ID
// gives the bytes as an attachment.

/** The types the server gives as themselves (it sniffs them); anything else is bytes. */
export const SAFE_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
export const PREVIEW_MAX = 8 * 1024 * 1024; // larger images are only a link

/** `512 bytes`, `47.1 KiB`, `25.0 MiB`: as the terminal client says it. */
export function formatSize(count) {
  if (count < 1024) return `${count} byte${count === 1 ? "" : "s"}`;
  for (const [unit, scale] of [
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10],
  ]) {
    if (count >= scale) {
      const value = count / scale;
      return `${value < 10 ? value.toFixed(2) : value.toFixed(1)} ${unit}`;
    }
  }
  return `${count} bytes`;
}

/** The URL an upload to `target` ({kind: "room"|"dm", name}) is posted to. */
export function uploadPath(target, name, text = "") {
  const where = target.kind === "room" ? `room=${target.name}` : `to=${target.name}`;
  const caption = text ? `&text=${encodeURIComponent(text)}` : "";
  return `/api/files?${where}&name=${encodeURIComponent(name)}${caption}`;
}

/** The URL of a shared file's bytes (ids are URL-safe; encoded all the same). */
export function filePath(id) {
  return `/api/files/${encodeURIComponent(id)}`;
}

/** Whether a file is shown inline: one of the safe image types, not too large. */
export function isPreviewable(file) {
  return !!file && SAFE_IMAGES.has(file.mime) && file.size <= PREVIEW_MAX;
}

/** `notes.pdf (47.1 KiB)`. */
export function fileLabel(file) {
  return `${file.name} (${formatSize(file.size)})`;
}

/** The progress of an upload, as a sentence. */
export function progressText(name, loaded, total) {
  if (!total) return `Uploading ${name}…`;
  const share = Math.min(100, Math.floor((loaded / total) * 100));
  return `Uploading ${name}… ${share}% (${formatSize(loaded)} of ${formatSize(total)})`;
}

const REFUSALS = {
  400: "the server refused it",
  401: "your session has ended: sign in again",
  403: "you are not in that room",
  404: "that user does not exist",
  413: "it is too large",
  429: "too many uploads at once: try again in a moment",
  503: "the server could not store it: try again",
  507: "there is no space for it",
};

/** A sentence for an upload the server refused; `said` is its answer's text. */
export function uploadError(name, status, said = "") {
  if (status === 0) return `${name} was not sent: the connection failed.`;
  const reason = said.trim().split("\n")[0] || REFUSALS[status] || `error ${status}`;
  return `${name} was not shared: ${reason}.`.replace(/\.\.$/, ".");
}

/** Whether a drag carries files (not text or a link dragged from the page). */
export function carriesFiles(types) {
  return Array.from(types ?? []).includes("Files");
}
