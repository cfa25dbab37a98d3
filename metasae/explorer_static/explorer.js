/* metasae explorer: the page's code. The index (runs, depths, summaries) is inlined in index.html; each
   depth's latents and each probe dataset's images are a script under data/ that calls explorerData(key, value),
   added to the page when first needed (Chromium refuses to fetch file:// URLs from a script; script tags load).
   State lives in the URL hash, #run=<run>&depth=<folder>&latent=<id>: linkable, and the back button works. */
"use strict";
const INDEX = JSON.parse(document.getElementById("explorer-index").textContent);
const RUN_FIELDS = ["classifier", "seed", "probe", "layer", "sae"];
const PAGE_SIZE = 100, SHOWN_LINKS = 16, SHOWN_SIBLINGS = 12;
const $ = (id) => document.getElementById(id);

const LEGEND = {
  "density": "share of the probe images on which the latent is active (code > 0)",
  "n active": "number of probe images on which the latent is active",
  "purity": "share of its top images that carry their most common label",
  "entropy (bits)": "entropy of the labels of its top images (0: one label)",
  "mean act": "its mean activation over the images on which it is active",
  "max act": "its largest activation over the probe images",
  "parent cos": "its largest similarity to a latent of the parent depth: cosine of decoder rows (decoder mode) "
    + "or correlation of codes (activations mode); none at depth 1",
  "w": "lineage weight C_d[parent, meta]: the meta-latent's activation on the parent latent's unit decoder row "
    + "(decoder mode) or on the parent latent alone at its mean active value (activations mode)",
  "quantile bands": "images sampled evenly from each quarter (by rank) of the latent's non-zero activations: "
    + "0-25% are its weakest firings, 75-100% its strongest",
  "density histogram": "log10 density of every alive latent of this depth; the red line marks this latent",
  "logit effect": "change in the classifier's logits when the latent's unit direction in the cached layer, "
    + "scaled to the size of a typical depth-1 latent's term (s), is added to the layer's mean activation and "
    + "pushed through the layers after it. Depth 1 and decoder mode: the decoder row; activations mode: the "
    + "latent decoded down the stack to the layer",
  "seed match": "the latent of another SAE seed of the same configuration (where the study trained one SAE "
    + "seed: of another classifier seed) matched one-to-one (Hungarian) by "
    + "cosine of decoder rows (one shared layer space) or correlation of codes on the same images",
  "dense": "a depth whose mean share of latents active per image exceeds 50% (or a latent active on more "
    + "than half of the images): not sparse, so its latents are hard to read as features",
  "FVU": "fraction of variance unexplained of the layer rebuilt from this depth (0 is perfect)",
  "spliced acc": "classifier accuracy with the layer replaced by this depth's reconstruction",
  "loss rec": "loss recovered: (CE zero-ablated - CE spliced) / (CE zero-ablated - CE clean)",
  "active/image": "mean number of the depth's latents active per probe image (L0)",
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function fmt(x, digits = 3) {
  if (x == null) return "\u2013";
  return Number.isInteger(x) ? String(x) : Number(x.toPrecision(digits)).toString();
}

function pct(x) { return x == null ? "\u2013" : fmt(100 * x) + "%"; }

function explained(text, key) { return el("span", {title: LEGEND[key || text], text}); }

/* ---- data files, loaded on demand ---- */

const STORE = {}, LOADING = {};
window.explorerData = (key, value) => { STORE[key] = value; };

function load(key) {
  if (STORE[key]) return Promise.resolve(STORE[key]);
  if (!LOADING[key]) {
    LOADING[key] = new Promise((resolve, reject) => {
      const script = el("script", {src: INDEX.data_dir + "/" + key + ".js"});
      script.onload = () => (STORE[key] ? resolve(STORE[key]) : reject(new Error(key + ": no data")));
      script.onerror = () => { delete LOADING[key]; reject(new Error("could not load " + script.src)); };
      document.head.append(script);
    });
  }
  return LOADING[key];
}

const VIEWS = {};

async function loadView(rec) {
  if (VIEWS[rec.file]) return VIEWS[rec.file];
  const data = await load(rec.file), images = await load(data.images);
  const latents = data.rows.map((row) => Object.fromEntries(data.fields.map((f, i) => [f, row[i]])));
  const view = {rec, data, images, latents, byId: new Map(latents.map((l) => [l.latent, l])),
    parentsOf: new Map(), metasOf: new Map()};
  const strength = (a, b) => Math.abs(b[1]) - Math.abs(a[1]) || a[0] - b[0];
  for (const [p, m, w] of (data.lineage || {edges: []}).edges) {
    if (!view.parentsOf.has(m)) view.parentsOf.set(m, []);
    if (!view.metasOf.has(p)) view.metasOf.set(p, []);
    view.parentsOf.get(m).push([p, w]);
    view.metasOf.get(p).push([m, w]);
  }
  for (const list of [...view.parentsOf.values(), ...view.metasOf.values()]) list.sort(strength);
  return (VIEWS[rec.file] = view);
}

/* ---- state: #run=<run>&depth=<folder>&latent=<id> ---- */

function folderOf(run, folder) { return run.depths.find((r) => r.folder === folder); }

function hashOf(s) {
  const parts = [["run", s.run.id], ["depth", s.rec.folder]];
  if (s.latent != null) parts.push(["latent", s.latent]);
  return "#" + parts.map(([k, v]) => k + "=" + encodeURIComponent(v).replace(/%2F/g, "/")).join("&");
}

function link(run, folder, latent) { return hashOf({run, rec: {folder}, latent}); }

function readState() {
  const q = new URLSearchParams(location.hash.slice(1));
  const run = INDEX.runs.find((r) => r.id === q.get("run")) || INDEX.runs[0];
  const rec = folderOf(run, q.get("depth")) || run.depths[0];
  const asked = q.get("latent") === null ? null : Number(q.get("latent"));
  return {run, rec, latent: Number.isInteger(asked) ? asked : null};
}

function go(run, folder, latent) { location.hash = link(run, folder, latent); }

/* ---- header: selectors, the depth summary, the legend ---- */

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, text]) => el("option", {value: v, text})));
  select.value = String(value);
}

