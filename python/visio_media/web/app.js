// visio — the browser client served by visio-media at `/`.
//
// Join screen (name, room, camera preview) → meeting (tile grid, control bar) → ended screen.
// Tokens: `?token=...` in the URL (an application minted it), or, on a server in dev mode,
// `POST /api/dev-token {room, name}`.
//
// Test hooks live on `window.visio` (see the bottom of this file).

import { icon, LOGO } from "./icons.js";
import { MeetingSession, SessionError } from "./session.js";

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const STATS_INTERVAL_MS = 1000;
const SPEAKING_LEVEL = 0.03; // getStats audioLevel (0..1) above which we call it speech
/** An integer URL parameter within [lo, hi], or `fallback`. */
function intParam(name, lo, hi, fallback) {
  const v = Number.parseInt(params.get(name) || "", 10);
  return Number.isInteger(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}
// A grid page, ourselves included: at most 16 tiles, or `?tiles=N` (2..16).
const MAX_PAGE_TILES = intParam("tiles", 2, 16, 16);
const MIN_TILE_W = 160; // fewer tiles per page rather than smaller than this (CSS px)
const STRIP_SIZE = 5; // others in the speaker view's strip
// Receive slots asked at join: one grid page of video, the three loudest voices; `?video_slots=`
// and `?audio_slots=` ask for others (fewer: less bandwidth; the server caps them).
const VIDEO_SLOTS = intParam("video_slots", 0, 64, 16);
const AUDIO_SLOTS = intParam("audio_slots", 0, 16, 3);
const LAYOUT_DEBOUNCE_MS = 200;

// ---------------------------------------------------------------------------- logging

const logLines = [];
function log(msg) {
  const line = `${(performance.now() / 1000).toFixed(3)} ${msg}`;
  logLines.push(line);
  if (logLines.length > 500) logLines.shift();
  if (params.has("debug")) console.log(line);
}

// ---------------------------------------------------------------------------- media settings

/** Camera constraints: sensible defaults, or `?video=WxH@fps` (e.g. 320x180@15). */
function videoConstraints() {
  const m = /^(\d+)x(\d+)(?:@(\d+))?$/.exec(params.get("video") || "");
  const [w, h, fps] = m ? [Number(m[1]), Number(m[2]), Number(m[3] || 24)] : [640, 360, 24];
  return { width: { ideal: w }, height: { ideal: h }, frameRate: { ideal: fps, max: fps } };
}

const AUDIO_CONSTRAINTS = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function describeMediaError(e) {
  switch (e && e.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera and microphone are blocked. Allow them in your browser's site settings.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera or microphone was found.";
    case "NotReadableError":
    case "AbortError":
      return "Your camera or microphone is in use by another application.";
    default:
      return `Camera and microphone are unavailable${e && e.message ? ` (${e.message})` : ""}.`;
  }
}

/** Camera and microphone, falling back to whichever of the two works. */
async function openLocalMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error(window.isSecureContext
      ? "This browser cannot capture media."
      : "Camera and microphone need a secure page (https:// or http://localhost).");
  }
  const video = videoConstraints();
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: AUDIO_CONSTRAINTS, video });
  } catch (first) {
    log(`getUserMedia(audio+video): ${first.name} ${first.message}`);
    for (const c of [{ audio: AUDIO_CONSTRAINTS }, { video }]) {
      try { return await navigator.mediaDevices.getUserMedia(c); } catch (e) { /* next */ }
    }
    throw first;
  }
}

// ---------------------------------------------------------------------------- helpers

function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? words[0][0] + words[words.length - 1][0] : (words[0] || "?").slice(0, 2);
  return letters.toUpperCase();
}

function hue(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function el(tag, cls, html) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (html != null) e.innerHTML = html;
  return e;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** The largest tile (aspect `ratio`) that fits `n` of them into `w`×`h` with `gap`. */
function bestFit(n, w, h, gap, ratio = 16 / 9) {
  let best = { cols: 1, tileW: 0, tileH: 0 };
  for (let cols = 1; cols <= Math.max(1, n); cols++) {
    const rows = Math.ceil(n / cols);
    const tileW = Math.min((w - gap * (cols - 1)) / cols, ((h - gap * (rows - 1)) / rows) * ratio);
    if (tileW > best.tileW) best = { cols, tileW, tileH: tileW / ratio };
  }
  best.tileW = Math.max(0, Math.floor(best.tileW));
  best.tileH = Math.max(0, Math.floor(best.tileH));
  return best;
}

function jwtClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
  } catch (e) {
    return {};
  }
}

// ---------------------------------------------------------------------------- tiles

/** One tile: a participant's camera (with their name and mic state) or a screen share. */
class Tile {
  constructor(key, { identity, name, kind, local }) {
    this.key = key;
    this.identity = identity;
    this.kind = kind; // "camera" | "screen"
    this.local = local;
    this.track = null;
    this.framesRendered = 0;
    this.el = el("div", `tile tile-${kind}${local ? " tile-local" : ""}`);
    this.el.dataset.key = key;
    this.el.dataset.identity = identity;
    this.el.dataset.kind = kind;
    this.video = el("video");
    this.video.autoplay = true;
    this.video.muted = true; // sound goes through the <audio> sink
    this.video.playsInline = true;
    this.avatar = el("div", "tile-avatar");
    this.avatarBubble = el("div", "avatar-bubble");
    this.avatar.append(this.avatarBubble);
    this.label = el("div", "tile-label");
    this.micIcon = el("span", "tile-mic", icon("micOff"));
    this.nameEl = el("span", "tile-name");
    this.label.append(this.micIcon, this.nameEl);
    if (kind === "screen") this.label.prepend(el("span", "tile-screen-icon", icon("screen")));
    this.el.append(this.video, this.avatar, this.label);
    if (!local && kind === "camera") {
      // Clicking the tile pins; this button is the same action for keyboards and screen readers.
      this.pinBtn = el("button", "tile-pin");
      this.pinBtn.type = "button";
      this.el.append(this.pinBtn);
    }
    this.setName(name);
    this.setMic("none");
    this.setCam("none");
    this.el.dataset.speaking = "false";
  }

  setName(name) {
    this.name = name;
    const label = this.kind === "screen"
      ? (this.local ? "Your screen" : `${name}'s screen`)
      : (this.local ? `${name} (you)` : name);
    if (this.nameEl.textContent !== label) this.nameEl.textContent = label;
    this.avatarBubble.textContent = initials(name);
    this.avatarBubble.style.setProperty("--avatar-hue", hue(this.identity));
  }

