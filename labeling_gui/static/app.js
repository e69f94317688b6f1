// prefrl labeling page: two clips side by side, synchronised and looping; ← → ↑ ↓ answer (App. B).
// The next pair is claimed and its clips downloaded (as blobs) and decoded before the current one is
// answered, so switching is a DOM swap. Answers are posted in the background and retried on network errors.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "equal", ArrowDown: "skip" };
const PREFETCH = 2; // pairs held: the one shown and the next
const state = {
  labeler: null,
  current: null, // the pair on screen
  upcoming: [], // prefetched pairs, in order
  known: new Set(), // query ids shown, prefetched or answered (claims return held pairs again)
  refilling: false,
  retryTimer: null,
  speed: Number(localStorage.getItem("prefrl.speed") || "1"),
};
window.prefrl = { lastSwitchMs: null, answersSent: 0, state };

async function api(path, body) {
  const res = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) {
    const err = new Error((data && data.detail) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

function say(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.classList.toggle("error", Boolean(isError));
}

function showStatus(data) {
  if (data.count !== undefined) $("count").textContent = data.count;
  if (data.queue !== undefined) $("queue").textContent = data.queue;
  if (data.instructions) $("instructions").textContent = data.instructions;
}

// ---------------------------------------------------------------------------------------- a pair's videos
function makeSide(url, error) {
  if (!url) {
    const div = document.createElement("div");
    div.className = "clip-missing standby";
    div.textContent = error ? `clip unavailable: ${error}` : "clip unavailable";
    return { el: div, ready: Promise.resolve(), blobUrl: null };
  }
  const v = document.createElement("video");
  v.muted = true;
  v.playsInline = true;
  v.preload = "auto";
  v.className = "standby";
  v.setAttribute("muted", "");
  v.setAttribute("playsinline", "");
  const side = { el: v, blobUrl: null };
  side.ready = fetch(url, { credentials: "same-origin" })
    .then((r) => { if (!r.ok) throw new Error(`HTTP ${r.status}`); return r.blob(); })
    .then((blob) => new Promise((resolve) => {
      side.blobUrl = URL.createObjectURL(blob);
      v.addEventListener("loadeddata", resolve, { once: true });
      v.addEventListener("error", resolve, { once: true });
      v.src = side.blobUrl;
      v.load();
    }))
    .catch((e) => { say(`could not load a clip: ${e.message}`, true); });
  return side;
}

function prepare(p) {
  const pair = { ...p, left: makeSide(p.left, p.left_error), right: makeSide(p.right, p.right_error) };
  $("slot-left").appendChild(pair.left.el);
  $("slot-right").appendChild(pair.right.el);
  pair.ready = Promise.all([pair.left.ready, pair.right.ready]);
  return pair;
}

function dispose(pair) {
  for (const side of [pair.left, pair.right]) {
    if (side.el.pause) side.el.pause();
    side.el.remove();
    if (side.blobUrl) URL.revokeObjectURL(side.blobUrl);
  }
}

function videos(pair) {
  return [pair.left.el, pair.right.el].filter((el) => el.tagName === "VIDEO");
}

// Both clips start together and restart together when both have ended: they stay in step at any speed.
function playTogether(pair) {
  const vs = videos(pair);
  for (const v of vs) {
    v.playbackRate = state.speed;
    v.currentTime = 0;
    const p = v.play();
    if (p && p.catch) p.catch(() => {});
  }
}

function attachLooping(pair) {
  const vs = videos(pair);
  const onEnded = () => {
    if (state.current !== pair) return;
    if (vs.every((v) => v.ended || v.duration - v.currentTime < 0.05)) playTogether(pair);
  };
  for (const v of vs) v.addEventListener("ended", onEnded);
}

function show(pair) {
  state.current = pair;
  pair.shownAt = performance.now();
  $("stage").dataset.queryId = String(pair.query_id);
  $("waiting").hidden = true;
  for (const side of [pair.left, pair.right]) side.el.classList.remove("standby");
  attachLooping(pair);
  pair.ready.then(() => { if (state.current === pair) { pair.shownAt = performance.now(); playTogether(pair); } });
}

function showWaiting() {
  $("stage").dataset.queryId = "";
  $("waiting").hidden = false;
}

// ------------------------------------------------------------------------------------------- the loop
async function refill() {
  if (state.refilling || !state.labeler) return;
  state.refilling = true;
  clearTimeout(state.retryTimer);
  try {
    const data = await api("/api/claim", { labeler: state.labeler, n: PREFETCH });
    showStatus(data);
    for (const p of data.pairs) {
      if (state.known.has(p.query_id)) continue;
      state.known.add(p.query_id);
      state.upcoming.push(prepare(p));
    }
    if (!state.current && state.upcoming.length) show(state.upcoming.shift());
    if (!state.current) showWaiting();
    if (!(state.current && state.upcoming.length)) state.retryTimer = setTimeout(refill, 1500);
    if (state.current) say("");
  } catch (e) {
    say(`cannot reach the server (${e.message}); retrying…`, true);
    state.retryTimer = setTimeout(refill, 3000);
  } finally {
    state.refilling = false;
  }
}

async function send(answer, attempt = 0) {
  try {
    const data = await api("/api/answer", answer);
    window.prefrl.answersSent += 1;
    showStatus(data);
  } catch (e) {
    if (e.status === undefined && attempt < 8) {  // network error: the answer is kept and sent again
      setTimeout(() => send(answer, attempt + 1), 1000 * 2 ** Math.min(attempt, 4));
      say("answer not sent yet (no connection); retrying…", true);
      return;
    }
    if (e.status !== 409) say(`answer to pair ${answer.query_id} not stored: ${e.message}`, true);
  }
}

function answer(choice) {
  const pair = state.current;
  if (!pair || !state.labeler) return;
  const t0 = performance.now();
  const seconds = Math.max(0, (t0 - pair.shownAt) / 1000);
  state.current = null;
  if (state.upcoming.length) show(state.upcoming.shift()); else showWaiting();
  window.prefrl.lastSwitchMs = performance.now() - t0;
  dispose(pair);
  const button = document.querySelector(`#answers [data-choice="${choice}"]`);
  if (button) { button.classList.add("pressed"); setTimeout(() => button.classList.remove("pressed"), 150); }
  send({ query_id: pair.query_id, choice, labeler: state.labeler, seconds: Math.round(seconds * 1000) / 1000 })
    .then(refill);
}

function replay() {
  if (state.current) playTogether(state.current);
}

// ------------------------------------------------------------------------------------------ set-up
function setLabeler(name) {
  state.labeler = name;
  localStorage.setItem("prefrl.labeler", name);
  $("labeler-name").textContent = name;
  $("name-form").hidden = true;
  refill();
}

function askName() {
  $("name-form").hidden = false;
  $("name-input").value = state.labeler || "";
  $("name-input").focus();
}

function init() {
  const params = new URLSearchParams(location.search);
  $("speed").value = String(state.speed);
  $("speed").addEventListener("change", (e) => {
    state.speed = Number(e.target.value);
    localStorage.setItem("prefrl.speed", String(state.speed));
    if (state.current) for (const v of videos(state.current)) v.playbackRate = state.speed;
  });
  $("replay").addEventListener("click", replay);
  for (const b of document.querySelectorAll("#answers button")) {
    b.addEventListener("click", () => answer(b.dataset.choice));
  }
  document.addEventListener("keydown", (e) => {
    if (!$("name-form").hidden || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (KEYS[e.key]) { e.preventDefault(); answer(KEYS[e.key]); }
    else if (e.key === "r" || e.key === "R") { e.preventDefault(); replay(); }
  });
  $("rename").addEventListener("click", askName);
  $("name-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("name-input").value.trim();
    if (name) {
      if (state.labeler && state.labeler !== name) {  // the old name's pairs lapse back to the queue
        if (state.current) dispose(state.current);
        state.upcoming.forEach(dispose);
        state.current = null; state.upcoming = []; state.known.clear();
      }
      setLabeler(name);
    }
  });
  api("/api/info").then(showStatus).catch((e) => say(`cannot reach the server: ${e.message}`, true));
  const name = params.get("labeler") || localStorage.getItem("prefrl.labeler");
  if (name) setLabeler(name); else askName();
}

init();
