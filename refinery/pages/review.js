"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
const files = data.files;
const original = files.map(f => [f.decision, f.kept_as]);
const indexOf = new Map(files.map((f, i) => [f.path, i]));
const groupOf = new Map();
for (const g of data.groups) for (const i of [g.keeper, ...g.members]) groupOf.set(i, g);
const flips = [];  // {by, changes: [[file, decision before, kept_as before], ...], active}
let version = 0, saved = 0;  // changes made, and made when decisions were last saved
// Every flip and undo, in order, kept in this browser under the report's id: a reload, or the
// page opened again, replays them (until the report changes). [kind, path] each.
const KEPT = "refinery-review " + data.report_id;
const acts = [];
let actsSaved = 0;
const STAGES = data.video
  ? [["near", "spans of the same frame"], ["quality", "quality spans"], ["error", "videos not read to the end"]]
  : [["exact", "exact copies"], ["near", "near copies"], ["semantic", "look-alikes"], ["quality", "quality rejects"],
     ["error", "unreadable"]];
const EVIDENCE = {exact: "identical bytes", near: "thumbnail correlation", semantic: "cosine",
                  scene: "things in place (1 - largest move)", overlap: "foreground overlap"};
const lowerName = i => files[i].path.toLowerCase();
// A file removed as a copy of a reference's picture (dedup --against) is shown first, on its own.
const one = kind => i => ({kind, i, stages: new Set([files[i].stage || "quality"]), names: [lowerName(i)]});
const items = [
  ...data.rejects.filter(i => files[i].against).map(one("reference")),
  ...data.groups.map(g => ({kind: "group", g, stages: new Set(g.members.map(i => files[i].stage)),
                            names: [g.keeper, ...g.members].map(lowerName)})),
  ...data.rejects.filter(i => !files[i].against).map(one("reject")),
  ...data.errors.map(i => ({kind: "error", i, stages: new Set(["error"]), names: [lowerName(i)]})),
];
const list = document.getElementById("list");
const search = document.getElementById("search");
const fieldset = document.getElementById("stages");
let page = 0;
let shown = items;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") node.className = v;
    else if (k === "data") Object.assign(node.dataset, v);
    else node[k] = v;
  }
  node.append(...children.filter(c => c !== null && c !== undefined));
  return node;
}

function picture(thumb, alt, cls) {
  if (thumb === null || thumb === undefined) return null;
  return el("img", {src: "data:image/jpeg;base64," + data.thumbs[thumb], alt, class: cls || "", loading: "eager"});
}

// A picture clicked: its original, large (the page opened from disk, where it was written), else
// its preview; a removed duplicate flickers with its keeper on demand.
const viewer = document.getElementById("viewer");
const large = document.getElementById("large");
const caption = document.getElementById("large-caption");
const flickerButton = document.getElementById("flicker");
let showing = null, flickering = null;

function originalUrl(i) {
  return data.originals + files[i].path.split("/").map(encodeURIComponent).join("/");
}

function show(i, note) {
  const f = files[i];
  large.onerror = () => {  // the original is not reachable from here: its largest preview
    large.onerror = null;
    const preview = f.large ?? f.thumb;
    if (preview !== null && preview !== undefined) large.src = "data:image/jpeg;base64," + data.thumbs[preview];
    caption.textContent = f.path + " (its preview: the original is not reachable from this page" +
      (f.large === undefined ? "; `refinery review --large-previews` embeds bigger ones" : "") + ")" + note;
  };
  large.src = data.video && f.decision === "remove" ? "data:image/jpeg;base64," + data.thumbs[f.thumb] : originalUrl(i);
  large.alt = f.path;
  caption.textContent = f.path + note;
}

function openViewer(i) {
  showing = i;
  stopFlicker();
  const keeper = indexOf.get(files[i].kept_as);
  flickerButton.hidden = keeper === undefined;
  show(i, "");
  viewer.hidden = false;
}

function stopFlicker() {
  if (flickering !== null) clearInterval(flickering);
  flickering = null;
  flickerButton.textContent = "flicker with its keeper";
}

