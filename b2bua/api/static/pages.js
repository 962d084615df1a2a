// The pages: one render function each, over the REST API (docs/api.md).
"use strict";

function pageTitle(main, key) {
  main.append(h("h1", { id: "page-title" }, t(key)));
}

// ---- devices -------------------------------------------------------------------------------

// "Yealink SIP-T46U 66.86.0.15" -> "Yealink T46U"; "Linphone/5.2 (belle-sip)" -> "Linphone".
function friendlyAgent(ua) {
  if (!ua) return "";
  const words = ua.replace(/\(.*?\)/g, " ").split(/[\s/]+/)
    .filter((w) => w && !/^v?\d/.test(w))
    .map((w) => w.replace(/^SIP-/i, ""));
  return words.slice(0, 2).join(" ");
}

function presence(d) {
  if (d.state === "registered") {
    const since = d.registered_at;
    let text = t("lines.offline");
    if (since) {
      const when = new Date(since);
      const today = new Date();
      text = when.toDateString() === today.toDateString()
        ? t("lines.connected.today", { time: fmtTime(since) })
        : t("lines.connected.day", { date: when.toLocaleDateString(LOCALE(), { day: "2-digit", month: "2-digit" }), time: fmtTime(since) });
    } else {
      text = t("lines.connected");
    }
    const agent = friendlyAgent(d.user_agent);
    return text + (agent ? " · " + agent : "");
  }
  if (d.state === "unreachable") return asleep(d) ? t("lines.asleep") : t("lines.unreachable");
  if (d.state === "static") return t("lines.static");
  return t("lines.offline");
}

// Push notifications (RFC 8599; docs/push.md): a device whose connection is gone but that a
// push wakes up is asleep, not unreachable.
const PUSH_PROVIDERS = { apns: "APNs", fcm: "FCM" };

function pushProvider(p) { return PUSH_PROVIDERS[String(p).toLowerCase()] || String(p).toUpperCase(); }

function asleep(d) { return Boolean(d.push && d.push.provider); }

// "invalid_token (410 Unregistered)" -> "invalid_token" (the rest is the service's detail).
function pushOutcome(result) { return String(result || "").split(" ")[0]; }

function pushLines(d) {
  const p = d.push;
  if (!p) return [];
  const out = [];
  const outcome = pushOutcome(p.last_push_result);
  if (p.provider) {
    out.push(h("p", { class: "push", "data-test": "device-push", "data-provider": p.provider },
      t("lines.push.wake", { provider: pushProvider(p.provider) })));
  } else if (outcome === "invalid_token") {
    out.push(h("p", { class: "push stopped", "data-test": "device-push", "data-provider": "" }, t("lines.push.stopped")));
  }
  if (p.last_push_at) {
    const key = "lines.push.result." + outcome;
    const result = t(key) !== key ? t(key) : (p.last_push_result || "");
    out.push(h("p", { class: "push-last", "data-test": "device-push-last", "data-result": outcome },
      t("lines.push.last", { when: fmtDate(p.last_push_at), result })));
  }
  return out;
}

function deviceTypeSelect(value, testName) {
  const s = h("select", { "data-test": testName },
    state.options.device_types.map((k) => h("option", { value: k }, t("type." + k))));
  s.value = value || "sip";
  return s;
}

async function renderLines(main) {
  pageTitle(main, "lines.title");
  const banner = h("p", { class: "banner", "data-test": "ring-banner" });
  const list = h("div", { class: "cards", id: "devices" });
  const qr = h("div", { id: "qr", "aria-live": "polite" });
  let editing = 0;
  main.append(banner, list, qr);

  function card(d) {
    const labelText = d.label;
    const title = h("h2", { class: "device-label", "data-test": "device-label" }, labelText);
    const form = new Form("device-" + d.device);
    const body = h("div", { class: "device-body" });
    const actions = h("div", { class: "row actions" });
    const el = h("article", { class: "card device type-" + d.type, "data-test": "device", "data-device": d.device, "aria-labelledby": nextId("dev") },
      h("div", { class: "device-head" }, h("span", { class: "device-icon" }, icon(d.type)),
        h("div", {}, title, h("span", { class: "device-type", "data-test": "device-type" }, t("type." + d.type)))),
      h("p", { class: "presence " + (d.state === "unreachable" && asleep(d) ? "asleep" : d.state), "data-test": "device-state", "data-state": d.state }, presence(d)),
      pushLines(d),
      h("details", { class: "tech", "data-test": "device-tech" }, h("summary", {}, t("lines.technical")),
        h("dl", {},
          h("dt", {}, t("lines.tech.username")), h("dd", {}, d.username),
          d.source ? [h("dt", {}, t("lines.tech.address")), h("dd", { "data-test": "device-source" }, d.source)] : null,
          d.user_agent ? [h("dt", {}, t("lines.tech.agent")), h("dd", {}, d.user_agent)] : null,
          d.expires_at ? [h("dt", {}, t("lines.tech.expires")), h("dd", {}, fmtDate(d.expires_at))] : null,
          d.contact ? [h("dt", {}, t("lines.tech.contact")), h("dd", {}, d.contact)] : null,
          d.push && d.push.last_push_result ? [h("dt", {}, t("lines.tech.push")), h("dd", { "data-test": "device-push-detail" }, d.push.last_push_result)] : null),
        d.source || d.contact ? null : h("p", { class: "hint" }, t("lines.tech.none"))),
      body, actions);
    title.id = el.getAttribute("aria-labelledby");

    function view() {
      body.replaceChildren();
      actions.replaceChildren(...[
        h("button", { type: "button", "data-test": "device-rename", "aria-label": t("lines.rename.of", { label: labelText }),
          onclick: edit }, icon("edit"), h("span", { class: "btn-text" }, t("lines.rename"))),
        d.type === "softphone" && d.provisionable ? h("button", { type: "button", "data-test": "device-qr",
          "aria-label": t("lines.qr.of", { label: labelText }), onclick: () => guarded(main, async () => {
            const res = await api("POST", uext("/devices/" + d.device + "/qr"));
            qr.replaceChildren(h("section", { class: "card qr", "aria-labelledby": "qr-title" },
              h("h2", { id: "qr-title" }, t("lines.qr.title", { label: labelText })),
              h("img", { src: res.png, alt: t("lines.qr.alt", { label: labelText }), id: "qr-image", "data-test": "qr-image", "data-url": res.url, width: 240, height: 240 }),
              h("p", {}, t("lines.qr.help", { until: fmtDate(res.expires_at) }))));
            qr.querySelector("h2").scrollIntoView({ block: "nearest" });
          }) }, t("lines.qr")) : null,
        h("button", { type: "button", class: "danger", "data-test": "device-delete", "aria-label": t("lines.delete.of", { label: labelText }),
          onclick: async () => {
            if (!(await ask(t("confirm.delete", { what: labelText }), t("delete"), t("cancel"), true))) return;
            guarded(main, async () => { await api("DELETE", uext("/devices/" + d.device)); await loadUser(); await refresh(); }, t("saved"));
          } }, icon("trash"), h("span", { class: "btn-text" }, t("delete")))].filter(Boolean));
    }

    function edit() {
      editing += 1;
      const label = h("input", { value: labelText, maxlength: 64, "data-test": "device-label-input", autocomplete: "off" });
      const type = deviceTypeSelect(d.type, "device-type-select");
      const fl = field(t("lines.label"), label);
      const ft = field(t("lines.type"), type);
      form.register("label", fl.msg, label, "");
      form.register("type", ft.msg, type, "");
      form.register("devices[" + d.device + "]", fl.msg, label, "");
      watch(body, form);
      function close() { editing -= 1; form.setDirty(false); view(); }
      const f = h("form", { class: "device-edit", onsubmit: async (ev) => {
        ev.preventDefault();
        const res = await form.submit(() => api("PATCH", uext("/devices/" + d.device), { label: label.value.trim(), type: type.value }),
          () => (label.value.trim() ? [] : [{ field: "label", message: t("lines.label.empty") }]));
        if (res) { editing -= 1; await loadUser(); await refresh(); flash(main, t("saved")); }
      } }, fl, ft, h("div", { class: "row" }, form.bar,
        h("button", { type: "button", "data-test": "device-edit-cancel", onclick: close }, t("cancel"))));
      form.button.textContent = t("save");
      body.replaceChildren(f);
      actions.replaceChildren();
      label.focus();
    }
    view();
    return el;
  }

  async function refresh() {
    const data = await api("GET", uext("/devices"));
    const devices = data.devices.filter((d) => d.device !== null);
    banner.textContent = tn("lines.banner", devices.length);
    list.replaceChildren(...(devices.length ? devices.map(card) : [h("p", {}, t("lines.none"))]));
  }

  const addForm = new Form("device-add", t("add"));
  const newType = deviceTypeSelect("softphone", "new-device-type");
  const newLabel = h("input", { "data-test": "new-device-label", placeholder: t("lines.add.label.placeholder"), maxlength: 64, autocomplete: "off" });
  const ft = field(t("lines.type"), newType);
  const fl = field(t("lines.label"), newLabel);
  addForm.register("type", ft.msg, newType, "");
  addForm.register("label", fl.msg, newLabel, "");
  addForm.button.setAttribute("data-test", "device-add");
  const add = h("form", { class: "card", "aria-labelledby": "add-title", onsubmit: async (ev) => {
    ev.preventDefault();
    const res = await addForm.submit(() => api("POST", uext("/devices"), { type: newType.value, label: newLabel.value.trim() }),
      () => (newLabel.value.trim() ? [] : [{ field: "label", message: t("lines.label.empty") }]));
    if (res) { newLabel.value = ""; await loadUser(); await refresh(); }
  } }, h("h2", { id: "add-title" }, t("lines.add")), h("div", { class: "row" }, ft, fl), addForm.bar);
  watch(add, addForm);
  main.append(add);
  await refresh();
  state.timers.push(setInterval(() => { if (!editing) refresh().catch(() => {}); }, 10000));
}

