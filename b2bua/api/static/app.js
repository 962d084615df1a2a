// The dashboard: a small single-page application over the REST API (/api/openapi.json).
// No framework and no build step: h() builds elements, each page is a render function.
"use strict";

const state = {
  session: null,      // {login, role, extension, name, csrf_token}
  ext: null,          // the extension being managed
  options: null,      // GET /api/options
  user: null,         // GET /api/users/{ext}
  page: "lines",
  timers: [],
};

// ---- helpers -------------------------------------------------------------------------------

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

class ApiError extends Error {
  constructor(status, data) {
    super((data && data.message) || ("HTTP " + status));
    this.status = status;
    this.data = data || {};
  }
}

async function api(method, path, body) {
  const headers = {};
  let payload = body;
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrf_token;
  if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob) && typeof body !== "string") {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  } else if (typeof body === "string") {
    headers["Content-Type"] = "text/calendar";
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
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

function errorBox(err) {
  const data = err.data || {};
  const issues = data.issues || [];
  return h("div", { class: "alert error", role: "alert", "data-test": "error" },
    h("strong", {}, t("error") + " : "), data.message || err.message,
    issues.length > 1 ? h("ul", {}, issues.map((i) => h("li", {}, i.field + " — " + i.reason))) : null);
}

function flash(container, content, kind) {
  const box = container.querySelector(".flash") || container.appendChild(h("div", { class: "flash" }));
  box.replaceChildren(content instanceof Node ? content
    : h("div", { class: "alert " + (kind || "ok"), role: "status", "data-test": "flash" }, content));
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

function clearTimers() { state.timers.forEach(clearInterval); state.timers = []; }

function expired() {
  state.session = null;
  clearTimers();
  renderLogin(t("session.expired"));
}

function fmtDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(LANG === "fr" ? "fr-FR" : "en-GB", { dateStyle: "short", timeStyle: "short" });
}

function describe(dest) {
  if (!dest) return "";
  const k = dest.kind;
  if (k === "voicemail") return dest.extension ? t("desc.voicemail.of", { ext: dest.extension }) : t("desc.voicemail");
  if (k === "extension") return t(dest.voicemail ? "desc.extension.vm" : "desc.extension", { ext: dest.extension });
  if (k === "mobile") return t("desc.mobile") + (dest.bounce ? t("desc.bounce") : "");
  if (k === "external") return t("desc.external", { number: dest.number }) + (dest.bounce ? t("desc.bounce") : "");
  if (k === "system") return t("desc.system", { ext: dest.extension });
  if (k === "announcement") return t("desc.announcement", { message: dest.message });
  return t("desc." + k);
}

// ---- the destination editor ----------------------------------------------------------------

// A destination form: kind select and the fields of the kind. `kinds` limits the choice;
// "mobile" is only offered when the user has a mobile number. Returns {el, value()}.
function destinationEditor(initial, kinds, testName) {
  const hasMobile = !!(state.user && state.user.settings.mobile);
  const allowed = kinds.filter((k) => k !== "mobile" || hasMobile || (initial && initial.kind === "mobile"));
  let current = Object.assign({}, initial || { kind: allowed[0] });
  const fields = h("span", { class: "dest-fields" });
  const select = h("select", { "data-test": testName + "-kind", "aria-label": t("exceptions.action"),
    onchange: () => { current = { kind: select.value }; renderFields(); } },
  allowed.map((k) => h("option", { value: k }, t("dest." + k))));
  select.value = current.kind;
  const opts = state.options;

  function renderFields() {
    const k = current.kind;
    const parts = [];
    if (k === "voicemail") {
      const s = h("select", { "data-test": testName + "-vmext", onchange: () => {
        if (s.value) current.extension = s.value; else delete current.extension;
      } }, h("option", { value: "" }, t("dest.mine")),
      opts.colleagues.filter((c) => c.extension !== state.ext).map((c) => h("option", { value: c.extension }, c.extension + " " + c.name)));
      s.value = current.extension || "";
      parts.push(h("label", {}, t("dest.vmof") + " ", s));
    } else if (k === "extension") {
      const others = opts.colleagues.filter((c) => c.extension !== state.ext);
      if (!current.extension && others.length) current.extension = others[0].extension;
      const s = h("select", { "data-test": testName + "-colleague", onchange: () => { current.extension = s.value; } },
        others.map((c) => h("option", { value: c.extension }, c.extension + " " + c.name)));
      s.value = current.extension || "";
      const vm = h("input", { type: "checkbox", "data-test": testName + "-straightvm", checked: current.voicemail,
        onchange: () => { current.voicemail = vm.checked; } });
      parts.push(h("label", {}, t("dest.colleague") + " ", s), h("label", { class: "check" }, vm, t("dest.straightvm")));
    } else if (k === "mobile" || k === "external") {
      if (k === "external") {
        const n = h("input", { type: "tel", value: current.number || "", "data-test": testName + "-number",
          placeholder: "0611223344", oninput: () => { current.number = n.value.trim(); } });
        parts.push(h("label", {}, t("dest.number") + " ", n));
      }
      const b = h("input", { type: "checkbox", "data-test": testName + "-bounce", checked: current.bounce,
        onchange: () => { current.bounce = b.checked; } });
      parts.push(h("label", { class: "check" }, b, t("dest.bounce")));
    } else if (k === "system") {
      if (!current.extension && opts.system_extensions.length) current.extension = opts.system_extensions[0].extension;
      const s = h("select", { onchange: () => { current.extension = s.value; } },
        opts.system_extensions.map((c) => h("option", { value: c.extension }, c.extension + " " + c.name)));
      s.value = current.extension || "";
      parts.push(h("label", {}, t("dest.group") + " ", s));
    } else if (k === "announcement") {
      if (!current.message) current.message = opts.announcements[0];
      const s = h("select", { onchange: () => { current.message = s.value; } },
        opts.announcements.map((a) => h("option", { value: a }, a)));
      s.value = current.message;
      parts.push(h("label", {}, t("dest.message") + " ", s));
    }
    fields.replaceChildren(...parts);
  }
  renderFields();
  return {
    el: h("span", { class: "dest" }, select, fields),
    value: () => {
      const d = { kind: current.kind };
      for (const key of ["extension", "voicemail", "number", "bounce", "message"]) {
        if (current[key] !== undefined && current[key] !== "" && current[key] !== false) d[key] = current[key];
      }
      if (d.kind !== "voicemail" && d.kind !== "extension" && d.kind !== "system") delete d.extension;
      return d;
    },
  };
}

const ALL_KINDS = ["devices", "voicemail", "extension", "mobile", "external", "system", "busy", "announcement"];

// ---- sign in -------------------------------------------------------------------------------

function langSwitch() {
  return h("span", { class: "lang" },
    ["fr", "en"].map((l) => h("button", { type: "button", class: l === LANG ? "link active" : "link",
      "data-test": "lang-" + l, onclick: () => { setLang(l); state.session ? render() : renderLogin(); } },
    l.toUpperCase())));
}

function renderLogin(message) {
  clearTimers();
  document.title = t("app.title");
  const login = h("input", { id: "login", name: "login", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const box = h("div", { class: "flash" });
  if (message) box.append(h("div", { class: "alert error" }, message));
  const form = h("form", { class: "card login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      state.session = await api("POST", "/api/login", { login: login.value.trim(), password: password.value });
      await start();
    } catch (err) {
      const text = err.status === 429 ? t("login.throttled", { s: (err.data.message.match(/\d+/) || ["?"])[0] }) : t("login.bad");
      box.replaceChildren(h("div", { class: "alert error", "data-test": "error" }, text));
    }
  } },
  h("h1", {}, t("login.title")),
  h("label", { for: "login" }, t("login.login")), login,
  h("label", { for: "password" }, t("login.password")), password,
  h("button", { type: "submit", class: "primary", "data-test": "login-submit" }, t("login.submit")),
  h("p", { class: "hint" }, t("login.hint")), box);
  document.getElementById("app").replaceChildren(h("header", { class: "top" }, h("span", { class: "brand" }, t("app.title")), langSwitch()), form);
  login.focus();
}

// ---- the frame -----------------------------------------------------------------------------

const PAGES = [
  ["lines", "nav.lines"], ["music", "nav.music"], ["schedule", "nav.schedule"],
  ["exceptions", "nav.exceptions"], ["forward", "nav.forward"], ["routing", "nav.routing"],
  ["voicemail", "nav.voicemail"], ["account", "nav.account"],
];

async function start() {
  state.options = await api("GET", "/api/options");
  if (state.session.role === "admin") {
    const list = await api("GET", "/api/users");
    if (!state.ext || !list.users.some((u) => u.extension === state.ext)) {
      state.ext = list.users.length ? list.users[0].extension : null;
    }
  } else {
    state.ext = state.session.extension;
  }
  const hash = location.hash.replace("#", "");
  if (hash) state.page = hash;
  await render();
}

async function loadUser() {
  state.user = state.ext ? await api("GET", uext("")) : null;
}

async function render() {
  clearTimers();
  document.title = t("app.title");
  document.documentElement.lang = LANG;
  const admin = state.session.role === "admin";
  const pages = PAGES.concat(admin ? [["users", "nav.users"]] : []);
  if (!pages.some(([p]) => p === state.page)) state.page = "lines";
  if (state.ext) await loadUser();
  const main = h("main", { id: "page", "data-page": state.page });
  const badge = h("span", { class: "badge", id: "unread", hidden: true });
  const nav = h("nav", {}, pages.map(([p, key]) => h("a", {
    href: "#" + p, class: p === state.page ? "active" : "", "data-test": "nav-" + p,
    onclick: (ev) => { ev.preventDefault(); state.page = p; history.replaceState(null, "", "#" + p); render(); },
  }, t(key), p === "voicemail" ? badge : null)));
  let chooser = null;
  if (admin) {
    const list = await api("GET", "/api/users");
    chooser = h("select", { "data-test": "ext-select", "aria-label": t("extension"), onchange: () => { state.ext = chooser.value; render(); } },
      list.users.map((u) => h("option", { value: u.extension }, u.extension + " — " + u.name)));
    chooser.value = state.ext || "";
  }
  const who = state.user ? state.user.settings.extension + " — " + state.user.settings.name : state.session.login;
  const header = h("header", { class: "top" },
    h("span", { class: "brand" }, t("app.title")),
    chooser ? h("label", { class: "ext" }, t("extension") + " ", chooser) : h("span", { class: "who", "data-test": "who" }, who),
    langSwitch(),
    h("button", { type: "button", class: "link", "data-test": "logout", onclick: async () => {
      try { await api("POST", "/api/logout"); } catch (e) { /* already out */ }
      state.session = null; renderLogin();
    } }, t("logout")));
  document.getElementById("app").replaceChildren(header, nav, main);
  refreshUnread(badge);
  const renderer = RENDERERS[state.page];
  if (!state.ext && state.page !== "users" && state.page !== "account") {
    main.append(h("p", {}, "—"));
    return;
  }
  try {
    await renderer(main);
  } catch (err) {
    if (err.status !== 401) main.append(errorBox(err));
  }
}

async function refreshUnread(badge) {
  if (!state.ext) return;
  try {
    const vm = await api("GET", uext("/voicemail"));
    badge.textContent = String(vm.unread);
    badge.hidden = vm.unread === 0;
    badge.setAttribute("data-test", "unread");
  } catch (e) { /* shown on the page itself */ }
}

async function patchUser(main, changes) {
  const result = await guarded(main, async () => {
    state.user = await api("PATCH", uext(""), changes);
    return state.user;
  }, t("saved"));
  return result;
}

// ---- Lines ---------------------------------------------------------------------------------

async function renderLines(main) {
  main.append(h("h2", {}, t("lines.title")));
  const list = h("div", { class: "cards", id: "devices" });
  const qr = h("div", { id: "qr" });
  main.append(list, qr);

  async function refresh() {
    const data = await api("GET", uext("/devices"));
    list.replaceChildren(...(data.devices.length ? [] : [h("p", {}, t("lines.none"))]));
    for (const d of data.devices) {
      if (d.device === null) continue;
      const type = h("select", { "data-test": "device-type", "aria-label": t("lines.type") },
        state.options.device_types.map((k) => h("option", { value: k }, t("type." + k))));
      type.value = d.type;
      const label = h("input", { value: d.label, "data-test": "device-label", "aria-label": t("lines.label") });
      const stateText = t("state." + d.state);
      const card = h("div", { class: "card device", "data-test": "device", "data-device": d.device },
        h("div", { class: "row" },
          h("span", { class: "number" }, t("lines.number") + " " + d.username),
          h("span", { class: "state " + d.state, "data-test": "device-state" }, stateText)),
        h("div", { class: "row" }, type, label),
        d.source ? h("dl", {},
          h("dt", {}, t("lines.from")), h("dd", {}, d.source),
          h("dt", {}, t("lines.agent")), h("dd", {}, d.user_agent || "—"),
          h("dt", {}, t("lines.until")), h("dd", {}, fmtDate(d.expires_at))) : null,
        h("div", { class: "row actions" },
          h("button", { type: "button", "data-test": "device-save", onclick: () => guarded(main, async () => {
            await api("PATCH", uext("/devices/" + d.device), { label: label.value, type: type.value });
            await loadUser(); await refresh();
          }, t("saved")) }, t("lines.rename")),
          d.provisionable ? h("button", { type: "button", "data-test": "device-qr", onclick: () => guarded(main, async () => {
            const res = await api("POST", uext("/devices/" + d.device + "/qr"));
            qr.replaceChildren(h("div", { class: "card qr" },
              h("h3", {}, t("lines.qr.title") + " — " + d.label),
              h("img", { src: res.png, alt: res.url, id: "qr-image", "data-test": "qr-image", width: 240, height: 240 }),
              h("p", {}, t("lines.qr.help", { until: fmtDate(res.expires_at) }))));
          }) }, t("lines.qr")) : null,
          h("button", { type: "button", class: "danger", "data-test": "device-delete", onclick: () => {
            if (!window.confirm(t("confirm.delete"))) return;
            guarded(main, async () => { await api("DELETE", uext("/devices/" + d.device)); await loadUser(); await refresh(); }, t("saved"));
          } }, t("delete"))));
      list.append(card);
    }
  }

  const newType = h("select", { "data-test": "new-device-type" },
    state.options.device_types.map((k) => h("option", { value: k }, t("type." + k))));
  const newLabel = h("input", { "data-test": "new-device-label", placeholder: t("lines.label"), required: true });
  main.append(h("form", { class: "card inline", onsubmit: (ev) => {
    ev.preventDefault();
    guarded(main, async () => {
      await api("POST", uext("/devices"), { type: newType.value, label: newLabel.value.trim() });
      newLabel.value = "";
      await loadUser(); await refresh();
    }, t("saved"));
  } }, h("h3", {}, t("lines.add")), newType, newLabel,
  h("button", { type: "submit", class: "primary", "data-test": "device-add" }, t("add"))));
  await refresh();
  state.timers.push(setInterval(() => { refresh().catch(() => {}); }, 10000));
}

// ---- Hold music ----------------------------------------------------------------------------

async function renderMusic(main) {
  main.append(h("h2", {}, t("music.title")));
  const data = await api("GET", "/api/music");
  const admin = state.session.role === "admin";
  const chosen = state.user.settings.hold_music || "default";
  const player = h("audio", { controls: true, id: "music-player", preload: "none" });
  const list = h("div", { class: "card", role: "radiogroup", "aria-label": t("music.choose") },
    h("h3", {}, t("music.choose")),
    data.classes.map((c) => h("div", { class: "row music", "data-test": "music-" + c.name },
      h("label", { class: "check" },
        h("input", { type: "radio", name: "music", value: c.name, checked: c.name === chosen, "data-test": "music-choice" }),
        c.name, " ", h("small", {}, c.shipped ? t("music.shipped") : t("music.uploaded")),
        c.duration ? h("small", {}, " · " + c.duration + " s") : null,
        admin && c.used_by && c.used_by.length ? h("small", {}, " · " + t("music.used", { users: c.used_by.join(", ") })) : null),
      h("button", { type: "button", "data-test": "music-play", onclick: () => {
        player.src = "/api/music/" + encodeURIComponent(c.name) + "/audio";
        player.play().catch(() => {});
      } }, "▶ " + t("music.play")),
      admin && c.uploaded ? h("button", { type: "button", class: "danger", onclick: () => {
        if (!window.confirm(t("confirm.delete"))) return;
        guarded(main, async () => { await api("DELETE", "/api/music/" + encodeURIComponent(c.name)); render(); });
      } }, t("delete")) : null)),
    player,
    h("button", { type: "button", class: "primary", "data-test": "music-save", onclick: () => {
      const pick = list.querySelector("input[name=music]:checked");
      if (pick) patchUser(main, { hold_music: pick.value });
    } }, t("save")));
  main.append(list);
  if (admin) main.append(uploadForm(main));
}

function uploadForm(main) {
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_-]{0,63}", "data-test": "upload-name" });
  const file = h("input", { name: "file", type: "file", accept: "audio/*", required: true, "data-test": "upload-file" });
  const bar = h("progress", { max: 100, value: 0, hidden: true, "data-test": "upload-progress" });
  const status = h("span", { class: "status", "data-test": "upload-status" });
  const form = h("form", { class: "card", onsubmit: (ev) => {
    ev.preventDefault();
    if (!file.files.length) return;
    const body = new FormData();
    body.append("name", name.value.trim());
    body.append("file", file.files[0]);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/music");
    xhr.setRequestHeader("X-CSRF-Token", state.session.csrf_token);
    bar.hidden = false; bar.value = 0;
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        bar.value = Math.round(100 * e.loaded / e.total);
        status.textContent = t("music.uploading", { p: bar.value });
      }
    };
    xhr.upload.onload = () => { bar.removeAttribute("value"); status.textContent = t("music.converting"); };
    xhr.onload = () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      bar.hidden = true;
      if (xhr.status === 201) {
        status.textContent = "";
        flash(main, t("music.done", { name: data.name, d: data.duration }));
        render().then(() => flash(document.getElementById("page"), t("music.done", { name: data.name, d: data.duration })));
      } else if (xhr.status === 401) {
        expired();
      } else {
        status.textContent = "";
        flash(form, errorBox(new ApiError(xhr.status, data)));
      }
    };
    xhr.onerror = () => { bar.hidden = true; status.textContent = t("error"); };
    xhr.send(body);
  } },
  h("h3", {}, t("music.upload")),
  h("label", {}, t("music.name"), name),
  h("label", {}, t("music.file"), file),
  h("div", { class: "row" }, h("button", { type: "submit", class: "primary", "data-test": "upload-submit" }, t("music.send")), bar, status));
  return form;
}

