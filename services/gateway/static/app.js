// The web page: choose the output format, drop or pick videos, upload each with a progress bar,
// follow its job, then play the result (a <video> for a video format, an <audio> for an audio one)
// and offer its download. Talks only to the public API (GET /openapi.json, POST /convert,
// GET /status/<id>, the job's download_url).
//
// Output choices: the formats and video codecs come from /openapi.json, where the server lists what
// it offers (ConversionOptions: `format` enum, its `x-video-codecs` per video format, the
// `video_codec` enum), so the page never offers a codec this server's ffmpeg cannot encode. Until
// that answers (or if it cannot), the page offers the default, MP3. Each file keeps the choice made
// when it was picked.
//
// API keys: when the server wants one (/healthz says "auth":"keys", or any call answers 401), the page
// asks for it, keeps it in localStorage and sends it as "Authorization: Bearer <key>" on every call.
// Work that met a 401 waits for the key and then goes on. Jobs are followed by polling /status, which
// can carry the header (an EventSource could not); download links come signed, so they need none.
"use strict";

const POLL_INTERVAL_MS = 1000;   // how often a running job's status is asked for
const RETRY_INTERVAL_MS = 3000;  // after the server could not be reached
const TERMINAL_STATES = new Set(["completed", "failed", "cancelled", "expired"]);
const BADGES = {
  waiting: "Waiting", uploading: "Uploading", queued: "Queued", processing: "Converting",
  completed: "Done", failed: "Failed", refused: "Refused", cancelled: "Cancelled", expired: "Expired",
};

const KEY_STORAGE = "siphon.apiKey";  // localStorage item holding the API key
const DEFAULT_FORMAT = "mp3";          // what the server makes when no format is sent
const FORMAT_LABELS = {
  mp3: "MP3", m4a: "M4A (AAC)", opus: "Opus", ogg: "Ogg Vorbis", flac: "FLAC (lossless)", wav: "WAV (lossless)",
  mp4: "MP4", webm: "WebM", mkv: "MKV (Matroska)",
};
const CODEC_LABELS = { h264: "H.264", hevc: "HEVC (H.265)", vp9: "VP9", av1: "AV1" };

let videoCodecs = {};  // video format -> the codecs this server offers for it, its default first

const pending = [];      // files waiting for their upload; one uploads at a time
let uploading = false;
let apiKey = storedKey();  // null: none (open mode, or not entered yet)
const waitingForKey = [];  // what to run again once a key is entered

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

  document.getElementById("format").addEventListener("change", showVideoChoices);
  loadOutputChoices();

  document.getElementById("key-form").addEventListener("submit", (e) => { e.preventDefault(); useKey(); });
  document.getElementById("forget-key").addEventListener("click", forgetKey);
  showForgetKey();
  askForKeyIfTheServerWantsOne();
});

// --- the API key --------------------------------------------------------------------------------
function storedKey() {
  try { return localStorage.getItem(KEY_STORAGE); } catch (err) { return null; }  // storage blocked
}

function authHeaders() {
  return apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
}

// At load: ask at once when the server runs with keys and this browser has none.
async function askForKeyIfTheServerWantsOne() {
  if (apiKey) return;
  try {
    const health = await (await fetch("/healthz", { cache: "no-store" })).json();
    if (health.auth === "keys") askForKey("");
  } catch (err) { /* a 401 later asks as well */ }
}

// Show the key form; `problem` says why (empty: the first time).
function askForKey(problem) {
  const form = document.getElementById("key-form");
  setFormProblem(problem);
  if (form.hidden) {
    form.hidden = false;
    document.getElementById("key-input").focus();
  }
}

function setFormProblem(problem) {
  const line = document.getElementById("key-problem");
  line.textContent = problem;
  line.hidden = !problem;
}

// A call answered 401: the key is missing or no longer valid; `retry` runs again with the next key.
function unauthorized(retry) {
  if (apiKey) {
    rememberKey(null);
    askForKey("The server refused the saved key. Enter a valid one.");
  } else if (document.getElementById("key-form").hidden) {
    askForKey("");
  }
  waitingForKey.push(retry);
}

// The form's key: tried once (GET /jobs?limit=1), kept if the server takes it, then the waiting work goes on.
async function useKey() {
  const input = document.getElementById("key-input");
  const key = input.value.trim();
  if (!key) return;
  try {
    const response = await fetch("/jobs?limit=1", { cache: "no-store", headers: { Authorization: `Bearer ${key}` } });
    if (response.status === 401) {
      setFormProblem("The server does not know this key. Check it and try again.");
      input.select();
      return;
    }
  } catch (err) { /* unreachable just now: keep the key, the calls below retry */ }
  rememberKey(key);
  input.value = "";
  setFormProblem("");
  document.getElementById("key-form").hidden = true;
  for (const retry of waitingForKey.splice(0)) retry();
}

function rememberKey(key) {
  apiKey = key;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
  } catch (err) { /* storage blocked: the key lasts as long as the page */ }
  showForgetKey();
}

function forgetKey() {
  rememberKey(null);
  askForKeyIfTheServerWantsOne();
}

function showForgetKey() {
  document.getElementById("forget-key").hidden = !apiKey;
}