// ---- hold music ----------------------------------------------------------------------------

async function renderMusic(main) {
  pageTitle(main, "music.title");
  const data = await api("GET", "/api/music");
  const admin = state.session.role === "admin";
  const chosen = state.user.settings.hold_music || "default";
  const form = new Form("music");
  const group = h("fieldset", { class: "card choices", "data-test": "music-list" }, h("legend", {}, t("music.choose")),
    data.classes.map((c) => {
      const radio = h("input", { type: "radio", name: "music", value: c.name, checked: c.name === chosen, "data-test": "music-choice" });
      const label = musicLabel(c.name);
      return h("div", { class: "row music", "data-test": "music-" + c.name },
        h("label", { class: "check grow" }, radio, " ", h("span", { class: "music-name", "data-test": "music-name" }, label), " ",
          h("small", {}, c.shipped ? t("music.shipped") : t("music.uploaded")),
          c.duration ? h("small", {}, " · " + Math.round(c.duration) + " s") : null,
          admin && c.used_by && c.used_by.length ? h("small", {}, " · " + t("music.used", { users: c.used_by.join(", ") })) : null),
        h("button", { type: "button", class: "small", "data-test": "music-play", "aria-label": t("music.play.of", { name: label }), onclick: () => {
          const player = document.getElementById("player");
          player.src = "/api/music/" + encodeURIComponent(c.name) + "/audio";
          player.play().catch(() => {});
        } }, icon("play"), h("span", { class: "btn-text" }, t("music.play"))),
        admin && c.uploaded ? h("button", { type: "button", class: "small danger", "data-test": "music-delete",
          "aria-label": t("music.delete.of", { name: label }), onclick: async () => {
            if (!(await ask(t("confirm.delete", { what: label }), t("delete"), t("cancel"), true))) return;
            guarded(main, async () => { await api("DELETE", "/api/music/" + encodeURIComponent(c.name)); render(); });
          } }, icon("trash"), h("span", { class: "btn-text" }, t("delete"))) : null);
    }));
  form.register("hold_music", h("div"), group, "");
  watch(group, form);
  main.append(h("form", { onsubmit: (ev) => {
    ev.preventDefault();
    const pick = group.querySelector("input[name=music]:checked");
    if (pick) form.submit(async () => { state.user = await api("PATCH", uext(""), { hold_music: pick.value }); return state.user; });
  } }, group, form.bar));
  if (admin) main.append(uploadForm(main, {
    title: t("music.upload"), url: "/api/music", test: "upload", fields: [
      ["name", t("music.name"), { pattern: "[A-Za-z0-9][A-Za-z0-9_-]{0,63}" }],
    ],
    check: (values) => {
      const out = [];
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(values.name || "")) out.push({ field: "name", message: t("music.name.bad") });
      return out;
    },
    fileLabel: t("music.file"),
    done: (res) => t("music.done", { name: musicLabel(res.name), d: res.duration }),
  }));
}

// An upload form with a progress bar: fields [[name, label, attrs]], a file; every message on
// its field and beside the button.
function uploadForm(main, spec) {
  const form = new Form(spec.test, t("music.send"));
  form.button.setAttribute("data-test", spec.test + "-submit");
  const inputs = {};
  const wraps = spec.fields.map(([name, label, attrs]) => {
    const input = h("input", Object.assign({ name, "data-test": spec.test + "-" + name, autocomplete: "off" }, attrs || {}));
    inputs[name] = input;
    const w = field(label, input);
    form.register(name, w.msg, input, "");
    return w;
  });
  const file = h("input", { name: "file", type: "file", accept: "audio/*", "data-test": spec.test + "-file" });
  const fw = field(spec.fileLabel, file);
  form.register("file", fw.msg, file, "");
  const bar = h("progress", { max: 100, value: 0, hidden: true, "data-test": spec.test + "-progress", "aria-label": t("music.converting") });
  const status = h("span", { class: "status", "data-test": spec.test + "-status", "aria-live": "polite" });
  const titleId = nextId("up");
  const el = h("form", { class: "card", "aria-labelledby": titleId, onsubmit: (ev) => {
    ev.preventDefault();
    form.clear();
    const values = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, v.value.trim()]));
    const local = spec.check(values);
    if (!file.files.length) local.push({ field: "file", message: t("music.file.missing") });
    if (local.length) { form.showErrors(local); return; }
    const body = new FormData();
    for (const [k, v] of Object.entries(values)) body.append(k, v);
    body.append("file", file.files[0]);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", spec.url);
    xhr.setRequestHeader("X-CSRF-Token", state.session.csrf_token);
    xhr.setRequestHeader("Accept-Language", LANG);
    bar.hidden = false; bar.value = 0;
    form.button.disabled = true;
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
      form.button.disabled = false;
      status.textContent = "";
      if (xhr.status === 201 || xhr.status === 200) {
        form.setDirty(false);
        const text = spec.done(data);
        render().then(() => flash(document.getElementById("page"), text));
      } else if (xhr.status === 401) {
        expired();
      } else {
        form.showErrors(issuesOf(new ApiError(xhr.status, data)));
      }
    };
    xhr.onerror = () => { bar.hidden = true; form.button.disabled = false; status.textContent = ""; form.showErrors([{ field: "", message: t("network") }]); };
    xhr.send(body);
  } },
  h("h2", { id: titleId }, spec.title), h("div", { class: "row" }, wraps, fw), h("div", { class: "row" }, form.bar, bar, status));
  watch(el, form);
  return el;
}

