// The editors of the schedule forms: a destination, an office-hours range, an exceptional
// period (with date pickers and a "every year" switch), a caller exception; and the one-line
// summaries shown for each ("Lun-Ven 08:30-12:30, tous les mois").
"use strict";

const ALL_KINDS = ["devices", "voicemail", "extension", "mobile", "external", "system", "busy", "announcement"];
const OFFERED_PROMPTS = ["absence", "closed", "unavailable"];

// Fields of an editor: each has a message area; `show(items)` puts local check results there
// and `register(form, prefix, label)` lets a save's answer reach them.
function fieldSet() {
  const fields = {};  // relative path -> field wrapper
  return {
    fields,
    add(path, wrap) { fields[path] = wrap; return wrap; },
    register(form, prefix, label) {
      for (const [path, wrap] of Object.entries(fields)) {
        form.register(prefix + (path ? (path.startsWith("[") ? "" : ".") + path : ""), wrap.msg, wrap.control, label);
      }
    },
    show(items) {
      for (const wrap of Object.values(fields)) { wrap.msg.replaceChildren(); wrap.control.removeAttribute("aria-invalid"); }
      for (const i of items) {
        const wrap = fields[i.field];
        if (!wrap) continue;
        wrap.msg.append(h("p", { class: "field-msg error", "data-test": "row-error" }, i.message));
        wrap.control.setAttribute("aria-invalid", "true");
      }
      const first = items.length && fields[items[0].field];
      if (first) first.control.focus();
    },
  };
}

// ---- people and things, in words ---------------------------------------------------------

function who(ext) {
  const opts = state.options || { colleagues: [], system_extensions: [] };
  const c = opts.colleagues.find((x) => x.extension === ext) || opts.system_extensions.find((x) => x.extension === ext);
  return c ? c.name + " (" + ext + ")" : ext;
}

function announcementLabel(name) {
  const list = state.announcements || [];
  const a = list.find((x) => x.name === name);
  if (a && a.kind === "own") return t("prompt.own." + a.slot);
  if (a && a.label) return a.label;
  const key = "prompt." + name;
  return t(key) !== key ? t(key) : name;
}

