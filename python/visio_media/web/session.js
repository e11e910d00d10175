// One participant's connection to a visio-media room: the signalling WebSocket (docs/protocol.md)
// and the single RTCPeerConnection that carries everything we send and receive.
//
// No DOM here: the UI (app.js) listens to the "change" events and reads the state.
//
//   const s = new MeetingSession({wsUrl, token, videoSlots: 16, audioSlots: 3});
//   await s.join();                   // resolves after `joined`; throws a SessionError
//   await s.publish(stream);          // camera + microphone, one offer
//   s.addEventListener("change", (e) => render(e.detail));
//   s.sendLayout(tiles, pinned);      // what we show: the server fills our video slots from it
//
// Protocol v2 (docs/protocol.md): we receive on a fixed set of slots — V video + A audio lines of
// the server's first offer. Who a slot carries is told by `slots` messages, never by the SDP:
// `slots` (mid → {kind, identity, trackId, source}) and `slotTracks` (mid → MediaStreamTrack)
// together say whose media each receiver track plays now.

const DEFAULT_REQUEST_TIMEOUT_MS = 15000;
const ICE_GATHERING_TIMEOUT_MS = 3000;
const JOIN_TIMEOUT_MS = 10000;
const RECONNECT_WINDOW_MS = 15000; // the server keeps us for room.reconnect_grace_seconds (20 s)
export const DEFAULT_VIDEO_SLOTS = 16; // one grid page
export const DEFAULT_AUDIO_SLOTS = 3; // the three loudest speakers

/** Why a session could not start or stopped. `kind` drives the message the user sees. */
export class SessionError extends Error {
  /**
   * @param {"token"|"unreachable"|"media"|"room_full"|"unavailable"|"protocol"|"disconnected"|"removed"} kind
   */
  constructor(kind, message, code = null, detail = null) {
    super(message);
    this.name = "SessionError";
    this.kind = kind;
    this.code = code;
    this.detail = detail || message; // the server's own words, when it gave any
  }
}

/** Sources we publish, in the protocol's words. */
export const SOURCES = ["microphone", "camera", "screen_share", "screen_share_audio"];

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Resolves when ICE gathering completes (or after a timeout: we send what we have). The
 * protocol has no trickle: every SDP we send carries its candidates. */
