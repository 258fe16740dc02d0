"use strict";
const form = document.getElementById("search");
const grid = document.getElementById("grid");
const statusLine = document.getElementById("status");
const fields = form.elements;
const hint = document.getElementById("text-hint");
let preview = null;

function say(text, error) {
  statusLine.textContent = text;
  statusLine.className = error ? "error" : "";
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
  say("Searching…");
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
    if (preview) URL.revokeObjectURL(preview);
    preview = file ? URL.createObjectURL(file) : null;
    const figures = [file ? figure(preview, [["label", "query"], ["path", body.query]], "query")
                          : figure(null, [["label", "query"], ["words", body.query]], "query")];
    for (const hit of body.results) {
      figures.push(figure(hit.url, [["rank", "#" + hit.rank], ["score", hit.score.toFixed(4)],
                                    ["path", hit.path]], "hit"));
    }
    grid.replaceChildren(...figures);
    say(body.results.length + " results from " + body.model + ", " + body.method + ".");
  } catch (error) {
    say("Search failed: " + error, true);
  } finally {
    fields.go.disabled = false;
  }
});

