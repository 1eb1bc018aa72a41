// tfanomaly explore: the page. Plain JavaScript, no libraries, nothing fetched but this server's API.
// Object ids are 64-bit: they travel and are kept as strings, never as JavaScript numbers.
"use strict";

const KEYS_FOR_LABELS = { "1": 0, "2": 1, "3": 2 };
const state = {
  info: null,
  page: 0,
  pages: 1,
  total: 0,
  objects: [],
  focus: 0,
  version: null,
  unlabelled: localStorage.getItem("tfanomaly.unlabelled") === "1",
  showKind: localStorage.getItem("tfanomaly.showKind") === "1",
  gallery: [],
  examples: [],
  loads: 0,
  view: "queue",
  queueStale: false,
  map: null,
  selection: [],
  clusterLoads: 0,
};

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  let payload = null;
  try {
    payload = await response.json();
  } catch (error) {
    payload = null;
  }
  if (!response.ok) {
    throw new Error((payload && payload.error) || `${response.status} ${response.statusText}`);
  }
  return payload;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// Text with `code` spans (the server's hints name commands that way), built without innerHTML.
function withCode(text) {
  const span = el("span");
  text.split("`").forEach((part, k) => span.append(k % 2 ? el("code", { text: part }) : part));
  return span;
}

let toastTimer = null;
function toast(message, isError = false) {
  const box = $("toast");
  box.textContent = message;
  box.className = "toast" + (isError ? " error" : "");
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, isError ? 6000 : 3000);
}

function shortTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  return isNaN(when) ? iso : when.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

function formatCoord(value, sign) {
  if (value === null || value === undefined) return "";
  const text = value.toFixed(5);
  return sign && value >= 0 ? "+" + text : text;
}

// -- one object's card ------------------------------------------------------------------------

function card(obj, index, where) {
  const info = state.info;
  const classes = ["card"];
  if (obj.label) classes.push("is-" + obj.label);
  const node = el("article", {
    class: classes.join(" "), "data-id": obj.id, "data-label": obj.label || "",
    "data-index": index, "data-where": where,
  });
  node.append(el("div", { class: "card-head" },
    el("span", { class: "rank", text: `#${obj.rank}` }),
    el("span", { class: "oid", text: obj.id, title: "object id" }),
    obj.label ? el("span", { class: "badge " + obj.label, text: obj.label }) : null,
    el("button", {
      class: "more", title: "more like this (m): the nearest objects in feature space",
      onclick: (event) => { event.stopPropagation(); moreLikeThis(obj.id); },
    }, el("kbd", { text: "m" }), " more like this"),
    el("button", {
      class: "seed" + (state.examples.includes(obj.id) ? " active" : ""),
      title: "find more like this (f): seed the ranking with this object as an example of what "
        + "you look for; the queue is re-ranked at once (click again to remove it)",
      onclick: (event) => { event.stopPropagation(); seedRanking(obj.id); },
    }, el("kbd", { text: "f" }), state.examples.includes(obj.id) ? " example ✓" : " find more"),
    el("button", {
      class: "why", title: "why does it rank here? (w)",
      onclick: (event) => { event.stopPropagation(); explainRank(obj.id); },
    }, el("kbd", { text: "w" }), " why?")));
  const place = [];
  if (obj.ra !== null) place.push(`RA ${formatCoord(obj.ra)}`, `Dec ${formatCoord(obj.dec, true)}`);
  if (obj.idx !== null) place.push(`idx ${obj.idx}`);
  node.append(el("div", { class: "coords", text: place.join("   ") }));

  const figure = el("figure", { class: "triptych" });
  if (info.has_images) {
    const [height, width] = info.image_size;
    figure.append(el("img", {
      src: `/api/images/${obj.id}.png`, width, height,
      alt: `real, reconstruction and residual of ${obj.id}`,
    }));
  } else {
    figure.append(el("div", { class: "missing" }, withCode(info.images_hint)));
  }
  figure.append(el("figcaption", {},
    el("span", { text: "real" }), el("span", { text: "reconstruction" }),
    el("span", { text: "residual" })));
  node.append(figure);

  const scores = el("div", { class: "scores" });
  for (const { key, name } of info.scores) {
    const value = obj.scores[key];
    if (value === null || value === undefined) continue;
    const main = key === info.sort_key;
    scores.append(el("span", {
      class: "score" + (main ? " main" : "") + (!main && value >= 3 ? " high" : ""),
      title: key, text: `${name} ${value.toFixed(2)}σ`,
    }));
  }
  node.append(scores);
  if (obj.kind) node.append(el("div", { class: "kind", text: `simulated kind: ${obj.kind}` }));

  const actions = el("div", { class: "actions" });
  info.labels.forEach((label, k) => {
    actions.append(el("button", {
      class: `lab ${label}` + (obj.label === label ? " active" : ""), "data-label": label,
      title: `${label} (${k + 1})`, onclick: (event) => {
        event.stopPropagation();
        setLabel(obj.id, label);
      },
    }, el("kbd", { text: String(k + 1) }), " " + label));
  });
  node.append(actions);

  const tags = el("div", { class: "tags" });
  for (const tag of obj.tags) {
    tags.append(el("span", { class: "tag" }, tag, el("button", {
      title: `remove tag ${tag}`,
      onclick: (event) => {
        event.stopPropagation();
        saveFields(obj.id, { tags: obj.tags.filter((t) => t !== tag) });
      },
    }, "×")));
  }
  tags.append(el("input", {
    type: "text", class: "tag-input", placeholder: "add tag (t), Enter",
    onkeydown: (event) => {
      if (event.key !== "Enter") return;
      const tag = event.target.value.trim();
      if (tag) saveFields(obj.id, { tags: [...obj.tags, tag] }, true);
    },
  }));
  node.append(tags);

  node.append(el("textarea", {
    class: "note", rows: 1, placeholder: "note (e), saved when you leave the box",
    onchange: (event) => saveFields(obj.id, { note: event.target.value }),
    onkeydown: (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) event.target.blur();
    },
  }));
  node.querySelector("textarea").value = obj.note || "";
  const meta = obj.time
    ? `${obj.label || "no label"} · ${shortTime(obj.time)} · given at ranking v${obj.version}`
    : "";
  node.append(el("div", { class: "meta", text: meta }));
  node.append(el("div", { class: "explain", hidden: true }));
  if (where === "queue") node.addEventListener("click", () => setFocus(index, false));
  return node;
}

