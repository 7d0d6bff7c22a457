// Settings pages: set-up, the polygon editor, the motion tuner, recording estimates, members.
// Served by the device itself (the CSP forbids inline scripts); nothing external, no library but
// zxcvbn.js (vendored) on the pages with a passphrase field.
"use strict";

// -- passphrases ---------------------------------------------------------------------------------

// The device's verdict, computed here while typing: zxcvbn (web/static/zxcvbn.js, npm zxcvbn
// 4.4.2, loaded only on the pages with a passphrase field) on the first 72 characters, at least
// 10 characters and a score of 3 of 4 (storage/passphrase.py applies the same rule, with the
// Python port of the same estimator; its verdict is the one that counts).
const MIN_LENGTH = 10, MIN_SCORE = 3, SCORED_LENGTH = 72;

function passphraseVerdict(text) {
  if (!text) return { score: 0, weak: true, text: "" };
  if (text.length < MIN_LENGTH) {
    return { score: 0, weak: true, text: `too short: use at least ${MIN_LENGTH} characters` };
  }
  if (typeof zxcvbn !== "function") {  // the estimator did not load: the device still checks
    return { score: null, weak: false, text: "strength not known here: the device checks it" };
  }
  const result = zxcvbn(text.slice(0, SCORED_LENGTH));
  const score = result.score;
  if (score < MIN_SCORE) {
    const feedback = result.feedback;
    let reason = (feedback.warning || feedback.suggestions[0] || "add another word or two")
      .replace(/\.$/, "").replace(/\. /g, "; ");
    reason = reason.charAt(0).toLowerCase() + reason.slice(1);
    return { score, weak: true,
             text: `too weak (score ${score} of 4, ${MIN_SCORE} needed): ${reason}` };
  }
  return { score, weak: false, text: `${score === 4 ? "strong" : "good"} (score ${score} of 4)` };
}

function strengthMeters() {
  document.querySelectorAll("meter.strength").forEach((meter) => {
    const input = document.getElementById(meter.dataset.for);
    const label = document.getElementById(meter.dataset.for + "-strength");
    if (!input) return;
    const update = () => {
      const verdict = passphraseVerdict(input.value);
      meter.value = verdict.score === null ? 0 : verdict.score;
      label.textContent = verdict.text;
      label.className = verdict.weak && input.value ? "error" : "muted";
      // The form is not sent with a passphrase the device would refuse: the browser says why.
      input.setCustomValidity(verdict.weak && input.value ? `The passphrase is ${verdict.text}.` : "");
    };
    input.addEventListener("input", update);
    update();
  });
  document.querySelectorAll("[data-use-suggestion]").forEach((button) => {
    button.addEventListener("click", () => {
      const target = document.getElementById(button.dataset.useSuggestion);
      const text = document.getElementById("suggestion").textContent.trim();
      const form = target.form;
      form.querySelectorAll("input[type=password]").forEach((input) => {
        if (input.name.startsWith(target.name)) { input.value = text; input.type = "text"; }
      });
      target.dispatchEvent(new Event("input"));
    });
  });
}

// -- recovery key: download or print, shown once ---------------------------------------------

function recoveryKey() {
  const download = document.getElementById("download-recovery");
  if (!download) return;
  download.addEventListener("click", () => {
    const key = document.getElementById("recovery-key").textContent.trim();
    const text = "# Doorbell recovery key. Every clip is encrypted to it.\n" +
      "# age -d -i " + download.dataset.filename + " CLIP.mp4.age > clip.mp4\n" + key + "\n";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    link.download = download.dataset.filename;
    document.body.appendChild(link);
    link.click();
    setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  });
  document.getElementById("print-recovery").addEventListener("click", () => window.print());
}

// -- shared: a snapshot that refreshes, and "did the recorder apply it?" ---------------------------

function refreshSnapshot(img, intervalMs) {
  const note = document.getElementById("snapshot-note");
  img.addEventListener("error", () => {
    if (note) note.textContent = "No picture: the recorder is not running.";
  });
  img.addEventListener("load", () => { if (note) note.textContent = ""; });
  setInterval(() => { img.src = img.dataset.src + "?t=" + Date.now(); }, intervalMs);
}

