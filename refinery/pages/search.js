"use strict";
const form = document.getElementById("search");
const grid = document.getElementById("grid");
const statusLine = document.getElementById("status");
const fields = form.elements;
const hint = document.getElementById("text-hint");
const pager = document.getElementById("pager");
const [previous, next] = pager.querySelectorAll("button");
let preview = null;
let browsing = 1;  // the page of the index shown

// An error clears the results above it: they answered another question.
function say(text, error) {
  statusLine.textContent = text;
  statusLine.className = error ? "error" : "";
  if (error) grid.replaceChildren();
}

function words() {
  return fields.text.disabled ? "" : fields.text.value.trim();
}

// Words search by embedding only: while the box has words, the method is embedding.
function fillMethods() {
  const option = fields.index.selectedOptions[0];
  const methods = option.dataset.methods.split(",");
  const byText = option.dataset.text === "true";
  fields.text.disabled = !byText;
  hint.hidden = byText;
  const was = words() ? "embedding" : fields.method.value;
  fields.method.replaceChildren(...methods.map(m => new Option(m, m, false, m === was)));
  fields.method.disabled = words() !== "";
  fields.metric.disabled = fields.method.value !== "embedding";
}

// The query is a picture or words, whichever was given last.
fields.file.addEventListener("change", () => {
  if (fields.file.files.length) { fields.text.value = ""; fillMethods(); }
});
fields.text.addEventListener("input", () => {
  if (fields.text.value.trim()) fields.file.value = "";
  fillMethods();
});

function figure(src, lines, css) {
  const fig = document.createElement("figure");
  fig.className = css;
  if (src) {  // none for words: the caption shows them
    const img = document.createElement("img");
    img.src = src;
    img.alt = lines[lines.length - 1][1];
    fig.append(img);
  }
  const caption = document.createElement("figcaption");
  for (const [cls, text] of lines) {
    const span = document.createElement("div");
    span.className = cls;
    span.textContent = text;
    caption.append(span);
  }
  fig.append(caption);
  return fig;
}

fields.index.addEventListener("change", fillMethods);
fields.method.addEventListener("change", fillMethods);
fillMethods();

// A picture shown (a result, or one browsed) is clicked: search by it ("more like this"), its
// thumbnail as the query - the server's own picture, never a path.
function clickable(fig, url, path) {
  fig.classList.add("clickable");
  fig.title = "more like this";
  fig.addEventListener("click", async () => {
    try {
      const blob = await (await fetch(url)).blob();
      const data = new FormData(form);
      data.delete("text");
      data.set("file", blob, path.split("/").pop());
      await searchWith(data, figure(url, [["label", "more like"], ["path", path]], "query"));
    } catch (error) {
      say("Search failed: " + error, true);
    }
  });
  return fig;
}

async function searchWith(data, query) {
  say("Searching…");
  pager.hidden = true;
  fields.go.disabled = true;
  try {
    const response = await fetch("/api/search", {method: "POST", body: data});
    let body;
    try { body = await response.json(); } catch { body = {detail: response.status + " " + response.statusText}; }
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      say("Search failed: " + detail, true);
      return;
    }
    const figures = [query];
    for (const hit of body.results) {
      figures.push(clickable(figure(hit.url, [["rank", "#" + hit.rank], ["score", "score " + hit.score.toFixed(4)],
                                              ["path", hit.path]], "hit"), hit.url, hit.path));
    }
    grid.replaceChildren(...figures);
    const way = body.closer === "lower" ? "a distance: lower is closer" : "a similarity: higher is closer";
    say(body.results.length + " results from " + body.model + ", " + body.method +
        (body.method === "embedding" ? " (" + body.metric + ")" : "") + "; each score is " + way +
        ". Click a picture for more like it.");
  } catch (error) {
    say("Search failed: " + error, true);
  } finally {
    fields.go.disabled = false;
  }
}

form.addEventListener("submit", async event => {
  event.preventDefault();
  const file = fields.file.files[0];
  const text = file ? "" : words();
  if (!file && !text) {
    say(fields.text.disabled ? "Choose or take a picture first." : "Choose or take a picture, or type words, first.",
        true);
    return;
  }
  const limit = Number(form.dataset.maxBytes);
  if (file && file.size > limit) {
    say("The picture is larger than the upload limit of " + (limit / 1048576) + " MB.", true);
    return;
  }
  if (new TextEncoder().encode(text).length > Number(form.dataset.maxTextBytes)) {
    say("The words are longer than " + form.dataset.maxTextBytes + " bytes.", true);
    return;
  }
  const data = new FormData(form);
  data.delete(file ? "text" : "file");
  if (preview) URL.revokeObjectURL(preview);
  preview = file ? URL.createObjectURL(file) : null;
  await searchWith(data, file ? figure(preview, [["label", "query"], ["path", file.name]], "query")
                              : figure(null, [["label", "query"], ["words", text]], "query"));
});

// The index, a page at a time, in path order: each picture clickable for more like it.
async function browse(page) {
  say("Loading…");
  try {
    const response = await fetch("/api/pictures?index=" + fields.index.value + "&page=" + page);
    const body = await response.json();
    if (!response.ok) {
      say("Browsing failed: " + body.detail, true);
      return;
    }
    browsing = body.page;
    grid.replaceChildren(...body.pictures.map(p => clickable(figure(p.url, [["path", p.path]], "hit"), p.url,
                                                                   p.path)));
    document.getElementById("page").textContent = "page " + body.page + " of " + body.pages;
    previous.disabled = body.page <= 1;
    next.disabled = body.page >= body.pages;
    pager.hidden = false;
    say(body.total + " pictures in this index. Click one to search by it.");
  } catch (error) {
    say("Browsing failed: " + error, true);
  }
}

fields.browse.addEventListener("click", () => browse(1));
previous.addEventListener("click", () => browse(browsing - 1));
next.addEventListener("click", () => browse(browsing + 1));