// -- the queue --------------------------------------------------------------------------------

function renderQueue() {
  const queue = $("queue");
  queue.replaceChildren();
  if (!state.objects.length) {
    queue.append(el("div", { class: "empty", text: state.unlabelled
      ? "Every object is labelled." : "No objects." }));
  }
  state.objects.forEach((obj, k) => queue.append(card(obj, k, "queue")));
  $("page-info").textContent = `page ${state.page + 1} / ${state.pages}`;
  $("prev-page").disabled = state.page === 0;
  $("next-page").disabled = state.page >= state.pages - 1;
  setFocus(Math.min(state.focus, Math.max(0, state.objects.length - 1)), false);
  document.body.dataset.page = String(state.page);
  document.body.dataset.loads = String(++state.loads);
}

async function loadPage(page, focus = 0) {
  const query = `page=${page}&size=${state.info.page_size}&unlabelled=${state.unlabelled ? 1 : 0}`;
  try {
    const result = await api(`/api/queue?${query}`);
    state.page = result.page;
    state.pages = result.pages;
    state.total = result.total;
    state.objects = result.objects;
    state.focus = focus === "last" ? result.objects.length - 1 : focus;
    history.replaceState(null, "", `#page=${state.page + 1}`);
    renderQueue();
    noteState(result, false);
  } catch (error) {
    toast(error.message, true);
  }
}