// ---- Schedules -----------------------------------------------------------------------------

function timeInput(value, test) {
  return h("input", { type: "time", value: value || "", required: true, "data-test": test });
}

function daysPicker(days, test) {
  return h("span", { class: "days", "data-test": test },
    state.options.weekdays.map((d) => h("label", { class: "check" },
      h("input", { type: "checkbox", value: d, checked: days.includes(d) }), t("days." + d))));
}

function monthsPicker(months) {
  const names = t("months").split(",");
  const all = h("input", { type: "checkbox", checked: months === "all", "data-test": "allmonths" });
  const boxes = h("span", { class: "months", hidden: months === "all" },
    names.map((n, i) => h("label", { class: "check" },
      h("input", { type: "checkbox", value: i + 1, checked: months !== "all" && months.includes(i + 1) }), n)));
  all.addEventListener("change", () => { boxes.hidden = all.checked; });
  return {
    el: h("span", {}, h("label", { class: "check" }, all, t("schedule.allmonths")), boxes),
    value: () => all.checked ? "all" : [...boxes.querySelectorAll("input:checked")].map((b) => Number(b.value)),
  };
}

async function renderSchedule(main) {
  main.append(h("h2", {}, t("schedule.title")));
  const schedule = state.user.settings.schedule || { enabled: false, hours: [], exceptional: [], closed: { kind: "voicemail" } };
  let tab = sessionStorage.getItem("b2bua.tab") || "hours";
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const body = h("div", {});
  main.append(tabs, body);

  function showTab(name) {
    tab = name;
    sessionStorage.setItem("b2bua.tab", name);
    tabs.replaceChildren(...["hours", "exceptional"].map((n) => h("button", {
      type: "button", role: "tab", class: n === tab ? "tab active" : "tab", "aria-selected": String(n === tab),
      "data-test": "tab-" + n, onclick: () => showTab(n),
    }, t("schedule.tab." + n))));
    body.replaceChildren(n2el(name));
  }
  function n2el(name) { return name === "hours" ? hoursTab() : exceptionalTab(); }

  function hoursTab() {
    const enabled = h("input", { type: "checkbox", checked: schedule.enabled !== false, "data-test": "schedule-enabled" });
    const rows = h("div", { id: "hours" });
    const editors = [];
    function addRow(p) {
      const start = timeInput(p.start, "hours-start");
      const end = timeInput(p.end, "hours-end");
      const days = daysPicker(p.days || [], "hours-days");
      const months = monthsPicker(p.months || "all");
      const entry = { start, end, days, months };
      const row = h("div", { class: "card period", "data-test": "hours-row" },
        h("label", {}, t("schedule.start") + " ", start), h("label", {}, t("schedule.end") + " ", end),
        h("div", {}, h("span", { class: "label" }, t("schedule.days") + " : "), days),
        h("div", {}, h("span", { class: "label" }, t("schedule.months") + " : "), months.el),
        h("button", { type: "button", class: "remove", title: t("remove"), "aria-label": t("remove"), onclick: () => {
          editors.splice(editors.indexOf(entry), 1); row.remove();
        } }, "×"));
      editors.push(entry);
      rows.append(row);
    }
    (schedule.hours || []).forEach(addRow);
    const closed = destinationEditor(schedule.closed || { kind: "voicemail" }, ALL_KINDS.filter((k) => k !== "devices"), "closed");
    return h("div", {},
      h("label", { class: "check big" }, enabled, t("schedule.enabled")),
      rows,
      h("button", { type: "button", class: "plus", title: t("schedule.addperiod"), "aria-label": t("schedule.addperiod"), "data-test": "hours-add",
        onclick: () => addRow({ start: "08:00", end: "17:00", days: ["mon", "tue", "wed", "thu", "fri"], months: "all" }) }, "+"),
      h("div", { class: "card" }, h("label", {}, t("schedule.closed") + " "), closed.el),
      h("button", { type: "button", class: "primary", "data-test": "schedule-save", onclick: () => {
        const hours = editors.map((e) => ({
          start: e.start.value, end: e.end.value,
          days: [...e.days.querySelectorAll("input:checked")].map((b) => b.value),
          months: e.months.value(),
        }));
        const next = Object.assign({}, schedule, { enabled: enabled.checked, hours, closed: closed.value() });
        patchUser(main, { schedule: next }).then((u) => { if (u) Object.assign(schedule, u.settings.schedule); });
      } }, t("save")));
  }

  function exceptionalTab() {
    const rows = h("div", { id: "exceptional" });
    const editors = [];
    function addRow(p) {
      const name = h("input", { value: p.name || "", required: true, "data-test": "exc-name" });
      const dates = h("input", { value: (p.dates || []).join(", "), required: true, placeholder: "12-24..01-01, 2026-05-01", "data-test": "exc-dates", class: "wide" });
      const whole = h("input", { type: "checkbox", checked: !p.start, "data-test": "exc-wholeday" });
      const start = timeInput(p.start || "08:00", "exc-start");
      const end = timeInput(p.end || "18:00", "exc-end");
      const window_ = h("span", { hidden: !p.start }, h("label", {}, t("schedule.start") + " ", start), h("label", {}, t("schedule.end") + " ", end));
      whole.addEventListener("change", () => { window_.hidden = whole.checked; });
      const dest = destinationEditor(p.destination || { kind: "voicemail" }, ALL_KINDS, "exc-dest");
      const entry = { name, dates, whole, start, end, dest };
      const row = h("div", { class: "card period", "data-test": "exc-row" },
        h("label", {}, t("exc.name") + " ", name),
        h("label", {}, t("exc.dates"), dates),
        h("div", {}, h("label", { class: "check" }, whole, t("exc.wholeday")), window_),
        h("div", {}, h("span", { class: "label" }, t("exc.destination") + " : "), dest.el),
        h("button", { type: "button", class: "remove", title: t("remove"), "aria-label": t("remove"), onclick: () => {
          editors.splice(editors.indexOf(entry), 1); row.remove();
        } }, "×"));
      editors.push(entry);
      rows.append(row);
    }
    (schedule.exceptional || []).forEach(addRow);
    const file = h("input", { type: "file", accept: ".ics,text/calendar", "data-test": "ics-file" });
    return h("div", {},
      rows,
      h("button", { type: "button", class: "plus", title: t("exc.add"), "aria-label": t("exc.add"), "data-test": "exc-add",
        onclick: () => addRow({ name: "", dates: [], destination: schedule.closed || { kind: "voicemail" } }) }, "+"),
      h("button", { type: "button", class: "primary", "data-test": "exc-save", onclick: () => {
        const exceptional = editors.map((e) => {
          const p = { name: e.name.value.trim(), dates: e.dates.value.split(",").map((s) => s.trim()).filter(Boolean) };
          if (!e.whole.checked) { p.start = e.start.value; p.end = e.end.value; }
          p.destination = e.dest.value();
          return p;
        });
        const next = Object.assign({ enabled: true, hours: [] }, schedule, { exceptional });
        patchUser(main, { schedule: next }).then((u) => { if (u) Object.assign(schedule, u.settings.schedule); });
      } }, t("save")),
      h("div", { class: "card row" },
        h("a", { href: uext("/exceptional.ics"), download: "", class: "button", "data-test": "ics-export" }, t("exc.export")),
        h("label", {}, t("exc.import") + " ", file),
        h("button", { type: "button", "data-test": "ics-import", onclick: async () => {
          if (!file.files.length) return;
          const text = await file.files[0].text();
          const res = await guarded(main, () => api("POST", uext("/exceptional.ics"), text));
          if (res) { await render(); flash(document.getElementById("page"), t("exc.imported", { n: res.added })); }
        } }, t("exc.import"))));
  }
  showTab(tab);
}