function flicker() {
  if (flickering !== null) { stopFlicker(); return show(showing, ""); }
  const keeper = indexOf.get(files[showing].kept_as);
  let onKeeper = false;
  flickerButton.textContent = "stop flickering";
  flickering = setInterval(() => {
    onKeeper = !onKeeper;
    show(onKeeper ? keeper : showing, onKeeper ? " - the keeper" : " - the duplicate");
  }, 600);
}

function closeViewer() {
  stopFlicker();
  viewer.hidden = true;
  large.removeAttribute("src");
}

function changed(i) {
  return files[i].decision !== original[i][0] || files[i].kept_as !== original[i][1];
}

function keeperOf(g) {
  const all = [g.keeper, ...g.members];
  for (const i of all) {
    const k = indexOf.get(files[i].kept_as);
    if (files[i].decision === "remove" && k !== undefined && all.includes(k)) return k;
  }
  return g.keeper;
}

function removedBy(i) {
  const g = groupOf.get(i);
  if (!g) return 0;
  const path = files[i].path;
  return [g.keeper, ...g.members].filter(j => files[j].decision === "remove" && files[j].kept_as === path).length;
}

function flip(by, changes) {
  flips.push({by, changes: changes.map(([i]) => [i, files[i].decision, files[i].kept_as]), active: true});
  for (const [i, decision, keptAs] of changes) Object.assign(files[i], {decision, kept_as: keptAs});
  version += 1;
  render();
}

function blocker(flip) {  // a later flip still in force that changed one of the same files
  const at = flips.indexOf(flip);
  const touched = new Set(flip.changes.map(c => c[0]));
  return flips.slice(at + 1).find(f => f.active && f.changes.some(c => touched.has(c[0])));
}

function act(kind, i) {
  const f = files[i];
  if (kind === "keep-too" || kind === "keep") return flip(i, [[i, "keep", null]]);
  if (kind === "remove") return flip(i, [[i, "remove", null]]);
  if (kind === "keep-instead") {
    const old = f.kept_as;
    const k = indexOf.get(old);
    const g = groupOf.get(i);
    const changes = [[i, "keep", null], [k, "remove", f.path]];
    for (const j of [g.keeper, ...g.members]) {
      if (j !== i && j !== k && files[j].decision === "remove" && files[j].kept_as === old) {
        changes.push([j, "remove", f.path]);
      }
    }
    return flip(i, changes);
  }
  if (kind === "undo") {
    const last = flips.filter(x => x.active && x.by === i).pop();
    if (!last || blocker(last)) return;
    for (const [j, decision, keptAs] of last.changes) Object.assign(files[j], {decision, kept_as: keptAs});
    last.active = false;
    version += 1;
    render();
  }
}

function button(kind, i, text, refused) {
  const b = el("button", {type: "button", class: kind, data: {act: kind, file: i}}, text);
  if (refused) { b.disabled = true; b.title = refused; }
  return b;
}

// What may be done to file i now: each act with its button's words and why it is refused
// ("" when it may) - the buttons shown and the flips replayed from storage both ask here.
function choices(i) {
  const f = files[i];
  const out = [];
  if (f.decision === "remove" && f.kept_as) {
    const why = !indexOf.has(f.kept_as) ? f.kept_as + " is not in the report" : groupOf.has(i) ? "" : "not in a group";
    out.push(["keep-too", "keep too", ""], ["keep-instead", "keep instead", why]);
  } else if (f.decision === "remove") {
    out.push(["keep", "keep", ""]);
  } else if (f.decision === "keep") {
    const n = removedBy(i);
    out.push(["remove", "remove", n ? "the keeper of " + n + " removed file" + (n > 1 ? "s" : "") +
              ": keep them too, or keep one of them instead, first" : ""]);
  }
  const last = flips.filter(x => x.active && x.by === i).pop();
  if (last) {
    const later = blocker(last);
    out.push(["undo", "undo this flip", later ? "undo the later flip of " + files[later.by].path + " first" : ""]);
  }
  return out;
}