function setFocus(index, scroll = true) {
  const cards = $("queue").querySelectorAll(".card");
  cards.forEach((node) => node.classList.remove("focused"));
  if (!cards.length) return;
  state.focus = Math.max(0, Math.min(index, cards.length - 1));
  const node = cards[state.focus];
  node.classList.add("focused");
  if (scroll) node.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function move(step) {
  const next = state.focus + step;
  if (next >= state.objects.length) {
    if (state.page < state.pages - 1) loadPage(state.page + 1, 0);
  } else if (next < 0) {
    if (state.page > 0) loadPage(state.page - 1, "last");
  } else {
    setFocus(next);
  }
}

function focusedObject() {
  return state.objects[state.focus];
}

// Replace an object's cards (queue and gallery) after the server recorded a change.
function updateObject(obj) {
  for (const list of [state.objects, state.gallery]) {
    const k = list.findIndex((o) => o.id === obj.id);
    if (k >= 0) list[k] = { ...list[k], ...obj };
  }
  document.querySelectorAll(`.card[data-id="${obj.id}"]`).forEach((node) => {
    const where = node.dataset.where;
    const index = Number(node.dataset.index);
    const list = where === "queue" ? state.objects : state.gallery;
    const fresh = card(list[index], index, where);
    if (node.classList.contains("focused")) fresh.classList.add("focused");
    node.replaceWith(fresh);
  });
}

// -- labels -----------------------------------------------------------------------------------

async function setLabel(id, label) {
  try {
    const result = await api("/api/labels", { object_id: id, label });
    updateObject(result.object);
    noteState(result);
    return true;
  } catch (error) {
    toast(error.message, true);
    return false;
  }
}

async function saveFields(id, fields, refocusTags = false) {
  try {
    const result = await api("/api/labels", { object_id: id, ...fields });
    updateObject(result.object);
    noteState(result);
    if (refocusTags) {
      const input = document.querySelector(`.card[data-id="${id}"] .tag-input`);
      if (input) input.focus();
    }
  } catch (error) {
    toast(error.message, true);
  }
}

async function undo() {
  try {
    const result = await api("/api/undo", {});
    if (!result.undone) {
      toast("nothing to undo");
      return;
    }
    const undone = result.undone;
    const taken = undone.undone;
    for (const obj of undone.objects || [undone]) {
      if (obj.rank !== undefined) updateObject(obj);
    }
    const what = taken.label ? "'" + taken.label + "'" : "a change";
    toast(undone.count > 1 ? `undid ${what} on ${undone.count} objects`
      : `undid ${what} on ${undone.id}`);
    noteState(result);
    // A bulk action taken back: its objects may be on other pages of the queue, and in clusters.
    if (undone.count > 1) afterBulkChange();
    else if (state.view === "clusters") loadClusters();
  } catch (error) {
    toast(error.message, true);
  }
}

async function moreLikeThis(id) {
  try {
    const result = await api(`/api/similar/${id}`);
    state.gallery = result.objects;
    const shown = state.objects.find((o) => o.id === id);
    $("gallery-title").textContent =
      `More like ${shown ? "#" + shown.rank + " " : ""}${id}: the ${result.objects.length} nearest in feature space`;
    const items = $("gallery-items");
    items.replaceChildren(...result.objects.map((obj, k) => card(obj, k, "gallery")));
    $("gallery").hidden = false;
    document.body.dataset.gallery = id;
  } catch (error) {
    toast(error.message, true);
  }
}

// -- find more like this, and why an object ranks where it does -------------------------------

async function seedRanking(id) {
  try {
    const keep = !state.examples.includes(id);
    const result = await api("/api/like", { object_id: id, keep });
    state.examples = result.examples;
    document.querySelectorAll(`.card[data-id="${id}"] .seed`).forEach((button) => {
      button.classList.toggle("active", keep);
      button.lastChild.textContent = keep ? " example ✓" : " find more";
    });
    toast(keep ? `ranking by objects like ${id}: re-ranking…` : `${id} is no longer an example`);
    noteState(result);
  } catch (error) {
    toast(error.message, true);
  }
}

// Which objects open the queue (the next to label); the server re-ranks and the poll reloads.
async function chooseQuery(name) {
  try {
    const result = await api("/api/query", { query: name });
    toast(`next to label: ${name}; re-ranking…`);
    document.body.dataset.query = result.query;
    noteState(result);
  } catch (error) {
    toast(error.message, true);
    $("query").value = document.body.dataset.query || state.info.query;
  }
}

async function explainRank(id) {
  try {
    const why = await api(`/api/explain/${id}`);
    const list = el("ul", {});
    for (const c of why.contributions) {
      list.append(el("li", { class: c.value >= 0 ? "up" : "down",
        text: `${c.name}: ${c.value >= 0 ? "+" : ""}${c.value.toFixed(2)}` }));
    }
    const near = why.neighbours.map((n) => `${n.object_id} (${n.label}, d ${n.distance.toFixed(2)})`);
    document.querySelectorAll(`.card[data-id="${id}"] .explain`).forEach((box) => {
      box.replaceChildren(el("div", { class: "why-summary", text: why.summary }), list,
        near.length ? el("div", { class: "why-near", text: "nearest labelled: " + near.join(", ") })
          : null);
      box.hidden = false;
    });
  } catch (error) {
    toast(error.message, true);
  }
}

function closeGallery() {
  $("gallery").hidden = true;
  delete document.body.dataset.gallery;
}


// -- clusters ---------------------------------------------------------------------------------

function clusterColour(c) {
  return c < 0 ? "#566078" : `hsl(${(c * 137.508) % 360}, 70%, 62%)`;
}

function showView(name) {
  state.view = name;
  document.body.dataset.view = name;
  $("queue").hidden = name !== "queue";
  $("pager").hidden = name !== "queue";
  $("clusters-view").hidden = name !== "clusters";
  $("tab-queue").classList.toggle("active", name === "queue");
  $("tab-clusters").classList.toggle("active", name === "clusters");
  if (name === "clusters") loadClusters();
  else if (state.queueStale) {
    state.queueStale = false;
    loadPage(state.page, state.focus);
  }
}

// After labels of many objects changed (a bulk action or its undo): fresh counts and map, and the
// queue reloaded when it is shown next (or now, when it is shown).
function afterBulkChange() {
  if (state.view === "clusters") {
    state.queueStale = true;
    loadClusters();
  } else {
    loadPage(state.page, state.focus);
  }
}

function labelCounts(counts) {
  const box = el("span", { class: "counts" });
  const names = Object.keys(counts);
  if (!names.length) box.append(el("span", { class: "muted", text: "no labels yet" }));
  for (const name of names) {
    box.append(el("span", { class: "badge " + name, "data-label": name, text: `${name} ${counts[name]}` }));
  }
  return box;
}

function bulkControls(onLabel, size) {
  const tag = el("input", { type: "text", class: "bulk-tag", placeholder: "tag, e.g. satellite trail" });
  const bar = el("div", { class: "bulk" }, tag);
  for (const label of state.info.labels) {
    bar.append(el("button", {
      class: `bulk-lab ${label}`, "data-label": label, title: `label all ${size} '${label}'`,
      onclick: () => onLabel(label, tag.value.trim()),
    }, label));
  }
  return bar;
}

function clusterCard(c) {
  const node = el("article", { class: "cluster", "data-cluster": c.cluster, "data-size": c.size });
  node.append(el("div", { class: "cluster-head" },
    el("span", { class: "swatch", style: `background:${clusterColour(c.cluster)}` }),
    el("h3", { text: `cluster ${c.cluster}` }),
    el("span", { class: "size", text: `${c.size} objects` }),
    labelCounts(c.labels)));
  const thumbs = el("div", { class: "thumbs", title: "the most typical members: nearest the cluster's centre in the map" });
  for (const id of c.typical) {
    thumbs.append(state.info.has_images
      ? el("img", { src: `/api/images/${id}.png`, alt: id, title: id, "data-id": id })
      : el("span", { class: "oid", text: id }));
  }
  node.append(thumbs);
  node.append(bulkControls((label, tag) => bulkLabel({ cluster: c.cluster }, label, tag,
    `cluster ${c.cluster}`), c.size));
  return node;
}

async function bulkLabel(target, label, tag, what) {
  try {
    const result = await api("/api/labels/bulk", { ...target, label, tags: tag ? [tag] : [] });
    toast(`labelled ${result.count} objects of ${what} '${label}' (tags: ${result.tags.join(", ")});` +
      " u undoes it");
    noteState(result);
    if (target.object_ids) {
      clearSelection();
      $("selection-tag").value = "";
    }
    afterBulkChange();
  } catch (error) {
    toast(error.message, true);
  }
}

async function loadClusters() {
  try {
    const [listed, points] = await Promise.all([api("/api/clusters"), api("/api/map")]);
    renderClusters(listed, points);
  } catch (error) {
    toast(error.message, true);
  }
}

function renderClusters(listed, points) {
  const hint = $("clusters-hint");
  hint.replaceChildren();
  hint.hidden = listed.available;
  $("map-panel").hidden = !listed.available;
  if (!listed.available) hint.append(withCode(listed.hint));
  $("clusters-head").textContent = listed.available
    ? `${listed.clusters.length} clusters · ${listed.embedded} objects in the map · ` +
      `${listed.noise} in no cluster · from ${listed.source}` : "";
  $("cluster-list").replaceChildren(...listed.clusters.map(clusterCard));
  state.map = points.available ? points : null;
  const keep = new Set(state.selection);
  state.selection = state.map ? state.map.ids.filter((id) => keep.has(id)) : [];
  drawMap();
  noteSelection();
  document.body.dataset.clusterLoads = String(++state.clusterLoads);
}

function mapFrame() {
  const canvas = $("map");
  const { x, y } = state.map;
  const pad = 12;
  let [x0, x1, y0, y1] = [Infinity, -Infinity, Infinity, -Infinity];
  for (let k = 0; k < x.length; k++) {
    x0 = Math.min(x0, x[k]); x1 = Math.max(x1, x[k]);
    y0 = Math.min(y0, y[k]); y1 = Math.max(y1, y[k]);
  }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const sx = (canvas.width - 2 * pad) / (x1 - x0);
  const sy = (canvas.height - 2 * pad) / (y1 - y0);
  return {
    px: (k) => pad + (x[k] - x0) * sx,
    py: (k) => canvas.height - pad - (y[k] - y0) * sy,
  };
}

function drawMap() {
  const canvas = $("map");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.map) return;
  const { px, py } = mapFrame();
  const chosen = new Set(state.selection);
  const { ids, cluster, label } = state.map;
  for (let k = 0; k < ids.length; k++) {
    context.beginPath();
    context.arc(px(k), py(k), chosen.has(ids[k]) ? 4 : 3, 0, 2 * Math.PI);
    context.fillStyle = chosen.has(ids[k]) ? "#ffffff" : clusterColour(cluster[k]);
    context.fill();
    if (label[k]) {
      context.strokeStyle = { interesting: "#3ecf8e", artifact: "#f29f4b", normal: "#8d97ab" }[label[k]];
      context.lineWidth = 1.5;
      context.stroke();
    }
  }
}