// ---- announcements and personal messages ------------------------------------------------

function recorder(onBlob) {
  const box = h("div", { class: "recorder row", "data-test": "recorder" });
  let media = null;
  let chunks = [];
  let started = 0;
  let tick = null;
  function idle() {
    box.replaceChildren(h("button", { type: "button", "data-test": "record-start", onclick: start }, icon("mic"), " ", t("ann.record")));
  }
  async function start() {
    if (!navigator.mediaDevices || !window.MediaRecorder) { box.append(h("p", { class: "field-msg error", role: "alert" }, t("ann.mic.none"))); return; }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (e) {
      box.append(h("p", { class: "field-msg error", role: "alert", "data-test": "record-error" }, t("ann.mic.denied")));
      return;
    }
    chunks = [];
    media = new MediaRecorder(stream);
    media.ondataavailable = (ev) => { if (ev.data && ev.data.size) chunks.push(ev.data); };
    media.onstop = () => {
      stream.getTracks().forEach((tr) => tr.stop());
      clearInterval(tick);
      const blob = new Blob(chunks, { type: media.mimeType || "audio/webm" });
      const url = URL.createObjectURL(blob);
      box.replaceChildren(h("audio", { controls: true, src: url, "data-test": "record-preview", "aria-label": t("ann.record") }),
        h("button", { type: "button", class: "primary", "data-test": "record-use", onclick: () => onBlob(blob) }, t("ann.use")),
        h("button", { type: "button", "data-test": "record-retry", onclick: idle }, t("ann.retry")));
    };
    media.start(250);
    started = Date.now();
    const elapsed = h("span", { class: "status", "data-test": "record-elapsed", "aria-live": "off" }, t("ann.recording", { s: 0 }));
    tick = setInterval(() => { elapsed.textContent = t("ann.recording", { s: Math.floor((Date.now() - started) / 1000) }); }, 500);
    const stop = h("button", { type: "button", class: "danger-solid", "data-test": "record-stop", onclick: () => media.stop() }, icon("stop"), " ", t("ann.stop"));
    box.replaceChildren(stop, elapsed);
    stop.focus();
  }
  idle();
  return box;
}

async function renderAnnouncements(main) {
  pageTitle(main, "ann.title");
  main.append(h("p", { class: "hint" }, t("ann.intro")));
  const data = await api("GET", uext("/announcements"));
  const admin = state.session.role === "admin";
  // Personal messages.
  const mine = h("section", { class: "card", "aria-labelledby": "mine-title" }, h("h2", { id: "mine-title" }, t("ann.mine")));
  for (const slot of ["absence", "greeting"]) {
    const info = (data.own || {})[slot];
    const form = new Form("own-" + slot, t("ann.upload"));
    form.button.setAttribute("data-test", "own-" + slot + "-upload");
    const file = h("input", { type: "file", accept: "audio/*", "data-test": "own-" + slot + "-file" });
    const fw = field(t("ann.upload.file"), file);
    form.register("file", fw.msg, file, "");
    async function send(blob, name) {
      const body = new FormData();
      body.append("file", blob, name);
      const res = await form.submit(() => api("PUT", uext("/messages/" + slot), body));
      if (res) { await render(); flash(document.getElementById("page"), t("ann.saved", { d: res.duration })); }
    }
    const status = info
      ? h("p", { "data-test": "own-" + slot + "-status" }, t("ann.recorded", { date: fmtDate(info.updated_at), d: info.duration }), " ",
        h("button", { type: "button", class: "small", "data-test": "own-" + slot + "-play", "aria-label": t("ann.play.of", { name: t("ann." + slot) }), onclick: () => {
          const player = document.getElementById("player");
          player.src = uext("/messages/" + slot + "/audio") + "?t=" + Date.now();
          player.play().catch(() => {});
        } }, icon("play"), h("span", { class: "btn-text" }, t("music.play"))), " ",
        h("button", { type: "button", class: "small danger", "data-test": "own-" + slot + "-delete", "aria-label": t("delete") + " — " + t("ann." + slot), onclick: async () => {
          if (!(await ask(t("confirm.delete", { what: t("ann." + slot) }), t("delete"), t("cancel"), true))) return;
          const res = await form.submit(() => api("DELETE", uext("/messages/" + slot)));
          if (res) { await render(); flash(document.getElementById("page"), t("ann.deleted")); }
        } }, icon("trash"), h("span", { class: "btn-text" }, t("delete"))))
      : h("p", { class: "hint", "data-test": "own-" + slot + "-status" }, t("ann.none"));
    mine.append(h("div", { class: "own", "data-test": "own-" + slot },
      h("h3", {}, t("ann." + slot)), h("p", { class: "hint" }, t("ann." + slot + ".help")), status,
      recorder((blob) => send(blob, "recording.webm")),
      h("form", { class: "row", onsubmit: (ev) => {
        ev.preventDefault();
        if (!file.files.length) { form.showErrors([{ field: "file", message: t("music.file.missing") }]); return; }
        send(file.files[0], file.files[0].name);
      } }, fw, form.bar)));
  }
  main.append(mine);
  // Everyone's announcements.
  const list = h("ul", { class: "plain", "data-test": "ann-list" }, data.announcements.filter((a) => a.kind !== "own").map((a) => {
    const label = announcementLabel(a.name);
    return h("li", { class: "row music", "data-test": "ann-" + a.name },
      h("span", { class: "grow" }, h("span", { "data-test": "ann-label" }, label), " ",
        h("small", {}, a.kind === "shipped" ? t("ann.shipped") : t("ann.uploaded")),
        a.duration ? h("small", {}, " · " + Math.round(a.duration) + " s") : null,
        admin && a.used_by && a.used_by.length ? h("small", {}, " · " + t("ann.used", { users: a.used_by.join(", ") })) : null),
      playButton(announcementUrl(a.name), label),
      admin && a.kind === "uploaded" ? h("button", { type: "button", class: "small danger", "data-test": "ann-delete",
        "aria-label": t("ann.delete.of", { name: label }), onclick: async () => {
          if (!(await ask(t("confirm.delete", { what: label }), t("delete"), t("cancel"), true))) return;
          guarded(main, async () => { await api("DELETE", "/api/announcements/" + encodeURIComponent(a.name)); render(); });
        } }, icon("trash"), h("span", { class: "btn-text" }, t("delete"))) : null);
  }));
  main.append(h("section", { class: "card", "aria-labelledby": "avail-title" }, h("h2", { id: "avail-title" }, t("ann.available")), list));
  if (admin) main.append(uploadForm(main, {
    title: t("ann.admin.upload"), url: "/api/announcements", test: "ann-upload", fields: [
      ["name", t("ann.admin.name"), { pattern: "[A-Za-z0-9][A-Za-z0-9_-]{0,63}" }],
      ["label", t("ann.admin.label"), { maxlength: 80 }],
    ],
    check: (values) => {
      const out = [];
      if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(values.name || "")) out.push({ field: "name", message: t("music.name.bad") });
      if (!values.label) out.push({ field: "label", message: t("ann.label.empty") });
      return out;
    },
    fileLabel: t("ann.admin.file"),
    done: (res) => t("ann.admin.done", { name: res.label || res.name, d: res.duration }),
  }));
}

