// histobridge explorer: plain JS over the server's JSON API (no build step).
"use strict";
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const state = { project: null, image: null, annotations: [], tiles: null, blend: null, info: null };

async function api(path, body) {
  const opts = body === undefined ? { headers } :
    { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const doc = await r.json();
  if (!r.ok) throw new Error(doc.detail || doc.title || r.statusText);
  return doc;
}

async function work(path, body, label) {
  status(label + " …");
  let doc = await api(path + "?wait=0.2", body);
  while (doc.state && !["done", "failed", "cancelled"].includes(doc.state)) {
    const where = doc.state === "queued" ? `queued #${doc.queue_position}` : `${doc.done}/${doc.total ?? "?"}`;
    status(`${label}: ${where}`);
    await new Promise((ok) => setTimeout(ok, 300));
    doc = await api(`/api/jobs/${doc.id}`);
    if (doc.state === "done") doc = await api(`/api/jobs/${doc.id}/result`);
    else if (doc.state === "failed") throw new Error(doc.error.detail);
  }
  status(label + ": done");
  return doc;
}

function status(text) { $("status").textContent = text; }
function fail(err) { status("error: " + err.message); }
function option(select, value, text) {
  const o = document.createElement("option"); o.value = value; o.textContent = text; select.appendChild(o);
}
function fill(select, items) { select.innerHTML = ""; items.forEach(([v, t]) => option(select, v, t)); }
function img(src, title) { const i = document.createElement("img"); i.src = src; if (title) i.title = title; return i; }
function fmt(pred) {
  return pred ? Object.entries(pred).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(" · ") : "";
}

async function loadProjects() {
  const [projects, models] = await Promise.all([api("/api/projects"), api("/api/models")]);
  fill($("project"), projects.map((p) => [p.id, `${p.name} (${p.images})`]));
  fill($("classifier"), models.filter((m) => m.kind === "classifier").map((m) => [m.id, m.id]));
  const gens = models.filter((m) => m.kind === "generator");
  fill($("generator"), gens.map((m) => [m.id, m.id]));
  state.generators = Object.fromEntries(gens.map((m) => [m.id, m]));
  pickGenerator();
  await loadImages();
}

async function loadImages() {
  state.project = $("project").value;
  if (!state.project) return;
  const images = await api(`/api/projects/${state.project}/images`);
  fill($("image"), images.map((i) => [i.id, i.name]));
  state.images = Object.fromEntries(images.map((i) => [String(i.id), i]));
  await loadImage();
}

async function loadImage() {
  state.image = $("image").value;
  const info = state.images[state.image];
  state.info = info;
  $("image-info").textContent = `${info.width} × ${info.height} px · ${info.mpp ?? "?"} µm/px (${info.mpp_source})`;
  const doc = await api(`/api/projects/${state.project}/images/${state.image}/annotations`);
  state.annotations = doc.features;
  const items = [["all", `all (${doc.features.length})`]];
  doc.features.forEach((f, i) => {
    const cls = (f.properties.classification || {}).name || "Unclassified";
    items.push([String(i), `${i + 1}: ${f.properties.name || cls}`]);
  });
  fill($("annotation"), items);
  const thumb = await fetch(`/api/projects/${state.project}/images/${state.image}/thumbnail.png?max_px=640`, { headers });
  state.downsample = parseFloat(thumb.headers.get("X-Downsample"));
  state.thumb = await createImageBitmap(await thumb.blob());
  state.tiles = null;
  draw();
}

function roi() {
  const v = $("annotation").value;
  return v === "all" ? state.annotations : [state.annotations[Number(v)]];
}

function draw() {
  const c = $("heatmap"), g = c.getContext("2d");
  if (!state.thumb) return;
  c.width = state.thumb.width; c.height = state.thumb.height;
  g.drawImage(state.thumb, 0, 0);
  const d = state.downsample;
  for (const f of state.annotations) outline(g, f.geometry, d, "rgba(0,0,0,.6)");
  if (state.tiles) {
    const cls = $("heat-class").value, key = `${state.tiles.histobridge.model}: ${cls} probability`;
    for (const t of state.tiles.features) {
      const [[x0, y0], , [x1, y1]] = t.geometry.coordinates[0];
      const p = t.properties.measurements[key];
      g.fillStyle = `rgba(${Math.round(255 * p)},40,${Math.round(255 * (1 - p))},0.45)`;
      g.fillRect(x0 / d, y0 / d, (x1 - x0) / d, (y1 - y0) / d);
    }
  }
}

function outline(g, geom, d, colour) {
  const polys = geom.type === "Polygon" ? [geom.coordinates] : geom.type === "MultiPolygon" ? geom.coordinates : [];
  g.strokeStyle = colour; g.lineWidth = 1.5;
  for (const poly of polys) for (const ring of poly) {
    g.beginPath(); ring.forEach(([x, y], i) => (i ? g.lineTo(x / d, y / d) : g.moveTo(x / d, y / d)));
    g.closePath(); g.stroke();
  }
}

async function classify() {
  const body = { project: state.project, image: state.image, roi: roi(), model: $("classifier").value,
    stride_div: Number($("stride").value) };
  state.tiles = await work("/api/classify", body, "classify");
  const classes = state.tiles.histobridge.classes;
  if ($("heat-class").options.length !== classes.length) fill($("heat-class"), classes.map((c) => [c, c]));
  status(`classify: ${state.tiles.histobridge.tiles} tiles in ${state.tiles.histobridge.seconds}s`);
  draw();
}

async function synthesize() {
  const body = { project: state.project, image: state.image, roi: roi().slice(0, 1), generator: $("generator").value,
    classifier: $("classifier").value || null, n: 4, seed: Number($("seed").value) };
  const doc = await work("/api/synthesize", body, "synthesise");
  const grid = $("synth-grid"); grid.innerHTML = "";
  for (const region of doc.regions) {
    region.tiles.forEach((t, i) => {
      const real = region.real[i];
      for (const [src, caption] of [[real && real.image, "real " + (region.class || "")],
        [t.image, `${t.class} · seed ${t.seed}`], [t.swapped, `→ ${t.swap_class}`]]) {
        const fig = document.createElement("figure");
        if (src) fig.appendChild(img(doc.image_base + src));
        const cap = document.createElement("figcaption");
        const pred = caption.startsWith("→") ? t.swap_prediction : caption.startsWith("real") ? null : t.prediction;
        cap.textContent = caption + (pred ? " " + fmt(pred) : "");
        fig.appendChild(cap); grid.appendChild(fig);
      }
    });
    if (region.problem) grid.insertAdjacentText("beforeend", region.problem);
  }
}

function pickGenerator() {
  const g = state.generators[$("generator").value];
  if (!g) return;
  fill($("class-from"), g.classes.map((c) => [c, c]));
  fill($("class-to"), g.classes.map((c) => [c, c]));
  if (g.classes.length > 1) $("class-to").value = g.classes[1];
}

async function blend() {
  const body = { generator: $("generator").value, seed: Number($("seed").value), class_from: $("class-from").value,
    class_to: $("class-to").value, steps: 9, classifier: $("classifier").value || null };
  state.blend = await work("/api/blend/class", body, "class blend");
  $("blend-slider").max = state.blend.steps.length - 1;
  showBlend();
  await layers();
}

function showBlend() {
  if (!state.blend) return;
  const s = state.blend.steps[Number($("blend-slider").value)];
  $("blend-image").src = state.blend.image_base + s.image;
  $("blend-t").textContent = `t = ${s.t.toFixed(3)} (${state.blend.class_from} → ${state.blend.class_to})`;
  $("blend-pred").textContent = fmt(s.prediction);
}

async function layers() {
  const seed = Number($("seed").value);
  const doc = await work("/api/blend/layers", { generator: $("generator").value, seeds: [seed],
    class_a: $("class-from").value, class_b: $("class-to").value }, "layer blend");
  const grid = $("layer-grid"); grid.innerHTML = "";
  grid.style.gridTemplateColumns = `repeat(${Math.min(doc.cells.length, 11)}, 1fr)`;
  for (const c of doc.cells) grid.appendChild(img(doc.image_base + c.image, `first ${c.split} layers from ${c.class_a}`));
}

async function search() {
  const doc = await work("/api/seeds", { generator: $("generator").value, classifier: $("classifier").value,
    count: 32, class_start: $("class-from").value, class_end: $("class-to").value, thumbnails: 8 }, "seed search");
  const body = $("seeds-table").tBodies[0]; body.innerHTML = "";
  for (const r of doc.rows) {
    const tr = document.createElement("tr"); tr.dataset.seed = r.seed;
    const cells = [r.seed, r.pred_start.toFixed(3), r.pred_end.toFixed(3), r.delta.toFixed(3)];
    for (const v of cells) { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); }
    const td = document.createElement("td"); td.className = r.concordance; td.textContent = r.concordance + " ";
    r.images.forEach((name) => td.appendChild(img(doc.image_base + name)));
    tr.appendChild(td);
    tr.addEventListener("click", () => {
      body.querySelectorAll("tr").forEach((x) => x.classList.remove("chosen")); tr.classList.add("chosen");
      $("seed").value = r.seed; blend().catch(fail);
    });
    body.appendChild(tr);
  }
}

$("project").addEventListener("change", () => loadImages().catch(fail));
$("image").addEventListener("change", () => loadImage().catch(fail));
$("annotation").addEventListener("change", draw);
$("heat-class").addEventListener("change", draw);
$("classify").addEventListener("click", () => classify().catch(fail));
$("synthesize").addEventListener("click", () => synthesize().catch(fail));
$("generator").addEventListener("change", () => { pickGenerator(); blend().catch(fail); });
$("seed").addEventListener("change", () => blend().catch(fail));
$("class-from").addEventListener("change", () => blend().catch(fail));
$("class-to").addEventListener("change", () => blend().catch(fail));
$("blend-slider").addEventListener("input", showBlend);
$("search").addEventListener("click", () => search().catch(fail));
loadProjects().then(() => blend()).then(() => status("ready")).catch(fail);