function noteSelection() {
  const count = state.selection.length;
  $("selection-count").textContent = count ? `${count} selected` : "nothing selected";
  document.querySelectorAll("#selection-bar button").forEach((b) => { b.disabled = !count; });
  document.body.dataset.selected = String(count);
}

function clearSelection() {
  state.selection = [];
  drawMap();
  noteSelection();
}

// A rectangle dragged on the map selects the objects inside it (in canvas pixels).
function selectRectangle(ax, ay, bx, by) {
  if (!state.map) return;
  const { px, py } = mapFrame();
  const [left, right, top, bottom] = [Math.min(ax, bx), Math.max(ax, bx), Math.min(ay, by), Math.max(ay, by)];
  state.selection = state.map.ids.filter((id, k) =>
    px(k) >= left && px(k) <= right && py(k) >= top && py(k) <= bottom);
  drawMap();
  noteSelection();
}

function setUpMap() {
  const canvas = $("map");
  const rect = $("map-rect");
  let start = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width,
      (event.clientY - box.top) * canvas.height / box.height, event.clientX - box.left,
      event.clientY - box.top];
  };
  canvas.addEventListener("mousedown", (event) => {
    start = at(event);
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    if (!start) return;
    const now = at(event);
    Object.assign(rect.style, {
      left: `${Math.min(start[2], now[2])}px`, top: `${Math.min(start[3], now[3])}px`,
      width: `${Math.abs(now[2] - start[2])}px`, height: `${Math.abs(now[3] - start[3])}px`,
    });
    rect.hidden = false;
  });
  window.addEventListener("mouseup", (event) => {
    if (!start) return;
    const now = at(event);
    selectRectangle(start[0], start[1], now[0], now[1]);
    start = null;
    rect.hidden = true;
  });
  document.querySelectorAll("#selection-bar .bulk-lab").forEach((button) => {
    button.addEventListener("click", () => bulkLabel({ object_ids: state.selection },
      button.dataset.label, $("selection-tag").value.trim(), "the selection"));
  });
  $("selection-clear").addEventListener("click", clearSelection);
}