// ---- schedules -------------------------------------------------------------------------------

function scoped(form, prefixes) {
  // Warnings about other pages are not this form's.
  const inner = form.showSaved.bind(form);
  form.showSaved = (warnings) => inner(warnings.filter((w) => prefixes.some((p) => w.field === p || w.field.startsWith(p + ".") || w.field.startsWith(p + "["))));
  const innerW = form.showWarnings.bind(form);
  form.showWarnings = (warnings) => innerW(warnings.filter((w) => prefixes.some((p) => w.field === p || w.field.startsWith(p + ".") || w.field.startsWith(p + "["))));
  return form;
}

async function renderSchedule(main) {
  pageTitle(main, "schedule.title");
  const schedule = JSON.parse(JSON.stringify(state.user.settings.schedule || { enabled: false, hours: [], exceptional: [], closed: { kind: "voicemail" } }));
  let tab = sessionStorage.getItem("b2bua.tab") || "hours";
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": t("schedule.title") });
  const panel = h("div", { role: "tabpanel", id: "tabpanel", tabindex: "0" });
  main.append(tabs, panel);
  const names = ["hours", "exceptional"];

  function drawTabs() {
    tabs.replaceChildren(...names.map((n) => h("button", {
      type: "button", role: "tab", id: "tab-" + n, class: n === tab ? "tab active" : "tab", "aria-selected": String(n === tab),
      "aria-controls": "tabpanel", tabindex: n === tab ? "0" : "-1", "data-test": "tab-" + n,
      onclick: () => showTab(n),
      onkeydown: (ev) => {
        if (ev.key === "ArrowRight" || ev.key === "ArrowLeft") {
          ev.preventDefault();
          const next = names[(names.indexOf(n) + (ev.key === "ArrowRight" ? 1 : names.length - 1)) % names.length];
          showTab(next).then(() => document.getElementById("tab-" + next).focus());
        }
      },
    }, t("schedule.tab." + n))));
    panel.setAttribute("aria-labelledby", "tab-" + tab);
  }

  async function showTab(name) {
    if (name !== tab && !(await confirmLeave())) return;
    tab = name;
    sessionStorage.setItem("b2bua.tab", name);
    drawTabs();
    panel.replaceChildren(name === "hours" ? hoursTab() : exceptionalTab());
  }

  async function save(form, changes) {
    const next = Object.assign({}, schedule, changes);
    const res = await form.submit(async () => { state.user = await api("PATCH", uext(""), { schedule: next }); return state.user; },
      form.localCheck);
    if (res) Object.assign(schedule, res.settings.schedule || next);
    return res;
  }

  function hoursTab() {
    const form = scoped(new Form("schedule", t("save"), true), ["schedule.hours", "schedule.closed", "schedule.enabled"]);
    const enabled = checkbox(t("schedule.enabled"), schedule.enabled !== false, { "data-test": "schedule-enabled" });
    const note = h("p", { class: "alert info", "data-test": "schedule-disabled", hidden: schedule.enabled !== false }, t("schedule.disabled.note"));
    enabled.box.addEventListener("change", () => { note.hidden = enabled.box.checked; });
    const hours = itemList(schedule.hours || [], {
      form, prefix: "schedule.hours", testName: "hours", rowLabel: (i) => t("row.hours", { n: i + 1 }),
      summary: hoursSummary, editor: hoursEditor, addLabel: t("schedule.addperiod"), emptyText: t("schedule.nohours"),
      newItem: () => ({ start: "08:00", end: "17:00", days: ["mon", "tue", "wed", "thu", "fri"], months: "all" }),
    });
    form.onMessages = (items) => hours.openRowsFor(items);
    const hoursMsg = h("div", { class: "row-msgs" });
    form.register("schedule.hours", hoursMsg, hours.add, t("schedule.tab.hours"));
    const closed = destinationEditor(schedule.closed || { kind: "voicemail" }, ALL_KINDS.filter((k) => k !== "devices"), "closed", t("schedule.closed"));
    closed.register(form, "schedule.closed", t("schedule.closed"));
    form.localCheck = () => hours.check().concat(closed.check().map((x) => ({ field: "schedule.closed." + x.field, message: x.message })));
    const el = h("form", { "data-test": "hours-form", onsubmit: (ev) => {
      ev.preventDefault();
      save(form, { enabled: enabled.box.checked, hours: hours.value(), closed: closed.value() });
    } },
    h("div", { class: "card" }, enabled, note),
    h("section", { class: "card", "aria-labelledby": "hours-title" }, h("h2", { id: "hours-title" }, t("schedule.tab.hours")), hours.el, hoursMsg, hours.add),
    h("section", { class: "card" }, closed.el),
    form.bar);
    watch(el, form);
    form.showWarnings(warningsOf(state.user));
    return el;
  }

  function exceptionalTab() {
    const form = scoped(new Form("exc", t("save"), true), ["schedule.exceptional"]);
    form.button.setAttribute("data-test", "exc-save");
    const periods = itemList(schedule.exceptional || [], {
      form, prefix: "schedule.exceptional", testName: "exc", rowLabel: (i) => t("row.exceptional", { n: i + 1 }),
      summary: periodSummary, editor: periodEditor, addLabel: t("exc.add"), emptyText: t("exc.none"), reorderable: true,
      newItem: () => ({ name: "", dates: [], destination: schedule.closed || { kind: "voicemail" } }),
    });
    form.onMessages = (items) => periods.openRowsFor(items);
    const listMsg = h("div", { class: "row-msgs" });
    form.register("schedule.exceptional", listMsg, periods.add, t("schedule.tab.exceptional"));
    form.localCheck = () => periods.check();
    const file = h("input", { type: "file", accept: ".ics,text/calendar", "data-test": "ics-file" });
    const fileField = field(t("exc.import"), file);
    const el = h("div", {},
      h("form", { "data-test": "exc-form", onsubmit: (ev) => { ev.preventDefault(); save(form, { exceptional: periods.value() }); } },
        h("section", { class: "card", "aria-labelledby": "exc-title" }, h("h2", { id: "exc-title" }, t("schedule.tab.exceptional")),
          h("p", { class: "hint" }, t("exc.order")), periods.el, listMsg, periods.add),
        form.bar),
      h("section", { class: "card row" },
        h("a", { href: uext("/exceptional.ics"), download: "", class: "button", "data-test": "ics-export" }, t("exc.export")),
        fileField,
        h("button", { type: "button", "data-test": "ics-import", onclick: async () => {
          fileField.msg.replaceChildren();
          if (!file.files.length) { fileField.msg.append(h("p", { class: "field-msg error" }, t("exc.file.missing"))); return; }
          if (!(await confirmLeave())) return;
          const text = await file.files[0].text();
          try {
            const res = await api("POST", uext("/exceptional.ics"), text);
            await render();
            flash(document.getElementById("page"), tn("exc.imported", res.added));
          } catch (err) {
            if (err.status !== 401) fileField.msg.append(...issuesOf(err).map((i) => h("p", { class: "field-msg error", "data-test": "row-error" }, i.message)));
          }
        } }, t("exc.import.send"))));
    watch(el.firstChild, form);
    form.showWarnings(warningsOf(state.user));
    return el;
  }
  drawTabs();
  panel.replaceChildren(tab === "hours" ? hoursTab() : exceptionalTab());
}

