// Message text: what the composer may send, how links are found, how times read.
// No DOM here: the view turns the segments into text nodes and <a> elements itself.

export const MAX_TEXT = 4000; // characters (code points) after stripping, as the server counts

// Every C0 control but \n and \t, DEL and C1: the server refuses them (bad_frame).
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/**
 * The text to send for what was typed or pasted, or an error to show beside the box.
 * Pasted `\r\n` becomes `\n` (the protocol asks clients to do so); other control
 * characters are dropped rather than refused, since nobody types them on purpose.
 */
export function prepareText(raw) {
  const text = raw.replace(/\r\n?/g, "\n").replace(CONTROL, "").trim();
  if (!text) return { error: "Nothing to send." };
  const length = [...text].length;
  if (length > MAX_TEXT) {
    return { error: `Too long: ${length} characters, at most ${MAX_TEXT}.` };
  }
  return { text };
}

// A URL starts at a word boundary with http:// or https:// and runs to white space or a
// character that cannot be part of one in running text.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?'"\]}>]$/;

function trimUrl(candidate) {
  let url = candidate;
  for (;;) {
    if (TRAILING.test(url)) {
      url = url.slice(0, -1);
    } else if (url.endsWith(")") && count(url, "(") < count(url, ")")) {
      url = url.slice(0, -1); // "(see https://example.com)" keeps its own parenthesis
    } else {
      return url;
    }
  }
}

function count(text, char) {
  return text.split(char).length - 1;
}

/**
 * `text` cut into segments `{text}` and `{text, href}` that put together give `text`
 * back. Only http and https become links, and `href` is the URL as the URL parser reads
 * it, so a `javascript:` or other scheme never reaches an `href`.
 */
export function splitLinks(text) {
  const segments = [];
  let done = 0;
  for (const match of text.matchAll(URL_RE)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (!href) continue;
    if (match.index > done) segments.push({ text: text.slice(done, match.index) });
    segments.push({ text: url, href });
    done = match.index + url.length;
  }
  if (done < text.length) segments.push({ text: text.slice(done) });
  return segments;
}

function safeHref(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return null;
  if (!parsed.hostname) return null;
  return parsed.href;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/**
 * A server's message made a sentence for the status line, which strings several
 * together: "the server is shutting down" -> "The server is shutting down."
 */
export function sentence(text) {
  const trimmed = String(text ?? "").trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** "14:05" for a time today, "2026-11-25 14:05" otherwise (local time). */
export function shortTime(ts, now = new Date()) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  const sameDay =
    date.getFullYear() === now.getFullYear() &&
    date.getMonth() === now.getMonth() &&
    date.getDate() === now.getDate();
  return sameDay ? clock : `${localDate(date)} ${clock}`;
}

/** "2026-11-25 14:05:09" (local time), for titles. */
export function longTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return "";
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${localDate(date)} ${clock}`;
}

function localDate(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}
