// Renders one JND result as the visual view shared by `sgjnd predict --report` and the service page.
// No dependencies, no network: everything it draws comes from the view object and the image URLs in it.
//
// view = {
//   title, width, height, patch_size, threshold, jnd_qf, recommended_qf,
//   series: [{label, scores: {qf: S}, jnd_qf, recommended_qf}],       // one curve per target
//   patches: [{x, y, q, w}],                                            // image coordinates (after EXIF orientation)
//   overview: {src, width, height},                                     // the photo, possibly downscaled
//   versions: [{label, qf, bytes, psnr_db, zoom: {src, x, y, width, height}}],   // original first
//   focus: {x, y, size},                                                // the zoomed region (image coordinates)
//   notes: [..]
// }
// zoom.src is an image whose pixels (x, y, width, height) are drawn at 2x without smoothing.
"use strict";

const SGJND_SVG = "http://www.w3.org/2000/svg";

function sgjndEl(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v);
  }
  for (const c of children) if (c) el.appendChild(c);
  return el;
}

function sgjndSvg(tag, attrs) {
  const el = document.createElementNS(SGJND_SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  return el;
}

const SGJND_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

// The S(QF) curve(s): evaluated points, the threshold, the JND and recommended QF of each series.
function sgjndCurve(view) {
  const W = 520, H = 260, L = 44, R = 12, T = 14, B = 36;
  const x = (qf) => L + ((qf - 1) / 99) * (W - L - R);
  const y = (s) => T + (1 - s) * (H - T - B);
  const svg = sgjndSvg("svg", {viewBox: `0 0 ${W} ${H}`, class: "sgjnd-curve", role: "img",
                                "aria-label": "S(QF) curve"});
  for (let qf = 10; qf <= 100; qf += 10) {
    svg.appendChild(sgjndSvg("line", {x1: x(qf), x2: x(qf), y1: T, y2: H - B, class: "grid"}));
    const t = sgjndSvg("text", {x: x(qf), y: H - B + 16, "text-anchor": "middle", class: "tick"});
    t.textContent = qf;
    svg.appendChild(t);
  }
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    svg.appendChild(sgjndSvg("line", {x1: L, x2: W - R, y1: y(s), y2: y(s), class: "grid"}));
    const t = sgjndSvg("text", {x: L - 6, y: y(s) + 4, "text-anchor": "end", class: "tick"});
    t.textContent = s;
    svg.appendChild(t);
  }
  const xl = sgjndSvg("text", {x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis"});
  xl.textContent = "JPEG quality factor";
  svg.appendChild(xl);
  const yl = sgjndSvg("text", {x: 12, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis",
                               transform: `rotate(-90 12 ${(T + H - B) / 2})`});
  yl.textContent = "S(QF)";
  svg.appendChild(yl);
  svg.appendChild(sgjndSvg("line", {x1: L, x2: W - R, y1: y(view.threshold), y2: y(view.threshold),
                                    class: "threshold"}));
  view.series.forEach((series, i) => {
    const colour = SGJND_COLOURS[i % SGJND_COLOURS.length];
    const points = Object.entries(series.scores).map(([q, s]) => [Number(q), s])
      .filter(([, s]) => s !== null && Number.isFinite(s)).sort((a, b) => a[0] - b[0]);
    svg.appendChild(sgjndSvg("polyline", {points: points.map(([q, s]) => `${x(q)},${y(s)}`).join(" "),
                                          class: "series", stroke: colour}));
    for (const [q, s] of points) {
      const dot = sgjndSvg("circle", {cx: x(q), cy: y(s), r: 2.6, fill: colour, class: "point"});
      const tip = sgjndSvg("title", {});
      tip.textContent = `${series.label}: S(${q}) = ${s.toFixed(3)}`;
      dot.appendChild(tip);
      svg.appendChild(dot);
    }
    if (series.jnd_qf !== null && series.jnd_qf !== undefined) {
      svg.appendChild(sgjndSvg("line", {x1: x(series.jnd_qf), x2: x(series.jnd_qf), y1: T, y2: H - B,
                                        class: "jnd", stroke: colour}));
    }
  });
  const legend = sgjndEl("div", {class: "sgjnd-legend"});
  view.series.forEach((series, i) => {
    const colour = SGJND_COLOURS[i % SGJND_COLOURS.length];
    const swatch = sgjndEl("span", {class: "swatch", style: `background:${colour}`});
    const jnd = series.jnd_qf === null || series.jnd_qf === undefined ? "none" : series.jnd_qf;
    const use = series.recommended_qf === null || series.recommended_qf === undefined ? "none" :
      series.recommended_qf;
    legend.appendChild(sgjndEl("span", {class: "entry"}, swatch,
      sgjndEl("span", {text: ` ${series.label}: JND QF ${jnd}, use QF ${use}`})));
  });
  legend.appendChild(sgjndEl("span", {class: "entry muted",
    text: `dashed: threshold S = ${view.threshold}; vertical: JND`}));
  return sgjndEl("div", {class: "sgjnd-curve-box"}, svg, legend);
}

// q in [0, 1] -> red (visible) .. green (invisible); w -> opacity from the smallest (faint) to the largest weight.
function sgjndPatchColour(p, mode, wmin, wmax) {
  if (mode === "q") {
    const q = Number.isFinite(p.q) ? Math.min(Math.max(p.q, 0), 1) : 0;
    return `hsla(${Math.round(120 * q)}, 85%, 45%, 0.55)`;
  }
  if (!Number.isFinite(p.w)) return "rgba(0, 0, 0, 0)";
  const w = wmax > wmin ? (p.w - wmin) / (wmax - wmin) : 1;
  return `rgba(255, 170, 0, ${(0.05 + 0.8 * w).toFixed(3)})`;
}

// The photo with the patch grid over it, coloured by q or by w (toggle).
function sgjndGrid(view) {
  const box = sgjndEl("div", {class: "sgjnd-grid"});
  const stage = sgjndEl("div", {class: "stage"});
  const img = sgjndEl("img", {src: view.overview.src, alt: `${view.title} with its patch grid`,
                              class: "photo"});
  stage.appendChild(img);
  const weights = view.patches.map((p) => p.w).filter((w) => w !== null && Number.isFinite(w));
  const wmin = weights.length ? Math.min(...weights) : 0, wmax = weights.length ? Math.max(...weights) : 0;
  const cells = view.patches.map((p) => {
    const cell = sgjndEl("div", {class: "cell"});
    cell.style.left = `${(100 * p.x) / view.width}%`;
    cell.style.top = `${(100 * p.y) / view.height}%`;
    cell.style.width = `${(100 * view.patch_size) / view.width}%`;
    cell.style.height = `${(100 * view.patch_size) / view.height}%`;
    cell.title = `patch at (${p.x}, ${p.y}): q = ${Number(p.q).toFixed(3)}, w = ${Number(p.w).toFixed(3)}`;
    if (view.focus && p.x === view.focus.x && p.y === view.focus.y) cell.classList.add("focus");
    stage.appendChild(cell);
    return [cell, p];
  });
  const paint = (mode) => {
    for (const [cell, p] of cells) cell.style.background = sgjndPatchColour(p, mode, wmin, wmax);
    for (const b of buttons.children) b.classList.toggle("on", b.dataset.mode === mode);
    caption.textContent = mode === "q" ?
      "patch quality q at the recommended QF: green = judged invisible, red = visible" :
      `patch weight w (${wmin.toFixed(2)} faint .. ${wmax.toFixed(2)} bright): how much each patch counts in S; ` +
      "outlined: the most-weighted patch (zoomed below)";
  };
  const buttons = sgjndEl("div", {class: "toggle"});
  for (const mode of ["q", "w"]) {
    const b = sgjndEl("button", {type: "button", text: `colour by ${mode}`});
    b.dataset.mode = mode;
    b.addEventListener("click", () => paint(mode));
    buttons.appendChild(b);
  }
  const caption = sgjndEl("div", {class: "caption"});
  box.append(buttons, stage, caption);
  paint("q");
  return box;
}

// Draws (x, y, width, height) of an image at `zoom`x without smoothing onto a new canvas.
function sgjndZoomCanvas(zoom, factor) {
  const canvas = sgjndEl("canvas", {width: zoom.width * factor, height: zoom.height * factor,
                                    class: "zoom"});
  const img = new Image();
  img.onload = () => {
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, zoom.x, zoom.y, zoom.width, zoom.height, 0, 0, canvas.width, canvas.height);
    canvas.dataset.drawn = "1";
  };
  img.onerror = () => { canvas.dataset.drawn = "error"; };
  img.src = zoom.src;
  return canvas;
}

function sgjndBytes(n) {
  if (n === null || n === undefined) return "-";
  return n >= 1048576 ? `${(n / 1048576).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

// Original, recommended and lower-quality versions side by side (zoomed), plus a before/after slider.
function sgjndVersions(view) {
  const box = sgjndEl("div", {class: "sgjnd-versions"});
  const row = sgjndEl("div", {class: "row"});
  for (const v of view.versions) {
    const psnr = v.psnr_db === null || v.psnr_db === undefined ? "" :
      (Number.isFinite(v.psnr_db) ? `, PSNR ${v.psnr_db.toFixed(2)} dB` : ", PSNR inf");
    const label = v.qf === null || v.qf === undefined ? v.label : `${v.label} (QF ${v.qf})`;
    row.appendChild(sgjndEl("figure", {}, sgjndZoomCanvas(v.zoom, 2),
      sgjndEl("figcaption", {text: `${label}: ${sgjndBytes(v.bytes)}${psnr}`})));
  }
  box.appendChild(row);
  if (view.versions.length >= 2) {
    const before = view.versions[0], after = view.versions[1];
    const slider = sgjndEl("div", {class: "slider"});
    const under = sgjndZoomCanvas(after.zoom, 3);
    const over = sgjndZoomCanvas(before.zoom, 3);
    over.classList.add("over");
    const range = sgjndEl("input", {type: "range", min: "0", max: "100", value: "50",
                                    "aria-label": "before/after"});
    const clip = () => { over.style.clipPath = `inset(0 ${100 - range.value}% 0 0)`; };
    range.addEventListener("input", clip);
    clip();
    slider.append(sgjndEl("div", {class: "pair"}, under, over), range,
      sgjndEl("div", {class: "caption", text: `before/after: left of the handle ${before.label}, right of it ` +
        `${after.label}${after.qf ? ` (QF ${after.qf})` : ""}, 3x, no smoothing`}));
    box.appendChild(slider);
  }
  return box;
}

// One image's whole view; returns the element (the caller places it).
function sgjndRender(view) {
  const jnd = view.jnd_qf === null || view.jnd_qf === undefined ? "none" : view.jnd_qf;
  const use = view.recommended_qf === null || view.recommended_qf === undefined ? "none" : view.recommended_qf;
  const head = sgjndEl("div", {class: "sgjnd-head"},
    sgjndEl("h2", {text: view.title.split(/[\\/]/).pop(), title: view.title}),
    sgjndEl("div", {class: "facts"},
      sgjndEl("span", {class: "fact jnd", text: `JND QF ${jnd}`}),
      sgjndEl("span", {class: "fact use", text: `use QF ${use}`}),
      sgjndEl("span", {class: "fact", text: `${view.width}x${view.height}`})));
  const card = sgjndEl("section", {class: "sgjnd-card"}, head,
    sgjndEl("div", {class: "two"}, sgjndCurve(view), sgjndGrid(view)));
  if (view.versions && view.versions.length) {
    card.appendChild(sgjndEl("h3", {text: "The most-weighted patch, zoomed 2x"}));
    card.appendChild(sgjndVersions(view));
  }
  if (view.notes && view.notes.length) {
    const list = sgjndEl("ul", {class: "notes"});
    for (const n of view.notes) list.appendChild(sgjndEl("li", {text: n}));
    card.appendChild(list);
  }
  return card;
}