function musicLabel(name) {
  if (name === "default") return t("music.default");
  const words = String(name).replace(/[_-]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function describe(dest) {
  if (!dest) return "";
  const k = dest.kind;
  if (k === "voicemail") return dest.extension ? t("desc.voicemail.of", { who: who(dest.extension) }) : t("desc.voicemail");
  if (k === "extension") return t(dest.voicemail ? "desc.extension.vm" : "desc.extension", { who: who(dest.extension) });
  if (k === "mobile") return t("desc.mobile") + (dest.bounce ? t("desc.bounce") : "");
  if (k === "external") return t("desc.external", { number: fmtNumber(dest.number) }) + (dest.bounce ? t("desc.bounce") : "");
  if (k === "system") return t("desc.system", { who: who(dest.extension) });
  if (k === "announcement") return t("desc.announcement", { message: announcementLabel(dest.message) });
  return t("desc." + k);
}

function capital(text) { return text ? text.charAt(0).toUpperCase() + text.slice(1) : text; }

// ---- a destination -------------------------------------------------------------------------

function playButton(url, name) {
  return h("button", { type: "button", class: "small", "data-test": "play", "aria-label": t("ann.play.of", { name }),
    onclick: () => {
      const player = document.getElementById("player");
      player.src = url;
      player.play().catch(() => {});
    } }, icon("play"), h("span", { class: "btn-text" }, t("music.play")));
}

function announcementUrl(name) {
  return uext("/announcements/" + encodeURIComponent(name) + "/audio?lang=" + LANG);
}

// kinds: the choices; "mobile" only when the user has a mobile number (or already uses it).
function destinationEditor(initial, kinds, testName, legendText) {
  const hasMobile = !!(state.user && state.user.settings.mobile);
  const allowed = kinds.filter((k) => k !== "mobile" || hasMobile || (initial && initial.kind === "mobile"));
  let current = Object.assign({}, initial || { kind: allowed[0] });
  const fs = fieldSet();
  const parts = h("div", { class: "dest-fields" });
  const select = h("select", { "data-test": testName + "-kind",
    onchange: () => { current = { kind: select.value }; renderFields(); } },
  allowed.map((k) => h("option", { value: k }, t("dest." + k))));
  select.value = current.kind;
  const kindField = fs.add("", field(legendText || t("dest.kind"), select));
  const opts = state.options;

  function renderFields() {
    for (const key of Object.keys(fs.fields)) if (key) delete fs.fields[key];
    const k = current.kind;
    const out = [];
    if (k === "voicemail") {
      const s = h("select", { "data-test": testName + "-vmext", onchange: () => {
        if (s.value) current.extension = s.value; else delete current.extension;
      } }, h("option", { value: "" }, t("dest.mine")),
      opts.colleagues.filter((c) => c.extension !== state.ext).map((c) => h("option", { value: c.extension }, c.name + " (" + c.extension + ")")));
      s.value = current.extension || "";
      out.push(fs.add("extension", field(t("dest.vmof"), s)));
    } else if (k === "extension") {
      const others = opts.colleagues.filter((c) => c.extension !== state.ext);
      if (!current.extension && others.length) current.extension = others[0].extension;
      const s = h("select", { "data-test": testName + "-colleague", onchange: () => { current.extension = s.value; } },
        others.map((c) => h("option", { value: c.extension }, c.name + " (" + c.extension + ")")));
      s.value = current.extension || "";
      const vm = checkbox(t("dest.straightvm"), current.voicemail, { "data-test": testName + "-straightvm" });
      vm.box.addEventListener("change", () => { current.voicemail = vm.box.checked; });
      out.push(fs.add("extension", field(t("dest.colleague"), s)), vm);
    } else if (k === "mobile" || k === "external") {
      if (k === "external") {
        const n = h("input", { type: "tel", value: current.number || "", "data-test": testName + "-number",
          autocomplete: "off", placeholder: "0611223344", oninput: () => { current.number = n.value.trim(); } });
        out.push(fs.add("number", field(t("dest.number"), n)));
      }
      const b = checkbox(t("dest.bounce"), current.bounce, { "data-test": testName + "-bounce" });
      b.box.addEventListener("change", () => { current.bounce = b.box.checked; });
      out.push(b);
    } else if (k === "system") {
      if (!current.extension && opts.system_extensions.length) current.extension = opts.system_extensions[0].extension;
      const s = h("select", { "data-test": testName + "-group", onchange: () => { current.extension = s.value; } },
        opts.system_extensions.map((c) => h("option", { value: c.extension }, c.name + " (" + c.extension + ")")));
      s.value = current.extension || "";
      out.push(fs.add("extension", field(t("dest.group"), s)));
    } else if (k === "announcement") {
      const list = state.announcements || [];
      const names = list.filter((a) => a.kind !== "shipped" || OFFERED_PROMPTS.includes(a.name)).map((a) => a.name);
      if (!names.length) names.push(...OFFERED_PROMPTS);
      if (current.message && !names.includes(current.message)) names.push(current.message);
      if (!current.message) current.message = names[0];
      const s = h("select", { "data-test": testName + "-message", onchange: () => { current.message = s.value; } },
        names.map((name) => h("option", { value: name }, announcementLabel(name))));
      s.value = current.message;
      out.push(fs.add("message", field(t("dest.message"), s)),
        h("button", { type: "button", class: "small", "data-test": testName + "-play", "aria-label": t("ann.play.of", { name: announcementLabel(current.message) }),
          onclick: (ev) => {
            const player = document.getElementById("player");
            player.src = announcementUrl(s.value);
            player.play().catch(() => {});
            ev.currentTarget.setAttribute("aria-label", t("ann.play.of", { name: announcementLabel(s.value) }));
          } }, icon("play"), h("span", { class: "btn-text" }, t("music.play"))));
    }
    parts.replaceChildren(...out);
  }
  renderFields();
  return {
    el: h("div", { class: "dest" }, kindField, parts),
    value: () => {
      const d = { kind: current.kind };
      for (const key of ["extension", "voicemail", "number", "bounce", "message"]) {
        if (current[key] !== undefined && current[key] !== "" && current[key] !== false) d[key] = current[key];
      }
      if (d.kind !== "voicemail" && d.kind !== "extension" && d.kind !== "system") delete d.extension;
      if (d.kind !== "extension") delete d.voicemail;
      if (d.kind !== "mobile" && d.kind !== "external") delete d.bounce;
      if (d.kind !== "external") delete d.number;
      if (d.kind !== "announcement") delete d.message;
      return d;
    },
    check() {
      if (current.kind === "external" && !PHONE.test(current.number || "")) {
        return [{ field: "number", message: t("dest.number.bad") }];
      }
      return [];
    },
    register: (form, prefix, label) => fs.register(form, prefix, label),
    show: (items) => fs.show(items),
  };
}

// ---- office hours ----------------------------------------------------------------------------

const WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// Consecutive runs of three or more joined with "-": [0,1,2,3,4] -> "Lun-Ven".
function runs(indexes, name) {
  const sorted = [...indexes].sort((a, b) => a - b);
  const out = [];
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j += 1;
    if (j - i >= 2) out.push(name(sorted[i]) + "-" + name(sorted[j]));
    else for (let k = i; k <= j; k += 1) out.push(name(sorted[k]));
    i = j + 1;
  }
  return out.join(", ");
}

function daysText(days) {
  if (!days || !days.length) return t("schedule.days.none");
  if (days.length === 7) return t("schedule.days.all");
  return runs(days.map((d) => WEEK.indexOf(d)).filter((i) => i >= 0), (i) => t("days." + WEEK[i]));
}

function monthsText(months) {
  if (months === "all" || months === undefined) return t("schedule.months.all");
  if (!months.length) return t("schedule.months.none");
  const names = t("months.long").split(",");
  return runs(months.map((m) => m - 1), (i) => names[i]);
}

function minutes(hhmm) { const [a, b] = String(hhmm || "0:0").split(":").map(Number); return a * 60 + b; }

function hoursSummary(r) {
  const overnight = r.start && r.end && minutes(r.end) <= minutes(r.start) && r.end !== "24:00";
  return capital(daysText(r.days)) + " " + r.start + "-" + r.end + (overnight ? " " + t("schedule.overnight") : "")
    + ", " + monthsText(r.months);
}

function hoursEditor(r) {
  const fs = fieldSet();
  const start = h("input", { type: "time", value: r.start || "", required: true, "data-test": "hours-start" });
  const end = h("input", { type: "time", value: r.end || "", required: true, "data-test": "hours-end" });
  const dayBoxes = WEEK.map((d) => checkbox(t("days." + d), (r.days || []).includes(d), { value: d, "data-day": d }));
  const days = h("fieldset", { class: "days", "data-test": "hours-days" }, h("legend", {}, t("schedule.days")), dayBoxes,
    h("button", { type: "button", class: "small link", "data-test": "hours-weekdays", onclick: () => {
      dayBoxes.forEach((b, i) => { b.box.checked = i < 5; b.box.dispatchEvent(new Event("change", { bubbles: true })); });
    } }, t("schedule.weekdays")));
  const months = r.months === undefined ? "all" : r.months;
  const all = checkbox(t("schedule.allmonths"), months === "all", { "data-test": "allmonths" });
  const names = t("months").split(",");
  const longNames = t("months.long").split(",");
  const monthBoxes = names.map((n, i) => {
    const c = checkbox(n, months !== "all" && months.includes(i + 1), { value: i + 1, "aria-label": longNames[i] });
    return c;
  });
  const boxes = h("div", { class: "months-list", hidden: months === "all" }, monthBoxes);
  all.box.addEventListener("change", () => { boxes.hidden = all.box.checked; });
  const monthsSet = h("fieldset", { class: "months", "data-test": "hours-months" }, h("legend", {}, t("schedule.months")), all, boxes);
  const msgDays = h("div", { class: "field-msgs" });
  const msgMonths = h("div", { class: "field-msgs" });
  fs.add("start", field(t("schedule.start"), start));
  fs.add("end", field(t("schedule.end"), end));
  fs.fields.days = { control: dayBoxes[0].box, msg: msgDays };
  fs.fields.months = { control: all.box, msg: msgMonths };
  const value = () => ({
    start: start.value, end: end.value,
    days: dayBoxes.filter((b) => b.box.checked).map((b) => b.box.value),
    months: all.box.checked ? "all" : monthBoxes.filter((b) => b.box.checked).map((b) => Number(b.box.value)),
  });
  return {
    el: h("div", { class: "hours-editor", "data-test": "hours-editor" },
      h("div", { class: "row" }, fs.fields.start, fs.fields.end), days, msgDays, monthsSet, msgMonths),
    value,
    check() {
      const out = [];
      if (!start.value) out.push({ field: "start", message: t("required") });
      if (!end.value) out.push({ field: "end", message: t("required") });
      return out;
    },
    register: (form, prefix, label) => fs.register(form, prefix, label),
    show: (items) => fs.show(items),
  };
}

// ---- exceptional periods: dates ------------------------------------------------------------

// One date spec ("12-20", "2026-05-01", "12-20..01-05", also "31/12/2026") as
// {from: "YYYY-MM-DD", to: "YYYY-MM-DD" | "", yearly}.
function parseSpec(spec) {
  const [a, b] = String(spec).split("..").map((s) => s.trim());
  const year = new Date().getFullYear();
  function one(text) {
    let m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
    if (m) return { y: Number(m[1]), md: m[2] + "-" + m[3], yearly: false };
    m = /^(\d{2})-(\d{2})$/.exec(text);
    if (m) return { y: null, md: m[1] + "-" + m[2], yearly: true };
    m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(text);
    if (m) return { y: Number(m[3]), md: m[2].padStart(2, "0") + "-" + m[1].padStart(2, "0"), yearly: false };
    m = /^(\d{1,2})\/(\d{1,2})$/.exec(text);
    if (m) return { y: null, md: m[2].padStart(2, "0") + "-" + m[1].padStart(2, "0"), yearly: true };
    return null;
  }
  const first = one(a);
  if (!first) return { from: "", to: "", yearly: false, raw: spec };
  const last = b ? one(b) : null;
  if (first.yearly) {
    const fromY = year;
    const toY = last && last.md < first.md ? year + 1 : year;
    return { from: fromY + "-" + first.md, to: last ? toY + "-" + last.md : "", yearly: true };
  }
  return { from: first.y + "-" + first.md, to: last && last.y ? last.y + "-" + last.md : "", yearly: false };
}

function specOf(entry) {
  const cut = (d) => (entry.yearly ? d.slice(5) : d);
  if (!entry.from) return "";
  if (!entry.to || entry.to === entry.from) return cut(entry.from);
  return cut(entry.from) + ".." + cut(entry.to);
}

function dayText(iso, yearly) {
  const [y, m, d] = iso.split("-");
  return yearly ? d + "/" + m : d + "/" + m + "/" + y;
}

function datesText(dates) {
  return (dates || []).map((spec) => {
    const e = parseSpec(spec);
    if (!e.from) return spec;
    const range = dayText(e.from, e.yearly) + (e.to && e.to !== e.from ? " → " + dayText(e.to, e.yearly) : "");
    return range + (e.yearly ? ", " + t("exc.yearly.short") : "");
  }).join(" ; ");
}

function periodSummary(p) {
  const when = p.start ? p.start + "-" + p.end : t("exc.wholeday.short");
  return (p.name || "—") + " · " + datesText(p.dates) + " · " + when + " → " + describe(p.destination);
}

function periodEditor(p) {
  const fs = fieldSet();
  const name = h("input", { value: p.name || "", required: true, "data-test": "exc-name", placeholder: t("exc.name.placeholder") });
  fs.add("name", field(t("exc.name"), name));
  const entries = [];
  const datesBox = h("div", { class: "date-entries" });
  const datesMsg = h("div", { class: "field-msgs" });
  function addEntry(spec) {
    const e = spec ? parseSpec(spec) : { from: "", to: "", yearly: false };
    const from = h("input", { type: "date", value: e.from, required: true, "data-test": "exc-from" });
    const to = h("input", { type: "date", value: e.to, "data-test": "exc-to" });
    const yearly = checkbox(t("exc.yearly"), e.yearly, { "data-test": "exc-yearly", role: "switch" });
    const entry = { from, to, yearly: yearly.box, msg: h("div", { class: "field-msgs" }) };
    const k = () => entries.indexOf(entry) + 1;
    const remove = h("button", { type: "button", class: "small link", "data-test": "exc-dates-remove",
      onclick: () => { entries.splice(entries.indexOf(entry), 1); wrap.remove(); syncRemove(); } }, t("exc.removedates"));
    entry.remove = remove;
    const fromField = field(t("exc.from"), from);
    const toField = field(t("exc.to"), to);
    entry.fromField = fromField;
    entry.toField = toField;
    const wrap = h("div", { class: "date-entry row", "data-test": "exc-dates-entry" }, fromField, toField, yearly, remove, entry.msg);
    entry.k = k;
    entries.push(entry);
    datesBox.append(wrap);
    syncRemove();
  }
  function syncRemove() { entries.forEach((e) => { e.remove.hidden = entries.length < 2; }); }
  (p.dates && p.dates.length ? p.dates : [null]).forEach(addEntry);
  const whole = checkbox(t("exc.wholeday"), !p.start, { "data-test": "exc-wholeday" });
  const start = h("input", { type: "time", value: p.start || "08:00", "data-test": "exc-start" });
  const end = h("input", { type: "time", value: p.end || "18:00", "data-test": "exc-end" });
  fs.add("start", field(t("schedule.start"), start));
  fs.add("end", field(t("schedule.end"), end));
  const windowBox = h("div", { class: "row", hidden: !p.start }, fs.fields.start, fs.fields.end);
  whole.box.addEventListener("change", () => { windowBox.hidden = whole.box.checked; });
  const dest = destinationEditor(p.destination || { kind: "voicemail" }, ALL_KINDS, "exc-dest", t("exc.destination"));
  const value = () => {
    const out = { name: name.value.trim(), dates: entries.map((e) => specOf({ from: e.from.value, to: e.to.value, yearly: e.yearly.checked })).filter(Boolean) };
    if (!whole.box.checked) { out.start = start.value; out.end = end.value; }
    out.destination = dest.value();
    return out;
  };
  return {
    el: h("div", { class: "period-editor", "data-test": "exc-editor" }, fs.fields.name,
      h("fieldset", { class: "dates" }, h("legend", {}, t("exc.dates")), datesBox,
        h("button", { type: "button", class: "small link", "data-test": "exc-dates-add", onclick: () => addEntry(null) }, "+ ", t("exc.adddates")), datesMsg),
      whole, windowBox, dest.el),
    value,
    check() {
      const out = [];
      if (!name.value.trim()) out.push({ field: "name", message: t("exc.name.empty") });
      entries.forEach((e, i) => {
        if (!e.from.value) out.push({ field: "dates[" + (i + 1) + "]", message: t("exc.from.empty") });
        else if (e.to.value && e.to.value < e.from.value) out.push({ field: "dates[" + (i + 1) + "]", message: t("exc.to.before") });
      });
      return out.concat(dest.check().map((x) => ({ field: "destination." + x.field, message: x.message })));
    },
    register(form, prefix, label) {
      fs.register(form, prefix, label);
      form.register(prefix + ".dates", datesMsg, entries[0] && entries[0].from, label);
      entries.forEach((e, i) => form.register(prefix + ".dates[" + (i + 1) + "]", e.msg, e.from, label));
      dest.register(form, prefix + ".destination", label);
    },
    show(items) {
      fs.show(items);
      datesMsg.replaceChildren();
      entries.forEach((e) => { e.msg.replaceChildren(); e.from.removeAttribute("aria-invalid"); });
      for (const i of items) {
        const m = /^dates\[(\d+)\]/.exec(i.field);
        if (m && entries[Number(m[1]) - 1]) {
          const e = entries[Number(m[1]) - 1];
          e.msg.append(h("p", { class: "field-msg error", "data-test": "row-error" }, i.message));
          e.from.setAttribute("aria-invalid", "true");
          e.from.focus();
        }
      }
      dest.show(items.filter((i) => i.field.startsWith("destination.")).map((i) => ({ field: i.field.slice(12), message: i.message })));
    },
  };
}

// ---- caller exceptions ---------------------------------------------------------------------

function exceptionSummary(e) {
  const callers = e.callers.trim() === "*" ? t("exceptions.anyone") : e.callers;
  return callers + " → " + describe(e.destination);
}

function exceptionEditor(e) {
  const fs = fieldSet();
  const callers = h("input", { value: e.callers || "", required: true, "data-test": "exception-callers",
    placeholder: t("exceptions.pattern.placeholder"), autocomplete: "off" });
  fs.add("callers", field(t("exceptions.pattern"), callers));
  const dest = destinationEditor(e.destination || { kind: "busy" }, ALL_KINDS, "exception-dest", t("exceptions.action"));
  return {
    el: h("div", { class: "exception-editor", "data-test": "exception-editor" }, fs.fields.callers, dest.el),
    value: () => ({ callers: callers.value.trim(), destination: dest.value() }),
    check() {
      const out = [];
      if (!callers.value.trim()) out.push({ field: "callers", message: t("exceptions.pattern.empty") });
      return out.concat(dest.check().map((x) => ({ field: "destination." + x.field, message: x.message })));
    },
    register(form, prefix, label) {
      fs.register(form, prefix, label);
      dest.register(form, prefix + ".destination", label);
    },
    show(items) {
      fs.show(items);
      dest.show(items.filter((i) => i.field.startsWith("destination.")).map((i) => ({ field: i.field.slice(12), message: i.message })));
    },
  };
}
