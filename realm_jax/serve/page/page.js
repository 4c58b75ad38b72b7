// The page of `realm-jax serve`: asks /api/ask, draws the evidence with the answer span marked
// and a bar per p(z|x); with edits allowed, posts /api/corpus/{op} and asks the question again.
"use strict";

const $ = (id) => document.getElementById(id);
let lastQuestion = null;

async function call(path, body, token) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function status(element, text, isError) {
  element.textContent = text;
  element.className = isError ? "error" : "muted";
}

function evidenceItem(e) {
  const item = document.createElement("li");
  item.className = "evidence";
  item.dataset.block = e.block;
  const head = document.createElement("div");
  head.className = "evidence-head";
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.title = `p(z|x) = ${e.probability.toFixed(3)}`;
  const fill = document.createElement("div");
  fill.style.width = `${(100 * e.probability).toFixed(1)}%`;
  bar.appendChild(fill);
  const title = document.createElement("strong");
  title.textContent = e.title || "(untitled)";
  const figures = document.createElement("span");
  figures.className = "muted";
  figures.textContent = `p = ${e.probability.toFixed(3)} · block ${e.block}`;
  head.append(bar, title, figures);
  const text = document.createElement("p");
  text.className = "evidence-text";
  if (e.span) {  // character offsets of the answer in this block's text
    const mark = document.createElement("mark");
    mark.textContent = e.text.slice(e.span[0], e.span[1]);
    text.append(e.text.slice(0, e.span[0]), mark, e.text.slice(e.span[1]));
  } else {
    text.textContent = e.text;
  }
  item.append(head, text);
  return item;
}

async function ask(question) {
  lastQuestion = question;
  status($("status"), "asking…");
  try {
    const p = await call("/api/ask", { question });
    $("answer").textContent = p.prediction || "(no answer)";
    $("answer-probability").textContent = `p(span) = ${p.probability.toFixed(3)}`;
    $("evidence").replaceChildren(...p.evidence.map(evidenceItem));
    $("result").hidden = false;
    status($("status"), "");
  } catch (err) {
    status($("status"), err.message, true);
  }
}

async function edit() {
  const op = $("edit-op").value;
  const doc = { id: $("edit-id").value.trim() };
  if (op !== "delete") Object.assign(doc, { title: $("edit-title").value, text: $("edit-text").value });
  status($("edit-status"), "applying…");
  try {
    const info = await call(`/api/corpus/${op}`, { documents: [doc] }, $("edit-token").value);
    status($("edit-status"), `corpus version ${info.version}: ${info.embedded_blocks} block(s) ` +
      `embedded, ${info.blocks_removed} retired; ${info.live_blocks} live blocks`);
    await loadInfo();
    if (lastQuestion) await ask(lastQuestion);
  } catch (err) {
    status($("edit-status"), err.message, true);
  }
}

async function loadInfo() {
  try {
    const info = await call("/api/info");
    const name = info.run.split("/").filter(Boolean).pop();  // the full path is the tooltip
    $("run-info").title = info.run;
    $("run-info").textContent = `${name} · step ${info.step} · corpus version ` +
      `${info.corpus_version} · ${info.live_blocks} live blocks · ${info.index} index`;
    $("edit-section").hidden = !info.edits;
  } catch (err) {
    status($("run-info"), err.message, true);
  }
}

// Clicking a piece of evidence fills the edit form with that block's document.
$("evidence").addEventListener("click", (event) => {
  const item = event.target.closest("li.evidence");
  if (!item || $("edit-section").hidden) return;
  $("edit-title").value = item.querySelector("strong").textContent;
  $("edit-text").value = item.querySelector(".evidence-text").textContent;
});
$("ask-form").addEventListener("submit", (event) => {
  event.preventDefault();
  ask($("question").value);
});
$("edit-form").addEventListener("submit", (event) => {
  event.preventDefault();
  edit();
});
loadInfo();