// ---- caller exceptions -----------------------------------------------------------------------

async function renderExceptions(main) {
  const max = state.options.max_exceptions;
  pageTitle(main, "exceptions.title");
  main.append(h("p", { class: "hint" }, t("exceptions.help")));
  const schedule = state.user.settings.schedule;
  if (!schedule || schedule.enabled === false) {
    main.append(h("p", { class: "alert info", "data-test": "exceptions-need-schedule" }, t("exceptions.needschedule")));
  }
  const form = scoped(new Form("exceptions", t("save"), true), ["exceptions"]);
  const counter = h("p", { class: "counter", "data-test": "exceptions-count", "aria-live": "polite" });
  const list = itemList(state.user.settings.exceptions || [], {
    form, prefix: "exceptions", testName: "exception", rowLabel: (i) => t("row.exception", { n: i + 1 }),
    summary: exceptionSummary, editor: exceptionEditor, addLabel: t("exceptions.add"), emptyText: t("exceptions.none"),
    reorderable: true, max,
    newItem: () => ({ callers: "", destination: { kind: state.user.settings.mobile ? "mobile" : "busy" } }),
    onChange: (n) => {
      counter.textContent = n >= max ? t("exceptions.full", { n, max }) : tn("exceptions.count", n, { max });
      counter.classList.toggle("full", n >= max);
    },
  });
  form.onMessages = (items) => list.openRowsFor(items);
  const listMsg = h("div", { class: "row-msgs" });
  form.register("exceptions", listMsg, list.add, t("exceptions.title"));
  const el = h("form", { onsubmit: (ev) => {
    ev.preventDefault();
    form.submit(async () => { state.user = await api("PATCH", uext(""), { exceptions: list.value() }); return state.user; }, () => list.check());
  } }, h("section", { class: "card" }, counter, list.el, listMsg, h("div", { class: "row" }, list.add)), form.bar);
  watch(el, form);
  main.append(el);
  form.showWarnings(warningsOf(state.user));
}

// ---- forwarding ------------------------------------------------------------------------------

async function renderForward(main) {
  pageTitle(main, "forward.title");
  main.append(h("p", { class: "alert info", "data-test": "forward-note" }, t("forward.note")));
  const s = state.user.settings;
  const mform = new Form("mobile");
  const mobile = h("input", { type: "tel", value: s.mobile || "", "data-test": "mobile", autocomplete: "tel" });
  const mw = field(t("forward.mobile"), mobile, { help: t("forward.mobile.help") });
  mform.register("mobile", mw.msg, mobile, "");
  const mel = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const v = mobile.value.trim();
    const res = await mform.submit(async () => { state.user = await api("PATCH", uext(""), { mobile: v || null }); return state.user; },
      () => (v && !PHONE.test(v) ? [{ field: "mobile", message: t("forward.mobile.bad") }] : []));
    if (res) { state.forms.delete(fform); await render(); flash(document.getElementById("page"), t("saved")); }
  } }, mw, mform.bar);
  watch(mel, mform);
  const fform = new Form("forward");
  const enabled = checkbox(t("forward.enabled"), !!s.forward, { "data-test": "forward-enabled" });
  const dest = destinationEditor(s.forward || { kind: s.mobile ? "mobile" : "external" },
    ["mobile", "external", "extension", "voicemail", "system"], "forward", t("forward.to"));
  dest.register(fform, "forward", t("forward.title"));
  const fel = h("form", { class: "card", onsubmit: (ev) => {
    ev.preventDefault();
    fform.submit(async () => { state.user = await api("PATCH", uext(""), { forward: enabled.box.checked ? dest.value() : null }); return state.user; },
      () => (enabled.box.checked ? dest.check().map((x) => ({ field: "forward." + x.field, message: x.message })) : []));
  } }, enabled, dest.el, fform.bar);
  watch(fel, fform);
  main.append(mel, fel);
}

// ---- where calls go --------------------------------------------------------------------------

const KIND_COLORS = {
  devices: "#2e7d32", voicemail: "#78909c", extension: "#1565c0", mobile: "#ef6c00",
  external: "#8e24aa", system: "#00838f", busy: "#c62828", announcement: "#6d4c41",
};

function dayLabel(iso, long) {
  const date = new Date(iso + "T12:00:00");
  const key = WEEK[(date.getDay() + 6) % 7];
  return (long ? t("days.long." + key) : t("days." + key)) + " " + iso.slice(8, 10) + "/" + iso.slice(5, 7);
}

function hhmm(halfHours) { return String(Math.floor(halfHours / 2)).padStart(2, "0") + ":" + (halfHours % 2 ? "30" : "00"); }

function outcomeText(o) {
  return capital(describe(o.destination)) + " — " + t("rule." + o.rule) + (o.rule_name ? " " + quote(o.rule_name) : "");
}

function weekPicture(week) {
  const used = new Set();
  for (const o of week.outcomes) {
    let c = o.destination && KIND_COLORS[o.destination.kind];
    if (!c || used.has(c)) c = o.color;
    o.color = c;
    used.add(c);
  }
  const cw = 14, ch = 26, left = 84, top = 26;
  const width = left + 48 * cw + 10, height = top + 7 * ch + 8;
  const pic = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", id: "week-svg",
    "aria-labelledby": "week-title", class: "week", preserveAspectRatio: "xMinYMin meet" });
  for (let hr = 0; hr <= 24; hr += 2) {
    pic.append(svg("text", { x: left + hr * 2 * cw, y: top - 8, "text-anchor": "middle", class: "axis" }, String(hr).padStart(2, "0") + "h"));
  }
  week.days.forEach((day, d) => {
    const label = dayLabel(day);
    pic.append(svg("text", { x: 4, y: top + d * ch + ch - 9, class: "axis" }, label));
    week.cells[d].forEach((cell, hh) => {
      const o = cell === null ? null : week.outcomes[cell];
      pic.append(svg("rect", { x: left + hh * cw, y: top + d * ch, width: cw, height: ch,
        fill: o ? o.color : "#fff", stroke: "#fff", "stroke-width": 1 },
      svg("title", {}, `${label} ${hhmm(hh)} ${o ? outcomeText(o) : "—"}`)));
    });
  });
  const legend = h("ul", { class: "legend", "data-test": "week-legend", "aria-label": t("routing.legend") }, week.outcomes.map((o) => h("li", {},
    h("span", { class: "swatch", "data-color": o.color }), outcomeText(o))));
  legend.querySelectorAll(".swatch").forEach((el) => { el.style.background = el.dataset.color; });
  return h("div", { class: "week-picture" }, h("div", { class: "week-box" }, pic), legend);
}