// ---- Exceptions ----------------------------------------------------------------------------

async function renderExceptions(main) {
  const max = state.options.max_exceptions;
  main.append(h("h2", {}, t("exceptions.title")), h("p", { class: "hint" }, t("exceptions.help", { max })));
  const schedule = state.user.settings.schedule;
  if (!schedule || schedule.enabled === false) {
    main.append(h("p", { class: "alert info", "data-test": "exceptions-need-schedule" }, t("exceptions.needschedule")));
  }
  const rows = h("div", { id: "exceptions" });
  const editors = [];
  const addButton = h("button", { type: "button", class: "plus", title: t("exceptions.add"), "aria-label": t("exceptions.add"), "data-test": "exception-add",
    onclick: () => addRow({ callers: "", destination: { kind: "busy" } }) }, "+");
  function sync() { addButton.disabled = editors.length >= max; addButton.title = editors.length >= max ? t("exceptions.max", { max }) : t("exceptions.add"); }
  function addRow(e) {
    if (editors.length >= max) return;
    const callers = h("input", { value: e.callers, required: true, placeholder: "06* 07*", "data-test": "exception-callers" });
    const dest = destinationEditor(e.destination, ALL_KINDS, "exception-dest");
    const entry = { callers, dest };
    const row = h("div", { class: "card period", "data-test": "exception-row" },
      h("label", {}, t("exceptions.pattern") + " ", callers),
      h("div", {}, h("span", { class: "label" }, t("exceptions.action") + " : "), dest.el),
      h("button", { type: "button", class: "remove", title: t("remove"), "aria-label": t("remove"), onclick: () => {
        editors.splice(editors.indexOf(entry), 1); row.remove(); sync();
      } }, "×"));
    editors.push(entry);
    rows.append(row);
    sync();
  }
  (state.user.settings.exceptions || []).forEach(addRow);
  main.append(rows, addButton,
    h("button", { type: "button", class: "primary", "data-test": "exceptions-save", onclick: () => {
      patchUser(main, { exceptions: editors.map((e) => ({ callers: e.callers.value.trim(), destination: e.dest.value() })) });
    } }, t("save")));
  if (!editors.length) rows.append(h("p", { class: "hint" }, t("exceptions.none")));
  sync();
}

