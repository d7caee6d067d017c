// What survives a reload: the user, the login token, the rooms and conversations, the
// last direct-message id held. Never the password.
//
// "Keep me signed in" puts it in localStorage (survives closing the browser); otherwise
// sessionStorage (this tab only, survives a reload). Both stores are passed in, so the
// tests use plain objects.

import { NAME_RE } from "./route.js";

export const KEY = "securechat";

function names(value) {
  return Array.isArray(value) ? value.filter((n) => typeof n === "string" && NAME_RE.test(n)) : [];
}

/** The saved session, or {} when there is none (or it is unreadable). */
export function loadSaved(local, session) {
  for (const store of [local, session]) {
    let data;
    try {
      data = JSON.parse(store?.getItem(KEY) ?? "null");
    } catch {
      continue;
    }
    if (!data || typeof data !== "object" || !NAME_RE.test(data.user ?? "")) continue;
    return {
      user: data.user,
      token: typeof data.token === "string" && data.token ? data.token : null,
      keep: store === local,
      rooms: names(data.rooms),
      peers: names(data.peers),
      dmAfter: Number.isSafeInteger(data.dmAfter) && data.dmAfter > 0 ? data.dmAfter : 0,
    };
  }
  return {};
}

/** Write `snapshot` to the store its `keep` picks, and clear the other; null forgets. */
export function save(local, session, snapshot) {
  if (!snapshot) {
    for (const store of [local, session]) tryRemove(store);
    return;
  }
  const [target, other] = snapshot.keep ? [local, session] : [session, local];
  const { keep, ...data } = snapshot;
  tryRemove(other);
  try {
    target?.setItem(KEY, JSON.stringify(data));
  } catch {
    // storage full or disabled (private mode): the page still works, reloads ask again
  }
}

function tryRemove(store) {
  try {
    store?.removeItem(KEY);
  } catch {
    // disabled storage
  }
}
