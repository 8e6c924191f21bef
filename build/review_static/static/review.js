"use strict";
// The review page: the filtered item list from /api/items, one item from /api/item/ID, decisions posted to
// /api/decision. Data reaches the page only through textContent and attributes, never innerHTML.

const $ = (id) => document.getElementById(id);
const LETTERS = ["A", "B", "C", "D", "E"];
const view = { ids: [], images: [], states: [], index: 0, item: null, token: 0, busy: false };

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

function tableRow(cells, className) {
  const row = el("tr", undefined, className);
  row.append(...cells.map((text, i) => el("td", text, i ? "num" : "")));
  return row;
}

function say(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function filterQuery() {
  const params = new URLSearchParams(new FormData($("filters")));
  for (const [name, value] of [...params]) if (!value) params.delete(name);
  return params.toString();
}

// Load the list for the current filters and show `wanted`, or else the first unreviewed item.
async function loadList(wanted) {
  const query = filterQuery();
  localStorage.setItem("filters", query);
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  try {
    const list = await getJSON(`/api/items?${query}`);
    Object.assign(view, { ids: list.ids, images: list.images, states: list.states });
    const at = view.ids.indexOf(wanted);
    await show(at >= 0 ? at : list.start);
  } catch (error) {
    say(error.message, true);
  }
}

async function show(index) {
  const token = ++view.token;
  view.item = null;
  showProgress();
  if (!view.ids.length) {
    $("item-id").textContent = "no item matches these filters";
    return;
  }
  view.index = Math.max(0, Math.min(index, view.ids.length - 1));
  let item;
  try {
    item = await getJSON(`/api/item/${encodeURIComponent(view.ids[view.index])}`);
  } catch (error) {
    say(error.message, true);
    return;
  }
  if (token !== view.token) return; // a later navigation won
  view.item = item;
  render(item);
  if (view.index + 1 < view.images.length) new Image().src = imageURL(view.images[view.index + 1]);
}

const imageURL = (imageId) => `/image/${encodeURIComponent(imageId)}`;

function showProgress() {
  const reviewed = view.states.filter((state) => state !== "unreviewed").length;
  $("progress").textContent = `${reviewed} / ${view.states.length} reviewed`;
  $("progress-bar").max = Math.max(1, view.states.length);
  $("progress-bar").value = reviewed;
  $("position").textContent = view.ids.length ? `item ${view.index + 1} of ${view.ids.length}` : "";
}

function render(item) {
  $("image").src = imageURL(item.image_id);
  $("image").alt = `image ${item.image_id}`;
  $("item-id").textContent = item.id;
  $("question").textContent = item.question;
  $("options").replaceChildren(...item.options.map((text, i) => {
    const gold = item.answer.includes(LETTERS[i]);
    const li = el("li", `${LETTERS[i]}. ${text}`, gold ? "gold" : "");
    if (gold) li.append(el("span", "gold", "mark"));
    return li;
  }));
  const facts = [["task", item.task], ["source", item.source], ["modality", item.modality],
    ["region", item.region], ["view", item.view], ["disease", item.disease],
    ["levels", item.levels.join(", ") || "none"], ["severity", item.severity ?? "n/a"],
    ["present diseases", item.present.join(", ")], ["subset", item.mini ? "mini" : "full only"],
    ["patient", item.patient_id], ["question id", item.question_id], ["image", item.image_path]];
  $("facts").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", name), el("dd", String(value))]));
  const scores = Object.entries(item.scores).sort(([, a], [, b]) => (b ?? -Infinity) - (a ?? -Infinity));
  const rows = scores.map(([disease, score]) => {
    const gold = item.answer_text.includes(disease);
    return tableRow([gold ? `${disease} (gold)` : disease, score?.toFixed(3) ?? "n/a"], gold ? "gold" : "");
  });
  $("scores").replaceChildren(...(rows.length ? rows : [tableRow(["none for this task"])]));
  const decision = item.decision;
  $("state").textContent = decision
    ? `${decision.decision} by ${decision.reviewer} at ${decision.time}` +
      (Object.keys(decision.fields).length ? ` (${JSON.stringify(decision.fields)})` : "")
    : "unreviewed";
  $("state").className = `state-${decision ? decision.decision : "unreviewed"}`;
  $("note").value = decision ? decision.note : "";
  renderCorrection(item);
  showProgress();
}

// Diagnosis: pick one of the options; localization: tick the levels.
function renderCorrection(item) {
  const diagnosis = item.task === "diagnosis";
  $("correct-legend").textContent = diagnosis ? "correct the diagnosis" : "correct the levels";
  $("correct-choices").replaceChildren(...item.options.map((text) => {
    const label = el("label");
    const input = el("input");
    Object.assign(input, { type: diagnosis ? "radio" : "checkbox", name: "choice", value: text });
    input.checked = diagnosis ? text === item.disease : item.levels.includes(text);
    label.append(input, ` ${text}`);
    return label;
  }));
}

async function decide(kind, fields) {
  if (!view.item || view.busy) return;
  const reviewer = $("reviewer").value.trim();
  if (!reviewer) {
    say("type your name in the reviewer field first", true);
    $("reviewer").focus();
    return;
  }
  localStorage.setItem("reviewer", reviewer);
  view.busy = true;
  try {
    const body = { id: view.item.id, decision: kind, reviewer, note: $("note").value, fields };
    const { decision } = await getJSON("/api/decision", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    view.states[view.index] = decision.decision;
    say(`${decision.decision}: ${decision.id}`);
    await show(view.index + 1);
  } catch (error) {
    say(error.message, true);
  } finally {
    view.busy = false;
  }
}

function correct(event) {
  event.preventDefault();
  if (!view.item) return;
  const picked = [...$("correct-choices").querySelectorAll("input:checked")].map((input) => input.value);
  decide("correct", view.item.task === "diagnosis" ? { disease: picked[0] } : { levels: picked });
}

function applyView() {
  $("image").style.height = `${$("zoom").value * 100}%`;
  $("image").style.filter = `brightness(${$("brightness").value}%) contrast(${$("contrast").value}%)`;
}

function resetView() {
  $("zoom").value = 1;
  $("brightness").value = 100;
  $("contrast").value = 100;
  applyView();
}

// Wheel zooms, dragging pans the zoomed image.
function bindViewer() {
  const frame = $("frame");
  frame.addEventListener("wheel", (event) => {
    event.preventDefault();
    $("zoom").value = Number($("zoom").value) + (event.deltaY < 0 ? 0.25 : -0.25);
    applyView();
  }, { passive: false });
  let drag = null;
  frame.addEventListener("mousedown", (event) => {
    event.preventDefault();
    drag = { x: event.clientX + frame.scrollLeft, y: event.clientY + frame.scrollTop };
  });
  window.addEventListener("mouseup", () => { drag = null; });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    frame.scrollLeft = drag.x - event.clientX;
    frame.scrollTop = drag.y - event.clientY;
  });
  for (const id of ["zoom", "brightness", "contrast"]) $(id).addEventListener("input", applyView);
  $("reset").addEventListener("click", resetView);
}