// ---- Forwarding ----------------------------------------------------------------------------

async function renderForward(main) {
  main.append(h("h2", {}, t("forward.title")), h("p", { class: "alert info", "data-test": "forward-note" }, t("forward.note")));
  const s = state.user.settings;
  const mobile = h("input", { type: "tel", value: s.mobile || "", "data-test": "mobile" });
  main.append(h("div", { class: "card" },
    h("label", {}, t("forward.mobile") + " ", mobile), h("small", {}, t("forward.mobile.help")),
    h("button", { type: "button", "data-test": "mobile-save", onclick: async () => {
      await patchUser(main, { mobile: mobile.value.trim() || null });
      render();
    } }, t("save"))));
  const enabled = h("input", { type: "checkbox", checked: !!s.forward, "data-test": "forward-enabled" });
  const dest = destinationEditor(s.forward || { kind: s.mobile ? "mobile" : "external" },
    ["mobile", "external", "extension", "voicemail", "system"], "forward");
  main.append(h("div", { class: "card" },
    h("label", { class: "check big" }, enabled, t("forward.enabled")), dest.el,
    h("button", { type: "button", class: "primary", "data-test": "forward-save", onclick: () => {
      patchUser(main, { forward: enabled.checked ? dest.value() : null });
    } }, t("save"))));
}