  /** "on" | "muted" | "none" */
  setMic(state) {
    if (this.el.dataset.mic === state) return;
    this.el.dataset.mic = state;
    this.micIcon.title = state === "muted" ? "Microphone muted" : state === "none" ? "No microphone" : "";
  }

  /** "on" | "muted" | "none" | "waiting" (published, but no slot carries it to us now) */
  setCam(state) {
    if (this.el.dataset.cam !== state) this.el.dataset.cam = state;
  }

  setPinned(on) {
    const v = on ? "true" : "false";
    if (this.el.dataset.pinned === v) return;
    this.el.dataset.pinned = v;
    if (this.pinBtn) {
      this.pinBtn.textContent = on ? "Unpin" : "Pin";
      this.pinBtn.setAttribute("aria-pressed", v);
      this.pinBtn.setAttribute("aria-label", on ? `Unpin ${this.name}` : `Pin ${this.name}`);
    }
  }

  setSpeaking(on) {
    const v = on ? "true" : "false";
    if (this.el.dataset.speaking !== v) this.el.dataset.speaking = v;
  }

  setTrack(track) {
    if (this.track === track) return;
    this.track = track;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    if (track) {
      this.video.play().catch(() => {});
      this._countFrames();
    }
  }

  _countFrames() {
    const v = this.video;
    if (!("requestVideoFrameCallback" in v) || this._counting) return;
    this._counting = true;
    const tick = () => {
      if (!this.el.isConnected && this._destroyed) return;
      this.framesRendered += 1;
      v.requestVideoFrameCallback(tick);
    };
    v.requestVideoFrameCallback(tick);
  }

  place(parent) {
    if (this.el.parentNode !== parent) {
      parent.append(this.el);
      if (this.track) this.video.play().catch(() => {});
    }
  }

  destroy() {
    this._destroyed = true;
    this.video.srcObject = null;
    this.el.remove();
  }
}

// ---------------------------------------------------------------------------- the app

class App {
  constructor() {
    this.session = null;
    this.localStream = null;
    this.mediaError = null;
    this.micOn = true;
    this.camOn = true;
    this.hasCamera = false; // a camera answered once: the button can turn it back on
    this.camChain = Promise.resolve(); // camera on/off steps, one after the other
    this.tiles = new Map(); // key → Tile
    this.audio = new Map(); // audio slot mid → <audio>
    this.view = params.get("view") === "speaker" ? "speaker" : "grid";
    this.page = 0; // grid page, 0-based
    this.pinned = null; // identity
    this.lastSpeaker = null;
    this.recentSpeakers = []; // identities, most recent first
    this.featured = null;
    this.shownOrder = null; // tile keys in display order
    this.midCounters = new Map(); // slot mid → last getStats counters
    this.keyCounters = new Map(); // tile key → counters accumulated while a slot carried it
    this.layoutTimer = null;
    this.lastLayoutText = null;
    this.lastLayout = null;
    this.layoutsSent = 0;
    this.statsTimer = null;
    this.lastStats = null;
    this.tileStats = {}; // key → numbers, for the test hooks
    this.localSpeaking = false;
    this.remoteLevels = new Map(); // identity → audioLevel from getStats
    this.urlToken = params.get("token");
    this.state = "idle"; // idle | joining | joined | reconnecting | left | failed
    this.error = null;
  }

  // ---------------------------------------------------------------- start

  init() {
    document.querySelectorAll("[data-logo]").forEach((e) => { e.innerHTML = LOGO; });
    document.querySelectorAll("[data-icon]").forEach((e) => { e.innerHTML = icon(e.dataset.icon); });

    const nameInput = $("#name-input");
    const roomInput = $("#room-input");
    nameInput.value = params.get("name") || localStorage.getItem("visio.name") || "";
    roomInput.value = params.get("room") || "lobby";
    if (this.urlToken) {
      // The token names the room and the participant: show them instead of the form fields.
      const claims = jwtClaims(this.urlToken);
      const room = claims.room || params.get("room") || "";
      const who = claims.name || claims.sub || "";
      roomInput.value = room;
      nameInput.value = who;
      document.querySelectorAll("#join-form .field").forEach((f) => { f.hidden = true; });
      const summary = $("#token-summary");
      summary.hidden = false;
      summary.innerHTML = who && room
        ? `<div class="avatar-bubble" style="--avatar-hue:${hue(claims.sub || who)}">${escapeHtml(initials(who))}</div>` +
          `<span>You are joining <strong>${escapeHtml(room)}</strong> as <strong>${escapeHtml(who)}</strong>.</span>`
        : "<span>You are joining with a meeting link.</span>";
      $("#join-subtitle").textContent = "You were invited to this meeting. Check your camera and microphone, then join.";
    }

    $("#join-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.join(roomInput.value, nameInput.value);
    });
    nameInput.addEventListener("input", () => this.renderPreview());
    for (const input of [nameInput, roomInput]) input.addEventListener("input", () => this.formError(null));
    $("#preview-mic").addEventListener("click", () => this.toggleMic());
    $("#preview-cam").addEventListener("click", () => this.toggleCam());
    $("#mic-btn").addEventListener("click", () => this.toggleMic());
    $("#cam-btn").addEventListener("click", () => this.toggleCam());
    $("#share-btn").addEventListener("click", () => this.toggleScreenShare());
    $("#leave-btn").addEventListener("click", () => this.leave());
    $("#copy-link").addEventListener("click", () => this.copyLink());
    $("#rejoin-btn").addEventListener("click", () => this.rejoin());
    $("#home-btn").addEventListener("click", () => this.home());
    window.addEventListener("beforeunload", () => { if (this.session) this.session.leave(); });

    $("#view-btn").addEventListener("click", () => this.setView(this.view === "speaker" ? "grid" : "speaker"));
    $("#page-prev").addEventListener("click", () => this.goToPage(this.page - 1));
    $("#page-next").addEventListener("click", () => this.goToPage(this.page + 1));
    document.body.dataset.layout = this.view;

