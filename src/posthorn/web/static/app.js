/* posthorn: the login page, the webmail, and the helpers admin.js shares (window.Posthorn).
 *
 * Plain JavaScript, no build step, no libraries. Everything comes from the JSON API
 * (docs/web-api.md). Rules kept throughout:
 *   - message content is never parsed into this page: text goes in with textContent, HTML only
 *     into the reading pane's <iframe sandbox=""> through srcdoc (no scripts can run there);
 *   - every state-changing request sends X-CSRF-Token; the token lives in memory only;
 *   - no prompt()/confirm(): questions use the #ask-dialog, which browser tests can drive.
 *
 * Stable test hooks (data-testid), which browser tests rely on:
 *   every page    status (the transient notice line)
 *   /login        login-form, login-address, login-password, login-submit, login-error
 *   / top bar     menu (narrow screens: show the folders), account, compose, admin-link, logout
 *   / folders     folder-list, folder-<name> (one per mailbox, e.g. folder-INBOX, folder-Sent;
 *                 carries data-unread), folder-unread (the count inside it), folder-new,
 *                 folder-rename, folder-delete
 *   / list        search-form, search-input, search-field (all|from|to|subject|body),
 *                 search-submit, search-clear, folder-title, message-list, message-row (one
 *                 per message; data-uid, data-seen, data-flagged), flag-marker,
 *                 attachment-marker, list-empty, page-prev, page-info, page-next
 *   / reader      reader, back (narrow screens), reply, reply-all, forward, edit-draft,
 *                 move-select, delete, flag, toggle-seen, reader-subject, reader-from,
 *                 reader-to, reader-cc, reader-date, images-notice, show-images, attachments,
 *                 attachment-link, message-html (the sandboxed iframe), message-text
 *   / compose     compose-dialog, compose-form, compose-to, compose-cc, compose-bcc,
 *                 compose-subject, compose-body, compose-attachments, compose-forwarded,
 *                 compose-error, send, save-draft, compose-close
 *   questions     ask-dialog, ask-text, ask-input, ask-ok, ask-cancel
 *   /admin        (see admin.js)
 */
"use strict";