// ---- Where calls go ------------------------------------------------------------------------

// One colour per kind of destination, so the same place looks the same everywhere.
const KIND_COLORS = {
  devices: "#43a047", voicemail: "#90a4ae", extension: "#1e88e5", mobile: "#fb8c00",
  external: "#8e24aa", system: "#00acc1", busy: "#e53935", announcement: "#6d4c41",
};

function weekPicture(week) {
  const used = new Set();
  for (const o of week.outcomes) {
    const c = o.destination && KIND_COLORS[o.destination.kind];
    if (c && !used.has(c)) { o.color = c; used.add(c); }
  }
  const cw = 14, ch = 24, left = 70, top = 26;
  const width = left + 48 * cw + 10, height = top + 7 * ch + 8;
  const pic = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", id: "week-svg",
    "aria-label": t("routing.week"), class: "week" });
  for (let hr = 0; hr <= 24; hr += 2) {
    pic.append(svg("text", { x: left + hr * 2 * cw, y: top - 8, "text-anchor": "middle", class: "axis" }, String(hr).padStart(2, "0") + "h"));
  }
  const dayKeys = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  week.days.forEach((day, d) => {
    const date = new Date(day + "T12:00:00");
    const label = t("days." + dayKeys[(date.getDay() + 6) % 7]) + " " + day.slice(8, 10) + "/" + day.slice(5, 7);
    pic.append(svg("text", { x: 4, y: top + d * ch + ch - 8, class: "axis" }, label));
    week.cells[d].forEach((cell, hh) => {
      const o = cell === null ? null : week.outcomes[cell];
      const title = (o ? describe(o.destination) + " — " + t("rule." + o.rule) : "—");
      pic.append(svg("rect", { x: left + hh * cw, y: top + d * ch, width: cw, height: ch,
        fill: o ? o.color : "#fff", stroke: "#fff", "stroke-width": 1 },
      svg("title", {}, `${label} ${String(Math.floor(hh / 2)).padStart(2, "0")}:${hh % 2 ? "30" : "00"} ${title}`)));
    });
  });
  const legend = h("ul", { class: "legend", "data-test": "week-legend" }, week.outcomes.map((o) => h("li", {},
    h("span", { class: "swatch", "data-color": o.color }), describe(o.destination),
    h("small", {}, " — " + t("rule." + o.rule) + (o.rule_name ? " « " + o.rule_name + " »" : "")))));
  legend.querySelectorAll(".swatch").forEach((el) => { el.style.background = el.dataset.color; });
  return h("div", { class: "week-box" }, pic, legend);
}

