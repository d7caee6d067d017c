// Links people share: #/room/NAME opens a room (joining it), #/dm/USER a conversation.
// A target is {kind: "room" | "dm", name}; the hash is only ever a view of one.

export const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** The target a location hash names, or null (no hash, another shape, a bad name). */
export function parseHash(hash) {
  const match = /^#\/(room|dm)\/([^/?#]+)\/?$/.exec(hash || "");
  if (!match) return null;
  let name;
  try {
    name = decodeURIComponent(match[2]).toLowerCase();
  } catch {
    return null; // "%E0%A4%A" and the like
  }
  if (name.startsWith("#") && match[1] === "room") name = name.slice(1);
  if (name.startsWith("@") && match[1] === "dm") name = name.slice(1);
  return NAME_RE.test(name) ? { kind: match[1], name } : null;
}

/** The hash of a target ("" for none); names need no escaping by their rule. */
export function formatHash(target) {
  return target ? `#/${target.kind}/${target.name}` : "";
}

export function sameTarget(a, b) {
  return a === b || (!!a && !!b && a.kind === b.kind && a.name === b.name);
}

/** "#general" or "@bob", as the page titles them. */
export function targetLabel(target) {
  if (!target) return "";
  return (target.kind === "room" ? "#" : "@") + target.name;
}