// --- the output format --------------------------------------------------------------------------
// Fill the format and codec lists from what /openapi.json says the server offers.
async function loadOutputChoices() {
  let format;
  try {
    const openapi = await (await fetch("/openapi.json", { cache: "no-store" })).json();
    format = openapi.components.schemas.ConversionOptions.properties.format;
  } catch (err) { return; }  // unreachable or unreadable: MP3 only, the server's default
  videoCodecs = format["x-video-codecs"] || {};
  const audio = document.getElementById("audio-formats");
  const video = document.getElementById("video-formats");
  audio.replaceChildren();
  video.replaceChildren();
  for (const name of format.enum || [DEFAULT_FORMAT]) {
    const option = new Option(FORMAT_LABELS[name] || name, name, name === DEFAULT_FORMAT, name === DEFAULT_FORMAT);
    (name in videoCodecs ? video : audio).append(option);
  }
  video.hidden = video.children.length === 0;
  showVideoChoices();
}

// Show the codec and height lists only for a video format; the codecs are that format's offered ones.
function showVideoChoices() {
  const codecs = videoCodecs[document.getElementById("format").value];
  document.getElementById("video-codec-choice").hidden = !codecs;
  document.getElementById("height-choice").hidden = !codecs;
  if (!codecs) return;
  const select = document.getElementById("video-codec");
  const kept = select.value;
  select.replaceChildren(...codecs.map((codec) => new Option(CODEC_LABELS[codec] || codec, codec)));
  if (codecs.includes(kept)) select.value = kept;
}

// The form fields of the current choice (none for the default, so such a request is as before).
function currentChoice() {
  const format = document.getElementById("format").value;
  const fields = {};
  if (format !== DEFAULT_FORMAT) fields.format = format;
  if (format in videoCodecs) {
    fields.video_codec = document.getElementById("video-codec").value;
    const height = document.getElementById("height").value;
    if (height) fields.height = height;
  }
  return { format, video: format in videoCodecs, fields };
}

function addFiles(files) {
  const choice = currentChoice();
  for (const file of files) pending.push({ file, choice, card: newCard(file, choice) });
  uploadPending();
}

async function uploadPending() {
  if (uploading) return;
  uploading = true;
  while (pending.length) {
    const item = pending.shift();
    const job = await upload(item.file, item.choice, item.card);
    if (job === UNAUTHORIZED) {  // this file first once there is a key; the others wait behind it
      pending.unshift(item);
      setState(item.card, "waiting");
      setText(item.card, ".message", "Waiting for an API key…");
      unauthorized(uploadPending);
      break;
    }
    if (job) follow(job.job_id, item.card);
  }
  uploading = false;
}

const UNAUTHORIZED = "unauthorized";

// POST /convert (the choice's fields, then the file) with a byte progress bar; resolves to the job,
// to null when the file was refused, or to UNAUTHORIZED when the server wants a (valid) API key.
function upload(file, choice, card) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/convert");
    xhr.responseType = "json";
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
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
      if (xhr.status === 401) {
        resolve(UNAUTHORIZED);
      } else if (xhr.status === 202 && body && body.job_id) {
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
    for (const [name, value] of Object.entries(choice.fields)) form.append(name, value);
    form.append("file", file, file.name);
    setState(card, "uploading");
    xhr.send(form);
  });
}

// Poll GET /status/<id> until the job ends (after a 401, again once there is a key).
async function follow(jobId, card) {
  let delay = POLL_INTERVAL_MS;
  try {
    const response = await fetch(`/status/${encodeURIComponent(jobId)}`, { cache: "no-store", headers: authHeaders() });
    if (response.status === 401) {
      setText(card, ".message", "Waiting for an API key…");
      unauthorized(() => follow(jobId, card));
      return;
    }
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
  if (apiKey) link.removeAttribute("href");  // a new tab would not send the key: shown, not linked

  const bar = card.querySelector("progress");
  if (state === "completed") {
    setProgress(card, 100);
  } else if (typeof body.progress === "number") {
    setProgress(card, body.progress);
  } else if (state === "queued" || state === "processing") {
    bar.removeAttribute("value");  // indeterminate: the server does not say how far it is
  }
  const download = card.querySelector(".download");
  if (state === "completed" && body.download_url && download.hidden) {
    download.href = body.download_url;
    download.hidden = false;
    showResult(card, body.download_url);
  }
}

// The finished file in the page: a <video> for a video format, an <audio> for an audio one.
function showResult(card, url) {
  const player = document.createElement(card.dataset.video === "true" ? "video" : "audio");
  player.controls = true;
  player.preload = "metadata";
  player.addEventListener("error", () => {
    card.dataset.playerError = player.error ? String(player.error.code) : "unknown";
    setText(card, ".message", "This browser cannot play the file; download it instead.");
  });
  player.src = url;
  const result = card.querySelector(".result");
  result.replaceChildren(player);
  result.hidden = false;
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

function newCard(file, choice) {
  const card = document.getElementById("job-template").content.firstElementChild.cloneNode(true);
  const label = FORMAT_LABELS[choice.format] || choice.format;
  card.dataset.format = choice.format;
  card.dataset.video = String(choice.video);
  setText(card, ".download", `Download ${label}`);
  setText(card, ".job-format", [label, choice.fields.video_codec && CODEC_LABELS[choice.fields.video_codec],
    choice.fields.height && `${choice.fields.height}p at most`].filter(Boolean).join(", "));
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