function renderSelectors(s) {
  for (const field of RUN_FIELDS) {
    const values = [...new Set(INDEX.runs.map((r) => String(r[field])))].sort();
    fillSelect($("select-" + field), values.map((v) => [v, v]), s.run[field]);
  }
  fillSelect($("select-depth"), s.run.depths.map((r) => [r.folder, r.folder
    + (r.status === "analysed" ? "" : " (" + r.status + ")") + (r.dense ? " \u00b7 dense" : "")]), s.rec.folder);
}

function bestRun(field, value, current) {
  const score = (r) => RUN_FIELDS.filter((f) => String(r[f]) === String(current[f])).length;
  const candidates = INDEX.runs.filter((r) => String(r[field]) === value);
  return candidates.reduce((best, r) => (score(r) > score(best) ? r : best), candidates[0]);
}

function renderSummary(s) {
  const rec = s.rec, sm = rec.summary, parts = [el("b", {text: rec.folder})];
  if (rec.status !== "analysed") {
    parts.push(" \u00b7 " + rec.status + (sm.stop_reason ? ": " + sm.stop_reason : ""));
  } else {
    parts.push(" \u00b7 " + sm.alive_latents + " alive of " + sm.n_latents + " latents, all listed \u00b7 "
      + sm.n_images + " probe images \u00b7 mean purity " + fmt(sm.purity_mean) + " \u00b7 ",
      explained("active/image"), " " + fmt(sm.mean_active_per_image)
      + " (" + pct(rec.active_fraction) + " of latents)");
    if (rec.dense) parts.push(el("span", {class: "badge dense", id: "dense-badge", title: LEGEND.dense,
      text: "dense depth: " + pct(rec.active_fraction) + " of latents active per image"}));
    parts.push(" \u00b7 ", explained("FVU"), " " + fmt(sm.stack_fvu) + " \u00b7 ", explained("spliced acc"),
      " " + fmt(sm.spliced_accuracy) + " \u00b7 ", explained("loss rec"), " " + fmt(sm.loss_recovered));
  }
  $("depth-summary").replaceChildren(...parts);
}