async function renderRouting(main) {
  main.append(h("h2", {}, t("routing.title")));
  // The week.
  const caller = h("input", { type: "tel", "data-test": "week-caller", placeholder: "*" });
  const start = h("input", { type: "date", "data-test": "week-start" });
  const weekBox = h("div", { id: "week" });
  async function showWeek() {
    const q = new URLSearchParams();
    if (caller.value.trim()) q.set("caller", caller.value.trim());
    if (start.value) q.set("start", start.value);
    const week = await api("GET", uext("/week?" + q));
    weekBox.replaceChildren(weekPicture(week));
  }
  main.append(h("section", { class: "card" }, h("h3", {}, t("routing.week")),
    h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); guarded(main, showWeek); } },
      h("label", {}, t("routing.caller") + " ", caller), h("label", {}, t("routing.start") + " ", start),
      h("button", { type: "submit" }, t("routing.show"))), weekBox));
  await showWeek();
  // Test a call.
  const tc = h("input", { type: "tel", "data-test": "test-caller", placeholder: "0611223344" });
  const now = new Date();
  const td = h("input", { type: "date", "data-test": "test-date", value: now.toISOString().slice(0, 10) });
  const tt = h("input", { type: "time", "data-test": "test-time", value: now.toTimeString().slice(0, 5) });
  const result = h("div", { id: "test-result", "data-test": "test-result" });
  main.append(h("section", { class: "card" }, h("h3", {}, t("routing.test")),
    h("form", { class: "row", onsubmit: (ev) => {
      ev.preventDefault();
      guarded(main, async () => {
        const q = new URLSearchParams({ caller: tc.value.trim() });
        if (td.value) q.set("at", td.value + "T" + (tt.value || "12:00"));
        const d = await api("GET", uext("/trace?" + q));
        result.replaceChildren(
          h("p", { class: "decision", "data-test": "test-destination", "data-kind": d.destination.kind }, t("routing.result", { dest: describe(d.destination) })),
          h("p", { "data-test": "test-rule", "data-rule": d.rule }, t("routing.rule", { rule: t("rule." + d.rule) + (d.rule_name ? " « " + d.rule_name + " »" : "") })),
          h("ol", { class: "trace" }, d.trace.map((line) => h("li", {}, line))));
      });
    } },
    h("label", {}, t("calls.caller") + " ", tc), h("label", {}, t("routing.date") + " ", td),
    h("label", {}, t("routing.time") + " ", tt), h("button", { type: "submit", class: "primary", "data-test": "test-run" }, t("routing.run"))),
    result));
  // History.
  const history = h("div", { id: "calls" });
  main.append(h("section", { class: "card" }, h("h3", {}, t("routing.history")), history));
  const calls = await api("GET", uext("/calls?limit=50"));
  if (!calls.calls.length) history.append(h("p", {}, t("routing.nocalls")));
  else {
    history.append(h("table", {}, h("thead", {}, h("tr", {},
      [t("calls.when"), t("calls.caller"), t("calls.outcome"), t("calls.destination")].map((x) => h("th", {}, x)))),
    h("tbody", {}, calls.calls.map((c) => [
      h("tr", { "data-test": "call" }, h("td", {}, fmtDate(c.started_at)), h("td", {}, c.caller), h("td", {}, t("outcome." + c.outcome)),
        h("td", {}, (c.destination ? describe(c.destination) : "—") + (c.rule ? " (" + t("rule." + c.rule) + ")" : ""))),
      h("tr", { class: "trace-row" }, h("td", { colspan: 4 }, h("details", {}, h("summary", {}, t("routing.why")),
        h("ol", { class: "trace", "data-test": "call-trace" }, (c.trace || []).map((line) => h("li", {}, line)))))),
    ]))));
  }
}