function iceGatheringComplete(pc, timeoutMs = ICE_GATHERING_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** The a=mid values of an SDP, in order. */
function sdpMids(sdp) {
  return [...String(sdp || "").matchAll(/^a=mid:(\S+)/gm)].map((m) => m[1]);
}

/** mid → Set of codec mime types ("video/VP8", "video/rtx", ...) each m-section lists. */
function sdpCodecsByMid(sdp) {
  const out = new Map();
  for (const section of String(sdp || "").split(/\r?\n(?=m=)/).slice(1)) {
    const kind = /^m=(\w+)/.exec(section);
    const mid = /^a=mid:(\S+)/m.exec(section);
    if (!kind || !mid) continue;
    const mimes = new Set();
    for (const m of section.matchAll(/^a=rtpmap:\d+ ([^/\s]+)\//gm)) mimes.add(`${kind[1]}/${m[1]}`.toLowerCase());
    out.set(mid[1], mimes);
  }
  return out;
}

export class MeetingSession extends EventTarget {
  constructor({ wsUrl, token, log = () => {}, videoSlots = DEFAULT_VIDEO_SLOTS,
                audioSlots = DEFAULT_AUDIO_SLOTS }) {
    super();
    this.wsUrl = wsUrl;
    this.token = token;
    this.log = log;
    /** Slot counts we ask for at `join`; `joined` says what the server granted. */
    this.videoSlots = videoSlots;
    this.audioSlots = audioSlots;

    /** idle → connecting → joined ⇄ reconnecting → left | failed */
    this.state = "idle";
    /** The media path: new → connecting → connected | failed (from the pc and the server). */
    this.mediaState = "new";
    this.error = null;
    this.leftReason = null;

    this.identity = null;
    this.name = null;
    this.room = null;
    this.sessionId = null;

    /** identity → {identity, name, tracks: Map<track_id, Track>} (the others, not us), in the
     * order they joined. */
    this.participants = new Map();
    /** How many others the server says there are; `participants` catches up while the pages of
     * the list arrive (`participantsComplete`). */
    this.participantsTotal = 0;
    this.participantsComplete = true;
    /** mid → {mid, kind, identity, trackId, source}: who each receive slot carries now
     * (identity null: empty). Filled by `slots` messages. */
    this.slots = new Map();
    /** mid → MediaStreamTrack: the receiver track of each slot line (fixed for the session). */
    this.slotTracks = new Map();
    /** Identities the server says are speaking, loudest first. `null` until it says anything. */
    this.speakers = null;

    /** source → {track, transceiver, trackId, muted} for what we publish. */
    this.local = new Map();
    this.pc = null;

    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // request id → {resolve, reject, expect, timer}
    this._chain = Promise.resolve(); // negotiation steps, strictly one after the other
    this._ownOffers = 0; // our offers queued or in flight: server offers meanwhile are glare
    this._offerInFlight = null; // {newMids} while an offer of ours waits for its answer
    this._deferredOffer = null; // a server offer that already includes our pending offer
    this.offersBeforeAnswer = 0; // how often the server offered before answering us
    this.lastOfferBytes = 0; // size of our last offer's SDP (the server refuses frames > 64 KiB)
    this._leaving = false;
  }

  // ------------------------------------------------------------------ public API

  /** Open the socket and join. Throws SessionError. */
  async join() {
    this._setState("connecting");
    let joined;
    try {
      joined = await this._openAndJoin({ token: this.token, video_slots: this.videoSlots,
                                        audio_slots: this.audioSlots });
    } catch (e) {
      this._fail(e);
      throw e;
    }
    this._applyJoined(joined);
    this._setState("joined");
    return joined;
  }

  /** Publish the tracks of `stream` (any of one audio and one video track). One offer. Also
   * called with no tracks: then the offer only sets up the connection to receive. */
  async publish(stream, { cameraOff = false } = {}) {
    this._ensurePc();
    const tracks = stream ? stream.getTracks() : [];
    for (const track of tracks) {
      const source = track.kind === "audio" ? "microphone" : "camera";
      this._addLocal(source, track, stream);
    }
    // The camera exists but is off (stopped) right now: publish its line anyway, muted and
    // with no track, so that turning it on later is a replaceTrack (no new m-line).
    if (cameraOff && !this.local.has("camera")) this._addLocal("camera", null, stream, "video");
    if (this.local.size === 0) this._addReceiveOnly();
    try {
      await this._negotiate();
      return { publishing: tracks.length > 0 };
    } catch (e) {
      if (e.code !== "forbidden" || tracks.length === 0) throw e;
      // The token lets us watch but not publish (these sources): join as a viewer.
      this.log(`publishing refused (${e.message}): receiving only`);
      for (const entry of this.local.values()) {
        if (entry.track) entry.track.stop();
        try { entry.transceiver.stop(); } catch (err) { /* ignore */ }
      }
      this.local.clear();
      this._emit("local");
      this._addReceiveOnly();
      await this._negotiate();
      return { publishing: false, reason: e.message };
    }
  }

  /** Something to negotiate ICE and DTLS on when we publish nothing: a recvonly m-line, which
   * the server answers `inactive`. */
  _addReceiveOnly() {
    const live = this.pc.getTransceivers().filter((t) => !t.stopped);
    if (live.length === 0) this.pc.addTransceiver("audio", { direction: "recvonly" });
  }

  /** Mute or unmute one of our sources: the track stops sending content at once
   * (`enabled=false` sends silence / black) and the others are told with `mute`. */
  async setMuted(source, muted) {
    const entry = this.local.get(source);
    if (!entry || !entry.track) return;
    entry.muted = muted;
    entry.track.enabled = !muted;
    this._emit("local");
    await this._sendMute(entry);
  }

  /** Turn a published video source (the camera) off or back on, for real.
   *
   * Off (`track` null): the sender stops sending (`replaceTrack(null)`) and the capture track is
   * stopped, so the device is released and its light goes off. On: the freshly captured `track`
   * goes on the same transceiver (`replaceTrack`: no renegotiation, the server keeps the same
   * track id). Either way the others are told with `mute`. Returns false when we do not publish
   * `source` (then `track` is stopped: nobody would use it). */
  async setSourceTrack(source, track) {
    const entry = this.local.get(source);
    if (!entry || !entry.transceiver || entry.transceiver.stopped) {
      if (track) track.stop();
      return false;
    }
    const old = entry.track;
    try {
      await entry.transceiver.sender.replaceTrack(track);
    } catch (e) {
      if (track) track.stop();
      throw e;
    }
    if (old && old !== track) old.stop();
    entry.track = track;
    entry.muted = !track;
    this._emit("local");
    await this._sendMute(entry);
    return true;
  }

  /** Publish a screen capture (from getDisplayMedia) as `screen_share` (and its audio, if any,
   * as `screen_share_audio`). */
  async startScreenShare(stream) {
    this._ensurePc();
    for (const track of stream.getTracks()) {
      const source = track.kind === "video" ? "screen_share" : "screen_share_audio";
      this._addLocal(source, track, stream);
      track.addEventListener("ended", () => this.stopScreenShare().catch((e) => this.log(`stop share: ${e}`)));
    }
    this._emit("local");
    await this._negotiate();
  }

  async stopScreenShare() {
    let changed = false;
    for (const source of ["screen_share", "screen_share_audio"]) {
      const entry = this.local.get(source);
      if (!entry) continue;
      this.local.delete(source);
      if (entry.track) entry.track.stop();
      try { entry.transceiver.stop(); } catch (e) { /* already stopped */ }
      changed = true;
    }
    if (!changed) return;
    this._emit("local");
    if (this.state === "joined") await this._negotiate();
  }

  /** Leave the room: `leave`, then close everything. Safe to call in any state. */
  async leave() {
    if (this._leaving) return;
    this._leaving = true;
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      const closed = new Promise((resolve) => ws.addEventListener("close", resolve, { once: true }));
      this._send({ type: "leave" });
      await Promise.race([closed, sleep(1000)]);
    }
    this.leftReason = this.leftReason || "left";
    this._teardown();
    this._setState("left");
  }

  /** A summary of getStats(): per receive slot (by mid) and for our own sources. */
  async collectStats() {
    const out = { inbound: new Map(), local: {}, transport: null, candidatePair: null };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp") {
        if (s.mid == null || !this.slotTracks.has(s.mid)) return;
        out.inbound.set(s.mid, {
          kind: s.kind,
          packetsReceived: s.packetsReceived || 0,
          packetsLost: s.packetsLost || 0,
          bytesReceived: s.bytesReceived || 0,
          framesDecoded: s.framesDecoded || 0,
          framesPerSecond: s.framesPerSecond || 0,
          frameWidth: s.frameWidth || 0,
          frameHeight: s.frameHeight || 0,
          audioLevel: s.audioLevel || 0,
          jitter: s.jitter || 0,
        });
      } else if (s.type === "media-source") {
        if (s.kind === "audio") out.local.audioLevel = s.audioLevel || 0;
      } else if (s.type === "outbound-rtp") {
        const key = s.kind === "audio" ? "audio" : "video";
        const prev = out.local[key] || { packetsSent: 0, framesEncoded: 0 };
        out.local[key] = {
          packetsSent: prev.packetsSent + (s.packetsSent || 0),
          framesEncoded: prev.framesEncoded + (s.framesEncoded || 0),
        };
      } else if (s.type === "transport") {
        out.transport = { srtpCipher: s.srtpCipher, dtlsState: s.dtlsState, iceState: s.iceState,
                          selectedCandidatePairId: s.selectedCandidatePairId };
      }
    });
    if (out.transport && out.transport.selectedCandidatePairId) {
      const pair = report.get(out.transport.selectedCandidatePairId);
      if (pair) out.candidatePair = { currentRoundTripTime: pair.currentRoundTripTime,
                                      availableOutgoingBitrate: pair.availableOutgoingBitrate };
    }
    return out;
  }

  // ------------------------------------------------------------------ signalling

  _openAndJoin(joinFields) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let ws;
      const finish = (err, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          try { ws && ws.close(); } catch (e) { /* ignore */ }
          reject(err);
        } else {
          resolve(value);
        }
      };
      const timer = setTimeout(() => finish(new SessionError(
        "unreachable", "The server did not answer in time. Check your connection and try again.")),
      JOIN_TIMEOUT_MS);
      try {
        ws = new WebSocket(this.wsUrl);
      } catch (e) {
        finish(new SessionError("unreachable", `Cannot open ${this.wsUrl}: ${e.message}`));
        return;
      }
      this._ws = ws;
      let opened = false;
      ws.addEventListener("open", () => {
        opened = true;
        this.log("signalling open");
        ws.send(JSON.stringify({ type: "join", ...joinFields }));
      });
      ws.addEventListener("message", (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { this.log(`bad frame from server: ${e}`); return; }
        if (!settled) {
          if (msg.type === "joined") { finish(null, msg); return; }
          if (msg.type === "error") { finish(errorFromServer(msg)); return; }
          if (msg.type === "left") { finish(new SessionError("protocol", `The server closed the session (${msg.reason}).`)); return; }
        }
        if (ws !== this._ws) return; // an old socket
        this._onMessage(msg);
      });
      ws.addEventListener("close", (ev) => {
        if (!settled) {
          finish(opened
            ? new SessionError("protocol", `The server closed the connection (${ev.code}${ev.reason ? `: ${ev.reason}` : ""}).`)
            : new SessionError("unreachable", `Cannot reach the meeting server at ${this.wsUrl}.`));
          return;
        }
        if (ws === this._ws) this._onSocketClosed(ev);
      });
    });
  }

  _applyJoined(msg) {
    const me = msg.participant || {};
    this.identity = me.identity;
    this.name = me.name || me.identity;
    this.room = msg.room;
    this.sessionId = msg.session || null;
    this.iceServers = Array.isArray(msg.ice_servers) ? msg.ice_servers : [];
    if (Number.isInteger(msg.video_slots)) this.videoSlots = msg.video_slots;
    if (Number.isInteger(msg.audio_slots)) this.audioSlots = msg.audio_slots;
    const first = Array.isArray(msg.participants) ? msg.participants : [];
    if (!msg.resumed) this.participants.clear();
    // On resume the list is sent again: whoever left meanwhile is dropped once it is complete.
    this._listSeen = new Set();
    for (const p of first) { this._upsertParticipant(p); this._listSeen.add(p.identity); }
    this.participantsTotal = Number.isInteger(msg.participants_total) ? msg.participants_total : first.length;
    this.participantsComplete = first.length >= this.participantsTotal;
    if (this.participantsComplete) this._listDone();
    this.log(`joined room ${this.room} as ${this.identity}${msg.resumed ? " (resumed)" : ""}, ` +
             `${this.participantsTotal} other(s), slots ${this.videoSlots} video + ${this.audioSlots} audio`);
    this._emit("participants");
  }

  _send(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** Send a request with an id; resolves with the reply of type `expect` (matched by ref). */
  _request(msg, expect, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS) {
    const id = `c${this._nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new SessionError("protocol", `No ${expect} to ${msg.type} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this._pending.set(id, { resolve, reject, expect, timer });
      if (!this._send({ ...msg, id })) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new SessionError("disconnected", "Not connected to the server."));
      }
    });
  }

  _settle(msg) {
    let entry = msg.ref != null ? this._pending.get(String(msg.ref)) : null;
    let id = msg.ref != null ? String(msg.ref) : null;
    if (!entry && msg.type !== "error") {
      // A server that does not echo `ref`: the oldest request waiting for this type.
      for (const [k, v] of this._pending) if (v.expect === msg.type) { entry = v; id = k; break; }
    }
    if (!entry) return false;
    this._pending.delete(id);
    clearTimeout(entry.timer);
    if (msg.type === "error") entry.reject(errorFromServer(msg));
    else entry.resolve(msg);
    return true;
  }

  _onMessage(msg) {
    switch (msg.type) {
      case "answer":
      case "ok":
      case "pong":
        this._settle(msg);
        break;
      case "error":
        if (!this._settle(msg)) {
          this.log(`server error ${msg.code}: ${msg.message}`);
          this._emit("notice", { level: "error", text: `Server error: ${msg.message || msg.code}` });
        }
        break;
      case "offer":
        this._onServerOffer(msg.sdp);
        break;
      case "participants":
        for (const p of Array.isArray(msg.participants) ? msg.participants : []) {
          this._upsertParticipant(p);
          if (this._listSeen && p && p.identity) this._listSeen.add(p.identity);
        }
        if (!msg.more) {
          this.participantsComplete = true;
          this._listDone();
        }
        this._emit("participants");
        break;
      case "slots":
        this._onSlots(msg);
        break;
      case "participant_joined":
        this._upsertParticipant(msg.participant);
        this._emit("participants", { joined: msg.participant && msg.participant.identity });
        break;
      case "participant_left":
        this._removeParticipant(msg.identity);
        this._emit("participants", { left: msg.identity, reason: msg.reason });
        break;
      case "track_published":
        this._onTrackPublished(msg.identity, msg.track || {});
        break;
      case "track_unpublished": {
        const p = this.participants.get(msg.identity);
        if (p) p.tracks.delete(msg.track_id);
        this._emit("tracks");
        break;
      }
      case "track_muted":
        this._onTrackMuted(msg.identity, msg.track_id, msg.muted);
        break;
      case "active_speaker":
      {
        const speakers = Array.isArray(msg.identities) ? msg.identities : [];
        if (JSON.stringify(speakers) !== JSON.stringify(this.speakers)) this.log(`speakers: ${speakers.join(", ") || "none"}`);
        this.speakers = speakers;
        this._emit("speakers");
      }
        break;
      case "connection_state":
        this.log(`server: media ${msg.state}${msg.srtp_profile ? ` (${msg.srtp_profile})` : ""}`);
        if (msg.state === "connected") this._setMediaState("connected");
        else if (msg.state === "failed") this._setMediaState("failed");
        break;
      case "draining":
        this._emit("notice", { level: "warn", text: "The server is restarting; the meeting may end soon." });
        break;
      case "left":
        this.leftReason = msg.reason;
        this.log(`server says left: ${msg.reason}`);
        break;
      default:
        this.log(`ignored ${msg.type}`);
    }
  }

  _onSocketClosed(ev) {
    this.log(`signalling closed ${ev.code} ${ev.reason || ""}`);
    for (const [, entry] of this._pending) {
      clearTimeout(entry.timer);
      entry.reject(new SessionError("disconnected", "The connection to the server closed."));
    }
    this._pending.clear();
    if (this._leaving || this.state === "left" || this.state === "failed") return;
    const reason = this.leftReason;
    if (reason && reason !== "server_shutdown") {
      const text = {
        removed: "You were removed from the meeting.",
        replaced: "You joined this meeting from another tab or device.",
        room_closed: "The meeting was closed.",
        left: "You left the meeting.",
      }[reason] || `The server ended the session (${reason}).`;
      this._fail(new SessionError("removed", text, reason));
      return;
    }
    if (ev.code === 1008 || ev.code === 1003 || ev.code === 1009 || !this.sessionId || reason === "server_shutdown") {
      this._fail(new SessionError("disconnected", reason === "server_shutdown"
        ? "The server shut down. Try joining again in a moment."
        : `The server closed the connection (${ev.code}).`));
      return;
    }
    this._reconnect();
  }

  /** The socket dropped without `leave`: the server keeps us for a grace period, media keeps
   * flowing; a new socket with `resume` takes the session over. */
  async _reconnect() {
    this._setState("reconnecting");
    const deadline = Date.now() + RECONNECT_WINDOW_MS;
    let delay = 500;
    while (Date.now() < deadline && !this._leaving) {
      await sleep(delay);
      delay = Math.min(delay * 2, 3000);
      try {
        const joined = await this._openAndJoin({ token: this.token, resume: this.sessionId });
        this._applyJoined(joined);
        this._setState("joined");
        if (!joined.resumed) {
          // A new session: the old media session is gone on the server.
          this._fail(new SessionError("disconnected", "The connection was lost and could not be resumed."));
        }
        return;
      } catch (e) {
        this.log(`reconnect: ${e.message}`);
        if (e.kind === "token" || e.code === "not_found") break;
      }
    }
    if (!this._leaving) {
      this._fail(new SessionError("disconnected", "The connection to the meeting server was lost."));
    }
  }

  // ------------------------------------------------------------------ room state

  _upsertParticipant(info) {
    if (!info || !info.identity || info.identity === this.identity) return;
    let p = this.participants.get(info.identity);
    if (!p) {
      p = { identity: info.identity, name: info.name || info.identity, tracks: new Map() };
      this.participants.set(info.identity, p);
    }
    if (info.name) p.name = info.name;
    for (const t of info.tracks || []) p.tracks.set(t.track_id, { ...t });
  }

  _removeParticipant(identity) {
    const p = this.participants.get(identity);
    if (!p) return;
    this.participants.delete(identity);
    this._emit("tracks");
  }

  /** The full list has arrived (after `joined` and its `participants` pages): on a resume,
   * anyone not in it left while we were away. */
  _listDone() {
    const seen = this._listSeen;
    this._listSeen = null;
    if (!seen) return;
    for (const identity of [...this.participants.keys()]) {
      if (!seen.has(identity)) this.participants.delete(identity);
    }
  }

  /** `slots`: full (every slot; forget the rest) or the slots that changed. */
  _onSlots(msg) {
    const list = Array.isArray(msg.slots) ? msg.slots : [];
    if (msg.full) this.slots.clear();
    for (const slot of list) {
      if (!slot || typeof slot.mid !== "string") continue;
      this.slots.set(slot.mid, {
        mid: slot.mid,
        kind: slot.kind === "audio" ? "audio" : "video",
        identity: slot.identity || null,
        trackId: slot.track_id == null ? null : slot.track_id,
        source: slot.source || null,
      });
    }
    this._emit("slots");
  }

  /** The slot (and its receiver track) that carries `identity`'s `source` now, or null. */
  slotFor(identity, source) {
    for (const slot of this.slots.values()) {
      if (slot.identity === identity && slot.source === source) {
        const track = this.slotTracks.get(slot.mid);
        if (track) return { ...slot, track };
      }
    }
    return null;
  }

  /** Tell the server what we show: `tiles` [{identity, source, width, height}] in order of
   * importance, `pinned` an identity or null. Fire and forget (the reply is `ok`). */
  sendLayout(tiles, pinned) {
    if (this.state !== "joined") return false;
    const msg = { type: "layout", tiles, pinned: pinned || null };
    this._request(msg, "ok").catch((e) => this.log(`layout: ${e.message}`));
    return true;
  }

  _onTrackPublished(identity, track) {
    if (identity === this.identity) {
      // One of ours: remember its id, so that `mute` can name it.
      const entry = this.local.get(track.source);
      if (entry) {
        entry.trackId = track.track_id;
        this.log(`our ${track.source} is track ${track.track_id}`);
        if (entry.muted !== Boolean(track.muted)) this._sendMute(entry);
      }
      return;
    }
    let p = this.participants.get(identity);
    if (!p) {
      this._upsertParticipant({ identity, name: identity, tracks: [] });
      p = this.participants.get(identity);
    }
    p.tracks.set(track.track_id, { ...track });
    this._emit("tracks");
  }

  _onTrackMuted(identity, trackId, muted) {
    if (identity === this.identity) return; // our own echo
    const p = this.participants.get(identity);
    const t = p && p.tracks.get(trackId);
    if (t) t.muted = Boolean(muted);
    this._emit("tracks");
  }

  async _sendMute(entry) {
    if (entry.trackId == null || this.state !== "joined") return; // sent once the id is known
    try {
      await this._request({ type: "mute", track_id: entry.trackId, muted: entry.muted }, "ok");
    } catch (e) {
      this.log(`mute: ${e.message}`);
    }
  }

  // ------------------------------------------------------------------ media

  _ensurePc() {
    if (this.pc) return this.pc;
    const pc = this.pc = new RTCPeerConnection({
      iceServers: this.iceServers || [],
      bundlePolicy: "max-bundle",
      rtcpMuxPolicy: "require",
    });
    pc.addEventListener("connectionstatechange", () => {
      this.log(`pc ${pc.connectionState}`);
      const map = { new: "new", connecting: "connecting", connected: "connected",
                    disconnected: "connecting", failed: "failed", closed: "new" };
      this._setMediaState(map[pc.connectionState] || pc.connectionState);
    });
    pc.addEventListener("track", () => this._syncSlotTracks());
    this._setMediaState("connecting");
    return pc;
  }

  /** The receiver track of every server slot line (the lines of the server's offer that it
   * sends on). The lines never change hands by SDP: this only grows with the first offer. */
  _syncSlotTracks() {
    const pc = this.pc;
    if (!pc) return;
    let changed = false;
    const ours = new Set([...this.local.values()].map((e) => e.transceiver));
    for (const t of pc.getTransceivers()) {
      if (t.mid == null || ours.has(t) || !t.receiver || !t.receiver.track) continue;
      const dir = t.currentDirection || t.direction;
      if (dir !== "recvonly" && dir !== "sendrecv") continue;
      if (this.slotTracks.get(t.mid) !== t.receiver.track) {
        this.slotTracks.set(t.mid, t.receiver.track);
        changed = true;
      }
    }
    if (changed) {
      this.log(`receive slots: ${[...this.slotTracks].map(([mid, tr]) => `${mid}:${tr.kind}`).join(" ")}`);
      this._emit("tracks");
    }
  }

  /** Limits every line to the codecs the server put on it (`setCodecPreferences`), so that our
   * later offers list only those: a browser otherwise lists all its codecs on each of the
   * V + A slot lines, and an offer with 16 video slots would pass the server's 64 KiB limit. */
  _trimCodecs(serverSdp) {
    const pc = this.pc;
    if (!pc || typeof RTCRtpReceiver.getCapabilities !== "function") return;
    const byMid = sdpCodecsByMid(serverSdp);
    for (const t of pc.getTransceivers()) {
      if (t.mid == null || t.stopped || !byMid.has(t.mid) || !t.setCodecPreferences) continue;
      const allowed = byMid.get(t.mid);
      const kind = t.receiver.track ? t.receiver.track.kind : null;
      if (!kind || allowed.size === 0) continue;
      for (const caps of [RTCRtpReceiver.getCapabilities(kind), RTCRtpSender.getCapabilities(kind)]) {
        const codecs = ((caps && caps.codecs) || []).filter((c) => allowed.has(c.mimeType.toLowerCase()));
        if (!codecs.some((c) => !/\/(rtx|red|ulpfec|flexfec-03)$/i.test(c.mimeType))) continue;
        try {
          t.setCodecPreferences(codecs);
          break;
        } catch (e) {
          this.log(`codec preferences (mid ${t.mid}): ${e.message}`);
        }
      }
    }
  }

  /** A sendonly transceiver for `source`; `track` null adds the line without media (muted), for
   * a source that is off now and may be turned on later with setSourceTrack. */
  _addLocal(source, track, stream, kind = track ? track.kind : "video") {
    const old = this.local.get(source);
    if (old) {
      if (old.track) old.track.stop();
      try { old.transceiver.stop(); } catch (e) { /* ignore */ }
    }
    const transceiver = this.pc.addTransceiver(track || kind, {
      direction: "sendonly", streams: stream ? [stream] : [],
    });
    this.local.set(source, { source, kind, track, transceiver, trackId: null,
                             muted: !track || !track.enabled });
  }

  /** Offer our current tracks to the server and apply its answer. */
  _negotiate() {
    this._ownOffers += 1;
    const step = this._chain.then(async () => {
      const pc = this.pc;
      try {
        const known = new Set(sdpMids(pc.currentRemoteDescription && pc.currentRemoteDescription.sdp));
        await pc.setLocalDescription(await pc.createOffer());
        const newMids = sdpMids(pc.localDescription.sdp).filter((m) => !known.has(m));
        this._offerInFlight = { newMids };
        await iceGatheringComplete(pc);
        const sources = {};
        for (const entry of this.local.values()) {
          const mid = entry.transceiver.mid;
          if (mid != null && !entry.transceiver.stopped) sources[mid] = entry.source;
        }
        this.lastOfferBytes = new TextEncoder().encode(pc.localDescription.sdp).length;
        const reply = await this._request({ type: "offer", sdp: pc.localDescription.sdp, sources }, "answer");
        await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
        this._trimCodecs(reply.sdp);
        this._syncSlotTracks();
        this.log(`published ${Object.values(sources).join(", ") || "nothing"}`);
        const deferred = this._deferredOffer;
        this._deferredOffer = null;
        this._offerInFlight = null;
        if (deferred) await this._answerServerOffer(deferred);
      } catch (e) {
        if (pc.signalingState === "have-local-offer") {
          await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
        }
        this.log(`offer failed: ${e.message}`);
        throw e.kind ? e : new SessionError("media", `Could not set up media: ${e.message}`);
      } finally {
        this._ownOffers -= 1;
        this._offerInFlight = null;
        this._deferredOffer = null;
      }
    });
    this._chain = step.catch(() => {});
    return step;
  }

  /** A server offer (our receive slots). Glare: while an offer of ours is queued or in
   * flight the server yields (it answers ours, then sends a fresh offer), so we drop this one. */
  //
  // One exception: a server offer that already contains the m-lines our pending offer adds was
  // made *after* the server applied our offer (it only reached us before the answer). The
  // server will not send another one, so it is kept and answered right after our answer.
  _onServerOffer(sdp) {
    if (this._ownOffers > 0) {
      const inFlight = this._offerInFlight;
      const mids = new Set(sdpMids(sdp));
      if (inFlight && inFlight.newMids.length > 0 && inFlight.newMids.every((m) => mids.has(m))) {
        this.offersBeforeAnswer += 1;
        this._deferredOffer = sdp;
        this.log("server offer before the answer to ours (it includes our new m-lines): answering it after the answer");
        return;
      }
      this.log("server offer during our own: ignored (a fresh one follows our answer)");
      return;
    }
    this._ensurePc();
    const step = this._chain.then(() => this._answerServerOffer(sdp));
    this._chain = step;
  }

  async _answerServerOffer(sdp) {
    const pc = this.pc;
    try {
      if (!pc || pc.signalingState !== "stable") {
        this.log(`server offer in ${pc ? pc.signalingState : "no pc"}: ignored`);
        return;
      }
      await pc.setRemoteDescription({ type: "offer", sdp });
      this._trimCodecs(sdp);
      await pc.setLocalDescription(await pc.createAnswer());
      this._syncSlotTracks();
      await iceGatheringComplete(pc);
      this._send({ type: "answer", sdp: pc.localDescription.sdp });
      this.log("answered server offer");
    } catch (e) {
      this.log(`server offer failed: ${e.message}`);
      this._emit("notice", { level: "error", text: `Could not receive media: ${e.message}` });
    }
  }

  // ------------------------------------------------------------------ plumbing

  _teardown() {
    for (const [, entry] of this._pending) clearTimeout(entry.timer);
    this._pending.clear();
    if (this._ws) {
      try { this._ws.close(1000); } catch (e) { /* ignore */ }
    }
    this._ws = null;
    for (const entry of this.local.values()) if (entry.track) entry.track.stop();
    this.local.clear();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.slots.clear();
    this.slotTracks.clear();
    this.participants.clear();
    this.speakers = null;
    this.mediaState = "new";
  }

  _fail(err) {
    if (this.state === "failed" || this.state === "left") return;
    this.error = err;
    this.log(`failed: ${err.message}`);
    this._teardown();
    this._setState("failed");
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state");
  }

  _setMediaState(state) {
    if (this.mediaState === state) return;
    this.mediaState = state;
    this._emit("media");
  }

  _emit(what, extra = {}) {
    this.dispatchEvent(new CustomEvent("change", { detail: { what, ...extra } }));
  }
}

function errorFromServer(msg) {
  const text = msg.message || msg.code;
  const make = (kind, message) => new SessionError(kind, message, msg.code, text);
  switch (msg.code) {
    case "unauthorized":
      return make("token", `Your meeting token was refused: ${text}.`);
    case "forbidden":
      return make("token", `Not allowed: ${text}.`);
    case "room_full":
      return make("room_full", "This meeting is full.");
    case "shutting_down":
      return make("unavailable", "The server is restarting. Try again in a moment.");
    case "too_many_tracks":
      return make("media", "This meeting cannot take more cameras, microphones or screens right now.");
    case "server_busy":
      return make("unavailable", "The server is busy. Try again in a moment.");
    default:
      return make("protocol", `Server error (${msg.code}): ${text}`);
  }
}