// The same week as a list of time spans per day (phones, screen readers).
function weekList(week) {
  return h("ol", { class: "week-list", "data-test": "week-list", "aria-label": t("routing.list") }, week.days.map((day, d) => {
    const spans = [];
    let from = 0;
    const cells = week.cells[d];
    for (let i = 1; i <= cells.length; i += 1) {
      if (i === cells.length || cells[i] !== cells[from]) {
        if (cells[from] !== null) spans.push([from, i, week.outcomes[cells[from]]]);
        from = i;
      }
    }
    return h("li", { "data-test": "week-day" }, h("h3", {}, capital(dayLabel(day, true))),
      h("ul", {}, spans.map(([a, b, o]) => h("li", {},
        h("span", { class: "swatch", "data-color": o.color, style: null }), h("span", { class: "span-time" }, hhmm(a) + "-" + (b === 48 ? "24:00" : hhmm(b))), " ", outcomeText(o)))));
  }));
}

async function renderRouting(main) {
  pageTitle(main, "routing.title");
  const caller = h("input", { type: "tel", "data-test": "week-caller", placeholder: "0611223344", autocomplete: "off" });
  const cw = field(t("routing.caller"), caller);
  let start = new Date();
  start.setHours(12, 0, 0, 0);
  const range = h("p", { class: "week-range", "data-test": "week-range" });
  const weekBox = h("div", { id: "week", "aria-live": "polite" });
  async function showWeek() {
    cw.msg.replaceChildren();
    caller.removeAttribute("aria-invalid");
    const who2 = caller.value.trim();
    if (who2 && !PHONE.test(who2) && who2 !== "*") {
      caller.setAttribute("aria-invalid", "true");
      cw.msg.append(h("p", { class: "field-msg error", "data-test": "row-error" }, t("routing.caller.bad")));
      return;
    }
    const q = new URLSearchParams({ start: localIsoDate(start), lang: LANG });
    if (who2) q.set("caller", who2);
    try {
      const week = await api("GET", uext("/week?" + q));
      const last = week.days[week.days.length - 1];
      range.textContent = t("routing.week.of", { from: dayLabel(week.days[0], true), to: dayLabel(last, true) });
      const picture = weekPicture(week);
      const list = weekList(week);
      weekBox.replaceChildren(picture, list);
      list.querySelectorAll(".swatch").forEach((el) => { el.style.background = el.dataset.color; });
    } catch (err) {
      if (err.status !== 401) cw.msg.append(...issuesOf(err).map((i) => h("p", { class: "field-msg error", "data-test": "row-error" }, i.message)));
    }
  }
  function shift(days) { start = new Date(start.getTime() + days * 86400000); showWeek(); }
  main.append(h("section", { class: "card", "aria-labelledby": "week-title" }, h("h2", { id: "week-title" }, t("routing.week")),
    h("form", { class: "row", onsubmit: (ev) => { ev.preventDefault(); showWeek(); } }, cw,
      h("button", { type: "submit", "data-test": "week-show" }, t("routing.show"))),
    h("div", { class: "row week-nav" },
      h("button", { type: "button", class: "small", "data-test": "week-prev", onclick: () => shift(-7) }, "‹ ", t("routing.prev")),
      h("button", { type: "button", class: "small", "data-test": "week-today", onclick: () => { start = new Date(); start.setHours(12, 0, 0, 0); showWeek(); } }, t("routing.today")),
      h("button", { type: "button", class: "small", "data-test": "week-next", onclick: () => shift(7) }, t("routing.next"), " ›")),
    range, weekBox));
  await showWeek();
  // Test a call.
  const tc = h("input", { type: "tel", "data-test": "test-caller", placeholder: "0611223344", autocomplete: "off" });
  const now = new Date();
  const td = h("input", { type: "date", "data-test": "test-date", value: localIsoDate(now) });
  const tt = h("input", { type: "time", "data-test": "test-time", value: now.toTimeString().slice(0, 5) });
  const tcw = field(t("calls.caller"), tc);
  const tdw = field(t("routing.date"), td);
  const ttw = field(t("routing.time"), tt);
  const result = h("div", { id: "test-result", "data-test": "test-result", "aria-live": "polite" });
  const testForm = new Form("test", t("routing.run"));
  testForm.button.setAttribute("data-test", "test-run");
  testForm.register("caller", tcw.msg, tc, "");
  testForm.register("at", tdw.msg, td, "");
  main.append(h("section", { class: "card", "aria-labelledby": "test-title" }, h("h2", { id: "test-title" }, t("routing.test")),
    h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const who2 = tc.value.trim();
      const q = new URLSearchParams({ caller: who2, lang: LANG });
      if (td.value) q.set("at", td.value + "T" + (tt.value || "12:00"));
      const d = await testForm.submit(() => api("GET", uext("/trace?" + q)), () => {
        if (!who2) return [{ field: "caller", message: t("routing.caller.required") }];
        if (!PHONE.test(who2)) return [{ field: "caller", message: t("routing.caller.bad") }];
        return [];
      });
      if (!d) { result.replaceChildren(); return; }
      testForm.msg.replaceChildren();
      result.replaceChildren(
        h("p", { class: "decision", "data-test": "test-destination", "data-kind": d.destination.kind }, t("routing.result", { dest: describe(d.destination) })),
        h("p", { "data-test": "test-rule", "data-rule": d.rule }, t("routing.rule", { rule: t("rule." + d.rule) + (d.rule_name ? " " + quote(d.rule_name) : "") })),
        h("details", {}, h("summary", {}, t("routing.steps")), h("ol", { class: "trace", "data-test": "test-trace" }, d.trace.map((line) => h("li", {}, line)))));
    } }, h("div", { class: "row" }, tcw, tdw, ttw), testForm.bar), result));
  // History.
  const history = h("div", { id: "calls" });
  main.append(h("section", { class: "card", "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, t("routing.history")), history));
  const calls = await api("GET", uext("/calls?limit=50&lang=" + LANG));
  if (!calls.calls.length) history.append(h("p", {}, t("routing.nocalls")));
  else {
    history.append(h("table", { class: "calls" }, h("caption", { class: "visually-hidden" }, t("routing.history")), h("thead", {}, h("tr", {},
      [t("calls.when"), t("calls.caller"), t("calls.outcome"), t("calls.destination")].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, calls.calls.map((c) => [
      h("tr", { "data-test": "call" }, h("td", { "data-label": t("calls.when") }, fmtDate(c.started_at)),
        h("td", { "data-label": t("calls.caller") }, c.caller ? fmtNumber(c.caller) : t("calls.anonymous")),
        h("td", { "data-label": t("calls.outcome") }, t("outcome." + c.outcome)),
        h("td", { "data-label": t("calls.destination") }, (c.destination ? capital(describe(c.destination)) : "—") + (c.rule ? " (" + t("rule." + c.rule) + ")" : ""))),
      h("tr", { class: "trace-row" }, h("td", { colspan: 4 }, h("details", {}, h("summary", {}, t("routing.why")),
        h("ol", { class: "trace", "data-test": "call-trace" }, (c.trace || []).map((line) => h("li", {}, line)))))),
    ]))));
  }
}

// ---- voicemail -----------------------------------------------------------------------------

async function renderVoicemail(main) {
  const data = await api("GET", uext("/voicemail"));
  pageTitle(main, "vm.title");
  main.append(h("p", { class: "counter", "data-test": "vm-unread" }, tn("vm.unread", data.unread)));
  if (!data.messages.length) { main.append(h("p", {}, t("vm.none"))); return; }
  const list = h("div", { class: "cards" });
  for (const m of data.messages) {
    const src = uext("/voicemail/" + m.id + "/audio");
    const caller = m.caller ? fmtNumber(m.caller) : t("calls.anonymous");
    const audio = h("audio", { controls: true, preload: "none", src, "data-test": "vm-audio", "aria-label": t("vm.listen.of", { caller }) });
    audio.addEventListener("play", () => {
      if (!m.read) {
        m.read = true;
        api("PATCH", uext("/voicemail/" + m.id), { read: true }).then(() => refreshUnread()).catch(() => {});
      }
    });
    list.append(h("article", { class: "card vm" + (m.read ? "" : " unread"), "data-test": "vm" },
      h("div", { class: "row" }, h("h2", { class: "vm-from" }, t("vm.from") + " " + caller),
        m.read ? null : h("span", { class: "tag" }, t("vm.new"))),
      h("p", {}, t("vm.date") + " " + fmtDate(m.received) + " · " + t("vm.duration") + " " + t("vm.seconds", { n: Math.round(m.duration) })),
      audio,
      h("div", { class: "row actions" },
        h("a", { href: src + "?download=1", class: "button", "data-test": "vm-download" }, t("vm.download")),
        h("button", { type: "button", class: "danger", "data-test": "vm-delete", "aria-label": t("vm.delete.of", { caller }), onclick: async () => {
          if (!(await ask(t("confirm.delete", { what: t("vm.from") + " " + caller }), t("delete"), t("cancel"), true))) return;
          guarded(main, async () => { await api("DELETE", uext("/voicemail/" + m.id)); render(); });
        } }, icon("trash"), h("span", { class: "btn-text" }, t("delete"))))));
  }
  main.append(list);
}

// ---- account and users -----------------------------------------------------------------------

async function renderAccount(main) {
  pageTitle(main, "account.title");
  const form = new Form("password", t("account.change"));
  const current = h("input", { type: "password", autocomplete: "current-password", "data-test": "pw-current" });
  const next = h("input", { type: "password", autocomplete: "new-password", "data-test": "pw-new" });
  const cw = field(t("account.current"), current);
  const nw = field(t("account.new"), next);
  form.register("current", cw.msg, current, "");
  form.register("new", nw.msg, next, "");
  const el = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const res = await form.submit(() => api("POST", "/api/password", { current: current.value, new: next.value }), () => {
      const out = [];
      if (!current.value) out.push({ field: "current", message: t("required") });
      if (next.value.length < 8) out.push({ field: "new", message: t("account.short") });
      return out;
    });
    if (res) { current.value = ""; next.value = ""; }
  } }, cw, nw, form.bar);
  watch(el, form);
  main.append(el);
}