// -- ranking state ----------------------------------------------------------------------------

function noteState(s, reloadOnNewVersion = true) {
  const info = state.info;
  const pill = $("version");
  if (state.version !== null && s.version !== state.version && reloadOnNewVersion) {
    state.version = s.version;
    toast(`re-ranked with ${s.labelled} labels: ranking v${s.version}`);
    loadPage(0, 0);
  }
  state.version = s.version;
  if (s.examples) state.examples = s.examples;
  pill.textContent = `ranking v${s.version}`;
  pill.classList.toggle("busy", s.reranking);
  document.body.dataset.version = String(s.version);
  let progress = `${s.labelled} labelled`;
  if (s.ranker === "ready") {
    progress += s.reranking ? " · re-ranking…" : ` · re-rank in ${Math.max(0, info.rerank_every - s.pending)}`;
  } else if (s.ranker === "building") {
    progress += " · building the feature index…";
  } else {
    progress += " · re-ranking off";
  }
  const node = $("progress");
  node.textContent = progress;
  node.title = s.ranker_message || "";
}

async function poll() {
  try {
    noteState(await api("/api/state"));
  } catch (error) {
    $("progress").textContent = "server not reachable";
  }
}

// -- keys -------------------------------------------------------------------------------------

document.addEventListener("keydown", async (event) => {
  const target = event.target;
  if (target.matches("input, textarea, select")) {
    if (event.key === "Escape") target.blur();
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (state.view === "clusters") {
    if (event.key === "u") undo();
    else if (event.key === "c") showView("queue");
    else if (event.key === "Escape") clearSelection();
    return;
  }
  if (!$("gallery").hidden) {
    if (event.key === "Escape") closeGallery();
    return;
  }
  const obj = focusedObject();
  const node = $("queue").querySelectorAll(".card")[state.focus];
  if (event.key in KEYS_FOR_LABELS) {
    if (!obj) return;
    event.preventDefault();
    const index = state.focus;
    if (await setLabel(obj.id, state.info.labels[KEYS_FOR_LABELS[event.key]])) {
      if (index === state.focus && index < state.objects.length - 1) setFocus(index + 1);
    }
    return;
  }
  switch (event.key) {
    case "j": case "n": case "ArrowDown": move(1); break;
    case "k": case "ArrowUp": move(-1); break;
    case "u": undo(); break;
    case "m": if (obj) moreLikeThis(obj.id); break;
    case "f": if (obj) seedRanking(obj.id); break;
    case "w": if (obj) explainRank(obj.id); break;
    case "t": if (node) { event.preventDefault(); node.querySelector(".tag-input").focus(); } break;
    case "e": if (node) { event.preventDefault(); node.querySelector("textarea").focus(); } break;
    case "]": if (state.page < state.pages - 1) loadPage(state.page + 1); break;
    case "[": if (state.page > 0) loadPage(state.page - 1); break;
    case "s": $("show-kind").click(); break;
    case "c": showView("clusters"); break;
    default: return;
  }
});

// -- start ------------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (error) {
    $("source").textContent = `cannot load the results: ${error.message}`;
    return;
  }
  const info = state.info;
  $("source").textContent = `${info.results} · ${info.objects} objects · sorted by ${info.sort_key}` +
    ` · labels in ${info.label_file}`;
  const notes = [...info.warnings];
  if (info.images_hint) notes.unshift(info.images_hint);
  if (notes.length) {
    const banner = $("banner");
    notes.forEach((note, k) => {
      if (k) banner.append(el("br"));
      banner.append(withCode(note));
    });
    banner.hidden = false;
  }
  const kind = $("show-kind");
  kind.checked = state.showKind;
  kind.disabled = !info.has_kinds;
  kind.parentElement.title = info.has_kinds ? "show the simulated kind (s)" : "no simulated kinds in these results";
  document.body.classList.toggle("show-kind", state.showKind && info.has_kinds);
  kind.addEventListener("change", () => {
    state.showKind = kind.checked;
    localStorage.setItem("tfanomaly.showKind", kind.checked ? "1" : "0");
    document.body.classList.toggle("show-kind", kind.checked);
  });
  const unlabelled = $("unlabelled");
  unlabelled.checked = state.unlabelled;
  unlabelled.addEventListener("change", () => {
    state.unlabelled = unlabelled.checked;
    localStorage.setItem("tfanomaly.unlabelled", unlabelled.checked ? "1" : "0");
    loadPage(0);
  });
  const query = $("query");
  for (const name of info.queries) query.append(el("option", { value: name, text: name }));
  query.value = info.query;
  query.addEventListener("change", () => chooseQuery(query.value));
  $("prev-page").addEventListener("click", () => loadPage(state.page - 1));
  $("next-page").addEventListener("click", () => loadPage(state.page + 1));
  $("gallery-close").addEventListener("click", closeGallery);
  $("tab-queue").addEventListener("click", () => showView("queue"));
  $("tab-clusters").addEventListener("click", () => showView("clusters"));
  setUpMap();
  document.body.dataset.view = "queue";
  document.body.dataset.query = info.query;
  $("gallery").addEventListener("click", (event) => {
    if (event.target === $("gallery")) closeGallery();
  });
  noteState(info, false);
  const fromHash = /page=(\d+)/.exec(location.hash);
  await loadPage(fromHash ? Math.max(0, Number(fromHash[1]) - 1) : 0);
  setInterval(poll, 1500);
}

start();
