// The web page: drop or pick videos, upload each with a progress bar, follow its job, offer the MP3.
// Talks only to the public API (POST /convert, GET /status/<id>, the job's download_url).
"use strict";

const POLL_INTERVAL_MS = 1000;   // how often a running job's status is asked for
const RETRY_INTERVAL_MS = 3000;  // after the server could not be reached
const TERMINAL_STATES = new Set(["completed", "failed", "cancelled", "expired"]);
const BADGES = {
  waiting: "Waiting", uploading: "Uploading", queued: "Queued", processing: "Converting",
  completed: "Done", failed: "Failed", refused: "Refused", cancelled: "Cancelled", expired: "Expired",
};

const pending = [];      // files waiting for their upload; one uploads at a time
let uploading = false;

document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    addFiles(e.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser leave the page to open it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
});

function addFiles(files) {
  for (const file of files) pending.push({ file, card: newCard(file) });
  uploadPending();
}

async function uploadPending() {
  if (uploading) return;
  uploading = true;
  while (pending.length) {
    const { file, card } = pending.shift();
    const job = await upload(file, card);
    if (job) follow(job.job_id, card);
  }
  uploading = false;
}

// POST /convert with a byte progress bar; resolves to the job, or null when the file was refused.
function upload(file, card) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/convert");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.floor((e.loaded / e.total) * 100);
      setProgress(card, percent);
      setText(card, ".message", `Uploading… ${percent}%`);
      setText(card, ".uploaded", `${percent}% of ${humanSize(e.total)}`);
      card.dataset.uploadPercent = percent;
    };
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status === 202 && body && body.job_id) {
        setText(card, ".uploaded", `100% of ${humanSize(file.size)}, at ${new Date().toLocaleTimeString()}`);
        showJob(card, body);
        resolve(body);
      } else {
        refuse(card, errorMessage(body, xhr.status), body && body.error ? body.error.code : `HTTP ${xhr.status}`);
        resolve(null);
      }
    };
    xhr.onerror = () => {
      refuse(card, "Could not reach the server. Check your connection and try again.", "network_error");
      resolve(null);
    };
    const form = new FormData();
    form.append("file", file, file.name);
    setState(card, "uploading");
    xhr.send(form);
  });
}

// Poll GET /status/<id> until the job ends.
async function follow(jobId, card) {
  let delay = POLL_INTERVAL_MS;
  try {
    const response = await fetch(`/status/${encodeURIComponent(jobId)}`, { cache: "no-store" });
    const body = await response.json();
    showJob(card, body);
    if (response.status === 404 || TERMINAL_STATES.has(body.status)) return;
  } catch (err) {
    setText(card, ".message", "Lost contact with the server; trying again…");
    delay = RETRY_INTERVAL_MS;
  }
  setTimeout(() => follow(jobId, card), delay);
}

function showJob(card, body) {
  const state = body.status === "not_found" ? "failed" : body.status;
  setState(card, state);
  card.dataset.jobId = body.job_id;
  setText(card, ".message", body.message || "");
  setText(card, ".job-id", body.job_id);
  setText(card, ".job-status", body.status);
  setText(card, ".error-code", body.error ? body.error.code : "—");
  const link = card.querySelector(".status-link");
  link.href = `/status/${encodeURIComponent(body.job_id)}`;
  link.textContent = link.href;

  const bar = card.querySelector("progress");
  if (state === "completed") {
    setProgress(card, 100);
  } else if (typeof body.progress === "number") {
    setProgress(card, body.progress);
  } else if (state === "queued" || state === "processing") {
    bar.removeAttribute("value");  // indeterminate: the server does not say how far it is
  }
  const download = card.querySelector(".download");
  if (state === "completed" && body.download_url) {
    download.href = body.download_url;
    download.hidden = false;
  }
}

function refuse(card, message, code) {
  setState(card, "refused");
  setText(card, ".message", message);
  setText(card, ".error-code", code || "—");
}

function errorMessage(body, status) {
  if (body && body.error && body.error.message) return body.error.message;
  if (status === 413) return "The file is too large for this server.";
  return `The server could not take the file (HTTP ${status}).`;
}

function newCard(file) {
  const card = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
  setText(card, ".file-name", file.name);
  setText(card, ".file-size", humanSize(file.size));
  setState(card, "waiting");
  setText(card, ".message", "Waiting for the uploads before it…");
  document.getElementById("jobs").prepend(card);
  document.getElementById("empty-hint").hidden = true;
  return card;
}

function setState(card, state) {
  card.dataset.state = state;
  setText(card, ".state-badge", BADGES[state] || state);
}

function setProgress(card, percent) {
  card.querySelector("progress").value = Math.max(0, Math.min(100, percent));
}

function setText(card, selector, text) {
  card.querySelector(selector).textContent = text;
}

function humanSize(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
