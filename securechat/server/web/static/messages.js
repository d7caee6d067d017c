// Message lists: sorted by id, each id once. Pure functions on immutable arrays.
//
// Why ids and not arrival order: a room's ids only grow and are never reused, so the id
// is the order every member sees; a message that arrives twice (live, then again in a
// catch-up page) or late (an older page) lands in its one place. Direct messages have
// ids unique across all conversations, which orders a conversation the same way.

/** A copy of `list` with `message` in its place; an existing id is replaced. */
export function insertMessage(list, message) {
  const last = list.length ? list[list.length - 1].id : 0;
  if (message.id > last) return [...list, message]; // the common case: a new message
  const index = list.findIndex((m) => m.id >= message.id);
  const copy = list.slice();
  if (list[index].id === message.id) copy[index] = message;
  else copy.splice(index, 0, message);
  return copy;
}

/**
 * `list` and `page` merged, sorted by id, the page's copy winning (it is newer: an edit).
 * With `range` ({lo, hi}, inclusive), the page is everything that exists in that id
 * range, so a held message inside it that the page lacks was deleted meanwhile: dropped.
 */
export function mergeMessages(list, page, range = null) {
  if (!page.length && !range) return list;
  const byId = new Map();
  for (const m of list) {
    if (!range || m.id < range.lo || m.id > range.hi) byId.set(m.id, m);
  }
  for (const m of page) byId.set(m.id, m);
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

/** A copy without the message `id` (the same list when it is not there). */
export function removeMessage(list, id) {
  const index = list.findIndex((m) => m.id === id);
  if (index < 0) return list;
  return [...list.slice(0, index), ...list.slice(index + 1)];
}

/** A copy with message `id` changed by `patch` (the same list when it is not there). */
export function patchMessage(list, id, patch) {
  const index = list.findIndex((m) => m.id === id);
  if (index < 0) return list;
  const copy = list.slice();
  copy[index] = { ...list[index], ...patch };
  return copy;
}

export function firstId(list) {
  return list.length ? list[0].id : null;
}

export function lastId(list) {
  return list.length ? list[list.length - 1].id : null;
}
