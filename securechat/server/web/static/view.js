// The views: render(state) makes the page show the state; the page's own elements (in
// index.html) send what the person does to `dispatch` as events for state.js.
//
// Every piece of text from the network goes in with textContent or as a text node,
// never as HTML; links are <a> elements built here with an href that text.js checked
// (http or https only). No inline styles: the Content-Security-Policy forbids them.

import { carriesFiles, fileLabel, isPreviewable, progressText, uploadError } from "./files.js";
import { NAME_RE, formatHash, sameTarget, targetLabel } from "./route.js";
import { conversations, isOnline, isPresent, pendingFor, totalUnread, unread } from "./state.js";
import { longTime, prepareText, sentence, shortTime, splitLinks } from "./text.js";
import { fetchFile, saveFile, upload } from "./transfer.js";

const PREVIEWS_KEPT = 100; // image previews kept as object URLs (the oldest are let go)

/** An element: `h("a", {href, className, "aria-label": ...}, child, ...)`. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "hidden" || name === "disabled") el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/**
 * Fill `container` with `build()` unless what it would show (`signature`) is what it
 * shows: rebuilding a list on every render would take the keyboard focus away from
 * whoever is tabbing through it each time a message arrives.
 */
function fill(container, signature, build) {
  const json = JSON.stringify(signature);
  if (container.dataset.shown === json) return;
  container.dataset.shown = json;
  // as in h(): no child for null (replaceChildren would write the text "null")
  container.replaceChildren(...build().filter((child) => child !== null && child !== undefined));
}

/** An unread count that a screen reader reads as "3 unread". */
function badge(count) {
  return h(
    "span",
    { className: "badge" },
    h("span", { className: "visually-hidden" }, " "),
    count,
    h("span", { className: "visually-hidden" }, " unread"),
  );
}

/** Message text as text nodes and safe links; newlines stay (CSS pre-wrap). */
export function textNodes(text) {
  return splitLinks(text).map((segment) =>
    segment.href
      ? h("a", { href: segment.href, target: "_blank", rel: "noopener noreferrer" }, segment.text)
      : document.createTextNode(segment.text),
  );
}

function submitOnEnter(event, submit) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
}