$("legend-list").replaceChildren(...Object.entries(LEGEND).flatMap(([k, v]) =>
  [el("dt", {text: k}), el("dd", {text: v})]));

/* ---- the latent list, paged ---- */

const SORTS = {
  density: (a, b) => b.density - a.density || a.latent - b.latent,
  purity: (a, b) => (b.purity ?? -1) - (a.purity ?? -1) || b.density - a.density,
  n_active: (a, b) => b.n_active - a.n_active || a.latent - b.latent,
  latent: (a, b) => a.latent - b.latent,
};
const list = {key: null, shown: [], page: 0};

function idQuery(text) { const m = /^#?(\d+)$/.exec(text); return m ? Number(m[1]) : null; }

function renderList(s, view) {
  const filter = $("latent-filter").value.trim().toLowerCase(), id = idQuery(filter);
  const sort = $("latent-sort").value, showDead = $("show-dead").checked;
  const key = [s.run.id, s.rec.folder, filter, sort, showDead].join("|");
  if (key !== list.key) {
    list.key = key;
    list.shown = view.latents
      .filter((l) => showDead || !l.dead || l.latent === id)
      .filter((l) => !filter || (id !== null ? l.latent === id : l.label.toLowerCase().includes(filter)))
      .sort(SORTS[sort]);
    list.page = -1;
  }
  const at = list.shown.findIndex((l) => l.latent === s.latent);
  const pages = Math.max(1, Math.ceil(list.shown.length / PAGE_SIZE));
  if (list.page < 0 || list.page >= pages) list.page = at >= 0 ? Math.floor(at / PAGE_SIZE) : 0;
  const first = list.page * PAGE_SIZE, rows = list.shown.slice(first, first + PAGE_SIZE);
  $("latent-list").replaceChildren(...rows.map((l) => el("li", {},
    el("a", {class: "latent-item" + (l.dead ? " dead" : "") + (l.latent === s.latent ? " selected" : ""),
             href: link(s.run, s.rec.folder, l.latent), "data-latent": l.latent},
      el("span", {class: "lid", text: "#" + l.latent}), el("span", {class: "lbl", text: l.label}),
      el("span", {class: "num", text: sort === "purity" ? fmt(l.purity) : pct(l.density)})))));
  const alive = view.latents.filter((l) => !l.dead).length;
  $("list-count").textContent = list.shown.length + " of " + view.latents.length + " latents match ("
    + alive + " alive)";
  $("page-info").textContent = list.shown.length
    ? (first + 1) + "\u2013" + (first + rows.length) + " of " + list.shown.length : "none";
  $("page-prev").disabled = list.page === 0;
  $("page-next").disabled = list.page >= pages - 1;
  const selected = document.querySelector(".latent-item.selected"), ul = $("latent-list");
  if (selected) {  /* scroll the list only: the page keeps its header (and the report link) in view */
    const top = selected.getBoundingClientRect().top - ul.getBoundingClientRect().top;
    if (top < 0 || top > ul.clientHeight - selected.offsetHeight) ul.scrollTop += top - ul.clientHeight / 2;
  }
}

function turnPage(step) {
  list.page += step;
  render(true);
}

/* ---- the latent card ---- */

function imageFigure(view, [img, value, label], labelNames) {
  const name = labelNames[label] ?? String(label);
  return el("figure", {class: "top-image", "data-image": img},
    el("img", {src: view.images[img], alt: name}),
    el("figcaption", {}, el("span", {class: "value", text: fmt(value)}), " \u00b7 " + name));
}

function topImages(view, l) {
  if (!l.top.length) return el("div", {id: "card-top", class: "empty", text: "never active on the probe images"});
  return el("div", {id: "card-top", class: "images"}, ...l.top.map((t) => imageFigure(view, t, view.rec.label_names)));
}

function bandsSection(view, l) {
  const title = el("h3", {}, explained("samples by quantile band", "quantile bands"),
    " of its " + l.n_active + " non-zero activations");
  if (!l.bands.length) return el("div", {class: "wide", id: "card-bands"}, title, el("div", {class: "empty", text: "none"}));
  const n = l.bands.length, names = ["0\u201325%", "25\u201350%", "50\u201375%", "75\u2013100%"];
  return el("div", {class: "wide", id: "card-bands"}, title, ...[...l.bands].reverse().map(([lo, hi, samples], i) =>
    el("div", {class: "band", "data-band": n - 1 - i},
      el("div", {class: "band-title", text: (n === 4 ? names[n - 1 - i] : "band " + (n - i)) + " \u00b7 act "
        + fmt(lo) + "\u2013" + fmt(hi)}),
      el("div", {class: "images"}, ...samples.map((t) => imageFigure(view, t, view.rec.label_names))))));
}

function statsList(l) {
  const rows = [["density", pct(l.density)], ["n active", fmt(l.n_active)], ["purity", fmt(l.purity)],
    ["entropy (bits)", fmt(l.entropy)], ["mean act", fmt(l.mean_act)], ["max act", fmt(l.max_act)],
    ["parent cos", fmt(l.parent_cos)]];
  return el("dl", {id: "card-stats"},
    ...rows.flatMap(([k, v]) => [el("dt", {text: k, title: LEGEND[k]}), el("dd", {text: v})]));
}

function hbars(id, entries, format) {
  const top = Math.max(...entries.map(([, v]) => Math.abs(v)), 1e-12);
  return el("div", {id, class: "hbars"}, ...entries.flatMap(([name, v]) => [
    el("span", {text: name}),
    el("div", {}, el("div", {class: "bar" + (v < 0 ? " neg" : ""), style: "width:" + (100 * Math.abs(v) / top) + "%"})),
    el("span", {class: "count", text: format(v)})]));
}

function labelHistogram(l) {
  const entries = Object.entries(l.hist).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return el("div", {id: "card-hist", class: "empty", text: "no active images"});
  return hbars("card-hist", entries, String);
}

function densitySection(view, l) {
  const h = view.data.density_hist, W = 300, H = 80, n = h.counts.length;
  const box = el("div", {id: "card-density"}, el("h3", {}, explained("log10 density over the depth", "density histogram")));
  if (!n) return box.appendChild(el("div", {class: "empty", text: "no alive latents"})) && box;
  const top = Math.max(...h.counts, 1), x = (v) => 10 + (W - 20) * (v - h.lo) / (h.hi - h.lo);
  const plot = svg("svg", {viewBox: "0 0 " + W + " " + (H + 12), preserveAspectRatio: "none"});
  h.counts.forEach((c, i) => plot.append(svg("rect", {x: x(h.lo + i * (h.hi - h.lo) / n), y: H - H * c / top,
    width: (W - 20) / n - 1, height: H * c / top})));
  for (const v of [h.lo, (h.lo + h.hi) / 2, h.hi]) {
    const t = svg("text", {x: x(v), y: H + 10, "text-anchor": "middle"});
    t.textContent = fmt(v, 2);
    plot.append(t);
  }
  if (l.density > 0) plot.append(svg("line", {class: "mark", x1: x(Math.log10(l.density)), x2: x(Math.log10(l.density)), y1: 0, y2: H}));
  box.append(plot, el("p", {class: "note", text: (l.density > 0 ? "this latent: log10 density "
    + fmt(Math.log10(l.density), 2) + " (" + pct(l.density) + ")" : "this latent is dead: no mark")
    + " \u00b7 " + h.counts.reduce((a, b) => a + b, 0) + " alive latents" + (h.dead ? ", " + h.dead + " dead not shown" : "")}));
  return box;
}

function logitSection(view, l) {
  const info = view.data.logits;
  const box = el("div", {id: "card-logits"}, el("h3", {}, explained("logit effect", "logit effect"),
    " of its direction (s = " + fmt(info.scale) + ")"));
  if (!l.logits) return box.appendChild(el("div", {class: "empty", text: info.note || "not computed"})) && box;
  const entries = l.logits.map((v, c) => [info.classes[c] ?? String(c), v]).sort((a, b) => b[1] - a[1]);
  box.append(hbars("card-logit-bars", entries, (v) => (v > 0 ? "+" : "") + fmt(v)));
  return box;
}

function matchSection(view, l) {
  const info = view.data.matches;
  if (!info) return null;
  const box = el("div", {id: "card-matches"}, el("h3", {}, explained("matched latent in other seeds", "seed match"),
    " (" + info.basis + ")"));
  if (!l.matches.length) return box.appendChild(el("div", {class: "empty", text: l.dead ? "dead: not matched" : "no one-to-one match"})) && box;
  box.append(el("div", {class: "links"}, ...l.matches.map(([k, latent, sim]) => {
    const run = INDEX.runs.find((r) => r.id === info.runs[k]);
    return el("a", {class: "lineage-link", "data-rel": "match", "data-run": run.id, "data-latent": latent,
      href: link(run, view.rec.folder, latent)}, el("span", {class: "lid", text: "seed " + run.seed + " \u00b7 " + run.sae + " #" + latent}),
      el("span", {class: "w", text: (info.basis === "codes" ? "corr " : "cos ") + fmt(sim)}));
  })));
  return box;
}

function lineageLink(s, rel, target, latent, weight) {
  const l = target.byId.get(latent);
  return el("a", {class: "lineage-link" + (l && l.dead ? " dead" : ""), "data-rel": rel,
                  href: link(s.run, target.rec.folder, latent), "data-depth": target.rec.folder,
                  "data-latent": latent, title: target.rec.folder + ", latent " + latent},
    l && l.top.length ? el("img", {src: target.images[l.top[0][0]], alt: ""}) : null,
    el("span", {class: "lid", text: "#" + latent}), el("span", {class: "lbl", text: l ? l.label : ""}),
    weight == null ? null : el("span", {class: "w", title: LEGEND.w, text: "w " + fmt(weight)}));
}

function strongest(shown, total, noun) {
  return shown < total ? " \u00b7 the " + shown + " strongest of " + total + " " + noun
    : " \u00b7 all " + total + " " + noun;
}

function parentsSection(s, view, parent) {
  if (!parent) return null;
  const all = view.parentsOf.get(s.latent) || [], total = view.data.lineage.n_parents[s.latent] || 0;
  const shown = all.slice(0, SHOWN_LINKS), more = all.slice(SHOWN_LINKS);
  const links = (pairs) => el("div", {class: "links"}, ...pairs.map(([p, w]) => lineageLink(s, "parent", parent, p, w)));
  return el("section", {id: "lineage-parents"},
    el("h3", {text: "parent latents at " + parent.rec.folder + strongest(shown.length, total, "parents")}),
    shown.length ? links(shown) : el("div", {class: "empty", text: "none"}),
    more.length ? el("details", {id: "more-parents"}, el("summary", {class: "note", text: more.length
      + " more of the " + total + ": the parents that count this meta-latent among their "
      + view.data.lineage.kept_per_latent + " strongest"}), links(more)) : null);
}

function metasSection(s, view, child) {
  const title = (n, total) => el("h3", {text: "meta-latents at " + child.rec.folder + strongest(n, total, "meta-latents")});
  const all = child.metasOf.get(s.latent) || [], total = child.data.lineage.n_metas[s.latent] || 0;
  const metas = all.slice(0, SHOWN_LINKS);
  if (!metas.length) return el("section", {class: "lineage-metas", "data-child": child.rec.folder}, title(0, 0), el("div", {class: "empty", text: "none"}));
  return el("section", {class: "lineage-metas", "data-child": child.rec.folder}, title(metas.length, total),
    ...metas.map(([m, w]) => {
      const siblings = (child.parentsOf.get(m) || []).filter(([p]) => p !== s.latent);
      const nSiblings = Math.max(0, (child.data.lineage.n_parents[m] || 0) - 1), kept = siblings.slice(0, SHOWN_SIBLINGS);
      return el("div", {class: "meta-group"}, lineageLink(s, "meta", child, m, w),
        kept.length ? el("div", {class: "siblings-title", text: "siblings via #" + m + strongest(kept.length, nSiblings, "")}) : null,
        kept.length ? el("div", {class: "links siblings"}, ...kept.map(([p, sw]) => lineageLink(s, "sibling", view, p, sw))) : null);
    }));
}

function renderCard(s, views) {
  const card = $("latent-card"), [view, parent, ...children] = views, l = view && view.byId.get(s.latent);
  if (!l) {
    const why = s.rec.status === "analysed" ? "no latents at this depth" : "this depth is " + s.rec.status
      + (s.rec.summary.stop_reason ? ": " + s.rec.summary.stop_reason : "");
    card.replaceChildren(el("div", {class: "wide empty", text: why}));
  } else {
    const lineage = [parentsSection(s, view, parent), ...children.map((c) => metasSection(s, view, c))].filter(Boolean);
    card.replaceChildren(
      el("div", {class: "wide"},
        el("h2", {}, "Latent " + l.latent, el("span", {class: "badge", id: "card-depth", text: s.rec.folder}),
          l.dead ? el("span", {class: "badge dead", text: "dead"}) : null,
          l.density > 0.5 ? el("span", {class: "badge dense", title: LEGEND.dense, text: "dense latent"}) : null),
        el("div", {id: "card-label", text: l.label})),
      el("div", {}, el("h3", {text: "top images (activation \u00b7 label)"}), topImages(view, l)),
      el("div", {}, el("h3", {text: "statistics (hover a name for its meaning)"}), statsList(l),
        el("h3", {text: "labels of the top images", style: "margin-top:14px"}), labelHistogram(l)),
      bandsSection(view, l),
      densitySection(view, l),
      logitSection(view, l),
      matchSection(view, l),
      el("div", {class: "wide", id: "card-lineage"}, ...(lineage.length ? lineage
        : [el("div", {class: "empty", text: "no lineage: this run has no meta depths"})])));
  }
  Object.assign(card.dataset, {run: s.run.id, depth: s.rec.folder, latent: l ? l.latent : ""});
}

function defaultLatent(view) {
  const alive = view.latents.filter((l) => !l.dead).sort(SORTS.density);
  return (alive[0] || view.latents[0] || {latent: null}).latent;
}

let renderCount = 0;

async function render(keepPage) {
  const token = ++renderCount, s = readState();
  if (!keepPage) list.page = -1;
  renderSelectors(s);
  renderSummary(s);
  const related = [s.rec, s.rec.parent && folderOf(s.run, s.rec.parent),
    ...s.rec.children.map((f) => folderOf(s.run, f))];
  let views;
  try {
    views = await Promise.all(related.map((r) => (r && r.file ? loadView(r) : null)));
  } catch (error) {
    $("latent-card").replaceChildren(el("div", {class: "wide empty", text: String(error)}));
    return;
  }
  if (token !== renderCount) return;
  const view = views[0];
  if (view && !view.byId.has(s.latent)) s.latent = defaultLatent(view);
  if (location.hash !== hashOf(s)) history.replaceState(null, "", hashOf(s));
  if (view) renderList(s, view); else { $("latent-list").replaceChildren(); $("list-count").textContent = ""; }
  renderCard(s, [view, views[1], ...views.slice(2).filter(Boolean)]);
}

/* ---- events ---- */

for (const field of RUN_FIELDS) {
  $("select-" + field).addEventListener("change", (e) => {
    const s = readState(), run = bestRun(field, e.target.value, s.run);
    go(run, (folderOf(run, s.rec.folder) || run.depths[0]).folder, null);
  });
}
$("select-depth").addEventListener("change", (e) => go(readState().run, e.target.value, null));
for (const id of ["latent-filter", "latent-sort", "show-dead"]) $(id).addEventListener("input", () => render(false));
$("latent-filter").addEventListener("keydown", (e) => {
  const id = idQuery(e.target.value.trim());
  if (e.key === "Enter" && id !== null) { const s = readState(); go(s.run, s.rec.folder, id); }
});
$("page-prev").addEventListener("click", () => turnPage(-1));
$("page-next").addEventListener("click", () => turnPage(1));
window.addEventListener("hashchange", () => render(false));
render(false);