const Posthorn = (() => {
  let csrf = null;

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function setCsrf(token) {
    csrf = token || null;
  }

  function loginUrl() {
    const here = window.location.pathname;
    return here === "/admin" ? "/login?next=/admin" : "/login";
  }

  /* One JSON API call. `body` is an object (sent as JSON) or a FormData. */
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    let payload;
    if (body instanceof FormData) {
      payload = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
    const response = await fetch(path, {
      method,
      headers,
      body: payload,
      credentials: "same-origin",
    });
    if (response.status === 401 && path !== "/api/login") {
      window.location.assign(loginUrl());
      throw new ApiError(401, "Your session has ended. Please log in again.");
    }
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("json")) {
      data = await response.json().catch(() => null);
    }
    if (!response.ok) {
      const text = data && data.error ? data.error : `The server said ${response.status}.`;
      throw new ApiError(response.status, text);
    }
    return data;
  }

  /* Build an element: el("a", {href, text, className}, child, "text child"). Attributes are
   * set with setAttribute, text with textContent: never parsed as HTML. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function $(id) {
    return document.getElementById(id);
  }

  let statusTimer = null;
  function status(text, isError = false) {
    const box = $("status");
    if (!box) return;
    box.textContent = text;
    box.classList.toggle("error", isError);
    box.hidden = false;
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { box.hidden = true; }, isError ? 8000 : 3000);
  }

  /* Ask a question in #ask-dialog. With `input`, resolves to the typed text (or null when
   * cancelled); without, to true/false. */
  function ask(text, { input = false, value = "", ok = "OK" } = {}) {
    const dialog = $("ask-dialog");
    const field = $("ask-input");
    $("ask-text").textContent = text;
    $("ask-ok").textContent = ok;
    field.hidden = !input;
    field.value = value;
    return new Promise((resolve) => {
      const form = $("ask-form");
      const finish = (answer) => {
        form.removeEventListener("submit", onSubmit);
        $("ask-cancel").removeEventListener("click", onCancel);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      const onSubmit = (event) => {
        event.preventDefault();
        finish(input ? field.value.trim() || null : true);
      };
      const onCancel = (event) => {
        event.preventDefault();
        finish(input ? null : false);
      };
      form.addEventListener("submit", onSubmit);
      $("ask-cancel").addEventListener("click", onCancel);
      dialog.addEventListener("cancel", onCancel);
      dialog.showModal();
      (input ? field : $("ask-ok")).focus();
    });
  }

  function formatSize(bytes) {
    if (typeof bytes !== "number") return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function formatDate(value, long = false) {
    const date = new Date(value);
    if (!value || Number.isNaN(date.getTime())) return value ? String(value) : "";
    if (long) return date.toLocaleString();
    const now = new Date();
    if (date.toDateString() === now.toDateString()) {
      return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    }
    return date.toLocaleDateString();
  }

  async function logout() {
    try {
      await api("POST", "/api/logout");
    } finally {
      setCsrf(null);
      window.location.assign("/login");
    }
  }

  /* The signed-in account ({account, admin, csrf}); also keeps the CSRF token. */
  async function me() {
    const who = await api("GET", "/api/me");
    setCsrf(who.csrf);
    return who;
  }

  return { ApiError, api, el, $, status, ask, formatSize, formatDate, logout, me, setCsrf };
})();
window.Posthorn = Posthorn;

/* ---------------------------------------------------------------- login */

function startLogin() {
  const { api, $, setCsrf } = Posthorn;
  const form = $("login-form");
  const error = $("login-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const address = $("login-address").value.trim();
    const password = $("login-password").value;
    if (!address || !password) {
      error.textContent = "Enter your address and password.";
      error.hidden = false;
      return;
    }
    $("login-submit").disabled = true;
    try {
      const answer = await api("POST", "/api/login", { address, password });
      setCsrf(answer.csrf);
      window.location.assign(form.dataset.next || "/");
    } catch (err) {
      error.textContent =
        err.status === 401 ? "Wrong address or password." :
        err.status === 429 ? "Too many failed attempts. Please wait and try again." :
        err.message;
      error.hidden = false;
      $("login-password").select();
    } finally {
      $("login-submit").disabled = false;
    }
  });
}

/* ---------------------------------------------------------------- webmail: addresses */