function buttons(i) {
  if (data.note) return null;
  const out = el("div", {class: "buttons"});
  out.append(...choices(i).map(([kind, text, refused]) => button(kind, i, text, refused)));
  return out;
}

// What the evidence says, in words; every figure on hover.
function evidenceWords(s) {
  const words = [];
  if ("largest_move" in s) {
    words.push(s.largest_move === 0 ? "nothing in it moved"
      : "things in it moved up to " + Math.round(100 * s.largest_move) + "% of their size");
  }
  if ("cosine" in s) {
    words.push(s.cosine >= 0.98 ? "near-identical to the model" : s.cosine >= 0.95 ? "very alike to the model"
      : "alike to the model");
  }
  if ("thumb_correlation" in s) {
    words.push(s.thumb_correlation >= 0.995 ? "the same picture, seen small"
      : s.thumb_correlation >= 0.95 ? "much the same picture, seen small" : "another picture, seen small");
  }
  if ("phash_distance" in s || "dhash_distance" in s) {
    const bits = Math.min(s.phash_distance ?? 64, s.dhash_distance ?? 64);
    words.push(bits === 0 ? "identical hashes" : bits <= 6 ? "near-identical hashes" : "different hashes");
  }
  return words.join(" \u00b7 ");
}

function scores(s) {
  const figures = Object.entries(s || {}).map(([k, v]) => k.replace(/_/g, " ") + " " + v).join("\n");
  return el("div", {class: "scores", title: figures}, evidenceWords(s || {}) || (figures ? "figures on hover" : ""));
}

function tile(i, role) {
  const f = files[i];
  const pics = el("div", {class: "pics"},
                  picture(f.thumb, f.path) || el("div", {class: "missing"}, "no picture: " + (f.unreadable || "?")));
  const asJudged = f.decision === "remove" && f.kept_as === original[i][1];
  const differs = f.diff !== null && f.diff !== undefined && asJudged;
  if (differs) pics.append(picture(f.diff, "where it differs from " + f.kept_as, "diff"));
  const reference = f.ref !== null && f.ref !== undefined && asJudged;  // dedup --against: its keeper, beside it
  if (reference) pics.append(picture(f.ref, "the reference picture " + f.kept_as, "ref"));
  let decision = f.decision;
  if (data.video) {  // refinery frames: frames written, spans never written
    decision = role === "keeper" ? "written" : f.kept_as ? "skipped: the same frame as " + f.kept_as : "skipped";
  } else if (role === "keeper") decision = "keep: the keeper";
  else if (f.decision === "remove" && f.kept_as) decision = "remove: a duplicate of " + f.kept_as;
  const was = changed(i) ? "flipped; was " + original[i][0] + (original[i][1] ? " (a duplicate of " +
                                                                original[i][1] + ")" : "") : null;
  const stage = f.stage ? f.stage + (f.test ? " \u00b7 " + f.test + " test" : "") : null;
  const diffNote = differs ? "red: where it differs from its keeper" : reference ? "right: the reference picture" : null;
  const cls = ["tile", f.decision, role, changed(i) ? "flipped" : "", differs || reference ? "scene" : ""].join(" ");
  return el("figure", {class: cls, data: {path: f.path}}, pics,
            el("figcaption", {}, el("div", {class: "path"}, f.path), el("div", {class: "decision"}, decision),
               was && el("div", {class: "was"}, was), stage && el("div", {class: "stage"}, stage),
               f.reason ? el("div", {class: "reason"}, f.reason) : null,
               scores(f.scores), diffNote && el("div", {class: "stage"}, diffNote),
               buttons(i)));
}

