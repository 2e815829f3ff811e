/* emotion2vec-webui Live tab: the microphone streamed to /api/v1/stream, as any program streams (docs/streaming.md).

Run by the Live tab's device picker when it mounts (gr.HTML js_on_load, ui/live_tab.py).
The page is one more client of the WebSocket: it opens it with a single-use ticket the UI issued at Record
(runs/stream_tickets.py; the page never holds the API token), sends the microphone as f32le at the audio context's
own rate in ~100 ms frames from an AudioWorklet (off the main thread), and keeps what comes back. The UI reads a
small report of it once a second (window.e2vLive.report(), ui/live_tab.py) to draw the status line and the
timeline; at Stop the take is finished by the server, whose `done` names the run folder the tab then shows.
window.__e2vTake (t0: when the first audio was captured) and window.__e2vTakeSeconds are read by the tests.
*/
(function () {
  "use strict";
  if (window.e2vLive) { window.e2vLive.listDevices(); return; } // the tab was mounted again
  const TAP = `registerProcessor("e2v-live-tap", class extends AudioWorkletProcessor {
    process([input]) { if (input[0]) this.port.postMessage(input[0].slice()); return true; } });`;
  const FRAME_S = 0.1; // audio per binary frame (the server takes up to 1 s)
  const GONE = { type: "error", code: "internal_error",
    message: "The connection to the server closed before the take was saved. / 在录音保存前与服务器的连接已断开。" };

  function socketUrl(ticket) {
    const url = new URL("api/v1/stream", document.baseURI); // the UI is mounted at the server's root (app.py)
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (ticket) url.searchParams.set("ticket", ticket);
    return url.href;
  }

  async function listDevices() {
    const pick = document.querySelector("#live_audio select");
    if (!pick || !navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
    const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
    const keep = pick.value;
    while (pick.options.length > 1) pick.remove(1);
    inputs.forEach((d, i) => pick.add(new Option(d.label || `Microphone ${i + 1} / 麦克风 ${i + 1}`, d.deviceId)));
    pick.value = [...pick.options].some((o) => o.value === keep) ? keep : "";
  }

  function send(take, all) {
    // whole frames of FRAME_S while recording; at the end, everything left
    const step = Math.round(take.rate * FRAME_S);
    while (take.ws.readyState === WebSocket.OPEN && take.size > 0 && (all || take.size >= step)) {
      const n = Math.min(step, take.size);
      const frame = new Float32Array(n);
      let at = 0;
      while (at < n) {
        const part = take.parts[0];
        const use = Math.min(part.length, n - at);
        frame.set(part.subarray(0, use), at);
        at += use;
        if (use === part.length) take.parts.shift(); else take.parts[0] = part.subarray(use);
      }
      take.size -= n;
      take.sent += n;
      take.ws.send(frame.buffer);
    }
  }

  function onEvent(take, event) {
    if (event.type === "interval") {
      if (!take.labels) take.labels = Object.keys(event.scores);
      take.ticks.push([event.end_s, ...take.labels.map((k) => event.scores[k])]);
    } else if (event.type === "warning") {
      if (event.reason === "behind") take.skipped += event.skipped || 0;
      else take.error = event.message;
    } else if (event.type === "error") {
      take.end = event;
      take.error = event.message;
    } else if (event.type === "done") {
      take.end = event;
    }
  }

  function release(take) {
    if (take.released) return;
    take.released = true;
    try { take.source && take.source.disconnect(); } catch (err) { /* already gone */ }
    take.media.getTracks().forEach((t) => t.stop());
    take.context.close();
  }

  function startMessage(rate, options) {
    // the start message (docs/streaming.md); options: the tab's calibration and min_confidence (empty: none),
    // checked by the server like any client's
    const message = { type: "start", sample_rate: rate, encoding: "f32le", channels: 1,
                      source_name: "microphone_live.wav", granularity: "frame", embedding: true };
    const { calibration, min_confidence: minConfidence } = options || {};
    if (typeof calibration === "string" && calibration.trim()) message.calibration = calibration.trim();
    if (typeof minConfidence === "number" && Number.isFinite(minConfidence)) message.min_confidence = minConfidence;
    return message;
  }

  async function start(ticket, options) {
    if (window.__e2vTake) await stop();
    window.__e2vTakeSeconds = null;
    window.__e2vStartError = "";
    const pick = document.querySelector("#live_audio select");
    // the voice as it is: no gain control or filters (Chrome's AGC clipped the fake microphone)
    const audio = { channelCount: 1, autoGainControl: false, noiseSuppression: false, echoCancellation: false };
    if (pick && pick.value) audio.deviceId = { exact: pick.value };
    const media = await navigator.mediaDevices.getUserMedia({ audio });
    listDevices(); // the names are readable once the permission is in
    let context = new AudioContext();
    if (context.sampleRate > 48000) { context.close(); context = new AudioContext({ sampleRate: 48000 }); }
    await context.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: "text/javascript" })));
    const tap = new AudioWorkletNode(context, "e2v-live-tap");
    const take = { media, context, rate: context.sampleRate, parts: [], size: 0, sent: 0, ticks: [], labels: null,
                   skipped: 0, error: "", end: null, t0: null, released: false };
    take.ended = new Promise((resolve) => { take.resolve = resolve; });
    take.ws = new WebSocket(socketUrl(ticket));
    take.ws.onopen = () => {
      take.ws.send(JSON.stringify(startMessage(take.rate, options)));
      send(take, false);
    };
    take.ws.onmessage = (e) => onEvent(take, JSON.parse(e.data));
    take.ws.onclose = () => {
      release(take);
      if (!take.end) take.error = GONE.message;
      take.resolve(take.end || GONE);
    };
    tap.port.onmessage = ({ data }) => {
      if (take.released) return;
      if (take.t0 === null) take.t0 = performance.now();
      take.parts.push(data);
      take.size += data.length;
      send(take, false);
    };
    take.source = context.createMediaStreamSource(media);
    take.source.connect(tap).connect(context.destination); // the tap outputs silence
    window.__e2vTake = take;
  }

  async function stop() {
    const take = window.__e2vTake;
    window.__e2vTake = null;
    if (!take) return null;
    window.__e2vTakeSeconds = take.t0 === null ? 0 : (performance.now() - take.t0) / 1000;
    release(take);
    if (take.ws.readyState === WebSocket.CONNECTING) {
      await new Promise((resolve) => {
        take.ws.addEventListener("open", resolve, { once: true });
        take.ws.addEventListener("close", resolve, { once: true });
      });
    }
    if (take.ws.readyState === WebSocket.OPEN) {
      send(take, true);
      take.ws.send(JSON.stringify({ type: "stop" }));
    }
    window.__e2vLastTake = take; // its report stays readable until the next take
    return JSON.stringify(await take.ended); // `done` (the run folder) or `error`
  }

  function report(live) {
    // live: the take in progress only (the timer's view); else also the last one (read once at Stop)
    const take = window.__e2vTake || (live ? null : window.__e2vLastTake);
    if (!take) return JSON.stringify({ seconds: 0, ticks: [], error: window.__e2vStartError || "" });
    return JSON.stringify({ seconds: take.sent / take.rate, labels: take.labels, ticks: take.ticks,
                            skipped: take.skipped, error: take.error });
  }

  window.e2vLive = { start, stop, report, listDevices, startMessage };
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", listDevices);
  }
  listDevices();
})();
