// The dashboard: a small single-page application over the REST API (/api/openapi.json).
// No framework and no build step: h() builds elements (core.js), each page is a render
// function (pages.js); this file is the frame: sign-in, header, navigation, boot.
"use strict";

function langSwitch() {
  return h("div", { class: "lang", role: "group", "aria-label": t("lang.switch") },
    [["fr", "Français"], ["en", "English"]].map(([l, name]) => h("button", { type: "button", class: "link" + (l === LANG ? " active" : ""),
      lang: l, "aria-pressed": String(l === LANG), "aria-label": l.toUpperCase() + " (" + name + ")", "data-test": "lang-" + l,
      onclick: async () => {
        if (l === LANG) return;
        if (state.session && !(await confirmLeave())) return;
        setLang(l);
        if (state.session) render(); else renderLogin();
      } }, l.toUpperCase())));
}

function shell(header, ...content) {
  const live = h("div", { id: "live", class: "visually-hidden", "aria-live": "polite" });
  const player = h("audio", { id: "player", preload: "none", hidden: true });
  document.getElementById("app").replaceChildren(
    h("a", { href: "#page", class: "skip", onclick: (ev) => { ev.preventDefault(); const m = document.getElementById("page"); if (m) m.focus(); } }, t("app.skip")),
    header, ...content, live, player);
}

function renderLogin(message) {
  clearTimers();
  state.tenant = null;
  state.forms.clear();
  document.title = t("login.title") + " — " + t("app.title");
  document.documentElement.lang = LANG;
  const login = h("input", { id: "login", name: "login", autocomplete: "username", required: true, "aria-describedby": "login-hint" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const box = h("div", { class: "flash", "aria-live": "assertive" });
  if (message) box.append(h("div", { class: "alert error", role: "alert" }, message));
  const form = h("form", { class: "card login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      state.session = await api("POST", "/api/login", { login: login.value.trim(), password: password.value });
      await start();
    } catch (err) {
      const retry = err.data && err.data.message ? (err.data.message.match(/\d+/) || ["?"])[0] : "?";
      const text = err.status === 429 ? t("login.throttled", { s: retry }) : err.status === 0 ? t("network") : t("login.bad");
      box.replaceChildren(h("div", { class: "alert error", role: "alert", "data-test": "error" }, text));
      password.value = "";
      password.focus();
    }
  } },
  h("h1", {}, t("login.title")),
  h("label", { for: "login" }, t("login.login")), login,
  h("label", { for: "password" }, t("login.password")), password,
  h("button", { type: "submit", class: "primary", "data-test": "login-submit" }, t("login.submit")),
  h("p", { class: "hint", id: "login-hint" }, t("login.hint")), box);
  shell(h("header", { class: "top" }, h("span", { class: "brand" }, t("app.title")), h("div", { class: "tools" }, langSwitch())),
    h("main", { id: "page", tabindex: "-1" }, form));
  login.focus();
}

// ---- the frame -----------------------------------------------------------------------------