    // The page size follows the stage's size: a resize can change what is shown.
    new ResizeObserver(() => this.render()).observe($("#stage"));
    this.showView("join");
    this.startPreview();
  }

  async startPreview() {
    if (this.localStream) return;
    $("#preview-status").textContent = "Starting camera…";
    try {
      this.localStream = await openLocalMedia();
      this.mediaError = null;
      if (this.localStream.getVideoTracks().length) this.hasCamera = true;
      log(`local media: ${this.localStream.getTracks().map((t) => t.kind).join("+")}`);
    } catch (e) {
      this.mediaError = describeMediaError(e);
      log(`local media failed: ${e.name} ${e.message}`);
    }
    this.applyLocalEnabled();
    this.renderPreview();
  }

  localTrack(kind) {
    return this.localStream ? this.localStream.getTracks().find((t) => t.kind === kind && t.readyState === "live") : null;
  }

  /** The microphone is muted with `enabled` (silence is sent, the device stays open: unmuting
   * is instant and echo cancellation keeps its state). The camera is stopped when off. */
  applyLocalEnabled() {
    const mic = this.localTrack("audio");
    if (mic) mic.enabled = this.micOn;
    if (!this.camOn) this.dropLocalVideo();
  }

  /** Stop and forget the captured camera track (the device is released, its light goes off). */
  dropLocalVideo() {
    if (!this.localStream) return;
    const video = this.localStream.getVideoTracks();
    if (!video.length) return;
    for (const t of video) t.stop();
    this.localStream = new MediaStream(this.localStream.getAudioTracks());
  }

  renderPreview() {
    const cam = this.localTrack("video");
    const mic = this.localTrack("audio");
    const video = $("#preview-video");
    if (cam && video.srcObject !== this.localStream) video.srcObject = this.localStream;
    if (!cam && video.srcObject) video.srcObject = null;
    const showVideo = Boolean(cam && this.camOn);
    $("#preview").dataset.cam = showVideo ? "on" : "off";
    $("#preview-initials").textContent = initials($("#name-input").value || "You");
    $("#preview-initials").style.setProperty("--avatar-hue", hue($("#name-input").value || "You"));
    let status = "";
    if (this.mediaError) status = this.mediaError + " You can still join to watch and listen.";
    else if (!this.localStream) status = "Starting camera…";
    else if (!this.camOn && this.hasCamera) status = "Camera is off";
    else if (!cam) status = "No camera: you will join with audio only.";
    $("#preview-status").textContent = status;
    $("#preview-status").hidden = !status;
    $("#preview").classList.toggle("has-error", Boolean(this.mediaError));
    this.renderToggle($("#preview-mic"), "mic", Boolean(mic) && this.micOn, !mic);
    this.renderToggle($("#preview-cam"), "cam", Boolean(cam) && this.camOn, !this.hasCamera);
    this.renderToggle($("#mic-btn"), "mic", Boolean(mic) && this.micOn, !mic);
    this.renderToggle($("#cam-btn"), "cam", Boolean(cam) && this.camOn, !this.hasCamera);
  }

  renderToggle(button, what, on, unavailable) {
    const name = what === "mic" ? "microphone" : "camera";
    button.innerHTML = icon(on ? what : `${what}Off`);
    button.classList.toggle("off", !on);
    button.disabled = unavailable;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    const label = unavailable ? `No ${name}` : on ? `Turn off ${name}` : `Turn on ${name}`;
    button.title = label;
    button.setAttribute("aria-label", label);
  }

  // ---------------------------------------------------------------- join

  async fetchToken(room, name) {
    let resp;
    try {
      resp = await fetch("/api/dev-token", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ room, name }),
      });
    } catch (e) {
      throw new SessionError("unreachable", "Can't reach the meeting server. Check that it is running and try again.");
    }
    if (resp.status === 404 || resp.status === 405) {
      throw new SessionError("token",
        "This server does not hand out tokens to the page. Open the meeting link your application gave you (it contains ?token=…).");
    }
    if (!resp.ok) {
      let text = "";
      try {
        const body = await resp.json();
        text = (body.error && (body.error.message || body.error)) || body.message || "";
      } catch (e) { /* not JSON */ }
      if (resp.status >= 500) throw new SessionError("unreachable", `The meeting server had a problem (${resp.status}). Try again in a moment.`);
      if (resp.status === 400) throw new SessionError("token", `Check your name and the room: ${text || "not accepted"}.`);
      throw new SessionError("token", `The server refused to let you in: ${text || resp.status}`);
    }
    return resp.json();
  }

  async join(room, name) {
    if (this.state === "joining" || this.state === "joined") return;
    room = String(room || "").trim().replace(/\s+/g, "-");
    name = String(name || "").trim();
    if (!this.urlToken) {
      if (!name) return this.formError("Enter your name.", "#name-input");
      if (!room) return this.formError("Enter a room name.", "#room-input");
      localStorage.setItem("visio.name", name);
    }
    this.formError(null);
    this.setState("joining");
    $("#join-button").disabled = true;
    $("#join-button").textContent = "Joining…";
    try {
      if (!this.localStream && !this.mediaError) await this.startPreview();
      let token = this.urlToken;
      if (!token) token = (await this.fetchToken(room, name)).token;
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const session = this.session = new MeetingSession({
        wsUrl: `${scheme}://${location.host}/ws`, token, log,
        videoSlots: VIDEO_SLOTS, audioSlots: AUDIO_SLOTS,
      });
      session.addEventListener("change", (ev) => this.onSessionChange(ev.detail));
      await session.join();
      this.lastRoom = session.room;
      if (!this.urlToken) history.replaceState(null, "", `?room=${encodeURIComponent(session.room)}`);
      this.enterMeeting();
      const stream = new MediaStream([this.localTrack("audio"), this.localTrack("video")].filter(Boolean));
      const res = await session.publish(stream.getTracks().length ? stream : null,
                                        { cameraOff: this.hasCamera && !this.camOn });
      if (res && !res.publishing && stream.getTracks().length) {
        this.toast("warn", "You can watch and listen, but this meeting does not let you speak or share video.");
        this.localStream.getTracks().forEach((t) => t.stop());
        this.localStream = null;
      }
      if (this.mediaError) this.toast("warn", this.mediaError);
      this.setState("joined");
    } catch (e) {
      log(`join failed: ${e.kind || e.name}: ${e.message}`);
      const s = this.session;
      this.session = null;
      if (s) await s.leave().catch(() => {});
      this.teardownMeeting();
      this.error = { kind: e.kind || "media", message: e.message };
      this.setState("failed");
      this.showView("join");
      this.formError(this.urlToken && e.kind === "token" && e.code === "unauthorized"
        ? `This meeting link is not valid or has expired (${e.detail}). Ask for a new link.`
        : e.message);
    } finally {
      $("#join-button").disabled = false;
      $("#join-button").textContent = "Join meeting";
    }
  }

  formError(message, focus) {
    const box = $("#join-error");
    box.hidden = !message;
    if (message) box.innerHTML = `${icon("alert")}<span>${escapeHtml(message)}</span>`;
    if (focus) $(focus).focus();
  }

  enterMeeting() {
    $("#room-name").textContent = this.session.room;
    document.title = `${this.session.room} · visio`;
    this.showView("meeting");
    this.renderPreview();
    this.render();
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.pollStats(), STATS_INTERVAL_MS);
  }

  onSessionChange(detail) {
    const s = this.session;
    if (!s) return;
    if (detail.what === "notice") this.toast(detail.level, detail.text);
    if (detail.what === "participants") {
      const p = detail.joined && s.participants.get(detail.joined);
      if (p && this.state === "joined") this.toast("info", `${p.name} joined`);
      if (detail.left && this.tiles.has(detail.left)) {
        const who = this.tiles.get(detail.left).name;
        this.toast("info", `${who} left`);
      }
    }
    if (detail.what === "state") {
      // While joining, join() reports failures itself (on the join screen).
      if (s.state === "failed" && this.state !== "joining") return this.onSessionFailed(s.error);
      if (s.state === "reconnecting") this.setState("reconnecting");
      if (s.state === "joined" && this.state === "reconnecting") {
        this.setState("joined");
        this.lastLayoutText = null; // a new socket: say what we show again
      }
    }
    if (detail.what === "media" && s.mediaState === "failed") {
      this.banner("Media connection failed: your browser could not reach the media server. Check that UDP traffic is allowed, then rejoin.");
    }
    this.render();
  }

  onSessionFailed(err) {
    this.error = { kind: (err && err.kind) || "disconnected", message: (err && err.message) || "Disconnected." };
    this.session = null;
    this.teardownMeeting();
    this.setState("failed");
    this.showEnded(err && err.kind === "removed" ? "The meeting ended" : "Disconnected", this.error.message, true);
  }

  // ---------------------------------------------------------------- controls

  async toggleMic() {
    this.micOn = !this.micOn;
    this.applyLocalEnabled();
    this.renderPreview();
    if (this.session) await this.session.setMuted("microphone", !this.micOn);
    this.render();
    return this.micOn;
  }

  /** Camera off stops the capture track (the light goes off, nothing is sent); camera on
   * captures again and puts the new track on the same sender (no renegotiation). */
  toggleCam() {
    const step = this.camChain.then(() => this.setCamera(!this.camOn));
    this.camChain = step.catch(() => {});
    return step;
  }

  async setCamera(on) {
    if (on === this.camOn) return this.camOn;
    const s = this.session;
    if (!on) {
      this.camOn = false;
      this.dropLocalVideo();
      this.renderPreview();
      if (s && s.local.has("camera")) {
        try {
          await s.setSourceTrack("camera", null);
        } catch (e) {
          log(`camera off: ${e.message}`);
        }
      }
      this.render();
      return this.camOn;
    }
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
      track = stream.getVideoTracks()[0];
    } catch (e) {
      log(`getUserMedia(video): ${e.name} ${e.message}`);
      this.toast("error", describeMediaError(e));
      return this.camOn;
    }
    this.hasCamera = true;
    this.camOn = true;
    const audio = this.localStream ? this.localStream.getAudioTracks() : [];
    this.localStream = new MediaStream([...audio, track]);
    this.renderPreview();
    if (s && s.local.has("camera")) {
      try {
        await s.setSourceTrack("camera", track);
      } catch (e) {
        log(`camera on: ${e.message}`);
        this.toast("error", `Could not send your camera: ${e.message}`);
      }
    }
    this.render();
    return this.camOn;
  }

  async toggleScreenShare() {
    if (this.session && this.session.local.has("screen_share")) return this.stopScreenShare();
    return this.startScreenShare();
  }

  async startScreenShare() {
    const s = this.session;
    if (!s || s.local.has("screen_share")) return false;
    if (!navigator.mediaDevices.getDisplayMedia) {
      this.toast("error", "This browser cannot share its screen.");
      return false;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { ideal: 15, max: 30 } }, audio: false,
      });
    } catch (e) {
      log(`getDisplayMedia: ${e.name} ${e.message}`);
      if (e.name !== "NotAllowedError") this.toast("error", `Screen sharing failed: ${e.message}`);
      return false;
    }
    return this.shareStream(stream);
  }

  /** Publish `stream` as the screen share (also a test hook: a canvas capture can stand in). */
  async shareStream(stream) {
    const s = this.session;
    if (!s) return false;
    const video = stream.getVideoTracks()[0];
    if (video && "contentHint" in video) video.contentHint = "detail";
    try {
      await s.startScreenShare(stream);
    } catch (e) {
      this.toast("error", `Screen sharing failed: ${e.message}`);
      await s.stopScreenShare().catch(() => {});
      return false;
    } finally {
      this.render();
    }
    return true;
  }

  async stopScreenShare() {
    if (!this.session) return;
    await this.session.stopScreenShare();
    this.render();
  }

  async leave() {
    const s = this.session;
    this.session = null;
    if (s) await s.leave();
    this.teardownMeeting();
    this.setState("left");
    this.showEnded("You left the meeting", "Thanks for joining.", true);
  }

  async rejoin() {
    const room = this.lastRoom || $("#room-input").value;
    const name = $("#name-input").value;
    this.showView("join");
    await this.startPreview();
    await this.join(room, name);
  }

  home() {
    this.setState("idle");
    this.showView("join");
    this.startPreview();
  }

  copyLink() {
    const url = this.urlToken ? location.href : `${location.origin}/?room=${encodeURIComponent(this.session ? this.session.room : "")}`;
    const done = () => this.toast("info", "Meeting link copied");
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(url).then(done, () => this.toast("info", url));
    } else {
      this.toast("info", url);
    }
  }

  teardownMeeting() {
    clearInterval(this.statsTimer);
    this.statsTimer = null;
    for (const tile of this.tiles.values()) tile.destroy();
    this.tiles.clear();
    for (const a of this.audio.values()) { a.srcObject = null; a.remove(); }
    this.audio.clear();
    this.tileStats = {};
    this.remoteLevels.clear();
    this.midCounters.clear();
    this.keyCounters.clear();
    clearTimeout(this.layoutTimer);
    this.layoutTimer = null;
    this.lastLayoutText = null;
    this.lastLayout = null;
    this.pinned = null;
    this.page = 0;
    this.shownOrder = null;
    this.recentSpeakers = [];
    this.lastSpeaker = null;
    this.banner(null);
    // The session stopped our tracks: the next join opens the devices again.
    if (this.localStream && this.localStream.getTracks().every((t) => t.readyState === "ended")) {
      this.localStream = null;
    }
    $("#preview-video").srcObject = null;
  }

  // ---------------------------------------------------------------- views

  setState(state) {
    this.state = state;
    document.body.dataset.state = state;
    this.renderConnection();
  }

  showView(view) {
    for (const v of ["join", "meeting", "ended"]) $(`#${v}-view`).hidden = v !== view;
    document.body.dataset.view = view;
    if (view === "join") {
      document.title = "visio · meetings";
      this.renderPreview();
    }
  }

  showEnded(title, message, canRejoin) {
    $("#ended-title").textContent = title;
    $("#ended-message").textContent = message;
    $("#rejoin-btn").hidden = !canRejoin;
    this.showView("ended");
  }

  banner(text) {
    const b = $("#banner");
    b.hidden = !text;
    if (text) b.innerHTML = `${icon("wifiOff")}<span>${escapeHtml(text)}</span>`;
  }

  toast(level, text) {
    const t = el("div", `toast toast-${level}`, `${icon(level === "info" ? "check" : "alert")}<span>${escapeHtml(text)}</span>`);
    $("#toasts").append(t);
    setTimeout(() => t.classList.add("leaving"), level === "info" ? 3000 : 6000);
    setTimeout(() => t.remove(), level === "info" ? 3400 : 6400);
  }

  renderConnection() {
    const pill = $("#conn-pill");
    if (!pill) return;
    const s = this.session;
    let state = "connecting";
    let text = "Connecting…";
    if (this.state === "reconnecting") { state = "warn"; text = "Reconnecting…"; }
    else if (s && s.mediaState === "connected") { state = "ok"; text = "Connected"; }
    else if (s && s.mediaState === "failed") { state = "bad"; text = "Media failed"; }
    pill.dataset.state = state;
    $("#conn-text").textContent = text;
  }

  // ---------------------------------------------------------------- tiles

  /** The others in the order the grid shows them: join order (stable pages). */
  others() {
    return this.session ? [...this.session.participants.values()] : [];
  }

  /** Tiles per grid page (ourselves included): at most MAX_PAGE_TILES, fewer when the stage is
   * too small for tiles of at least MIN_TILE_W pixels. */
  pageSize() {
    const r = $("#stage").getBoundingClientRect();
    const gap = 12;
    let fit = 1;
    for (let n = 2; n <= MAX_PAGE_TILES; n++) {
      if (bestFit(n, r.width - 40, r.height - 12, gap).tileW >= MIN_TILE_W) fit = n;
    }
    return Math.max(2, fit); // ourselves and at least one other
  }

  /** The grid's pages: {size, count, index, others (the Participants of the current page)}. */
  pages() {
    const others = this.others();
    const per = this.pageSize() - 1; // our own tile is on every page
    const count = Math.max(1, Math.ceil(others.length / per));
    this.page = Math.min(Math.max(0, this.page), count - 1);
    return { size: per + 1, count, index: this.page,
             others: others.slice(this.page * per, this.page * per + per) };
  }

  /** Who the speaker view shows big: the pinned participant, else the active speaker (the last
   * one while nobody speaks), else the first other. */
  featuredIdentity() {
    const s = this.session;
    if (!s) return null;
    if (this.pinned && s.participants.has(this.pinned)) return this.pinned;
    const loudest = this.loudestOthers().filter((id) => s.participants.has(id));
    // Judged by our own levels (no word from the server yet): keep a speaker who still speaks,
    // so that two voices do not swap the big tile every second.
    const keep = s.speakers === null && loudest.includes(this.lastSpeaker);
    const speaking = keep ? this.lastSpeaker : loudest[0];
    if (speaking) this.lastSpeaker = speaking;
    if (this.lastSpeaker && s.participants.has(this.lastSpeaker)) return this.lastSpeaker;
    const first = s.participants.keys().next();
    return first.done ? null : first.value;
  }

  /** Others speaking now, loudest first: the server's `active_speaker`; until it has said
   * anything (it speaks on changes only), the levels of what our audio slots play. */
  loudestOthers() {
    const s = this.session;
    if (!s) return [];
    if (s.speakers !== null) return s.speakers.filter((id) => id !== s.identity);
    return [...this.remoteLevels].filter(([, level]) => level > SPEAKING_LEVEL)
      .sort((a, b) => b[1] - a[1]).map(([id]) => id);
  }

  /** The speaker view's strip: recent speakers first, then join order; STRIP_SIZE others. */
  stripOthers(featured) {
    const s = this.session;
    const order = [];
    for (const id of [...this.loudestOthers(), ...this.recentSpeakers]) {
      if (id !== featured && id !== s.identity && s.participants.has(id) && !order.includes(id)) order.push(id);
    }
    for (const id of s.participants.keys()) {
      if (order.length >= STRIP_SIZE) break;
      if (id !== featured && !order.includes(id)) order.push(id);
    }
    return order.slice(0, STRIP_SIZE).map((id) => s.participants.get(id));
  }

  /** Bring the DOM in line with the session: our tile, the tiles of the page (grid view) or of
   * the speaker and the strip (speaker view), screen shares; video from the slot that carries
   * each one now; audio from the audio slots. */
  render() {
    const s = this.session;
    this.renderConnection();
    if (!s || !s.identity) return;
    for (const id of this.loudestOthers().reverse()) {
      this.recentSpeakers = [id, ...this.recentSpeakers.filter((x) => x !== id)].slice(0, 8);
    }
    const want = new Map(); // key → {identity, name, kind, local, track, mid, mic, cam, place}

    // Screen shares: ours, and everyone's who publishes one (the server always gives them a slot).
    const myScreen = s.local.get("screen_share");
    if (myScreen) {
      want.set(`${s.identity}#screen`, { identity: s.identity, name: s.name, kind: "screen", local: true,
                                         track: myScreen.track, mid: null, mic: "none", cam: "on", place: "featured" });
    }
    for (const p of s.participants.values()) {
      for (const t of p.tracks.values()) {
        if (t.source !== "screen_share") continue;
        const slot = s.slotFor(p.identity, "screen_share");
        want.set(`${p.identity}#screen`, { identity: p.identity, name: p.name, kind: "screen", local: false,
                                           track: slot ? slot.track : null, mid: slot ? slot.mid : null,
                                           mic: "none", cam: slot ? "on" : "waiting", place: "featured" });
      }
    }
    const presenting = want.size > 0;

    // Ourselves.
    const micEntry = s.local.get("microphone");
    const camEntry = s.local.get("camera");
    want.set(s.identity, {
      identity: s.identity, name: s.name, kind: "camera", local: true,
      track: camEntry ? camEntry.track : null, mid: null,
      mic: micEntry ? (this.micOn ? "on" : "muted") : "none",
      cam: camEntry && camEntry.track ? (this.camOn ? "on" : "muted") : (camEntry ? "muted" : "none"),
      place: "strip",
    });

    // The others on show: the grid page, or the speaker and the strip.
    let shown;
    let featured = null;
    if (this.view === "speaker") {
      featured = this.featuredIdentity();
      shown = this.stripOthers(featured);
      if (featured) shown.unshift(s.participants.get(featured));
    } else {
      shown = this.pages().others;
    }
    for (const p of shown) {
      const w = this.participantTile(p);
      w.place = !presenting && p.identity === featured ? "featured" : "strip";
      want.set(p.identity, w);
    }
    this.featured = featured;
    this.shownOrder = [...want.keys()];

    for (const [key, tile] of this.tiles) {
      if (!want.has(key)) { tile.destroy(); this.tiles.delete(key); }
    }
    for (const [key, w] of want) {
      let tile = this.tiles.get(key);
      if (!tile) {
        tile = new Tile(key, w);
        if (!w.local && w.kind === "camera") {
          tile.el.addEventListener("click", () => this.togglePin(tile.identity));
        }
        this.tiles.set(key, tile);
      }
      tile.place_ = w.place;
      tile.mid = w.mid;
      tile.setName(w.name);
      tile.setTrack(w.track);
      tile.setMic(w.mic);
      tile.setCam(w.track ? w.cam : (w.cam === "on" ? "waiting" : w.cam));
      tile.setPinned(!w.local && this.pinned === w.identity);
    }
    this.renderAudio();
    this.renderSpeakers();
    this.layout();

    $("#count").textContent = String(s.participants.size + 1);
    const sharing = Boolean(myScreen);
    const share = $("#share-btn");
    share.innerHTML = icon(sharing ? "screenOff" : "screen");
    share.classList.toggle("active", sharing);
    share.title = sharing ? "Stop presenting" : "Present your screen";
    share.setAttribute("aria-label", share.title);
    this.renderViewControls();
  }

  /** A remote participant's camera tile: video when a slot carries their camera now. */
  participantTile(p) {
    const s = this.session;
    let mic = "none";
    let cam = "none";
    for (const t of p.tracks.values()) {
      if (t.source === "microphone") mic = t.muted ? "muted" : "on";
      if (t.source === "camera") cam = t.muted ? "muted" : "on";
    }
    const slot = s.slotFor(p.identity, "camera");
    return { identity: p.identity, name: p.name, kind: "camera", local: false,
             track: slot && cam !== "muted" ? slot.track : null, mid: slot ? slot.mid : null,
             mic, cam: slot && cam === "none" ? "on" : cam };
  }

  renderViewControls() {
    const speaker = this.view === "speaker";
    const viewBtn = $("#view-btn");
    viewBtn.textContent = speaker ? "Grid view" : "Speaker view";
    viewBtn.setAttribute("aria-label", speaker ? "Switch to the grid view" : "Switch to the speaker view");
    const pager = $("#pager");
    const pg = speaker ? null : this.pages();
    pager.hidden = !pg || pg.count <= 1;
    if (pg) {
      $("#page-label").textContent = `Page ${pg.index + 1} of ${pg.count}`;
      $("#page-prev").disabled = pg.index === 0;
      $("#page-next").disabled = pg.index >= pg.count - 1;
    }
  }

  /** One <audio> per audio slot: the slot lines never change, what they carry does. */
  renderAudio() {
    const s = this.session;
    const want = new Map();
    if (s) for (const [mid, track] of s.slotTracks) if (track.kind === "audio") want.set(mid, track);
    for (const [mid, a] of this.audio) {
      if (want.get(mid) !== (a.srcObject && a.srcObject.getTracks()[0])) {
        a.srcObject = null;
        a.remove();
        this.audio.delete(mid);
      }
    }
    for (const [mid, track] of want) {
      if (this.audio.has(mid)) continue;
      const a = document.createElement("audio");
      a.autoplay = true;
      a.dataset.mid = mid;
      a.srcObject = new MediaStream([track]);
      $("#audio-sink").append(a);
      a.play().catch((e) => log(`audio play: ${e.message}`));
      this.audio.set(mid, a);
    }
  }

  renderSpeakers() {
    const s = this.session;
    if (!s) return;
    let speaking;
    if (s.speakers !== null) {
      speaking = new Set(s.speakers);
    } else {
      // The server has said nothing about speakers yet: judge from the audio levels we see.
      speaking = new Set();
      for (const [identity, level] of this.remoteLevels) if (level > SPEAKING_LEVEL) speaking.add(identity);
      if (this.localSpeaking) speaking.add(s.identity);
    }
    for (const tile of this.tiles.values()) {
      tile.setSpeaking(tile.kind === "camera" && speaking.has(tile.identity) && tile.el.dataset.mic === "on");
    }
  }

  /** Places the tiles (featured area, grid or strip) and sizes them; then tells the server what
   * is shown (debounced). */
  layout() {
    const stage = $("#stage");
    const grid = $("#grid");
    const pres = $("#presentation");
    const order = this.shownOrder || [...this.tiles.keys()];
    const tiles = order.map((k) => this.tiles.get(k)).filter(Boolean);
    const big = tiles.filter((t) => t.place_ === "featured");
    const small = tiles.filter((t) => t.place_ !== "featured");
    const featuring = big.length > 0;
    stage.classList.toggle("presenting", featuring);
    for (const t of big) t.place(pres);
    for (const t of small) t.place(grid);
    // Keep the DOM order the order we want (the speaker first in the strip, ourselves first).
    for (const t of small) if (t.el.parentNode === grid) grid.append(t.el);
    const gap = 12;
    if (featuring) {
      const r = pres.getBoundingClientRect();
      const fit = bestFit(big.length, r.width, r.height, gap);
      pres.style.setProperty("--tile-w", `${fit.tileW}px`);
      pres.style.setProperty("--tile-h", `${fit.tileH}px`);
      const g = grid.getBoundingClientRect();
      const n = Math.max(1, small.length);
      const vertical = getComputedStyle(grid).flexDirection === "column";
      const w = vertical ? g.width : Math.min(240, (g.width - gap * (n - 1)) / n);
      const h = vertical ? Math.min(g.width * 9 / 16, (g.height - gap * (n - 1)) / n) : w * 9 / 16;
      const tileW = vertical ? h * 16 / 9 : w;
      grid.style.setProperty("--tile-w", `${Math.floor(tileW)}px`);
      grid.style.setProperty("--tile-h", `${Math.floor(tileW * 9 / 16)}px`);
    } else {
      const r = grid.getBoundingClientRect();
      const fit = bestFit(small.length, r.width, r.height, gap);
      grid.style.setProperty("--tile-w", `${fit.tileW}px`);
      grid.style.setProperty("--tile-h", `${fit.tileH}px`);
    }
    this.scheduleLayoutMessage();
  }

  /** The `layout` message for what is on screen now: remote tiles, the most important first
   * (screen shares, the featured speaker, then in display order), with their rendered sizes. */
  layoutMessage() {
    const s = this.session;
    const order = this.shownOrder || [];
    const tiles = [];
    for (const key of order) {
      const t = this.tiles.get(key);
      if (!t || t.local) continue;
      const featuredFirst = t.place_ === "featured" ? 0 : 1;
      tiles.push({ featuredFirst, tile: {
        identity: t.identity,
        source: t.kind === "screen" ? "screen_share" : "camera",
        width: Math.min(16384, Math.round(t.el.clientWidth)),
        height: Math.min(16384, Math.round(t.el.clientHeight)),
      } });
    }
    tiles.sort((a, b) => a.featuredFirst - b.featuredFirst); // stable: display order otherwise
    const pinned = this.pinned && s && s.participants.has(this.pinned) ? this.pinned : null;
    return { tiles: tiles.map((x) => x.tile), pinned };
  }

  /** Sends `layout` when what is shown changed, at most once per LAYOUT_DEBOUNCE_MS. */
  scheduleLayoutMessage() {
    if (!this.session || this.session.state !== "joined") return;
    if (this.layoutTimer) return;
    this.layoutTimer = setTimeout(() => {
      this.layoutTimer = null;
      const s = this.session;
      if (!s || s.state !== "joined") return;
      const msg = this.layoutMessage();
      const text = JSON.stringify(msg);
      if (text === this.lastLayoutText) return;
      if (s.sendLayout(msg.tiles, msg.pinned)) {
        this.lastLayoutText = text;
        this.lastLayout = msg;
        this.layoutsSent += 1;
        log(`layout: ${msg.tiles.map((t) => `${t.identity}/${t.source} ${t.width}x${t.height}`).join(", ")}` +
            `${msg.pinned ? ` pinned ${msg.pinned}` : ""}`);
      }
    }, LAYOUT_DEBOUNCE_MS);
  }

  // ---------------------------------------------------------------- views and pages

  setView(view) {
    this.view = view === "speaker" ? "speaker" : "grid";
    document.body.dataset.layout = this.view;
    this.render();
    return this.view;
  }

  goToPage(index) {
    const count = this.pages().count;
    this.page = Math.min(Math.max(0, index), count - 1);
    this.render();
    return this.page + 1;
  }

  togglePin(identity) {
    this.pinned = this.pinned === identity ? null : identity;
    const p = this.session && this.session.participants.get(identity);
    if (p) this.toast("info", this.pinned ? `${p.name} is pinned` : `${p.name} is no longer pinned`);
    this.render();
    return this.pinned;
  }

  /** Average colour of a tile's video now ({r, g, b} 0..255), or null without a picture. */
  sampleTileColor(key) {
    const tile = this.tiles.get(key);
    const v = tile && tile.video;
    if (!v || !v.videoWidth || !tile.track) return null;
    const c = document.createElement("canvas");
    c.width = 32;
    c.height = 18;
    const g = c.getContext("2d", { willReadFrequently: true });
    g.drawImage(v, 0, 0, c.width, c.height);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let r = 0; let gr = 0; let b = 0;
    for (let i = 0; i < px.length; i += 4) { r += px[i]; gr += px[i + 1]; b += px[i + 2]; }
    const n = px.length / 4;
    return { r: Math.round(r / n), g: Math.round(gr / n), b: Math.round(b / n) };
  }

  // ---------------------------------------------------------------- stats

  /** Every second: per-tile media counters (test hooks, speaking fallback). A slot's counters
   * grow for whoever it carried meanwhile: each second's growth goes to the slot's occupant. */
  async pollStats() {
    const s = this.session;
    if (!s || !s.pc) return;
    let st;
    try { st = await s.collectStats(); } catch (e) { return; }
    if (s !== this.session) return;
    this.lastStats = st;
    this.remoteLevels.clear();
    const latest = new Map(); // key → {frameWidth, frameHeight, audioLevel} now
    for (const [mid, inb] of st.inbound) {
      const slot = s.slots.get(mid);
      const prev = this.midCounters.get(mid) || { framesDecoded: 0, packetsReceived: 0 };
      this.midCounters.set(mid, { framesDecoded: inb.framesDecoded, packetsReceived: inb.packetsReceived });
      if (!slot || !slot.identity) continue;
      const key = slot.source === "screen_share" ? `${slot.identity}#screen` : slot.identity;
      const acc = this.keyCounters.get(key) ||
        { videoFramesDecoded: 0, videoPacketsReceived: 0, audioPacketsReceived: 0 };
      this.keyCounters.set(key, acc);
      const now = latest.get(key) || { frameWidth: 0, frameHeight: 0, audioLevel: 0 };
      latest.set(key, now);
      const dFrames = Math.max(0, inb.framesDecoded - prev.framesDecoded);
      const dPackets = Math.max(0, inb.packetsReceived - prev.packetsReceived);
      if (inb.kind === "video") {
        acc.videoFramesDecoded += dFrames;
        acc.videoPacketsReceived += dPackets;
        now.frameWidth = inb.frameWidth;
        now.frameHeight = inb.frameHeight;
      } else {
        acc.audioPacketsReceived += dPackets;
        now.audioLevel = Math.max(now.audioLevel, inb.audioLevel);
        if (slot.source === "microphone") this.remoteLevels.set(slot.identity, inb.audioLevel);
      }
    }
    const out = {};
    for (const tile of this.tiles.values()) {
      const acc = this.keyCounters.get(tile.key) || {};
      const now = latest.get(tile.key) || {};
      out[tile.key] = {
        identity: tile.identity, name: tile.name, kind: tile.kind, local: tile.local,
        mid: tile.mid || null, mic: tile.el.dataset.mic, cam: tile.el.dataset.cam,
        speaking: tile.el.dataset.speaking === "true", pinned: tile.el.dataset.pinned === "true",
        framesRendered: tile.framesRendered,
        videoWidth: tile.video.videoWidth, videoHeight: tile.video.videoHeight,
        videoFramesDecoded: acc.videoFramesDecoded || 0, videoPacketsReceived: acc.videoPacketsReceived || 0,
        frameWidth: now.frameWidth || 0, frameHeight: now.frameHeight || 0,
        audioPacketsReceived: acc.audioPacketsReceived || 0, audioLevel: now.audioLevel || 0,
      };
    }
    this.localSpeaking = this.micOn && (st.local.audioLevel || 0) > SPEAKING_LEVEL;
    if (out[s.identity]) {
      out[s.identity].audioLevel = st.local.audioLevel || 0;
      out[s.identity].audioPacketsSent = st.local.audio ? st.local.audio.packetsSent : 0;
      out[s.identity].videoFramesEncoded = st.local.video ? st.local.video.framesEncoded : 0;
    }
    this.tileStats = out;
    const loudest = this.loudestOthers()[0] || null;
    if (this.view === "speaker" && s.speakers === null && loudest && loudest !== this.featured && !this.pinned) {
      this.render(); // the speaker changed by the levels we hear
    } else {
      this.renderSpeakers();
    }
  }
}