// ---- Voicemail -----------------------------------------------------------------------------

async function renderVoicemail(main) {
  const data = await api("GET", uext("/voicemail"));
  main.append(h("h2", {}, t("vm.title"), " ", h("span", { class: "badge", "data-test": "vm-unread" }, t("vm.unread", { n: data.unread }))));
  if (!data.messages.length) { main.append(h("p", {}, t("vm.none"))); return; }
  const list = h("div", { class: "cards" });
  for (const m of data.messages) {
    const src = uext("/voicemail/" + m.id + "/audio");
    const audio = h("audio", { controls: true, preload: "none", src, "data-test": "vm-audio" });
    audio.addEventListener("play", () => {
      if (!m.read) {
        m.read = true;
        api("PATCH", uext("/voicemail/" + m.id), { read: true }).then(() => refreshUnread(document.getElementById("unread"))).catch(() => {});
      }
    });
    list.append(h("div", { class: "card vm" + (m.read ? "" : " unread"), "data-test": "vm" },
      h("div", { class: "row" }, h("strong", {}, t("vm.from") + " " + (m.caller || "?")),
        m.read ? null : h("span", { class: "badge" }, t("vm.new")),
        h("span", {}, t("vm.date") + " " + fmtDate(m.received)), h("span", {}, t("vm.duration") + " " + Math.round(m.duration) + " s")),
      audio,
      h("div", { class: "row actions" },
        h("a", { href: src + "?download=1", class: "button", "data-test": "vm-download" }, t("vm.download")),
        h("button", { type: "button", class: "danger", "data-test": "vm-delete", onclick: () => {
          if (!window.confirm(t("confirm.delete"))) return;
          guarded(main, async () => { await api("DELETE", uext("/voicemail/" + m.id)); render(); });
        } }, t("delete")))));
  }
  main.append(list);
}