async function trunksTable() {
  const data = await api("GET", "/api/trunks");
  if (!data.trunks.length) return null;
  const cols = ["trunks.name", "trunks.state", "trunks.registered", "trunks.lines", "trunks.error"];
  return h("section", { class: "card", "aria-labelledby": "trunks-title", "data-test": "trunks" },
    h("h2", { id: "trunks-title" }, t("trunks.title")),
    h("table", { class: "users" },
      h("thead", {}, h("tr", {}, cols.map((key) => h("th", { scope: "col" }, t(key))))),
      h("tbody", {}, data.trunks.map((r) => h("tr", { "data-test": "trunk-" + r.name },
        h("td", { "data-label": t("trunks.name") }, r.name),
        h("td", { "data-label": t("trunks.state") }, t(r.up ? "trunks.up" : "trunks.down")),
        h("td", { "data-label": t("trunks.registered") }, r.registered === null ? "—" : t(r.registered ? "yes" : "no")),
        h("td", { "data-label": t("trunks.lines"), "data-test": "trunk-lines" },
          r.lines_in_use + " / " + (r.lines || t("trunks.unlimited"))),
        h("td", { "data-label": t("trunks.error") }, r.last_error || ""))))));
}

async function renderUsers(main) {
  pageTitle(main, "users.title");
  const data = await api("GET", "/api/users");
  const trunks = await trunksTable();
  main.append(h("table", { class: "users", "data-test": "users" }, h("caption", { class: "visually-hidden" }, t("users.title")),
    h("thead", {}, h("tr", {}, [t("extension"), t("users.name"), t("users.devices"), ""].map((x, i) => h("th", { scope: "col" }, x || h("span", { class: "visually-hidden" }, t("edit")))))),
    h("tbody", {}, data.users.map((u) => h("tr", { "data-test": "user-" + u.extension },
      h("td", { "data-label": t("extension") }, u.extension), h("td", { "data-label": t("users.name") }, u.name),
      h("td", { "data-label": t("users.devices") }, String(u.devices)),
      h("td", { class: "row" },
        h("button", { type: "button", "aria-label": t("users.manage.of", { ext: u.extension }), "data-test": "user-manage",
          onclick: async () => { if (!(await confirmLeave())) return; state.ext = u.extension; state.page = "lines"; history.replaceState(null, "", "#lines"); render(); } }, t("users.manage")),
        u.stored && !u.created ? h("button", { type: "button", "data-test": "user-reset", "aria-label": t("users.reset.of", { ext: u.extension }), onclick: async () => {
          if (!(await ask(t("users.reset.confirm", { ext: u.extension }), t("ok"), t("cancel"), true))) return;
          guarded(main, async () => { await api("DELETE", "/api/users/" + encodeURIComponent(u.extension) + "/settings"); render(); });
        } }, t("users.reset")) : null,
        h("button", { type: "button", class: "danger", "aria-label": t("users.delete.of", { ext: u.extension }), "data-test": "user-delete", onclick: async () => {
          if (!(await ask(t("confirm.delete", { what: u.extension + " " + u.name }), t("delete"), t("cancel"), true))) return;
          guarded(main, async () => { await api("DELETE", "/api/users/" + encodeURIComponent(u.extension)); render(); });
        } }, t("delete")),
        passwordSetter(main, u.extension)))))));
  const form = new Form("user-create", t("add"));
  form.button.setAttribute("data-test", "user-create");
  const ext = h("input", { "data-test": "new-ext", autocomplete: "off", inputmode: "numeric" });
  const name = h("input", { "data-test": "new-name", autocomplete: "off" });
  const secret = h("input", { "data-test": "new-secret", autocomplete: "new-password" });
  const ew = field(t("extension"), ext), nw = field(t("users.name"), name), sw = field(t("users.secret"), secret);
  form.register("extension", ew.msg, ext, "");
  form.register("name", nw.msg, name, "");
  form.register("secret", sw.msg, secret, "");
  const el = h("form", { class: "card", "aria-labelledby": "create-title", onsubmit: async (ev) => {
    ev.preventDefault();
    const res = await form.submit(() => api("POST", "/api/users", { extension: ext.value.trim(), name: name.value.trim(), secret: secret.value }), () => {
      const out = [];
      if (!/^[0-9A-Za-z_]{1,32}$/.test(ext.value.trim())) out.push({ field: "extension", message: t("users.ext.bad") });
      if (!name.value.trim()) out.push({ field: "name", message: t("required") });
      if (secret.value.length < 8) out.push({ field: "secret", message: t("users.secret.short") });
      return out;
    });
    if (res) { state.ext = ext.value.trim(); await render(); flash(document.getElementById("page"), t("users.created", { ext: state.ext })); }
  } }, h("h2", { id: "create-title" }, t("users.create")), h("div", { class: "row" }, ew, nw, sw), form.bar);
  watch(el, form);
  main.append(el);
  if (trunks) main.append(trunks);
}