function groupCard(g) {
  const k = keeperOf(g);
  const others = [g.keeper, ...g.members].filter(i => i !== k);
  const risk = g.evidence === "exact" ? "identical bytes" : EVIDENCE[g.evidence] + " " + g.risk;
  const across = g.across ? "across splits " + g.across.join(", ") + " \u00b7 " : "";  // dedup --splits
  const title = !data.video ? ["group " + g.id + " \u00b7 " + (others.length + 1) + " files \u00b7 " + across +
                               "weakest evidence: ", el("span", {class: "risk"}, risk)]
    : others.length ? [files[k].path + " \u00b7 " + others.length + " span" + (others.length > 1 ? "s" : "") +
                       " skipped as its duplicate" + (others.length > 1 ? "s" : "") + " \u00b7 weakest evidence: ",
                       el("span", {class: "risk"}, risk)]
      : [files[k].path + " \u00b7 nothing skipped as its duplicate"];
  return el("section", {class: "group", data: {group: g.id}}, el("h3", {}, ...title),
            el("div", {class: "row"}, tile(k, "keeper"),
               el("div", {class: "members"}, ...others.map(i => tile(i, "member")))));
}

function filter() {
  const stages = new Set([...fieldset.querySelectorAll("input:checked")].map(c => c.value));
  const words = search.value.trim().toLowerCase();
  shown = items.filter(it => (it.stages.size === 0 || [...it.stages].some(s => stages.has(s))) &&
                             (!words || it.names.some(n => n.includes(words))));
  page = 0;
  render();
}

function render() {
  const pages = Math.max(1, Math.ceil(shown.length / data.page_size));
  page = Math.min(page, pages - 1);
  const slice = shown.slice(page * data.page_size, (page + 1) * data.page_size);
  const parts = [];
  let section = null, box = null;
  const titles = data.video
    ? {group: "Frames written, in time order, each beside the spans skipped as its duplicates",
       reject: "Spans skipped for their quality, in time order", error: "Videos that could not be read to the end"}
    : {group: "Groups: each keeper beside the files removed as its duplicates, riskiest first",
       reject: "Quality rejects", error: "Unreadable files",
       reference: "Already in the reference: each file removed as a copy of a reference picture (--against)"};
  for (const it of slice) {
    if (it.kind !== section) {
      section = it.kind;
      parts.push(el("h2", {}, titles[section]));
      box = it.kind === "group" ? null : el(it.kind === "error" ? "table" : "div",
                                            {class: it.kind === "error" ? "errors" : "grid"});
      if (box) parts.push(box);
    }
    if (it.kind === "group") parts.push(groupCard(it.g));
    else if (it.kind === "reject" || it.kind === "reference") box.append(tile(it.i, "reject"));
    else box.append(el("tr", {class: "error", data: {path: files[it.i].path}}, el("td", {class: "path"},
                       files[it.i].path), el("td", {class: "reason"}, files[it.i].reason)));
  }
  if (!slice.length) parts.push(el("p", {class: "empty"}, "Nothing to show with these filters."));
  list.replaceChildren(...parts);
  for (const where of document.querySelectorAll(".pager .where")) {
    where.textContent = "page " + (page + 1) + " of " + pages + " \u00b7 " + shown.length + " of " + items.length +
      (data.video ? " frames written, quality spans and errors" : " groups, rejects and errors");
  }
  for (const b of document.querySelectorAll(".pager button")) {
    b.disabled = b.dataset.page === "-1" ? page === 0 : page >= pages - 1;
  }
  const flipped = files.filter((f, i) => changed(i)).length;
  document.getElementById("changes").textContent = flipped ? flipped + " file" + (flipped > 1 ? "s" : "") +
    " flipped" + (version !== saved ? ", not saved yet" : ", saved") : "";
}

function remember() {
  try {
    localStorage.setItem(KEPT, JSON.stringify({acts, saved: actsSaved}));
  } catch {  // storage refused (a private window, a full quota): the flips live as long as the page
  }
}

function allowed(kind, i) {
  return choices(i).some(([k, , refused]) => k === kind && !refused);
}

function kept() {
  try {
    return JSON.parse(localStorage.getItem(KEPT) || "null");
  } catch {  // storage refused, or not JSON: nothing to resume
    return null;
  }
}