const PAGES = [
  ["lines", "nav.lines"], ["schedule", "nav.schedule"], ["exceptions", "nav.exceptions"],
  ["forward", "nav.forward"], ["routing", "nav.routing"], ["voicemail", "nav.voicemail"],
  ["announcements", "nav.announcements"], ["music", "nav.music"], ["account", "nav.account"],
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

async function loadAnnouncements() {
  state.announcements = null;
  if (!state.ext) return;
  try {
    state.announcements = (await api("GET", uext("/announcements"))).announcements;
  } catch (err) {
    // An older server without the announcements API: the names of the options.
    state.announcements = (state.options.announcements || []).map((name) => ({ name, kind: "shipped" }));
  }
}

async function go(page) {
  if (page === state.page) return;
  if (!(await confirmLeave())) return;
  state.page = page;
  history.replaceState(null, "", "#" + page);
  await render();
  const main = document.getElementById("page");
  if (main) main.focus();
}

async function render() {
  clearTimers();
  state.forms.clear();
  document.documentElement.lang = LANG;
  const admin = state.session.role === "admin";
  const pages = PAGES.concat(admin ? [["users", "nav.users"]] : [],
    state.session.platform_admin ? [["tenants", "nav.tenants"]] : [], [["help", "nav.help"]]);
  if (!pages.some(([p]) => p === state.page)) state.page = "lines";
  if (state.ext) {
    try {
      await loadUser();
    } catch (err) {
      if (err.status !== 404 || !admin) throw err;
      // The user managed was just deleted: manage the first one left.
      const left = (await api("GET", "/api/users")).users;
      state.ext = left.length ? left[0].extension : null;
      await loadUser();
    }
    await loadAnnouncements();
  }
  const current = pages.find(([p]) => p === state.page);
  document.title = t(current[1]) + " — " + t("app.title");
  const main = h("main", { id: "page", "data-page": state.page, tabindex: "-1" });
  const badge = h("span", { class: "badge", id: "unread", hidden: true });
  const nav = h("nav", { id: "menu", "aria-label": t("nav.label"), class: "closed" }, h("ul", {}, pages.map(([p, key]) => h("li", {},
    h("a", { href: "#" + p, class: p === state.page ? "active" : "", "aria-current": p === state.page ? "page" : null, "data-test": "nav-" + p,
      onclick: (ev) => { ev.preventDefault(); nav.classList.add("closed"); toggle.setAttribute("aria-expanded", "false"); go(p); },
    }, t(key), p === "voicemail" ? badge : null)))));
  const toggle = h("button", { type: "button", class: "menu-toggle", "aria-expanded": "false", "aria-controls": "menu", "data-test": "menu-toggle",
    onclick: () => {
      const open = nav.classList.toggle("closed") === false;
      toggle.setAttribute("aria-expanded", String(open));
    } }, icon("menu"), h("span", {}, t("app.menu")));
  let chooser = null;
  if (admin) {
    const list = await api("GET", "/api/users");
    chooser = h("select", { "data-test": "ext-select", id: "ext-select", onchange: async () => {
      if (!(await confirmLeave())) { chooser.value = state.ext; return; }
      state.ext = chooser.value;
      render();
    } }, list.users.map((u) => h("option", { value: u.extension }, u.extension + " — " + u.name)));
    chooser.value = state.ext || "";
  }
  const who = state.user ? state.user.settings.extension + " — " + state.user.settings.name : state.session.login;
  const header = h("header", { class: "top" },
    h("span", { class: "brand" }, t("app.title")),
    state.tenant ? h("span", { class: "who", "data-test": "tenant-current" }, t("tenants.current", { domain: state.tenant })) : null,
    chooser ? h("span", { class: "ext" }, h("label", { for: "ext-select" }, t("extension.manage")), chooser)
      : h("span", { class: "who", "data-test": "who" }, who),
    h("div", { class: "tools" }, langSwitch(),
      h("button", { type: "button", class: "link", "data-test": "logout", onclick: async () => {
        if (!(await confirmLeave())) return;
        try { await api("POST", "/api/logout"); } catch (e) { /* already out */ }
        state.session = null; renderLogin();
      } }, t("logout"))),
    toggle);
  shell(header, nav, main);
  refreshUnread();
  const renderer = RENDERERS[state.page];
  if (!state.ext && !["users", "account", "help", "tenants"].includes(state.page)) {
    main.append(h("h1", {}, t(current[1])), h("p", {}, "—"));
    main.dataset.ready = "true";  // nobody to show yet (a company without users)
    return;
  }
  try {
    await renderer(main);
  } catch (err) {
    if (err.status !== 401) main.append(errorBox(err));
  }
  main.dataset.ready = "true";
}

async function refreshUnread() {
  const badge = document.getElementById("unread");
  if (!state.ext || !badge) return;
  try {
    const vm = await api("GET", uext("/voicemail"));
    badge.replaceChildren(h("span", { "aria-hidden": "true" }, String(vm.unread)),
      h("span", { class: "visually-hidden" }, " — " + tn("vm.badge", vm.unread)));
    badge.hidden = vm.unread === 0;
    badge.setAttribute("data-test", "unread");
    badge.dataset.count = String(vm.unread);
  } catch (e) { /* shown on the page itself */ }
}

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