function passwordSetter(main, ext) {
  const input = h("input", { type: "password", autocomplete: "new-password", "data-test": "user-password" });
  const w = field(t("users.password.of", { ext }), input);
  return h("details", { class: "pw" }, h("summary", {}, t("users.password")),
    h("form", { onsubmit: (ev) => {
      ev.preventDefault();
      w.msg.replaceChildren();
      if (input.value.length < 8) { w.msg.append(h("p", { class: "field-msg error" }, t("account.short"))); return; }
      guarded(main, () => api("PUT", "/api/users/" + encodeURIComponent(ext) + "/password", { password: input.value }), t("saved"));
    } }, w, h("div", { class: "row" }, h("button", { type: "submit", class: "small primary" }, t("users.password.set")),
      h("button", { type: "button", class: "small", onclick: () => guarded(main, () => api("PUT", "/api/users/" + encodeURIComponent(ext) + "/password", { password: null }), t("saved")) }, t("users.password.reset")))));
}

// ---- help: the user guides -------------------------------------------------------------------

// A small Markdown subset: headings, paragraphs, lists, **bold**, `code`, [links](url).
function markdown(text) {
  const out = [];
  let list = null;
  let para = [];
  function inline(s) {
    const el = h("span");
    const re = /(\*\*[^*]+\*\*|`[^`]+`|\[[^\]]+\]\([^)]+\))/g;
    let last = 0;
    let m;
    while ((m = re.exec(s))) {
      el.append(s.slice(last, m.index));
      const tok = m[0];
      if (tok.startsWith("**")) el.append(h("strong", {}, tok.slice(2, -2)));
      else if (tok.startsWith("`")) el.append(h("code", {}, tok.slice(1, -1)));
      else { const mm = /\[([^\]]+)\]\(([^)]+)\)/.exec(tok); el.append(h("a", { href: mm[2] }, mm[1])); }
      last = m.index + tok.length;
    }
    el.append(s.slice(last));
    return [...el.childNodes];
  }
  function flushPara() { if (para.length) { out.push(h("p", {}, inline(para.join(" ")))); para = []; } }
  function flushList() { if (list) { out.push(list); list = null; } }
  for (const line of text.split("\n")) {
    const hd = /^(#{1,4})\s+(.*)$/.exec(line);
    const li = /^\s*(?:[-*]|\d+\.)\s+(.*)$/.exec(line);
    if (hd) { flushPara(); flushList(); out.push(h("h" + Math.min(4, hd[1].length + 1), {}, inline(hd[2]))); }
    else if (li) { flushPara(); if (!list) list = h(/^\s*\d/.test(line) ? "ol" : "ul"); list.append(h("li", {}, inline(li[1]))); }
    else if (!line.trim()) { flushPara(); flushList(); }
    else if (list && /^\s{2,}/.test(line)) { list.lastChild.append(" ", ...inline(line.trim())); }
    else { flushList(); para.push(line.trim()); }
  }
  flushPara(); flushList();
  return out;
}

async function renderHelp(main) {
  pageTitle(main, "help.title");
  const which = sessionStorage.getItem("b2bua.guide") || (state.session.role === "admin" ? "admin" : "user");
  const tabs = h("div", { class: "row" }, ["user", "admin"].map((g) => h("button", { type: "button", class: g === which ? "primary" : "",
    "aria-pressed": String(g === which), "data-test": "guide-" + g, onclick: () => { sessionStorage.setItem("b2bua.guide", g); render(); } }, t("help." + g))));
  const response = await fetch("/static/guides/" + which + "." + LANG + ".md", { credentials: "same-origin" });
  const text = response.ok ? await response.text() : "";
  main.append(tabs, h("article", { class: "card guide", "data-test": "guide" }, markdown(text)));
}

// The platform administrator's list of tenants (docs/tenants.md): each company's limits and
// use; "Manage" works on that company's users and settings until another is chosen.
async function renderTenants(main) {
  pageTitle(main, "tenants.title");
  const data = await api("GET", "/api/tenants");
  const limit = (n) => (n ? String(n) : "—");
  const manage = async (domain) => {
    if (!(await confirmLeave())) return;
    state.tenant = domain;
    state.ext = null;
    state.page = "users";
    history.replaceState(null, "", "#users");
    await start();
  };
  main.append(h("table", { class: "users", "data-test": "tenants" }, h("caption", { class: "visually-hidden" }, t("tenants.title")),
    h("thead", {}, h("tr", {}, [t("tenants.domain"), t("users.name"), t("tenants.users"), t("tenants.devices"), t("tenants.calls"), ""].map((x) => h("th", { scope: "col" }, x || h("span", { class: "visually-hidden" }, t("edit")))))),
    h("tbody", {}, data.tenants.map((c) => h("tr", { "data-test": "tenant-" + c.domain },
      h("td", { "data-label": t("tenants.domain") }, c.domain),
      h("td", { "data-label": t("users.name") }, c.name),
      h("td", { "data-label": t("tenants.users") }, c.users + " / " + limit(c.limits.users)),
      h("td", { "data-label": t("tenants.devices") }, String(c.devices) + " / " + limit(c.limits.devices)),
      h("td", { "data-label": t("tenants.calls") }, c.calls + " / " + limit(c.limits.calls)),
      h("td", { class: "row" },
        h("button", { type: "button", "data-test": "tenant-manage", "aria-label": t("tenants.manage.of", { domain: c.domain }),
          "aria-pressed": String((state.tenant || null) === (c.default ? null : c.domain)),
          onclick: () => manage(c.default ? null : c.domain) }, t("users.manage"))))))));
  const form = new Form("tenant-create", t("add"));
  form.button.setAttribute("data-test", "tenant-create");
  const domain = h("input", { "data-test": "new-domain", autocomplete: "off" });
  const name = h("input", { "data-test": "new-tenant-name", autocomplete: "off" });
  const password = h("input", { "data-test": "new-tenant-password", type: "password", autocomplete: "new-password" });
  const dw = field(t("tenants.domain"), domain), nw = field(t("users.name"), name), pw = field(t("tenants.admin_password"), password);
  form.register("domain", dw.msg, domain, "");
  form.register("name", nw.msg, name, "");
  form.register("admin_password", pw.msg, password, "");
  const el = h("form", { class: "card", "aria-labelledby": "tenant-create-title", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { domain: domain.value.trim().toLowerCase(), name: name.value.trim() };
    if (password.value) body.admin_password = password.value;
    const res = await form.submit(() => api("POST", "/api/tenants", body), () => {
      const out = [];
      if (!body.domain) out.push({ field: "domain", message: t("required") });
      if (!body.name) out.push({ field: "name", message: t("required") });
      if (password.value && password.value.length < 8) out.push({ field: "admin_password", message: t("users.secret.short") });
      return out;
    });
    if (res) { await render(); flash(document.getElementById("page"), t("tenants.created", { domain: body.domain })); }
  } }, h("h2", { id: "tenant-create-title" }, t("tenants.create")), h("div", { class: "row" }, dw, nw, pw), form.bar);
  main.append(el);
}

const RENDERERS = {
  lines: renderLines, music: renderMusic, announcements: renderAnnouncements, schedule: renderSchedule,
  exceptions: renderExceptions, forward: renderForward, routing: renderRouting, voicemail: renderVoicemail,
  account: renderAccount, users: renderUsers, help: renderHelp, tenants: renderTenants,
};