function appliedStatus() {
  const span = document.getElementById("applied");
  if (!span) return;
  let tries = 0;
  const check = async () => {
    tries += 1;
    try {
      const s = await (await fetch(span.dataset.source, { credentials: "same-origin" })).json();
      if (s.applied) {
        span.textContent = "The recorder applied it at " + new Date().toLocaleTimeString() + ".";
        span.id = "applied-done";
        return;
      }
      if (!s.recorder_running) span.textContent = "The recorder is not running: it applies the settings when it starts.";
    } catch (e) { /* try again */ }
    if (tries < 60) setTimeout(check, 1000);
  };
  check();
}

// -- the polygon editor ------------------------------------------------------------------------

const LAYER_STYLE = {
  masks: { fill: "rgba(0,0,0,0.75)", stroke: "#ffcc00", label: "Privacy mask" },
  zones: { fill: "rgba(46,125,50,0.30)", stroke: "#4caf50", label: "Motion zone" },
};
const HANDLE_PX = 12;  // how close (CSS pixels) a pointer must be to grab a corner

function polygonEditor() {
  const form = document.getElementById("areas-form");
  if (!form) return;
  const canvas = document.getElementById("area-canvas");
  const img = document.getElementById("snapshot");
  const ctx = canvas.getContext("2d");
  const layers = { masks: JSON.parse(form.dataset.masks || "[]"), zones: JSON.parse(form.dataset.zones || "[]") };
  let drawing = null;   // points of the polygon being drawn, in 0..1
  let selected = null;  // { layer, index }
  let drag = null;      // { layer, index, vertex (or -1 for the whole polygon), last: [x, y] }
  const finish = document.getElementById("finish-polygon");
  const remove = document.getElementById("delete-polygon");
  const list = document.getElementById("polygon-list");

  const layer = () => form.ownerDocument.querySelector("input[name=layer]:checked").value;
  const size = () => [canvas.clientWidth, canvas.clientHeight];
  const toPoint = (event) => {
    const rect = canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) / rect.width, y = (event.clientY - rect.top) / rect.height;
    return [Math.min(1, Math.max(0, x)), Math.min(1, Math.max(0, y))];
  };
  const near = (a, b) => {
    const [w, h] = size();
    return Math.hypot((a[0] - b[0]) * w, (a[1] - b[1]) * h) <= HANDLE_PX;
  };
  const inside = (p, poly) => {  // even-odd rule
    let hit = false;
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i], [xj, yj] = poly[j];
      if ((yi > p[1]) !== (yj > p[1]) && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) hit = !hit;
    }
    return hit;
  };

  const sync = () => {
    const round = (polys) => polys.map((poly) => poly.map(([x, y]) => [+x.toFixed(4), +y.toFixed(4)]));
    document.getElementById("masks-field").value = JSON.stringify(round(layers.masks));
    document.getElementById("zones-field").value = JSON.stringify(round(layers.zones));
    finish.disabled = !drawing || drawing.length < 3;
    remove.disabled = !selected;
    list.replaceChildren();
    for (const name of ["masks", "zones"]) {
      layers[name].forEach((poly, index) => {
        const item = document.createElement("li");
        item.textContent = LAYER_STYLE[name].label + " " + (index + 1) + ": " + poly.length + " corners";
        item.dataset.layer = name;
        if (selected && selected.layer === name && selected.index === index) item.className = "selected";
        list.appendChild(item);
      });
    }
  };

  const draw = () => {
    const [w, h] = size();
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const path = (poly, close) => {
      ctx.beginPath();
      poly.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
      if (close) ctx.closePath();
    };
    for (const name of ["zones", "masks"]) {
      layers[name].forEach((poly, index) => {
        const isSelected = selected && selected.layer === name && selected.index === index;
        path(poly, true);
        ctx.fillStyle = LAYER_STYLE[name].fill;
        ctx.fill();
        ctx.lineWidth = isSelected ? 3 : 2;
        ctx.strokeStyle = LAYER_STYLE[name].stroke;
        ctx.stroke();
        if (isSelected) poly.forEach(([x, y]) => ctx.strokeRect(x * w - 5, y * h - 5, 10, 10));
      });
    }
    if (drawing && drawing.length) {
      path(drawing, false);
      ctx.lineWidth = 2;
      ctx.strokeStyle = LAYER_STYLE[layer()].stroke;
      ctx.stroke();
      drawing.forEach(([x, y], i) => {
        ctx.fillStyle = i === 0 ? "#fff" : LAYER_STYLE[layer()].stroke;
        ctx.fillRect(x * w - 4, y * h - 4, 8, 8);
      });
    }
  };
  const redraw = () => { sync(); draw(); };

  const closeDrawing = () => {
    if (drawing && drawing.length >= 3) {
      layers[layer()].push(drawing);
      selected = { layer: layer(), index: layers[layer()].length - 1 };
    }
    drawing = null;
    canvas.classList.remove("drawing");
    redraw();
  };

  document.getElementById("new-polygon").addEventListener("click", () => {
    drawing = [];
    selected = null;
    canvas.classList.add("drawing");
    canvas.focus();
    redraw();
  });
  finish.addEventListener("click", closeDrawing);
  remove.addEventListener("click", () => {
    if (!selected) return;
    layers[selected.layer].splice(selected.index, 1);
    selected = null;
    redraw();
  });
  canvas.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { drawing = null; canvas.classList.remove("drawing"); redraw(); }
    if ((event.key === "Delete" || event.key === "Backspace") && selected) remove.click();
    if (event.key === "Enter") closeDrawing();
  });

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    const p = toPoint(event);
    if (drawing) {
      if (drawing.length >= 3 && near(p, drawing[0])) closeDrawing();
      else { drawing.push(p); redraw(); }
      return;
    }
    // Corners first (of the selected polygon, then any), then whole polygons, masks on top.
    for (const name of ["masks", "zones"]) {
      for (let index = layers[name].length - 1; index >= 0; index--) {
        const vertex = layers[name][index].findIndex((q) => near(p, q));
        if (vertex >= 0) {
          selected = { layer: name, index };
          drag = { layer: name, index, vertex, last: p };
          canvas.setPointerCapture(event.pointerId);
          redraw();
          return;
        }
      }
    }
    for (const name of ["masks", "zones"]) {
      for (let index = layers[name].length - 1; index >= 0; index--) {
        if (inside(p, layers[name][index])) {
          selected = { layer: name, index };
          drag = { layer: name, index, vertex: -1, last: p };
          canvas.setPointerCapture(event.pointerId);
          redraw();
          return;
        }
      }
    }
    selected = null;
    redraw();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const p = toPoint(event);
    const poly = layers[drag.layer][drag.index];
    if (drag.vertex >= 0) {
      poly[drag.vertex] = p;
    } else {
      let dx = p[0] - drag.last[0], dy = p[1] - drag.last[1];
      // Keep the whole polygon inside the picture.
      for (const [x, y] of poly) {
        dx = Math.min(Math.max(dx, -x), 1 - x);
        dy = Math.min(Math.max(dy, -y), 1 - y);
      }
      poly.forEach((q) => { q[0] += dx; q[1] += dy; });
    }
    drag.last = p;
    redraw();
  });
  const endDrag = () => { drag = null; };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  form.addEventListener("submit", () => { if (drawing) closeDrawing(); sync(); });

  img.addEventListener("load", draw);
  window.addEventListener("resize", draw);
  refreshSnapshot(img, 2000);
  redraw();
}