// A decisions file given to `refinery review --decisions`: its flips, as they were saved.
function resumeSaved() {
  for (const [path, decision, keptAs] of data.resume) {
    const i = indexOf.get(path);
    if (i !== undefined) flip(i, [[i, decision, keptAs]]);
  }
  saved = version;
}

function resume() {
  if (data.resume) return resumeSaved();
  const last = kept();
  if (!last || !Array.isArray(last.acts)) return;
  for (const [kind, path] of last.acts) {  // read back from storage: each act checked as its button would be
    const i = indexOf.get(path);
    if (i === undefined || !allowed(kind, i)) break;
    act(kind, i);
    acts.push([kind, path]);
  }
  actsSaved = last.saved;
  if (actsSaved === acts.length) saved = version;
}

function save() {  // decisions.json, version 1 (docs/review.md); each `file` as the report wrote it
  const text = JSON.stringify;
  // a duplicate of a reference's picture (dedup --against) says which reference holds its keeper
  const against = f => f.against && f.decision === "remove" && f.kept_as
    ? ', "against": ' + text(f.against) + ', "kept_as_sha256": ' + text(f.kept_as_sha256 ?? null) : "";
  const lines = files.filter(f => f.decision === "keep" || f.decision === "remove").map(f =>
    '{"path": ' + text(f.path) + ', "decision": ' + text(f.decision) + ', "kept_as": ' + text(f.kept_as) +
    ', "file": ' + f.file + against(f) + "}");
  const out = '{"refinery_decisions": 1, "root": ' + text(data.root) + ', "follow_symlinks": ' +
    text(data.follow_symlinks) + ', "files": [\n' + lines.join(",\n") +
    "\n]}\n";
  const url = URL.createObjectURL(new Blob([out], {type: "application/json"}));
  const a = el("a", {href: url, download: "decisions.json"});
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  saved = version;
  actsSaved = acts.length;
  remember();
  render();
}

const c = data.counts;
document.getElementById("summary").textContent = data.summary ||
  data.root + ": " + (c.keep + c.remove + c.error + c.skip) + " files, " + c.keep + " kept, " + c.remove +
  " removed, " + c.error + " unreadable, " + c.skip + " skipped; " +
  data.groups.length + " groups";
for (const [value, label] of STAGES) {
  const n = items.filter(it => it.stages.has(value)).length;
  fieldset.append(el("label", {}, el("input", {type: "checkbox", value, checked: true, name: "stage"}),
                     " " + label + " (" + n + ")"));
}
if (data.note) {
  document.getElementById("help").textContent = data.note;
  document.getElementById("save").hidden = true;
}
fieldset.addEventListener("change", filter);
search.addEventListener("input", filter);
document.getElementById("save").addEventListener("click", save);
for (const b of document.querySelectorAll(".pager button")) {
  b.addEventListener("click", () => { page += Number(b.dataset.page); render(); window.scrollTo(0, 0); });
}
flickerButton.addEventListener("click", flicker);
document.getElementById("close").addEventListener("click", closeViewer);
viewer.addEventListener("click", e => { if (e.target === viewer) closeViewer(); });
document.addEventListener("keydown", e => { if (e.key === "Escape" && !viewer.hidden) closeViewer(); });
list.addEventListener("click", e => {
  const img = e.target.closest(".pics img");
  if (img) {
    const tile = img.closest("figure.tile");
    if (tile) openViewer(indexOf.get(tile.dataset.path));
    return;
  }
  const b = e.target.closest("button[data-act]");
  if (b && !b.disabled) {
    act(b.dataset.act, Number(b.dataset.file));
    acts.push([b.dataset.act, files[Number(b.dataset.file)].path]);
    remember();
  }
});
window.addEventListener("beforeunload", e => { if (version !== saved) e.preventDefault(); });
if (!data.note) resume();
render();
// When the first page's pictures are decoded: milliseconds since the file began to load.
Promise.all([...list.querySelectorAll("img")].map(img => img.decode().catch(() => null))).then(() => {
  document.documentElement.dataset.firstPageMs = performance.now().toFixed(0);
});