const next = () => show(view.index + 1);
const prev = () => show(view.index - 1);
const KEYS = {
  a: () => decide("accept"), r: () => decide("reject"), f: () => decide("flag"),
  n: next, ArrowRight: next, p: prev, ArrowLeft: prev,
};

const TYPING = "textarea, select, input:not([type=range]):not([type=checkbox]):not([type=radio])";

function onKey(event) {
  if (event.target.closest(TYPING)) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const action = KEYS[event.key];
  if (!action || event.ctrlKey || event.metaKey || event.altKey) return;
  event.preventDefault();
  action();
}

function start() {
  const saved = localStorage.getItem("filters");
  if (!location.search && saved) {
    location.replace(`?${saved}`); // reopened without filters: resume the last ones
    return;
  }
  $("reviewer").value ||= localStorage.getItem("reviewer") || "";
  $("filters").addEventListener("change", () => loadList());
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); loadList(); });
  $("correct").addEventListener("submit", correct);
  $("prev").addEventListener("click", prev);
  $("next").addEventListener("click", next);
  for (const button of document.querySelectorAll(".decide button")) {
    button.addEventListener("click", () => decide(button.dataset.kind));
  }
  document.addEventListener("keydown", onKey);
  bindViewer();
  applyView();
  loadList(new URLSearchParams(location.search).get("item"));
}

start();