// -- the motion tuner ------------------------------------------------------------------------

function motionTuner() {
  const stage = document.getElementById("tuner-stage");
  if (!stage) return;
  const canvas = document.getElementById("tuner-canvas");
  const ctx = canvas.getContext("2d");
  const img = document.getElementById("snapshot");
  const state = document.getElementById("overlay-state");
  const names = ["sensitivity", "min_area", "trigger_frames"];
  const mask = new Image();
  let overlay = null;

  const values = () => {
    const out = {};
    for (const name of names) out[name] = Number(document.getElementById(name).value);
    return out;
  };
  // The timer's keep-alive says it is background, so it does not keep the session unlocked;
  // moving a slider is the person, and counts.
  const sendTrial = async (background) => {
    const headers = { "Content-Type": "application/json", "X-CSRF-Token": stage.dataset.csrf };
    if (background === true) headers["X-Doorbell-Background"] = "1";
    try {
      const response = await fetch(stage.dataset.trial, {
        method: "POST", credentials: "same-origin", headers,
        body: JSON.stringify(values()),
      });
      if (response.status === 401) window.location.reload();
      const body = await response.json();
      if (body.error) state.textContent = body.field + ": " + body.error;
    } catch (e) { /* the device is busy or restarting: the next tick retries */ }
  };
  for (const name of names) {
    const input = document.getElementById(name);
    const output = document.getElementById(name + "-out");
    const show = () => {
      output.textContent = name === "min_area" ? (Number(input.value) * 100).toFixed(2) + " %" : input.value;
    };
    input.addEventListener("input", () => { show(); sendTrial(); });
    show();
  }

  const draw = () => {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.clearRect(0, 0, w, h);
    if (!overlay || !overlay.active) return;
    if (mask.complete && mask.naturalWidth) {
      // The mask is white where motion is: tint it red over the picture.
      ctx.save();
      ctx.globalAlpha = 0.55;
      ctx.drawImage(mask, 0, 0, w, h);
      ctx.globalCompositeOperation = "multiply";
      ctx.fillStyle = "#ff2020";
      ctx.fillRect(0, 0, w, h);
      ctx.restore();
    }
    ctx.lineWidth = 3;
    ctx.strokeStyle = overlay.triggered ? "#ff3b30" : "#ffcc00";
    for (const [x, y, bw, bh] of overlay.boxes || []) ctx.strokeRect(x * w, y * h, bw * w, bh * h);
  };
  const poll = async () => {
    try {
      const response = await fetch(stage.dataset.overlay, { credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      overlay = await response.json();
      if (!overlay.active) {
        state.textContent = "Waiting for the recorder's detector view…";
        state.dataset.boxes = "";
      } else {
        const m = overlay.motion || {};
        const boxes = (overlay.boxes || []).length;
        state.textContent = boxes + (boxes === 1 ? " moving area counts" : " moving areas count") +
          " · " + (overlay.triggered ? "would start a clip" : "would not start a clip") +
          " · sensitivity " + m.sensitivity + ", smallest area " + (m.min_area * 100).toFixed(2) +
          " %, " + m.trigger_frames + " frames";
        state.dataset.boxes = String(boxes);
        state.dataset.sensitivity = String(m.sensitivity);
        state.dataset.minArea = String(m.min_area);
        state.dataset.triggerFrames = String(m.trigger_frames);
        mask.src = stage.dataset.mask + "?t=" + Date.now();
      }
    } catch (e) { /* try again */ }
    draw();
  };
  mask.addEventListener("load", draw);
  img.addEventListener("load", draw);
  refreshSnapshot(img, 700);
  sendTrial();
  setInterval(() => sendTrial(true), 5000);  // keeps the trial alive; it lapses 15 s after the page closes
  setInterval(poll, 700);
}

// -- recording: days that fit, before saving ----------------------------------------------------

function recordingEstimate() {
  const form = document.getElementById("recording-form");
  if (!form) return;
  const days = document.getElementById("days-fit");
  let timer = null;
  const update = async () => {
    const fields = ["pre_roll_s", "post_roll_s", "max_clip_s", "max_age_days", "max_total_gb", "min_free_gb"];
    const query = new URLSearchParams();
    for (const name of fields) query.set(name, form.elements[name].value);
    try {
      const response = await fetch(form.dataset.estimate + "?" + query, { credentials: "same-origin" });
      const body = await response.json();
      days.textContent = body.error ? body.error
        : body.days === null ? "not known yet (nothing recorded in the last week)" : String(body.days);
      days.className = body.error ? "error" : "";
    } catch (e) { /* keep the last figure */ }
  };
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(update, 250); });
}

document.addEventListener("DOMContentLoaded", () => {
  strengthMeters();
  recoveryKey();
  appliedStatus();
  polygonEditor();
  motionTuner();
  recordingEstimate();
});
