// What every page shares: element builders, the API client, the messages of a save (errors
// and warnings beside the Save button and next to the row concerned), the unsaved-changes
// guard, the confirmation dialog and the list of summary lines (edit, delete, reorder).
"use strict";

const state = {
  session: null,      // {login, role, extension, name, csrf_token}
  ext: null,          // the extension being managed
  options: null,      // GET /api/options
  user: null,         // GET /api/users/{ext}
  page: "lines",
  tenant: null,       // the company the platform administrator works on (null: the top level)
  timers: [],
  forms: new Set(),   // forms with unsaved changes
};

// ---- elements ------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = !!value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let uid = 0;
function nextId(prefix) { uid += 1; return (prefix || "f") + "-" + uid; }

// A labelled control: <label for> + the control + a place for its own message.
function field(labelText, control, opts) {
  const o = opts || {};
  if (!control.id) control.id = nextId("in");
  const msg = h("div", { class: "field-msgs", id: control.id + "-msg" });
  const help = o.help ? h("small", { class: "help", id: control.id + "-help" }, o.help) : null;
  const ids = [help ? help.id : null, msg.id].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", ids);
  const wrap = h("div", { class: "field" + (o.class ? " " + o.class : "") },
    h("label", { for: control.id }, labelText), control, help, msg);
  wrap.control = control;
  wrap.msg = msg;
  return wrap;
}

function checkbox(labelText, checked, attrs) {
  const box = h("input", Object.assign({ type: "checkbox", checked }, attrs || {}));
  const label = h("label", { class: "check" }, box, " ", labelText);
  label.box = box;
  return label;
}

// Small inline icons (no external resource, no font needed).
const ICONS = {
  sip: "M6 3h12a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm1 3v4h10V6H7zm0 7v2h2v-2H7zm4 0v2h2v-2h-2zm4 0v2h2v-2h-2zm-8 3v2h2v-2H7zm4 0v2h2v-2h-2zm4 0v2h2v-2h-2z",
  softphone: "M8 2h8a2 2 0 0 1 2 2v16a2 2 0 0 1-2 2H8a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm0 3v13h8V5H8zm3 14.5a1 1 0 1 0 2 0 1 1 0 0 0-2 0z",
  teams: "M4 5h11a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H9l-4 3v-3H4a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2zm3 3v2h2v5h2v-5h2V8H7zm12 1h1.5A1.5 1.5 0 0 1 22 10.5V15a3 3 0 0 1-3 3V9z",
  other: "M9 2v5H7v4a5 5 0 0 0 4 4.9V22h2v-6.1A5 5 0 0 0 17 11V7h-2V2h-2v5h-2V2H9z",
  play: "M8 5v14l11-7z",
  mic: "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11h-2z",
  stop: "M7 7h10v10H7z",
  grip: "M9 5a1.5 1.5 0 1 0 0 .01zM15 5a1.5 1.5 0 1 0 0 .01zM9 12a1.5 1.5 0 1 0 0 .01zM15 12a1.5 1.5 0 1 0 0 .01zM9 19a1.5 1.5 0 1 0 0 .01zM15 19a1.5 1.5 0 1 0 0 .01z",
  up: "M12 6l-7 7h4v5h6v-5h4z",
  down: "M12 18l7-7h-4V6H9v5H5z",
  edit: "M4 17.2V20h2.8l8.3-8.3-2.8-2.8L4 17.2zM19.7 7.1a1 1 0 0 0 0-1.4l-1.4-1.4a1 1 0 0 0-1.4 0l-1.3 1.3 2.8 2.8 1.3-1.3z",
  trash: "M7 6h10l-1 14H8L7 6zm3-3h4l1 2h4v2H5V5h4l1-2z",
  menu: "M4 6h16v2H4zm0 5h16v2H4zm0 5h16v2H4z",
};