// ---- Account and users ---------------------------------------------------------------------

async function renderAccount(main) {
  main.append(h("h2", {}, t("account.title")));
  const current = h("input", { type: "password", autocomplete: "current-password", required: true, "data-test": "pw-current" });
  const next = h("input", { type: "password", autocomplete: "new-password", minlength: 8, required: true, "data-test": "pw-new" });
  main.append(h("form", { class: "card", onsubmit: (ev) => {
    ev.preventDefault();
    guarded(main, () => api("POST", "/api/password", { current: current.value, new: next.value }), t("saved"));
  } }, h("label", {}, t("account.current"), current), h("label", {}, t("account.new"), next),
  h("button", { type: "submit", class: "primary" }, t("account.change"))));
}

async function renderUsers(main) {
  main.append(h("h2", {}, t("users.title")));
  const data = await api("GET", "/api/users");
  main.append(h("table", {}, h("tbody", {}, data.users.map((u) => h("tr", {},
    h("td", {}, u.extension), h("td", {}, u.name), h("td", {}, String(u.devices)),
    h("td", {},
      h("button", { type: "button", onclick: () => { state.ext = u.extension; state.page = "lines"; render(); } }, t("users.manage")),
      u.stored && !u.created ? h("button", { type: "button", onclick: () => guarded(main, async () => {
        await api("DELETE", "/api/users/" + encodeURIComponent(u.extension) + "/settings"); render();
      }) }, t("users.reset")) : null,
      h("button", { type: "button", class: "danger", onclick: () => {
        if (!window.confirm(t("confirm.delete"))) return;
        guarded(main, async () => { await api("DELETE", "/api/users/" + encodeURIComponent(u.extension)); render(); });
      } }, t("delete"))))))));
  const ext = h("input", { required: true, pattern: "[0-9A-Za-z_]{1,32}" });
  const name = h("input", { required: true });
  const secret = h("input", { required: true, minlength: 8 });
  main.append(h("form", { class: "card", onsubmit: (ev) => {
    ev.preventDefault();
    guarded(main, async () => {
      await api("POST", "/api/users", { extension: ext.value.trim(), name: name.value.trim(), secret: secret.value });
      state.ext = ext.value.trim();
      render();
    });
  } }, h("h3", {}, t("users.create")), h("label", {}, t("extension"), ext), h("label", {}, t("users.name"), name),
  h("label", {}, t("users.secret"), secret), h("button", { type: "submit", class: "primary" }, t("add"))));
}

const RENDERERS = {
  lines: renderLines, music: renderMusic, schedule: renderSchedule, exceptions: renderExceptions,
  forward: renderForward, routing: renderRouting, voicemail: renderVoicemail, account: renderAccount,
  users: renderUsers,
};

// ---- boot ----------------------------------------------------------------------------------

window.addEventListener("DOMContentLoaded", async () => {
  document.documentElement.lang = LANG;
  try {
    const response = await fetch("/api/session", { credentials: "same-origin" });
    if (response.ok) {
      state.session = await response.json();
      await start();
      return;
    }
  } catch (e) { /* offline */ }
  renderLogin();
});
