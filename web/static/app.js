// The viewer's only script, served by the device itself (the CSP forbids inline scripts).
"use strict";

// Live view: an MJPEG stream ends after a while (or when the recorder restarts): reconnect.
function keepLiveViewAlive() {
  const img = document.getElementById("live");
  if (!img) return;
  const reconnect = () => {
    setTimeout(() => { img.src = img.dataset.stream + "?t=" + Date.now(); }, 2000);
  };
  img.addEventListener("error", reconnect);
  img.addEventListener("load", () => {});
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
      if (s.last_frame_time) {
        document.getElementById("st-last").textContent =
          new Date(s.last_frame_time * 1000).toLocaleTimeString();
      }
    } catch (e) { /* the device is restarting: try again next time */ }
  };
  setInterval(update, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  keepLiveViewAlive();
  refreshStatus();
});