function icon(name, cls) {
  const el = svg("svg", { viewBox: "0 0 24 24", width: 20, height: 20, "aria-hidden": "true",
    focusable: "false", class: "icon" + (cls ? " " + cls : "") });
  const p = svg("path", { d: ICONS[name] || ICONS.other });
  if (name === "grip") { p.setAttribute("stroke", "currentColor"); p.setAttribute("stroke-width", "2.6"); p.setAttribute("stroke-linecap", "round"); }
  el.append(p);
  return el;
}

// ---- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, data) {
    super((data && data.message) || ("HTTP " + status));
    this.status = status;
    this.data = data || {};
  }
}

// The platform administrator working on one tenant (docs/tenants.md): ?tenant= on its routes.
const OWN_ROUTES = /^\/api\/(tenants|login|logout|session|password)\b/;

function scopedPath(path) {
  if (!state.tenant || !path.startsWith("/api/") || OWN_ROUTES.test(path)) return path;
  return path + (path.includes("?") ? "&" : "?") + "tenant=" + encodeURIComponent(state.tenant);
}

async function api(method, path, body) {
  path = scopedPath(path);
  const headers = { "Accept-Language": LANG };
  let payload = body;
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrf_token;
  if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob) && typeof body !== "string") {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (typeof body === "string") {
    headers["Content-Type"] = "text/calendar";
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, { error: "network", message: t("network") });
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("application/json")) data = await response.json();
  if (response.status === 401 && path !== "/api/login") {
    expired();
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function uext(path) { return "/api/users/" + encodeURIComponent(state.ext) + path; }

// ---- messages: errors and warnings ---------------------------------------------------------
//
// The API answers `issues: [{code, field, message}]` on an error and `warnings: [{code, field,
// message}]` on a save, fields counted from 1 as the user sees rows (`schedule.hours[2].end`).
// An answer without `code` is the older shape (`{field, reason}`, counted from 0): its indexes
// are moved to count from 1 so that both land on the same row.

function oneBased(fieldPath) {
  return String(fieldPath || "").replace(/\[(\d+)\]/g, (m, n) => "[" + (Number(n) + 1) + "]");
}

function normalize(item) {
  if (!item) return null;
  const legacy = item.code === undefined;
  return {
    code: item.code || "",
    field: legacy ? oneBased(item.field) : String(item.field || ""),
    message: item.message || item.reason || "",
  };
}

function issuesOf(err) {
  const data = (err && err.data) || {};
  const list = (data.issues || []).map(normalize).filter(Boolean);
  if (!list.length) {
    let text = data.message || (err && err.message) || t("error");
    if (!data.message && err && err.status) text = t("http." + err.status) !== "http." + err.status ? t("http." + err.status) : text;
    list.push({ code: data.error || "", field: "", message: text });
  }
  return list;
}

function warningsOf(data) {
  return ((data && data.warnings) || []).map(normalize).filter(Boolean);
}

function statusBox(kind, title, items, form) {
  const box = h("div", { class: "alert " + kind, role: kind === "error" ? "alert" : "status",
    "data-test": kind === "ok" ? "flash" : kind === "warning" ? "warnings" : "error" },
  h("strong", {}, title));
  if (items && items.length) {
    box.append(h("ul", {}, items.map((i) => {
      const where = form ? form.describe(i.field) : "";
      const text = (where ? where + t("colon") : "") + i.message;
      const target = form ? form.targetFor(i.field) : null;
      if (target && target.focus) {
        return h("li", {}, h("button", { type: "button", class: "link", onclick: () => target.focus() }, text));
      }
      return h("li", {}, text);
    })));
  }
  return box;
}

// Where a page shows the answer of a request that is not a form save.
function flash(container, content, kind) {
  let box = container.querySelector(":scope > .flash");
  if (!box) {
    // Right under the page's title, where it is seen, not at the bottom of a long page.
    box = h("div", { class: "flash", "aria-live": "polite" });
    const title = container.querySelector(":scope > h1");
    if (title) title.after(box); else container.append(box);
  }
  box.replaceChildren(content instanceof Node ? content
    : h("div", { class: "alert " + (kind || "ok"), role: "status", "data-test": "flash" }, content));
}

function errorBox(err) {
  const issues = issuesOf(err);
  return statusBox("error", issues.length === 1 ? issues[0].message : tn("notsaved.count", issues.length),
    issues.length === 1 ? [] : issues);
}

async function guarded(container, fn, okText) {
  try {
    const result = await fn();
    if (okText) flash(container, okText);
    return result;
  } catch (err) {
    if (err.status !== 401) flash(container, errorBox(err));
    return undefined;
  }
}

// A form with a Save bar: tracks unsaved changes, and shows the messages of a save beside the
// Save button and next to the row or field each one is about.
class Form {
  constructor(name, saveLabel, sticky) {
    this.name = name;
    this.targets = [];      // {prefix, msgs (element), focus (element), label}
    this.dirty = false;
    this.msg = h("div", { class: "savebar-msg", "aria-live": "polite", "data-test": "save-msg" });
    this.button = h("button", { type: "submit", class: "primary", "data-test": name + "-save" }, saveLabel || t("save"));
    this.flag = h("span", { class: "unsaved", hidden: true, "data-test": "unsaved" }, t("unsaved"));
    this.bar = h("div", { class: "savebar" + (sticky ? " sticky" : ""), "data-test": "savebar" }, this.button, this.flag, this.msg);
  }

  // `prefix` is a field path counted from 1 ("schedule.hours[2]"); messages about it or about
  // anything under it are shown in `msgs`; `focus` is what a click on the message focuses.
  register(prefix, msgs, focus, label) {
    this.targets = this.targets.filter((x) => x.prefix !== prefix);
    this.targets.push({ prefix, msgs, focus, label });
  }

  unregister(prefixStart) {
    this.targets = this.targets.filter((x) => !x.prefix.startsWith(prefixStart));
  }

  _match(fieldPath) {
    let best = null;
    for (const x of this.targets) {
      if (fieldPath === x.prefix || fieldPath.startsWith(x.prefix + ".") || fieldPath.startsWith(x.prefix + "[")) {
        if (!best || x.prefix.length > best.prefix.length) best = x;
      }
    }
    return best;
  }

  targetFor(fieldPath) { const m = this._match(fieldPath || ""); return m ? m.focus : null; }

  // The row a message is about, in words ("Plage n° 2").
  describe(fieldPath) {
    let label = "";
    for (const x of this.targets) {
      if (x.label && (fieldPath === x.prefix || fieldPath.startsWith(x.prefix + ".") || fieldPath.startsWith(x.prefix + "["))) {
        if (!label || x.prefix.length > label.len) label = { text: x.label, len: x.prefix.length };
      }
    }
    return label ? label.text : "";
  }

  setDirty(on) {
    this.dirty = on;
    this.flag.hidden = !on;
    if (on) state.forms.add(this); else state.forms.delete(this);
  }

  clear() {
    this.msg.replaceChildren();
    for (const x of this.targets) {
      x.msgs.replaceChildren();
      if (x.focus && x.focus.removeAttribute) x.focus.removeAttribute("aria-invalid");
    }
  }

  _place(items, kind) {
    for (const i of items) {
      const m = this._match(i.field);
      if (!m) continue;
      m.msgs.append(h("p", { class: "field-msg " + kind, "data-test": "row-" + kind, "data-field": i.field, "data-code": i.code || null },
        h("span", { class: "visually-hidden" }, t(kind === "error" ? "error" : "warning") + t("colon")), i.message));
      if (kind === "error" && m.focus && m.focus.setAttribute && i.field === m.prefix) m.focus.setAttribute("aria-invalid", "true");
    }
  }

  showErrors(items) {
    if (this.onMessages) this.onMessages(items);
    this.clear();
    this._place(items, "error");
    this.msg.replaceChildren(statusBox("error", t("notsaved") + " " + tn("notsaved.count", items.length), items, this));
  }

  showSaved(warnings) {
    if (this.onMessages) this.onMessages(warnings);
    this.clear();
    if (warnings.length) {
      this._place(warnings, "warning");
      this.msg.replaceChildren(statusBox("warning", t("saved.warnings"), warnings, this));
    } else {
      this.msg.replaceChildren(statusBox("ok", t("saved"), [], this));
    }
  }

  showWarnings(warnings) {
    if (this.onMessages) this.onMessages(warnings);
    this._place(warnings, "warning");
  }

  // Run `fn` (the request); its answer's warnings or its error's issues are shown.
  async submit(fn, check) {
    this.msg.replaceChildren();
    const local = check ? check() : [];
    if (local.length) { this.showErrors(local); return undefined; }
    this.button.disabled = true;
    try {
      const result = await fn();
      this.setDirty(false);
      this.showSaved(warningsOf(result));
      return result;
    } catch (err) {
      if (err.status !== 401) this.showErrors(issuesOf(err));
      return undefined;
    } finally {
      this.button.disabled = false;
    }
  }
}

// Mark `form` dirty on any input inside `el`.
function watch(el, form) {
  el.addEventListener("input", () => form.setDirty(true));
  el.addEventListener("change", () => form.setDirty(true));
}

// ---- dialogs and the unsaved-changes guard ----------------------------------------------

function ask(message, okLabel, cancelLabel, danger) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "button", class: danger ? "danger-solid" : "primary", "data-test": "dialog-ok" }, okLabel || t("ok"));
    const cancel = h("button", { type: "button", "data-test": "dialog-cancel" }, cancelLabel || t("cancel"));
    const titleId = nextId("dlg");
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId, "data-test": "dialog" },
      h("h2", { id: titleId }, t("confirm.title")), h("p", {}, message), h("div", { class: "row end" }, cancel, ok));
    function done(value) { dialog.close(); dialog.remove(); resolve(value); }
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dialog.addEventListener("cancel", (ev) => { ev.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

async function confirmLeave() {
  if (!state.forms.size) return true;
  const ok = await ask(t("confirm.leave"), t("confirm.leave.ok"), t("confirm.leave.cancel"), true);
  if (ok) state.forms.clear();
  return ok;
}

window.addEventListener("beforeunload", (ev) => {
  if (state.forms.size) { ev.preventDefault(); ev.returnValue = ""; }
});

function announce(text) {
  const live = document.getElementById("live");
  if (live) { live.textContent = ""; window.setTimeout(() => { live.textContent = text; }, 30); }
}

function clearTimers() { state.timers.forEach(clearInterval); state.timers = []; }

function expired() {
  state.session = null;
  state.forms.clear();
  clearTimers();
  renderLogin(t("session.expired"));
}

// ---- dates and numbers, as people read them -----------------------------------------------

const LOCALE = () => (LANG === "fr" ? "fr-FR" : "en-GB");

function fmtDate(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(LOCALE(), { dateStyle: "short", timeStyle: "short" });
}

function fmtDay(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleDateString(LOCALE(), { day: "2-digit", month: "2-digit", year: "numeric" });
}

function fmtTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString(LOCALE(), { hour: "2-digit", minute: "2-digit" });
}

function localIsoDate(d) {
  return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
}

// "0612345678" -> "06 12 34 56 78" (French numbers); others unchanged.
function fmtNumber(n) {
  const s = String(n || "");
  return /^0\d{9}$/.test(s) ? s.replace(/(\d{2})(?=\d)/g, "$1 ") : s;
}

// A phone number a person would type: digits, spaces, dots, dashes, an optional leading +.
const PHONE = /^\+?[0-9][0-9 .\-]{0,31}$/;

function quote(text) { return LANG === "fr" ? "« " + text + " »" : "“" + text + "”"; }

function listWords(items) {
  if (items.length <= 1) return items.join("");
  return items.slice(0, -1).join(", ") + t("list.and") + items[items.length - 1];
}

// ---- a list of summary lines: edit, delete, reorder (drag and keyboard) ------------------
//
// opts: {form, prefix ("exceptions"), rowLabel (i -> "Exception n° 1"), summary(item),
//        editor(item, prefix) -> {el, value(), check()}, newItem(), reorderable, max,
//        addLabel, testName, onChange(count)}
function itemList(items, opts) {
  const form = opts.form;
  const rows = [];  // {item, editor|null, el}
  const list = h(opts.reorderable ? "ol" : "ul", { class: "items", "data-test": opts.testName + "-list" });
  const empty = h("p", { class: "hint", "data-test": opts.testName + "-empty" }, opts.emptyText || "");
  const add = h("button", { type: "button", class: "add", "data-test": opts.testName + "-add",
    onclick: () => {
      if (opts.max && rows.length >= opts.max) return;
      const row = { item: opts.newItem(), editor: null, el: null, isNew: true };
      rows.push(row);
      form.setDirty(true);
      draw();
      openEditor(row);
    } }, "+ ", opts.addLabel);
  let dragFrom = null;

  function current(row) { return row.editor ? row.editor.value() : row.item; }

  function move(from, to, focusSel) {
    if (to < 0 || to >= rows.length || from === to) return;
    const [row] = rows.splice(from, 1);
    rows.splice(to, 0, row);
    form.setDirty(true);
    draw();
    announce(t("move.moved", { what: opts.rowLabel(from), n: to + 1 }));
    const target = rows[to].el.querySelector(focusSel || "[data-test=move-up]");
    if (target && !target.disabled) target.focus(); else rows[to].el.querySelector(".summary-text, .editor").focus?.();
  }

  function openEditor(row) {
    row.editor = opts.editor(row.item, form);
    draw();
    const first = row.el.querySelector("input, select, textarea");
    if (first) first.focus();
  }

  function closeEditor(row, keep) {
    if (keep) {
      const problems = row.editor.check ? row.editor.check() : [];
      if (problems.length) { row.editor.show(problems); return; }
      row.item = row.editor.value();
      row.isNew = false;
    } else if (row.isNew) {
      rows.splice(rows.indexOf(row), 1);
    }
    row.editor = null;
    draw();
  }

  function draw() {
    form.unregister(opts.prefix + "[");
    list.replaceChildren();
    rows.forEach((row, i) => {
      const n = i + 1;
      const label = opts.rowLabel(i);
      const msgs = h("div", { class: "row-msgs" });
      let body;
      if (row.editor) {
        body = h("div", { class: "editor", tabindex: "-1" }, row.editor.el,
          h("div", { class: "row" },
            h("button", { type: "button", class: "primary small", "data-test": "item-done", onclick: () => closeEditor(row, true) }, t("done")),
            h("button", { type: "button", class: "small", "data-test": "item-cancel", onclick: () => closeEditor(row, false) }, t("cancel")),
            h("button", { type: "button", class: "small danger", "data-test": "item-delete", "aria-label": t("delete") + " — " + label,
              onclick: async () => {
                if (!(await ask(t("confirm.delete", { what: label }), t("delete"), t("cancel"), true))) return;
                rows.splice(rows.indexOf(row), 1);
                form.setDirty(true);
                draw();
                add.focus();
              } }, icon("trash"), h("span", { class: "btn-text" }, t("delete")))));
        if (row.editor.register) row.editor.register(form, opts.prefix + "[" + n + "]", label);
      } else {
        const text = opts.summary(row.item);
        body = h("div", { class: "summary" },
          h("span", { class: "summary-text", tabindex: opts.reorderable ? "0" : null, "data-test": "item-summary",
            onkeydown: opts.reorderable ? (ev) => {
              if (ev.altKey && ev.key === "ArrowUp") { ev.preventDefault(); move(i, i - 1, ".summary-text"); }
              if (ev.altKey && ev.key === "ArrowDown") { ev.preventDefault(); move(i, i + 1, ".summary-text"); }
            } : null }, text),
          h("span", { class: "item-actions" },
            h("button", { type: "button", class: "small", "data-test": "item-edit", "aria-label": t("edit") + " — " + label,
              onclick: () => openEditor(row) }, icon("edit"), h("span", { class: "btn-text" }, t("edit"))),
            h("button", { type: "button", class: "small danger", "data-test": "item-delete", "aria-label": t("delete") + " — " + label,
              onclick: async () => {
                if (!(await ask(t("confirm.delete", { what: text }), t("delete"), t("cancel"), true))) return;
                rows.splice(rows.indexOf(row), 1);
                form.setDirty(true);
                draw();
                add.focus();
              } }, icon("trash"), h("span", { class: "btn-text" }, t("delete")))));
      }
      const handle = opts.reorderable ? h("span", { class: "grip", title: t("move.drag"), "aria-hidden": "true", "data-test": "drag-handle" }, icon("grip")) : null;
      const mover = opts.reorderable ? h("span", { class: "movers" },
        h("button", { type: "button", class: "small icon-only", "data-test": "move-up", disabled: i === 0,
          "aria-label": t("move.up") + " — " + label, onclick: () => move(i, i - 1, "[data-test=move-up]") }, icon("up")),
        h("button", { type: "button", class: "small icon-only", "data-test": "move-down", disabled: i === rows.length - 1,
          "aria-label": t("move.down") + " — " + label, onclick: () => move(i, i + 1, "[data-test=move-down]") }, icon("down"))) : null;
      const li = h("li", { class: "item" + (row.editor ? " editing" : ""), "data-test": opts.testName + "-row", "data-index": n,
        draggable: opts.reorderable && !row.editor ? "true" : null },
      h("div", { class: "item-line" }, handle, h("span", { class: "item-no", "aria-hidden": "true" }, n + "."),
        h("div", { class: "item-main" }, h("span", { class: "visually-hidden" }, label + t("colon")), body, msgs), mover));
      if (opts.reorderable && !row.editor) {
        li.addEventListener("dragstart", (ev) => { dragFrom = i; li.classList.add("dragging"); ev.dataTransfer.effectAllowed = "move"; ev.dataTransfer.setData("text/plain", String(i)); });
        li.addEventListener("dragend", () => { li.classList.remove("dragging"); dragFrom = null; });
        li.addEventListener("dragover", (ev) => { if (dragFrom !== null) { ev.preventDefault(); li.classList.add("drop"); } });
        li.addEventListener("dragleave", () => li.classList.remove("drop"));
        li.addEventListener("drop", (ev) => {
          ev.preventDefault();
          li.classList.remove("drop");
          const from = dragFrom !== null ? dragFrom : Number(ev.dataTransfer.getData("text/plain"));
          if (!Number.isNaN(from)) move(from, i, ".summary-text");
        });
      }
      row.el = li;
      form.register(opts.prefix + "[" + n + "]", msgs, li.querySelector("input, select, .summary-text, button"), label);
      list.append(li);
    });
    empty.hidden = rows.length > 0;
    if (opts.max) add.disabled = rows.length >= opts.max;
    if (opts.onChange) opts.onChange(rows.length);
  }

  items.forEach((item) => rows.push({ item, editor: null, el: null }));
  draw();
  return {
    el: h("div", { class: "item-list" }, list, empty),
    add,
    value: () => rows.map(current),
    count: () => rows.length,
    // Local checks of the rows still open, with their fields counted from 1.
    check() {
      const out = [];
      rows.forEach((row, i) => {
        if (!row.editor || !row.editor.check) return;
        for (const p of row.editor.check()) {
          const sep = p.field.startsWith("[") ? "" : ".";
          out.push({ field: opts.prefix + "[" + (i + 1) + "]" + (p.field ? sep + p.field : ""), message: p.message });
        }
      });
      return out;
    },
    // Rows that have messages open their editor so that the field concerned is visible.
    openRowsFor(items2) {
      for (const i of items2) {
        const m = /\[(\d+)\]/.exec(i.field.slice(opts.prefix.length));
        if (!i.field.startsWith(opts.prefix + "[") || !m) continue;
        const row = rows[Number(m[1]) - 1];
        if (row && !row.editor) { row.editor = opts.editor(row.item, form); }
      }
      draw();
    },
    redraw: draw,
  };
}