/* Split an address list on commas outside quotes and angle brackets. */
function splitAddresses(value) {
  const text = Array.isArray(value) ? value.join(", ") : value || "";
  const out = [];
  let current = "";
  let quoted = false;
  let angled = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    else if (ch === "<" && !quoted) angled = true;
    else if (ch === ">" && !quoted) angled = false;
    if (ch === "," && !quoted && !angled) {
      if (current.trim()) out.push(current.trim());
      current = "";
    } else {
      current += ch;
    }
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

function addrSpec(address) {
  const match = /<([^>]*)>\s*$/.exec(address);
  return (match ? match[1] : address).trim().toLowerCase();
}

function headerText(value) {
  return Array.isArray(value) ? value.join(", ") : value || "";
}

function prefixed(prefix, subject, already) {
  const text = subject || "";
  return already.test(text) ? text : `${prefix} ${text}`;
}

/* Plain text of sanitised HTML, for quoting. DOMParser documents run no scripts and load
 * nothing. */
function htmlToText(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  return (doc.body && doc.body.innerText) || (doc.body && doc.body.textContent) || "";
}

/* RFC 5322 §3.6.4: a reply's References are the parent's References plus its Message-ID. */
function threadReferences(headers) {
  return [headers.references, headers.message_id].filter(Boolean).join(" ");
}

function quote(text) {
  return text.replace(/\r\n/g, "\n").split("\n").map((line) => `> ${line}`).join("\n");
}

/* A sanitised HTML body (the API ran nh3 over it) as a whole document for srcdoc. It only
 * ever goes into <iframe sandbox="">, so even a sanitiser miss could not run a script. */
function srcdocFor(html) {
  return (
    '<!doctype html><html><head><meta charset="utf-8">' +
    '<meta name="referrer" content="no-referrer">' +
    "<style>body{font:15px/1.45 system-ui,sans-serif;margin:12px;color:#1b1b1b;" +
    "overflow-wrap:anywhere}img{max-width:100%;height:auto}</style>" +
    `</head><body>${html}</body></html>`
  );
}

/* ---------------------------------------------------------------- webmail */

function startWebmail() {
  const { api, el, $, status, ask, formatDate, formatSize } = Posthorn;
  const PER_PAGE = 50;
  const SEEN = "\\Seen";
  const FLAGGED = "\\Flagged";

  const state = {
    account: "",
    mailboxes: [],
    current: "INBOX",
    page: 1,
    total: 0,
    query: "",
    field: "all",
    messages: [],
    listRequest: 0,
    open: null, // {mailbox, uid, message, images}
    forwarded: [], // File objects carried over by Forward
  };

  const enc = encodeURIComponent;
  const messageUrl = (mailbox, uid) => `/api/mailboxes/${enc(mailbox)}/messages/${uid}`;
  const currentBox = () => state.mailboxes.find((box) => box.name === state.current);
  const isBox = (use) => (currentBox() || {}).special_use === use;

  function showView(view) {
    $("webmail").dataset.view = view;
  }

  function fail(err) {
    if (err.status !== 401) status(err.message, true);
  }

  /* ---- folders */

  async function loadMailboxes() {
    state.mailboxes = await api("GET", "/api/mailboxes");
    if (!state.mailboxes.some((box) => box.name === state.current)) state.current = "INBOX";
    renderFolders();
    renderMoveSelect();
  }

  function renderFolders() {
    const list = $("folder-list");
    list.replaceChildren(
      ...state.mailboxes.map((box) => {
        const button = el(
          "button",
          {
            type: "button",
            className: "folder" + (box.unread > 0 ? " unread" : ""),
            "data-testid": `folder-${box.name}`,
            "data-unread": box.unread,
            "aria-current": box.name === state.current ? "true" : null,
            onclick: () => selectFolder(box.name),
          },
          el("span", { className: "name", text: box.name }),
          el("span", {
            className: "count",
            "data-testid": "folder-unread",
            text: box.unread > 0 ? box.unread : "",
          }),
        );
        return el("li", {}, button);
      }),
    );
    const box = currentBox();
    $("folder-title").textContent = box ? box.name : state.current;
    const fixed = state.current === "INBOX";
    $("folder-rename").disabled = fixed;
    $("folder-delete").disabled = fixed;
  }

  function renderMoveSelect() {
    const select = $("move-select");
    select.replaceChildren(
      el("option", { value: "", text: "Move to…" }),
      ...state.mailboxes
        .filter((box) => box.name !== state.current)
        .map((box) => el("option", { value: box.name, text: box.name })),
    );
  }

  function selectFolder(name) {
    state.current = name;
    state.page = 1;
    state.query = "";
    $("search-input").value = "";
    $("search-clear").hidden = true;
    closeReader();
    renderFolders();
    renderMoveSelect();
    showView("list");
    loadList().catch(fail);
  }

  async function newFolder() {
    const name = await ask("Name of the new folder:", { input: true, ok: "Create" });
    if (!name) return;
    try {
      await api("POST", "/api/mailboxes", { name });
      await loadMailboxes();
      status(`Folder “${name}” created.`);
    } catch (err) {
      fail(err);
    }
  }

  async function renameFolder() {
    const old = state.current;
    const name = await ask(`New name for “${old}”:`, { input: true, value: old, ok: "Rename" });
    if (!name || name === old) return;
    try {
      await api("PATCH", `/api/mailboxes/${enc(old)}`, { name });
      state.current = name;
      await loadMailboxes();
      await loadList();
      status(`Folder renamed to “${name}”.`);
    } catch (err) {
      fail(err);
    }
  }

  async function deleteFolder() {
    const name = state.current;
    const sure = await ask(`Delete the folder “${name}” and every message in it?`, { ok: "Delete" });
    if (!sure) return;
    try {
      await api("DELETE", `/api/mailboxes/${enc(name)}`);
      await loadMailboxes();
      selectFolder("INBOX");
      status(`Folder “${name}” deleted.`);
    } catch (err) {
      fail(err);
    }
  }

  /* ---- message list */

  async function loadList() {
    const request = ++state.listRequest;
    const params = new URLSearchParams({ page: state.page, per_page: PER_PAGE, order: "desc" });
    if (state.query) {
      params.set("q", state.query);
      params.set("in", state.field);
    }
    const answer = await api("GET", `/api/mailboxes/${enc(state.current)}/messages?${params}`);
    if (request !== state.listRequest) return; // a newer request is on its way
    state.total = answer.total;
    state.messages = answer.messages;
    if (state.messages.length === 0 && state.page > 1 && state.total > 0) {
      state.page = Math.max(1, Math.ceil(state.total / PER_PAGE));
      await loadList();
      return;
    }
    renderList();
  }

  function renderList() {
    const showTo = isBox("\\Sent") || isBox("\\Drafts");
    const openUid = state.open && state.open.mailbox === state.current ? state.open.uid : null;
    $("message-list").replaceChildren(
      ...state.messages.map((m) => {
        const row = el(
          "button",
          {
            type: "button",
            className:
              "message-row" + (m.seen ? "" : " unread") + (m.uid === openUid ? " selected" : ""),
            "data-testid": "message-row",
            "data-uid": m.uid,
            "data-seen": m.seen ? "true" : "false",
            "data-flagged": m.flagged ? "true" : "false",
            onclick: () => openMessage(m.uid).catch(fail),
          },
          el("span", {
            className: "flag-marker",
            "data-testid": "flag-marker",
            title: m.flagged ? "Flagged" : null,
            text: m.flagged ? "★" : "",
          }),
          el("span", {
            className: "who",
            text: (showTo ? headerText(m.to) : headerText(m.from)) || "(nobody)",
          }),
          el("span", { className: "date", text: formatDate(m.date) }),
          el("span", { className: "subject", text: m.subject || "(no subject)" }),
          m.attachments
            ? el("span", {
              className: "attachment-marker",
              "data-testid": "attachment-marker",
              title: "Has attachments",
              text: "📎",
            })
            : null,
        );
        return el("li", {}, row);
      }),
    );
    $("list-empty").hidden = state.messages.length > 0;
    const first = state.total === 0 ? 0 : (state.page - 1) * PER_PAGE + 1;
    const last = Math.min(state.total, state.page * PER_PAGE);
    $("page-info").textContent = state.total ? `${first}–${last} of ${state.total}` : "";
    $("page-prev").disabled = state.page <= 1;
    $("page-next").disabled = last >= state.total;
  }

  function updateRow(uid, changes) {
    const m = state.messages.find((item) => item.uid === uid);
    if (m) Object.assign(m, changes);
    renderList();
  }

  /* ---- reading pane */

  function closeReader() {
    state.open = null;
    $("reader").hidden = true;
    $("reader-empty").hidden = false;
    $("reader-html").removeAttribute("srcdoc");
  }

  async function openMessage(uid, images = false) {
    const mailbox = state.current;
    const message = await api("GET", `${messageUrl(mailbox, uid)}?images=${images ? 1 : 0}`);
    state.open = { mailbox, uid, message, images };
    const unread = !(message.flags || []).includes(SEEN);
    if (unread) message.flags = [...(message.flags || []), SEEN]; // shown read at once
    renderMessage();
    showView("message");
    if (unread) {
      // Reading does not set \Seen on the server (docs/web-api.md); the reader does.
      await setFlags({ add: [SEEN] }).catch((err) => {
        // Deleted or moved meanwhile: the read mark no longer matters.
        if (state.open && state.open.message === message) throw err;
      });
    } else {
      renderList();
    }
  }

  function renderMessage() {
    const { message, mailbox } = state.open;
    const headers = message.headers || {};
    $("reader-empty").hidden = true;
    $("reader").hidden = false;
    $("reader-subject").textContent = headers.subject || "(no subject)";
    $("reader-from").textContent = headerText(headers.from);
    $("reader-to").textContent = headerText(headers.to);
    const cc = headerText(headers.cc);
    $("reader-cc").textContent = cc;
    $("reader-cc").hidden = !cc;
    $("reader-cc-label").hidden = !cc;
    $("reader-date").textContent = formatDate(headers.date, true);
    $("reader-date").hidden = !headers.date;
    $("reader-date-label").hidden = !headers.date;
    $("images-notice").hidden = !message.remote_images_blocked;
    $("edit-draft-button").hidden = !isBox("\\Drafts");

    const attachments = message.attachments || [];
    $("attachments").replaceChildren(
      ...attachments.map((part) =>
        el(
          "li",
          {},
          el("a", {
            href: `${messageUrl(mailbox, message.uid)}/parts/${enc(part.part)}`,
            download: part.filename || "attachment",
            "data-testid": "attachment-link",
            text: `${part.filename || "attachment"} (${formatSize(part.size)})`,
          }),
        ),
      ),
    );

    const frame = $("reader-html");
    const text = $("reader-text");
    if (message.html) {
      frame.srcdoc = srcdocFor(message.html);
      frame.hidden = false;
      text.hidden = true;
      text.textContent = "";
    } else {
      frame.removeAttribute("srcdoc");
      frame.hidden = true;
      text.textContent = message.text || "";
      text.hidden = false;
    }
    renderFlagButtons();
  }

  function renderFlagButtons() {
    const flags = state.open.message.flags || [];
    $("flag-button").textContent = flags.includes(FLAGGED) ? "Unflag" : "Flag";
    $("seen-button").textContent = flags.includes(SEEN) ? "Mark unread" : "Mark read";
  }

  async function setFlags(change) {
    const { mailbox, uid, message } = state.open;
    await api("POST", `${messageUrl(mailbox, uid)}/flags`, {
      add: change.add || [],
      remove: change.remove || [],
    });
    const flags = new Set(message.flags || []);
    (change.add || []).forEach((flag) => flags.add(flag));
    (change.remove || []).forEach((flag) => flags.delete(flag));
    message.flags = [...flags];
    // The reader may have moved on (deleted, another message opened) while we waited.
    if (state.open && state.open.message === message) renderFlagButtons();
    updateRow(uid, { flags: message.flags, seen: flags.has(SEEN), flagged: flags.has(FLAGGED) });
    await loadMailboxes();
  }

  function toggleFlag(flag) {
    const has = (state.open.message.flags || []).includes(flag);
    setFlags(has ? { remove: [flag] } : { add: [flag] }).catch(fail);
  }

  async function deleteMessage() {
    const { mailbox, uid } = state.open;
    await api("DELETE", messageUrl(mailbox, uid));
    closeReader();
    showView("list");
    status(isBox("\\Trash") ? "Message deleted." : "Message moved to Trash.");
    await Promise.all([loadList(), loadMailboxes()]);
  }

  async function moveMessage(to) {
    const { mailbox, uid } = state.open;
    await api("POST", `${messageUrl(mailbox, uid)}/move`, { to });
    closeReader();
    showView("list");
    status(`Message moved to “${to}”.`);
    await Promise.all([loadList(), loadMailboxes()]);
  }

  /* ---- compose */

  function bodyText(message) {
    return message.text || (message.html ? htmlToText(message.html) : "");
  }

  function openCompose(prefill = {}) {
    const form = $("compose-form");
    form.reset();
    $("compose-to").value = prefill.to || "";
    $("compose-cc").value = prefill.cc || "";
    $("compose-bcc").value = prefill.bcc || "";
    $("compose-subject").value = prefill.subject || "";
    $("compose-body").value = prefill.body || "";
    $("compose-in-reply-to").value = prefill.inReplyTo || "";
    $("compose-references").value = prefill.references || "";
    $("compose-draft-uid").value = prefill.draftUid || "";
    $("compose-title").textContent = prefill.title || "New message";
    $("compose-error").hidden = true;
    state.forwarded = [];
    renderForwarded();
    $("compose-dialog").showModal();
    const body = $("compose-body");
    if (prefill.to) {
      body.focus();
      body.setSelectionRange(0, 0);
    } else {
      $("compose-to").focus();
    }
  }

  function renderForwarded() {
    $("compose-forwarded").replaceChildren(
      ...state.forwarded.map((file, index) =>
        el(
          "li",
          {},
          el("span", { text: `${file.name} (${formatSize(file.size)}) ` }),
          el("button", {
            type: "button",
            className: "link",
            text: "remove",
            onclick: () => {
              state.forwarded.splice(index, 1);
              renderForwarded();
            },
          }),
        ),
      ),
    );
  }

  function reply(all) {
    const { message } = state.open;
    const headers = message.headers || {};
    const me = state.account.toLowerCase();
    const to = splitAddresses(headers.from);
    let cc = [];
    if (all) {
      const seen = new Set([me, ...to.map(addrSpec)]);
      for (const address of [...splitAddresses(headers.to), ...splitAddresses(headers.cc)]) {
        const spec = addrSpec(address);
        if (!seen.has(spec)) {
          seen.add(spec);
          cc.push(address);
        }
      }
      if (to.length === 0 || to.every((address) => addrSpec(address) === me)) {
        // Replying to our own message: everyone else it went to.
        to.splice(0, to.length, ...cc);
        cc = [];
      }
    }
    const who = headerText(headers.from) || "someone";
    const when = headers.date ? `On ${formatDate(headers.date, true)}, ` : "";
    openCompose({
      title: all ? "Reply all" : "Reply",
      to: to.join(", "),
      cc: cc.join(", "),
      subject: prefixed("Re:", headers.subject, /^\s*(re|aw|sv)\s*:/i),
      body: `\n\n${when}${who} wrote:\n${quote(bodyText(message))}\n`,
      inReplyTo: headers.message_id || "",
      references: threadReferences(headers),
    });
  }

  async function forward() {
    const { message, mailbox } = state.open;
    const headers = message.headers || {};
    const intro = [
      "---------- Forwarded message ----------",
      `From: ${headerText(headers.from)}`,
      `Date: ${formatDate(headers.date, true)}`,
      `Subject: ${headers.subject || ""}`,
      `To: ${headerText(headers.to)}`,
    ];
    if (headerText(headers.cc)) intro.push(`Cc: ${headerText(headers.cc)}`);
    openCompose({
      title: "Forward",
      subject: prefixed("Fwd:", headers.subject, /^\s*(fwd?|wg)\s*:/i),
      body: `\n\n${intro.join("\n")}\n\n${bodyText(message)}\n`,
      references: threadReferences(headers),
    });
    // Carry the attachments over: fetch each part and send it again as a file.
    for (const part of message.attachments || []) {
      const url = `${messageUrl(mailbox, message.uid)}/parts/${enc(part.part)}`;
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) {
        status(`Could not attach ${part.filename || "an attachment"}.`, true);
        continue;
      }
      const blob = await response.blob();
      state.forwarded.push(
        new File([blob], part.filename || "attachment", { type: part.content_type || blob.type }),
      );
      renderForwarded();
    }
  }

  function editDraft() {
    const { message, uid } = state.open;
    const headers = message.headers || {};
    openCompose({
      title: "Draft",
      to: headerText(headers.to),
      cc: headerText(headers.cc),
      bcc: headerText(headers.bcc),
      subject: headers.subject || "",
      body: bodyText(message),
      inReplyTo: headers.in_reply_to || "",
      references: headers.references || "",
      draftUid: uid,
    });
  }

  /* The compose form as multipart/form-data, fields as POST /api/send expects them. */
  function composeData() {
    const data = new FormData();
    for (const [field, id] of [
      ["to", "compose-to"],
      ["cc", "compose-cc"],
      ["bcc", "compose-bcc"],
      ["subject", "compose-subject"],
      ["body", "compose-body"],
      ["in_reply_to", "compose-in-reply-to"],
      ["references", "compose-references"],
      ["draft_uid", "compose-draft-uid"],
    ]) {
      const value = $(id).value;
      if (value || ["to", "subject", "body"].includes(field)) data.append(field, value);
    }
    // Files added one by one: FormData(form) would send an empty part for an empty input.
    for (const file of $("compose-attachments").files) data.append("attachments", file, file.name);
    for (const file of state.forwarded) data.append("attachments", file, file.name);
    return data;
  }

  function composeError(text) {
    $("compose-error").textContent = text;
    $("compose-error").hidden = false;
  }

  async function send(event) {
    event.preventDefault();
    const recipients = ["compose-to", "compose-cc", "compose-bcc"].map((id) => $(id).value.trim());
    if (!recipients.some(Boolean)) {
      composeError("Add at least one recipient.");
      return;
    }
    $("send-button").disabled = true;
    try {
      await api("POST", "/api/send", composeData());
      $("compose-dialog").close();
      status("Message sent.");
      await loadMailboxes();
      if (isBox("\\Sent") || isBox("\\Drafts")) await loadList();
    } catch (err) {
      composeError(err.message);
    } finally {
      $("send-button").disabled = false;
    }
  }

  async function saveDraft() {
    $("save-draft-button").disabled = true;
    try {
      const answer = await api("POST", "/api/drafts", composeData());
      if (answer && answer.uid !== undefined) $("compose-draft-uid").value = answer.uid;
      $("compose-error").hidden = true;
      status("Draft saved.");
      await loadMailboxes();
      if (isBox("\\Drafts")) await loadList();
    } catch (err) {
      composeError(err.message);
    } finally {
      $("save-draft-button").disabled = false;
    }
  }

  /* ---- new mail without a reload */

  let refreshTimer = null;
  const pending = new Set();

  function scheduleRefresh(mailbox) {
    pending.add(mailbox);
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(async () => {
      const touched = new Set(pending);
      pending.clear();
      try {
        await loadMailboxes();
        if (touched.has(state.current) || touched.has(null)) await loadList();
      } catch (err) {
        fail(err);
      }
    }, 300);
  }

  function listenForChanges() {
    const events = new EventSource("/api/events");
    events.addEventListener("change", (event) => {
      let mailbox = null;
      try {
        mailbox = JSON.parse(event.data).mailbox;
      } catch {
        // an unreadable event still means "something changed"
      }
      scheduleRefresh(mailbox);
    });
    // Lost events ("resync") and the time before the stream was open (or while it
    // reconnected) may hide changes: refresh everything then.
    events.addEventListener("resync", () => scheduleRefresh(null));
    events.addEventListener("open", () => scheduleRefresh(null));
    events.addEventListener("error", () => {
      if (events.readyState !== EventSource.CLOSED) return; // the browser reconnects itself
      // Closed for good (session gone, server restarted): check the session, then listen again.
      setTimeout(() => {
        Posthorn.me().then(listenForChanges, fail);
      }, 5000);
    });
  }

  /* ---- wiring */

  function on(id, type, handler) {
    $(id).addEventListener(type, (event) => {
      const result = handler(event);
      if (result && typeof result.catch === "function") result.catch(fail);
    });
  }

  on("menu-button", "click", () => {
    showView($("webmail").dataset.view === "folders" ? "list" : "folders");
  });
  on("back-button", "click", () => showView("list"));
  on("logout-button", "click", () => Posthorn.logout());
  on("compose-button", "click", () => openCompose());
  on("folder-new", "click", newFolder);
  on("folder-rename", "click", renameFolder);
  on("folder-delete", "click", deleteFolder);
  on("search-form", "submit", (event) => {
    event.preventDefault();
    state.query = $("search-input").value.trim();
    state.field = $("search-field").value;
    state.page = 1;
    $("search-clear").hidden = !state.query;
    return loadList();
  });
  on("search-clear", "click", () => {
    $("search-input").value = "";
    state.query = "";
    state.page = 1;
    $("search-clear").hidden = true;
    return loadList();
  });
  on("page-prev", "click", () => {
    state.page = Math.max(1, state.page - 1);
    return loadList();
  });
  on("page-next", "click", () => {
    state.page += 1;
    return loadList();
  });
  on("reply-button", "click", () => reply(false));
  on("reply-all-button", "click", () => reply(true));
  on("forward-button", "click", forward);
  on("edit-draft-button", "click", editDraft);
  on("delete-button", "click", deleteMessage);
  on("flag-button", "click", () => toggleFlag(FLAGGED));
  on("seen-button", "click", () => toggleFlag(SEEN));
  on("show-images", "click", () => openMessage(state.open.uid, true));
  on("move-select", "change", (event) => {
    const to = event.target.value;
    event.target.value = "";
    return to ? moveMessage(to) : null;
  });
  on("compose-form", "submit", send);
  on("save-draft-button", "click", saveDraft);
  on("compose-close", "click", () => $("compose-dialog").close());

  (async () => {
    const who = await Posthorn.me();
    state.account = who.account;
    $("account").textContent = who.account;
    $("admin-link").hidden = !who.admin;
    await loadMailboxes();
    await loadList();
    listenForChanges();
  })().catch(fail);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "login") startLogin();
  else if (page === "webmail") startWebmail();
});