export function createView(dispatch) {
  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("status"),
    statusText: $("status-text"),
    reconnectNow: $("reconnect-now"),
    notices: $("notices"),
    signin: $("signin"),
    signinForm: $("signin-form"),
    signinError: $("signin-error"),
    signinUser: $("signin-user"),
    signinPassword: $("signin-password"),
    signinKeep: $("signin-keep"),
    signinSubmit: $("signin-submit"),
    splash: $("splash"),
    chat: $("chat"),
    title: $("title"),
    titleNote: $("title-note"),
    leave: $("leave"),
    whoami: $("whoami"),
    logout: $("logout"),
    toggleSidebar: $("toggle-sidebar"),
    toggleMembers: $("toggle-members"),
    roomList: $("room-list"),
    joinForm: $("join-form"),
    joinRoom: $("join-room"),
    browse: $("browse"),
    directory: $("directory"),
    dmList: $("dm-list"),
    dmForm: $("dm-form"),
    dmUser: $("dm-user"),
    log: $("log"),
    older: $("older"),
    logStart: $("log-start"),
    messages: $("messages"),
    empty: $("empty"),
    composer: $("composer"),
    compose: $("compose"),
    send: $("send"),
    composeError: $("compose-error"),
    conversation: $("conversation"),
    attach: $("attach"),
    attachInput: $("attach-input"),
    uploads: $("uploads"),
    memberList: $("member-list"),
  };
  let state = null; // the state last rendered
  const nodes = new Map(); // message key -> {node, data, mode}
  let shownTarget = null;
  let focusAfter = null;

  // ------------------------------------------------------------ what the person does

  el.signinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    dispatch({
      type: "signin",
      user: el.signinUser.value,
      password: el.signinPassword.value,
      keep: el.signinKeep.checked,
    });
    el.signinPassword.value = "";
  });

  el.logout.addEventListener("click", () => dispatch({ type: "logout" }));
  el.leave.addEventListener("click", () => {
    if (state?.current?.kind === "room") dispatch({ type: "leave", room: state.current.name });
  });

  const toggle = (className, button) => {
    const open = document.body.classList.toggle(className);
    button.setAttribute("aria-expanded", String(open));
  };
  el.toggleSidebar.addEventListener("click", () => toggle("sidebar-open", el.toggleSidebar));
  el.toggleMembers.addEventListener("click", () => toggle("members-open", el.toggleMembers));

  const openByName = (kind, input) => {
    const name = input.value.trim().toLowerCase().replace(/^[#@]/, "");
    if (!name) return;
    if (!NAME_RE.test(name)) {
      const what = kind === "room" ? "A room name" : "A user name";
      dispatch({ type: "notice", text: `${what} is 1-32 characters: a-z, 0-9, _ and -.` });
      return;
    }
    input.value = "";
    closeDrawers();
    dispatch({ type: "open", target: { kind, name } });
  };
  el.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    openByName("room", el.joinRoom);
  });
  el.dmForm.addEventListener("submit", (event) => {
    event.preventDefault();
    openByName("dm", el.dmUser);
  });
  el.browse.addEventListener("toggle", () => {
    if (el.browse.open) dispatch({ type: "browse" });
  });

  const send = () => {
    const prepared = prepareText(el.compose.value);
    if (prepared.error) {
      el.composeError.textContent = prepared.error;
      el.composeError.hidden = false;
      return;
    }
    el.composeError.hidden = true;
    el.compose.value = "";
    dispatch({ type: "compose", text: prepared.text });
  };
  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  el.compose.addEventListener("keydown", (event) => submitOnEnter(event, send));
  el.compose.addEventListener("input", () => {
    el.composeError.hidden = true;
  });

  // ------------------------------------------------------------ shared files

  // Uploads go straight to the file API (transfer.js); the message they post comes back
  // over the WebSocket like any other. Each shows its progress here until it is done.
  const canUpload = (s) =>
    !!s?.token &&
    !!s.current &&
    isOnline(s) &&
    (s.current.kind !== "room" || !!s.rooms[s.current.name]?.joined);

  const startUploads = (files) => {
    if (!canUpload(state)) return;
    for (const file of Array.from(files)) {
      const text = h("span", {}, progressText(file.name, 0, file.size));
      const bar = h("progress", { max: String(file.size || 1), value: "0" });
      const cancel = h("button", { type: "button", className: "link-button" }, "Cancel");
      const item = h("li", { className: "upload" }, text, " ", bar, " ", cancel);
      el.uploads.append(item);
      const sending = upload(file, state.current, state.token, (loaded, total) => {
        text.textContent = progressText(file.name, loaded, total);
        bar.max = total || 1;
        bar.value = loaded;
      });
      let cancelled = false;
      cancel.addEventListener("click", () => {
        cancelled = true;
        sending.abort();
      });
      sending.done.then(
        () => item.remove(),
        (error) => {
          item.remove();
          if (!cancelled) {
            dispatch({ type: "notice", text: uploadError(file.name, error.status, error.message) });
          }
        },
      );
    }
  };
  el.attach.addEventListener("click", () => el.attachInput.click());
  el.attachInput.addEventListener("change", () => {
    startUploads(el.attachInput.files);
    el.attachInput.value = "";
  });
  el.conversation.addEventListener("dragover", (event) => {
    if (!carriesFiles(event.dataTransfer?.types) || !canUpload(state)) return;
    event.preventDefault(); // (says: a drop is welcome here)
    event.dataTransfer.dropEffect = "copy";
    el.conversation.classList.add("dropping");
  });
  el.conversation.addEventListener("dragleave", (event) => {
    if (!el.conversation.contains(event.relatedTarget)) {
      el.conversation.classList.remove("dropping");
    }
  });
  el.conversation.addEventListener("drop", (event) => {
    el.conversation.classList.remove("dropping");
    if (!carriesFiles(event.dataTransfer?.types)) return;
    event.preventDefault(); // (else the browser opens the file)
    startUploads(event.dataTransfer.files);
  });

  // Previews of safe images: fetched once with the token, shown from an object URL.
  const previews = new Map(); // file id -> Promise of an object URL
  const preview = (file) => {
    let url = previews.get(file.id);
    if (!url) {
      url = fetchFile(file.id, state.token).then((blob) => URL.createObjectURL(blob));
      url.catch(() => previews.delete(file.id)); // (tried again when shown again)
      previews.set(file.id, url);
      if (previews.size > PREVIEWS_KEPT) {
        const [oldest, gone] = previews.entries().next().value;
        previews.delete(oldest);
        gone.then((old) => URL.revokeObjectURL(old), () => {});
      }
    }
    return url;
  };
  const download = (file) =>
    saveFile(file, state.token).catch((error) => {
      const why = error.message.trim() || `error ${error.status}`;
      dispatch({ type: "notice", text: `${file.name} could not be downloaded: ${why}` });
    });

  function attachment(file) {
    const box = h(
      "div",
      { className: "file" },
      h(
        "button",
        {
          type: "button",
          className: "link-button file-link",
          onclick: () => download(file),
          title: `Download ${file.name}`,
        },
        fileLabel(file),
      ),
    );
    if (isPreviewable(file)) {
      const image = h("img", { className: "preview", alt: file.name, hidden: true });
      image.addEventListener("click", () => download(file));
      preview(file).then(
        (url) => {
          image.src = url;
          image.hidden = false;
        },
        () => {}, // (the link is there)
      );
      box.append(image);
    }
    return box;
  }

  el.older.addEventListener("click", () => dispatch({ type: "older" }));
  let onScroll = null; // app.js: a scroll may show unread messages
  el.log.addEventListener("scroll", () => {
    if (el.log.scrollTop < 60 && canLoadOlder(state)) dispatch({ type: "older" });
    onScroll?.();
  });

  // Closing the drawers on a narrow screen once something was picked in them.
  const closeDrawers = () => {
    document.body.classList.remove("sidebar-open", "members-open");
    el.toggleSidebar.setAttribute("aria-expanded", "false");
    el.toggleMembers.setAttribute("aria-expanded", "false");
  };
  // A tap outside an open drawer (on the conversation) closes it too, as on any phone.
  el.chat.addEventListener("click", (event) => {
    const inside = event.target.closest?.("#sidebar, #members, .topbar");
    if (!inside || event.target.closest?.("#sidebar a, #members a, #leave")) closeDrawers();
  });

  // ------------------------------------------------------------ rendering

  function render(next) {
    const previous = state;
    state = next;
    renderStatus(next);
    renderNotices(next);
    const signin = next.phase === "signin";
    const chat = !signin && next.me !== null;
    if (!chat) delete el.chat.dataset.shown;
    el.signin.hidden = !signin;
    el.splash.hidden = signin || chat;
    el.chat.hidden = !chat;
    if (signin) renderSignin(next, previous);
    if (!chat) return;
    if (el.chat.dataset.shown !== "yes") {
      el.chat.dataset.shown = "yes";
      focusAfter = el.compose; // just signed in: the focus was on the form, now hidden
    }
    el.whoami.textContent = next.me;
    renderHeader(next);
    renderTargets(next);
    renderDirectory(next);
    renderMembers(next);
    renderLog(next);
    if (focusAfter) {
      focusAfter.focus();
      focusAfter = null;
    }
  }

  function renderStatus(s) {
    let text = "";
    let offline = false;
    if (s.phase !== "signin") {
      if (s.conn === "online") text = s.synced ? "" : "Catching up…";
      else if (s.conn === "open") text = "Signing in…";
      else if (s.conn === "connecting") text = "Connecting…";
      else {
        offline = true;
        const note = s.connNote ? ` ${sentence(s.connNote)}` : "";
        const when =
          s.reconnectIn === null
            ? ""
            : ` Reconnecting in ${Math.max(1, Math.round(s.reconnectIn))} s.`;
        text = `Offline.${note}${when}`;
      }
    }
    el.status.hidden = !text;
    el.status.classList.toggle("offline", offline);
    if (el.statusText.textContent !== text) el.statusText.textContent = text;
    el.reconnectNow.hidden = !offline;
    document.body.classList.toggle("is-offline", offline);
  }

  function renderNotices(s) {
    const shown = new Map([...el.notices.children].map((node) => [Number(node.dataset.id), node]));
    for (const [id, node] of shown) if (!s.notices.some((n) => n.id === id)) node.remove();
    for (const n of s.notices) {
      if (shown.has(n.id)) continue;
      const node = h(
        "div",
        { className: "notice", role: "alert", "data-id": n.id },
        h("span", {}, n.text),
        h(
          "button",
          {
            type: "button",
            className: "link-button",
            "aria-label": "Dismiss",
            onclick: () => dispatch({ type: "dismiss", id: n.id }),
          },
          "×",
        ),
      );
      el.notices.append(node);
    }
  }

  function renderSignin(s, previous) {
    if (!previous || previous.phase !== "signin") {
      if (!el.signinUser.value) el.signinUser.value = s.user;
      el.signinKeep.checked = s.keep;
      (el.signinUser.value ? el.signinPassword : el.signinUser).focus();
    }
    el.signinError.textContent = s.authError;
    el.signinError.hidden = !s.authError;
  }

  function renderHeader(s) {
    const target = s.current;
    el.title.textContent = target ? targetLabel(target) : "securechat";
    let note = "";
    if (target?.kind === "room") {
      const room = s.rooms[target.name];
      if (room?.joined) note = `${room.members.length} here`;
    } else if (target?.kind === "dm") {
      note = isPresent(s, target.name) ? "online" : "";
    }
    el.titleNote.textContent = note;
    const leavable = target?.kind === "room" && !!s.rooms[target.name];
    el.leave.hidden = !leavable;
    if (leavable) el.leave.textContent = `Leave #${target.name}`;
    const title = target ? `${targetLabel(target)} – securechat` : "securechat";
    const total = totalUnread(s);
    // on a phone the list is in a drawer: its toggle carries the count
    fill(el.toggleSidebar, total, () => ["Rooms", total ? badge(String(total)) : null]);
    document.title = total ? `(${total}) ${title}` : title;
  }

  function targetItem({ target, unread: { count, more }, current }, label, { before, after } = {}) {
    return h(
      "li",
      {},
      h(
        "a",
        {
          href: formatHash(target),
          className: count ? "target unread" : "target",
          "aria-current": current ? "page" : null,
        },
        before,
        h("span", { className: "target-name" }, label),
        after,
        count ? badge(`${count}${more ? "+" : ""}`) : null,
      ),
    );
  }

  function renderTargets(s) {
    const rooms = Object.values(s.rooms)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((room) => {
        const target = { kind: "room", name: room.name };
        return {
          target,
          unread: unread(s, target),
          current: sameTarget(s.current, target),
          joining: !room.joined && isOnline(s),
        };
      });
    fill(el.roomList, rooms, () =>
      rooms.map((r) =>
        targetItem(
          r,
          `#${r.target.name}`,
          { after: r.joining ? h("span", { className: "muted" }, " (joining)") : null },
        ),
      ),
    );
    const dms = conversations(s).map((conv) => {
      const target = { kind: "dm", name: conv.peer };
      return {
        target,
        unread: unread(s, target),
        current: sameTarget(s.current, target),
        present: isPresent(s, conv.peer),
      };
    });
    fill(el.dmList, dms, () =>
      dms.map((d) => {
        const dot = h(
          "span",
          {
            className: d.present ? "presence on" : "presence",
            title: d.present ? "online" : "not in your rooms",
          },
          h("span", { className: "visually-hidden" }, d.present ? " (online)" : ""),
        );
        return targetItem(d, `@${d.target.name}`, { before: dot });
      }),
    );
  }

  function renderDirectory(s) {
    fill(el.directory, s.directory, () => {
      if (!s.directory) return [h("li", { className: "muted" }, "Open to list the rooms.")];
      if (!s.directory.length)
        return [h("li", { className: "muted" }, "No rooms yet: join one to create it.")];
      return s.directory.map((info) =>
        h(
          "li",
          {},
          h("a", { href: formatHash({ kind: "room", name: info.name }) }, `#${info.name}`),
          h(
            "span",
            { className: "muted" },
            ` ${info.members} ${info.members === 1 ? "member" : "members"}`,
          ),
        ),
      );
    });
  }

  function renderMembers(s) {
    const target = s.current;
    const room = target?.kind === "room" ? s.rooms[target.name] : null;
    let names = [];
    if (room) names = room.members;
    else if (target?.kind === "dm") names = [...new Set([s.me, target.name])].sort();
    // a room's members are in it; the other side of a conversation may be anywhere
    const members = names.map((name) => ({
      name,
      present: room !== null || name === s.me || isPresent(s, name),
    }));
    fill(el.memberList, [s.me, members], () =>
      members.map(({ name, present }) => {
        const label = name === s.me ? `${name} (you)` : name;
        return h(
          "li",
          { className: present ? "member present" : "member" },
          name === s.me
            ? h("span", {}, label)
            : h("a", { href: formatHash({ kind: "dm", name }), title: `Message ${name}` }, label),
        );
      }),
    );
  }

  // ------------------------------------------------------------ the message log

  function canLoadOlder(s) {
    const target = s?.current;
    if (!target || !isOnline(s)) return false;
    const conv = target.kind === "room" ? s.rooms[target.name] : s.dms[target.name];
    if (!conv || conv.loadingOlder || conv.atStart) return false;
    return target.kind === "dm" || (conv.joined && !conv.catchingUp);
  }

  function messageMode(s, target, item) {
    if (item.pending) return `${item.data.status}`;
    const m = item.data;
    const mine = (m.user ?? m.from) === s.me;
    if (target.kind !== "room") return mine ? "mine" : "";
    const here = (marker) => marker && marker.room === target.name && marker.id === m.id;
    if (here(s.editing)) return "edit";
    if (here(s.confirming)) return "confirm";
    return mine ? "mine" : "";
  }

  function renderLog(s) {
    const target = s.current;
    const log = el.log;
    const switched = !sameTarget(target, shownTarget);
    if (switched) {
      el.messages.replaceChildren();
      nodes.clear();
      shownTarget = target;
    }
    const conv = !target
      ? null
      : target.kind === "room"
        ? s.rooms[target.name]
        : s.dms[target.name];
    el.composer.hidden = !target;
    el.send.disabled = !target;
    el.attach.disabled = !canUpload(s);
    el.attach.title = s.token ? "Share a file (or drop it here)" : "Sign in again to share files";

    // empty, joining, loading
    let empty = "";
    if (!target) empty = "Join a room or open a conversation.";
    else if (!conv) empty = "";
    else if (target.kind === "room" && !conv.joined && !conv.messages.length)
      empty = isOnline(s) ? `Joining #${target.name}…` : "Waiting for the connection…";
    else if (target.kind === "dm" && !conv.loaded && !conv.messages.length)
      empty = conv.loadingOlder ? "Loading…" : "";
    else if (!conv.messages.length && !pendingFor(s, target).length)
      empty =
        target.kind === "room"
          ? `No messages in #${target.name} yet.`
          : `No messages with ${target.name} yet.`;
    el.empty.textContent = empty;
    el.empty.hidden = !empty;

    // the top: a button for older messages, or where the history starts
    const atStart = !!conv && conv.atStart && conv.messages.length > 0;
    el.logStart.hidden = !atStart;
    el.logStart.textContent = atStart ? `The beginning of ${targetLabel(target)}.` : "";
    el.older.hidden = !conv || atStart || !conv.messages.length;
    el.older.disabled = !!conv?.loadingOlder || !canLoadOlder(s);
    el.older.textContent = conv?.loadingOlder ? "Loading older messages…" : "Load older messages";

    // keep the bottom in view, or what was in view where it was
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const anchor = el.messages.firstElementChild;
    const anchorTop = anchor ? anchor.offsetTop : 0;

    const items = [];
    if (conv) {
      for (const m of conv.messages) items.push({ key: `m${m.id}`, data: m, pending: false });
      for (const p of pendingFor(s, target))
        items.push({ key: `p${p.pid}`, data: p, pending: true });
    }
    const wanted = new Set(items.map((item) => item.key));
    for (const [key, entry] of nodes) {
      if (!wanted.has(key)) {
        entry.node.remove();
        nodes.delete(key);
      }
    }
    let previous = null;
    for (const item of items) {
      const mode = messageMode(s, target, item);
      let entry = nodes.get(item.key);
      if (!entry || entry.data !== item.data || entry.mode !== mode) {
        const node = item.pending
          ? pendingNode(s, item.data)
          : messageNode(s, target, item.data, mode);
        if (entry) entry.node.replaceWith(node);
        entry = { node, data: item.data, mode };
        nodes.set(item.key, entry);
      }
      const expected = previous ? previous.nextSibling : el.messages.firstChild;
      if (entry.node !== expected) el.messages.insertBefore(entry.node, expected);
      previous = entry.node;
    }

    if (switched || atBottom) {
      log.scrollTop = log.scrollHeight;
    } else if (anchor?.isConnected) {
      log.scrollTop += anchor.offsetTop - anchorTop; // older messages came in above
    }
  }

  function messageNode(s, target, m, mode) {
    const author = m.user ?? m.from;
    const mine = author === s.me;
    const header = h(
      "div",
      { className: "meta" },
      h("span", { className: "author" }, author),
      " ",
      h("time", { datetime: m.ts }, shortTime(m.ts)),
      m.edited_ts
        ? h("span", { className: "edited", title: `edited ${longTime(m.edited_ts)}` }, " (edited)")
        : null,
    );
    // tabindex -1: a tap focuses the message, which shows its buttons on a touch
    // screen (style.css), without adding a Tab stop per message
    const li = h("li", {
      className: mine ? "msg mine" : "msg",
      "data-id": m.id,
      title: `#${m.id} · ${longTime(m.ts)}`,
      tabindex: "-1",
    });
    li.append(header);
    if (mode === "edit") {
      li.append(editForm(target, m));
      return li;
    }
    if (m.text || !m.file) li.append(h("div", { className: "text" }, ...textNodes(m.text)));
    if (m.file) li.append(attachment(m.file));
    if (target.kind !== "room") return li;
    const room = target.name;
    if (mode === "confirm") {
      li.append(
        h(
          "div",
          { className: "actions confirm", role: "group", "aria-label": "Delete this message?" },
          h("span", {}, "Delete this message? "),
          h(
            "button",
            {
              type: "button",
              className: "danger",
              onclick: () => dispatch({ type: "delete", room, id: m.id }),
            },
            "Delete",
          ),
          h(
            "button",
            { type: "button", onclick: () => dispatch({ type: "delete-cancel" }) },
            "Cancel",
          ),
        ),
      );
      focusAfter = li.querySelector("button.danger");
      return li;
    }
    li.append(
      h(
        "div",
        { className: "actions float" },
        mine
          ? h(
              "button",
              {
                type: "button",
                onclick: () => dispatch({ type: "edit-start", room, id: m.id }),
                "aria-label": `Edit message ${m.id}`,
              },
              "Edit",
            )
          : null,
        h(
          "button",
          {
            type: "button",
            onclick: () => dispatch({ type: "delete-ask", room, id: m.id }),
            "aria-label": `Delete message ${m.id}`,
            title: mine ? null : "Admins may delete any message",
          },
          "Delete",
        ),
      ),
    );
    return li;
  }

  function editForm(target, m) {
    const box = h("textarea", {
      className: "edit-box",
      "aria-label": `Edit message ${m.id}`,
      rows: 2,
    });
    box.value = m.text;
    const error = h("p", { className: "form-error", role: "alert", hidden: true });
    const save = () => {
      const prepared = prepareText(box.value);
      if (prepared.error) {
        error.textContent = prepared.error;
        error.hidden = false;
        return;
      }
      if (prepared.text === m.text) dispatch({ type: "edit-cancel" });
      else dispatch({ type: "edit", room: target.name, id: m.id, text: prepared.text });
      el.compose.focus();
    };
    const cancel = () => {
      dispatch({ type: "edit-cancel" });
      el.compose.focus();
    };
    box.addEventListener("keydown", (event) => {
      if (event.key === "Escape") cancel();
      else submitOnEnter(event, save);
    });
    focusAfter = box;
    return h(
      "form",
      { className: "edit", onsubmit: (event) => (event.preventDefault(), save()) },
      box,
      h(
        "span",
        { className: "actions" },
        h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", onclick: cancel }, "Cancel"),
      ),
      error,
    );
  }

  function pendingNode(s, p) {
    const words = {
      queued: isOnline(s) ? "sending…" : "waiting for the connection",
      sending: "sending…",
      failed: p.error,
    };
    const li = h(
      "li",
      { className: `msg mine pending ${p.status}`, "data-pid": p.pid },
      h(
        "div",
        { className: "meta" },
        h("span", { className: "author" }, s.me ?? ""),
        " ",
        h("span", { className: p.status === "failed" ? "error" : "muted" }, words[p.status]),
      ),
      h("div", { className: "text" }, ...textNodes(p.text)),
    );
    if (p.status === "failed") {
      li.append(
        h(
          "div",
          { className: "actions" },
          h(
            "button",
            { type: "button", onclick: () => dispatch({ type: "retry", pid: p.pid }) },
            "Retry",
          ),
          h(
            "button",
            { type: "button", onclick: () => dispatch({ type: "discard", pid: p.pid }) },
            "Discard",
          ),
        ),
      );
    }
    return li;
  }

  /** The id of the newest message at least partly in view, or null. */
  function visibleLastId() {
    const log = el.log;
    const bottom = log.scrollTop + log.clientHeight;
    const items = el.messages.querySelectorAll("li[data-id]");
    for (let i = items.length - 1; i >= 0; i -= 1) {
      if (items[i].offsetTop < bottom) return Number(items[i].dataset.id);
    }
    return null;
  }

  return {
    render,
    visibleLastId,
    set onScroll(fn) {
      onScroll = fn;
    },
    focusComposer() {
      if (!el.chat.hidden && !el.composer.hidden) el.compose.focus();
    },
  };
}
