// The viewer's only script, served by the device itself (the CSP forbids inline scripts).
"use strict";

// Live view: an MJPEG stream ends after a while (or when the recorder restarts): reconnect.
// Refused because too many streams are open (503), it waits longer each time, up to 30 s.
function keepLiveViewAlive() {
  const img = document.getElementById("live");
  const privacy = document.getElementById("privacy-mode");  // shown instead while it is on
  const shown = img || privacy;
  if (!shown) return;
  let delayMs = 2000;
  const reconnect = () => {
    setTimeout(() => { img.src = img.dataset.stream + "?t=" + Date.now(); }, delayMs);
    delayMs = Math.min(delayMs * 2, 30000);
  };
  if (img) {
    img.addEventListener("error", reconnect);
    img.addEventListener("load", () => { delayMs = 2000; });
  }
  // A stream ends when the session locks, and a refused reconnect is just an image error: ask
  // the device (as background, so asking keeps nothing unlocked) and show the login page
  // instead of leaving the last picture on the screen. Privacy mode switched on or off: the
  // page that says so, or the picture again.
  setInterval(async () => {
    try {
      const response = await fetch(shown.dataset.sessionCheck, {
        credentials: "same-origin", headers: { "X-Doorbell-Background": "1" } });
      if (response.status === 401) { window.location.reload(); return; }
      if (response.ok && (await response.json()).privacy_mode !== Boolean(privacy)) {
        window.location.reload();
      }
    } catch (e) { /* the device is restarting: try again next time */ }
  }, 5000);
}

// Status: refresh the figures every few seconds without reloading the page.
function refreshStatus() {
  const card = document.getElementById("status");
  if (!card) return;
  const update = async () => {
    try {
      const response = await fetch(card.dataset.source, { credentials: "same-origin" });
      if (response.status === 401) { window.location.reload(); return; }
      const s = await response.json();
      const alive = document.getElementById("st-alive");
      alive.textContent = (s.recorder_alive ? "running" : "not receiving frames") +
        " (" + s.recorder_state + ", camera " + s.camera + ")";
      alive.className = s.recorder_alive ? "ok" : "error";
      document.getElementById("st-fps").textContent = s.fps;
      document.getElementById("st-today").textContent = s.clips_today;
      // The device's clock and zone label ("14:03:05 CET"), not this browser's.
      document.getElementById("st-last").textContent = s.last_frame_text;
      document.getElementById("st-privacy").hidden = !s.privacy_mode;
    } catch (e) { /* the device is restarting: try again next time */ }
  };
  setInterval(update, 3000);
}

// Timeline: new clips and doorbell presses as they happen (server-sent events from /events),
// as a note at the top of the page and, if this browser was allowed to, as a notification.
// Permission is only asked when the user clicks the button (browsers require a gesture).
function liveEvents() {
  const box = document.getElementById("live-events");
  if (!box || !window.EventSource) return;
  const canNotify = "Notification" in window && window.isSecureContext;
  if (canNotify && Notification.permission === "default") {
    const ask = document.createElement("button");
    ask.type = "button";
    ask.textContent = "Notify me in this browser";
    ask.addEventListener("click", async () => {
      await Notification.requestPermission();
      if (Notification.permission !== "default") ask.remove();
    });
    box.appendChild(ask);
  }
  // The device's clock and zone label ("14:03:05 CET"), as on every page, not this browser's.
  const at = (d) => d.time_text;
  const show = (text, href, className) => {
    const note = document.createElement("p");
    note.className = className;
    note.textContent = text + " ";
    if (href) {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = "Play";
      note.appendChild(link);
    }
    box.prepend(note);
    const notes = box.querySelectorAll("p");
    for (let i = 5; i < notes.length; i++) notes[i].remove();  // the five newest
    if (canNotify && Notification.permission === "granted") {
      const shown = new Notification("Doorbell", { body: text, tag: text });
      if (href) shown.addEventListener("click", () => { window.focus(); window.location.href = href; });
    }
  };
  const source = new EventSource(box.dataset.source);
  source.addEventListener("doorbell_pressed", (e) => {
    const d = JSON.parse(e.data);
    show("Someone rang the doorbell at " + at(d) + ".", null, "warning");
  });
  source.addEventListener("clip_saved", (e) => {
    const d = JSON.parse(e.data);
    const kind = d.trigger === "doorbell" ? "Doorbell" : d.trigger === "motion" ? "Motion" : "New";
    const length = typeof d.duration_s === "number" ? ", " + Math.round(d.duration_s) + " s" : "";
    const href = box.dataset.player.replace("CLIP_ID", encodeURIComponent(d.clip_id));
    show(kind + " clip saved at " + at(d) + length + ".", href, "card");
  });
  source.addEventListener("privacy_mode", (e) => {
    const d = JSON.parse(e.data);
    show(d.on === true ? "Privacy mode turned on at " + at(d) + ": no recording, no live view."
                       : "Privacy mode turned off at " + at(d) + ": recording again.",
         null, "warning");
  });
  // Locked (401): the browser gives up on the stream; reloading shows the login page.
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) window.location.reload();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  keepLiveViewAlive();
  refreshStatus();
  liveEvents();
});