// ---------------------------------------------------------------------------- boot + hooks

const app = new App();
app.init();

/** Test and debugging hooks. Read-only views plus the actions the buttons perform. */
window.visio = {
  get state() { return app.state; },
  get error() { return app.error; },
  get identity() { return app.session ? app.session.identity : null; },
  get room() { return app.session ? app.session.room : null; },
  get mediaState() { return app.session ? app.session.mediaState : null; },
  get sessionState() { return app.session ? app.session.state : null; },
  /** Server offers that arrived before the answer to ours (see session.js _onServerOffer). */
  get offersBeforeAnswer() { return app.session ? app.session.offersBeforeAnswer : 0; },
  /** Bytes of the SDP of our last offer (it must stay well under the server's frame limit). */
  get lastOfferBytes() { return app.session ? app.session.lastOfferBytes : 0; },
  get participants() {
    if (!app.session) return [];
    return [...app.session.participants.values()].map((p) => ({
      identity: p.identity, name: p.name, tracks: [...p.tracks.values()].map((t) => ({ ...t })),
    }));
  },
  /** Others in the room as the server counts them, and whether the paged list has all arrived. */
  get participantsTotal() { return app.session ? app.session.participantsTotal : 0; },
  get participantsComplete() { return app.session ? app.session.participantsComplete : false; },
  /** The receive slots: [{mid, kind, identity, trackId, source, receiving}] (protocol v2). */
  get slots() {
    const s = app.session;
    if (!s) return [];
    return [...s.slots.values()].map((x) => ({ ...x, receiving: s.slotTracks.has(x.mid) }));
  },
  get grantedSlots() { return app.session ? { video: app.session.videoSlots, audio: app.session.audioSlots } : null; },
  /** Tiles on screen, in display order: {key, identity, name, source, local, place, mid,
   * videoWidth, videoHeight, width, height, cam, pinned}; `mid` is the slot its video comes from. */
  get tileList() {
    return (app.shownOrder || []).map((k) => app.tiles.get(k)).filter(Boolean).map((t) => ({
      key: t.key, identity: t.identity, name: t.name, source: t.kind === "screen" ? "screen_share" : "camera",
      local: t.local, place: t.place_, mid: t.mid || null,
      videoWidth: t.video.videoWidth, videoHeight: t.video.videoHeight,
      width: t.el.clientWidth, height: t.el.clientHeight, cam: t.el.dataset.cam,
      pinned: t.el.dataset.pinned === "true", framesRendered: t.framesRendered,
    }));
  },
  /** The grid page: {index (1-based), count, size (tiles per page, ourselves included)}. */
  get page() {
    if (!app.session) return null;
    const p = app.pages();
    return { index: p.index + 1, count: p.count, size: p.size };
  },
  get view() { return app.view; },
  get pinned() { return app.pinned; },
  get featured() { return app.view === "speaker" ? app.featured : null; },
  /** The server's last `active_speaker` list (loudest first), or null before it said any. */
  get speakers() { return app.session && app.session.speakers ? [...app.session.speakers] : null; },
  /** The last `layout` sent and how many were sent. */
  get lastLayout() { return app.lastLayout; },
  get layoutsSent() { return app.layoutsSent; },
  setView: (view) => app.setView(view),
  goToPage: (k) => app.goToPage(k - 1),
  nextPage: () => app.goToPage(app.page + 1),
  prevPage: () => app.goToPage(app.page - 1),
  /** Pin `identity` (null: unpin), as a click on its tile does. */
  pin: (identity) => {
    if (identity == null) return app.pinned ? app.togglePin(app.pinned) : null;
    return app.pinned === identity ? app.pinned : app.togglePin(identity);
  },
  unpin: () => { if (app.pinned) app.togglePin(app.pinned); return app.pinned; },
  /** Average colour {r, g, b} of a tile's video now (key: identity or identity#screen). */
  sampleTileColor: (key) => app.sampleTileColor(key),
  get localTracks() {
    if (!app.session) return [];
    return [...app.session.local.values()].map((e) => ({ source: e.source, trackId: e.trackId, muted: e.muted, kind: e.kind,
      capturing: Boolean(e.track && e.track.readyState === "live") }));
  },
  /** The camera's capture track now (a MediaStreamTrack; null while the camera is off). */
  get cameraTrack() { return app.localTrack("video") || null; },
  /** The track our sender of `source` sends now (null: nothing, e.g. the camera is off). */
  sentTrack(source) {
    const e = app.session && app.session.local.get(source);
    return e ? e.transceiver.sender.track : null;
  },
  /** key (identity, or identity#screen) → counters, refreshed every second. */
  get tiles() { return app.tileStats; },
  async refreshStats() { await app.pollStats(); return app.tileStats; },
  async stats() { return app.session ? app.session.collectStats().then((s) => ({ ...s, inbound: Object.fromEntries(s.inbound) })) : null; },
  /** m-lines in the current remote description (protocol v2: our own lines plus the fixed
   * receive slots; it never grows with the room). */
  get remoteMLines() {
    const pc = app.session && app.session.pc;
    const sdp = pc && pc.remoteDescription ? pc.remoteDescription.sdp : "";
    return (sdp.match(/^m=/gm) || []).length;
  },
  get log() { return logLines.slice(); },
  join: (room, name) => app.join(room, name),
  toggleMic: () => app.toggleMic(),
  toggleCam: () => app.toggleCam(),
  startScreenShare: () => app.startScreenShare(),
  stopScreenShare: () => app.stopScreenShare(),
  shareStream: (stream) => app.shareStream(stream),
  leave: () => app.leave(),
};
