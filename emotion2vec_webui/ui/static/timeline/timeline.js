/* emotion2vec-webui interactive timeline (see emotion2vec_webui/ui/timeline.py for the payload and why uPlot).
 *
 * Every `.e2v-timeline[data-timeline]` element that Gradio puts on the page becomes one timeline:
 * a toolbar (play, clock, player, smoothed/raw, one emotion, zoom, PNG), a clickable segment band,
 * the waveform envelope and the nine scores stacked, all on one time axis with a playhead that
 * follows the <audio> element. Controllers are kept in `window.e2vTimelines` by the Gradio slot's id.
 */
(function () {
  "use strict";
  if (window.e2vTimelines) return; // loaded twice
  const SCALE = 10000; // ui/timeline.py SCORE_SCALE
  const C = 9;
  const MIN_SPAN_S = 0.2;
  const TIP_WIDTH = 260; // timeline.css .e2v-tl-tip width
  const DIM_H = 110; // the regression head's panel
  const registry = new Map(); // slot id -> controller
  const saved = new Map(); // slot id -> view state kept across re-renders (Live grows by re-rendering)
  window.e2vTimelines = registry;
  let lastActive = null;

  function fmt(t) {
    if (!isFinite(t)) t = 0;
    const m = Math.floor(t / 60);
    const s = t - 60 * m;
    return m + ":" + s.toFixed(2).padStart(5, "0");
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function b64bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  async function inflate(bytes) {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  function decode(p, bytes) {
    const n = p.n;
    const u16 = new Uint16Array(bytes.buffer, 0, 2 * C * n);
    const sets = [[], []];
    for (let s = 0; s < 2; s++) {
      for (let c = 0; c < C; c++) {
        const out = new Float32Array(n);
        const off = (s * C + c) * n;
        let v = 0;
        for (let i = 0; i < n; i++) {
          v = (v + u16[off + i]) & 0xffff;
          out[i] = v / SCALE;
        }
        sets[s].push(out);
      }
    }
    const x = new Float64Array(n);
    for (let i = 0; i < n; i++) x[i] = i * p.hop;
    let env = null;
    if (p.env_n) {
      const base = 2 * C * n * 2;
      const lo = new Int8Array(bytes.buffer, base, p.env_n);
      const hi = new Int8Array(bytes.buffer, base + p.env_n, p.env_n);
      const t = new Float64Array(p.env_n);
      const a = new Float32Array(p.env_n);
      const b = new Float32Array(p.env_n);
      for (let i = 0; i < p.env_n; i++) {
        t[i] = i / p.env_rate;
        a[i] = lo[i] / 127;
        b[i] = hi[i] / 127;
      }
      env = [t, b, a];
    }
    return { x, smooth: sets[0], raw: sets[1], env, dims: decodeDims(p, bytes, 2 * C * n * 2 + 2 * p.env_n) };
  }

  // A regression head's curves (ui/timeline.py _dimension_series): [2, K, n] uint16 deltas over [lo, hi].
  function decodeDims(p, bytes, base) {
    if (!p.dims) return null;
    const n = p.n;
    const K = p.dims.targets.length;
    const u16 = new Uint16Array(bytes.buffer, base, 2 * K * n);
    const span = (p.dims.hi - p.dims.lo) / 65535;
    const sets = [[], []];
    for (let s = 0; s < 2; s++) {
      for (let k = 0; k < K; k++) {
        const out = new Float32Array(n);
        const off = (s * K + k) * n;
        let v = 0;
        for (let i = 0; i < n; i++) {
          v = (v + u16[off + i]) & 0xffff;
          out[i] = p.dims.lo + v * span;
        }
        sets[s].push(out);
      }
    }
    return { smooth: sets[0], raw: sets[1] };
  }

  function label(l) {
    return l.emoji + " " + l.zh + " " + l.key;
  }

  class Timeline {
    constructor(holder, slotId, p) {
      this.holder = holder;
      this.slotId = slotId;
      this.p = p;
      this.T = p.text;
      // toggles carry over to the next run shown here; a zoom only to the same run (or the same live recording)
      this.key = p.run_id || (p.live ? "live" : "");
      const keep = saved.get(slotId) || {};
      this.mode = keep.mode === "raw" && p.has_raw ? "raw" : "smooth";
      this.only = keep.only != null ? keep.only : null;
      const zoom = keep.zoomed && keep.key === this.key && keep.max <= p.duration + 1e-6;
      this.view = zoom ? [keep.min, keep.max] : [0, p.duration];
      this.zoomed = zoom;
      this.t = 0;
      this.u = null; // scores chart
      this.w = null; // waveform chart
      this.v = null; // a regression head's curves (dimensions), under the scores
      this.raf = 0;
      this.syncing = false;
      this.layout();
    }

    layout() {
      const T = this.T;
      const p = this.p;
      const root = (this.root = el("div", "e2v-tl"));
      root.tabIndex = 0;
      root.setAttribute("role", "group");
      root.setAttribute("aria-label", T.title);
      const bar = el("div", "e2v-tl-bar");
      this.playBtn = el("button", "e2v-tl-btn e2v-tl-play", "▶");
      this.playBtn.type = "button";
      this.playBtn.title = T.play + " (Space)";
      this.clock = el("span", "e2v-tl-clock", fmt(0) + " / " + fmt(p.duration));
      bar.append(this.playBtn, this.clock);
      if (p.audio) {
        // One player: the ▶ button, the clock and the chart itself (click, scrub, keys). The <audio> element
        // only plays; the browser's own bar beside it was a second player with its own play and seek (issue 33).
        this.audio = el("audio", "e2v-tl-audio");
        this.audio.controls = false;
        this.audio.hidden = true;
        this.audio.preload = "auto";
        this.audio.src = p.audio;
        bar.append(this.audio);
      } else {
        this.audio = null;
        this.playBtn.disabled = true;
        bar.append(el("span", "e2v-tl-note", p.live ? T.recording : T.no_audio));
      }
      const grp = el("div", "e2v-tl-seg-toggle");
      grp.setAttribute("role", "group");
      this.modeBtns = {};
      for (const [m, txt] of [["smooth", T.smoothed], ["raw", T.raw]]) {
        const b = el("button", "e2v-tl-btn", txt);
        b.type = "button";
        b.dataset.mode = m;
        if (m === "raw" && !p.has_raw) b.disabled = true;
        b.addEventListener("click", () => this.setMode(m));
        this.modeBtns[m] = b;
        grp.append(b);
      }
      this.select = el("select", "e2v-tl-only");
      this.select.append(new Option(T.all, ""));
      p.labels.forEach((l, i) => this.select.append(new Option(label(l), String(i))));
      this.select.addEventListener("change", () => this.setOnly(this.select.value === "" ? null : +this.select.value));
      const zoom = el("div", "e2v-tl-zoom");
      const zb = (txt, title, fn, cls) => {
        const b = el("button", "e2v-tl-btn " + (cls || ""), txt);
        b.type = "button";
        b.title = title;
        b.setAttribute("aria-label", title);
        b.addEventListener("click", fn);
        zoom.append(b);
        return b;
      };
      zb("−", T.zoom_out, () => this.zoomBy(2), "e2v-tl-zoomout");
      zb("+", T.zoom_in, () => this.zoomBy(0.5), "e2v-tl-zoomin");
      zb("⤢", T.reset, () => this.setView(0, p.duration), "e2v-tl-reset");
      const png = zb("PNG ⬇", T.png, () => this.exportPng(), "e2v-tl-png");
      png.title = T.png;
      bar.append(grp, this.select, zoom);

      const stage = (this.stage = el("div", "e2v-tl-stage"));
      this.band = el("div", "e2v-tl-band");
      this.band.title = T.segments;
      this.bandInner = el("div", "e2v-tl-band-inner");
      this.band.append(this.bandInner);
      this.bandHead = el("div", "e2v-tl-playhead");
      this.band.append(this.bandHead);
      this.waveBox = el("div", "e2v-tl-wave");
      this.scoreBox = el("div", "e2v-tl-scores");
      this.dimBox = el("div", "e2v-tl-dims");
      this.tip = el("div", "e2v-tl-tip");
      this.tip.hidden = true;
      this.tipHead = el("div", "e2v-tl-tip-time");
      this.tip.append(this.tipHead);
      this.tipRows = p.labels.map((l) => {
        const r = el("div", "e2v-tl-tip-row");
        const sw = el("span", "e2v-tl-sw");
        sw.style.background = l.color;
        const name = el("span", "e2v-tl-tip-name", label(l));
        const val = el("span", "e2v-tl-tip-val");
        r.append(sw, name, val);
        this.tip.append(r);
        return { r, val, l };
      });
      this.dimRows = p.dims
        ? p.dims.targets.map((d) => {
            const r = el("div", "e2v-tl-tip-row e2v-tl-tip-dim");
            const sw = el("span", "e2v-tl-sw e2v-tl-sw-line");
            sw.style.background = d.color;
            const val = el("span", "e2v-tl-tip-val");
            r.append(sw, el("span", "e2v-tl-tip-name", d.zh === d.key ? d.key : d.zh + " " + d.key), val);
            return { r, val, d };
          })
        : [];
      stage.append(this.band, this.waveBox, this.scoreBox, this.dimBox, this.tip);
      // reserve the charts' height before they are drawn (Live re-renders every second: no jump)
      stage.style.minHeight = (p.env_n ? 64 : 0) + (p.segments.length ? 20 : 0) + 230 + (p.dims ? DIM_H : 0) + "px";
      if (!p.dims) this.dimBox.hidden = true;
      if (!p.env_n) this.waveBox.hidden = true;
      if (!p.segments.length) this.band.hidden = true;

      this.legend = el("div", "e2v-tl-legend");
      this.chips = p.labels.map((l, i) => {
        const b = el("button", "e2v-tl-chip");
        b.type = "button";
        const sw = el("span", "e2v-tl-sw");
        sw.style.background = l.color;
        b.append(sw, document.createTextNode(label(l)));
        b.addEventListener("click", () => this.setOnly(this.only === i ? null : i));
        this.legend.append(b);
        return b;
      });
      if (p.dims) {
        const dl = (this.dimLegend = el("div", "e2v-tl-legend e2v-tl-dim-legend"));
        dl.append(el("span", "e2v-tl-dim-title", T.dims + " " + p.dims.name + ":"));
        for (const d of p.dims.targets) {
          const c = el("span", "e2v-tl-chip e2v-tl-dim-chip");
          c.dataset.target = d.key;
          const sw = el("span", "e2v-tl-sw e2v-tl-sw-line");
          sw.style.background = d.color;
          c.append(sw, document.createTextNode(d.zh === d.key ? d.key : d.zh + " " + d.key));
          dl.append(c);
        }
      }
      const hint = el("div", "e2v-tl-hint", T.hint);
      root.append(el("div", "e2v-tl-title", T.title), bar, stage, this.legend, ...(p.dims ? [this.dimLegend] : []), hint);
      this.holder.replaceChildren(root);
      this.bindGlobal();
    }

    async load() {
      const bytes = await inflate(b64bytes(this.p.data));
      this.d = decode(this.p, bytes);
      this.segs();
      this.ro = new ResizeObserver(() => this.resize());
      this.ro.observe(this.stage);
      this.resize();
    }

    width() {
      return Math.floor(this.stage.clientWidth);
    }

    resize() {
      const w = this.width();
      if (w < 50) return; // in a hidden tab: drawn when it shows
      if (!this.u) return this.build();
      if (w !== this.builtWidth) {
        this.builtWidth = w;
        this.u.setSize({ width: w, height: this.u.height });
        if (this.w) this.w.setSize({ width: w, height: this.w.height });
        if (this.v) this.v.setSize({ width: w, height: this.v.height });
        this.afterScale();
      }
    }

    seriesData() {
      const src = this.mode === "raw" ? this.d.raw : this.d.smooth;
      const n = this.p.n;
      if (this.only != null) return { data: [this.d.x, src[this.only]], bands: [] };
      const data = [this.d.x];
      const acc = new Float32Array(n);
      for (let c = 0; c < C; c++) {
        const s = src[c];
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = acc[i] += s[i];
        data.push(out);
      }
      const bands = [];
      for (let c = 2; c <= C; c++) bands.push({ series: [c, c - 1] });
      return { data, bands };
    }

    build() {
      const p = this.p;
      const w = (this.builtWidth = this.width());
      if (this.u) this.u.destroy();
      if (this.w) this.w.destroy();
      if (this.v) this.v.destroy();
      this.u = this.w = this.v = null;
      const syncKey = "e2v-" + this.slotId;
      const yAxisSize = 52;
      const { data, bands } = this.seriesData();
      const labels = this.only != null ? [p.labels[this.only]] : p.labels;
      const series = [{ label: this.T.time }].concat(
        labels.map((l) => ({
          label: label(l),
          stroke: l.color,
          width: this.only != null ? 2 : 0.5,
          fill: l.color + (this.only != null ? "55" : "e6"),
          points: { show: false },
        })),
      );
      const self = this;
      const common = {
        width: w,
        padding: [4, 18, 0, 0], // the same on both charts, so their plotting areas line up
        legend: { show: false },
        scales: {
          x: {
            time: false,
            auto: false,
            // uPlot passes every x range through here: keep a set one, start at the saved view
            range: (u, min, max) => (min != null && max != null && isFinite(min) && isFinite(max) ? [min, max] : [this.view[0], this.view[1]]),
          },
        },
      };
      this.u = new uPlot(
        {
          ...common,
          height: 230,
          series,
          bands,
          cursor: {
            sync: { key: syncKey, setSeries: false },
            drag: { x: true, y: false, setScale: true },
            points: { show: false },
            y: false, // only the vertical (time) line
            bind: { dblclick: () => null },
          },
          scales: { ...common.scales, y: { auto: false, range: [0, 1] } },
          axes: [
            { values: (u, ticks) => ticks.map((v) => fmt(v).replace(/\.00$/, "")), size: 34 },
            { size: yAxisSize, values: (u, ticks) => ticks.map((v) => Math.round(v * 100) + "%"), splits: () => [0, 0.25, 0.5, 0.75, 1] },
          ],
          hooks: {
            setScale: [(u, key) => key === "x" && self.onScale(u)],
            setCursor: [(u) => self.hover(u)],
          },
        },
        data,
        this.scoreBox,
      );
      if (this.d.env) {
        this.w = new uPlot(
          {
            ...common,
            height: 64,
            series: [{}, { stroke: "#6b7280", width: 1, fill: "#9ca3afcc" }, { stroke: "#6b7280", width: 1 }],
            bands: [{ series: [1, 2], fill: "#9ca3afcc" }],
            cursor: {
              sync: { key: syncKey, setSeries: false },
              drag: { x: false, y: false, setScale: false },
              points: { show: false },
              y: false,
              bind: { dblclick: () => null },
            },
            scales: { ...common.scales, y: { auto: false, range: [-1, 1] } },
            axes: [
              { show: false },
              { size: yAxisSize, values: (u, ticks) => ticks.map(() => ""), splits: () => [0], ticks: { show: false } },
            ],
            hooks: { setScale: [(u, key) => key === "x" && self.onScale(u)], setCursor: [(u) => self.hover(u)] },
          },
          this.d.env,
          this.waveBox,
        );
      }
      if (this.d.dims) this.v = this.buildDims(common, syncKey, yAxisSize);
      this.heads = this.charts().map((u) => {
        const h = el("div", "e2v-tl-playhead");
        u.over.append(h);
        return h;
      });
      this.bindPointer(this.u, false);
      if (this.w) this.bindPointer(this.w, true);
      if (this.v) this.bindPointer(this.v, false);
      for (const u of this.charts()) u.over.addEventListener("mouseleave", () => (this.tip.hidden = true));
      this.setView(this.view[0], this.view[1]);
      this.syncButtons();
      this.tipTop = this.scoreBox.offsetTop + 8;
      this.root.dataset.ready = "1";
      this.root.dataset.frames = String(p.n);
    }

    charts() {
      return [this.u, this.w, this.v].filter(Boolean);
    }

    // The regression head's targets as lines on their own y axis (their values, not probabilities).
    buildDims(common, syncKey, yAxisSize) {
      const p = this.p;
      const src = this.mode === "raw" ? this.d.dims.raw : this.d.dims.smooth;
      const pad = 0.05 * (p.dims.hi - p.dims.lo);
      const self = this;
      const series = [{}].concat(p.dims.targets.map((d) => ({ label: d.key, stroke: d.color, width: 1.5, points: { show: false } })));
      return new uPlot(
        {
          ...common,
          height: DIM_H,
          series,
          cursor: {
            sync: { key: syncKey, setSeries: false },
            drag: { x: true, y: false, setScale: true },
            points: { show: false },
            y: false,
            bind: { dblclick: () => null },
          },
          scales: { ...common.scales, y: { auto: false, range: [p.dims.lo - pad, p.dims.hi + pad] } },
          axes: [
            { show: false },
            { size: yAxisSize, values: (u, ticks) => ticks.map((v) => +v.toPrecision(3)), ticks: { show: false } },
          ],
          hooks: { setScale: [(u, key) => key === "x" && self.onScale(u)], setCursor: [(u) => self.hover(u)] },
        },
        [this.d.x, ...src],
        this.dimBox,
      );
    }

    onScale(u) {
      if (this.syncing) return;
      const min = u.scales.x.min;
      const max = u.scales.x.max;
      if (min == null || max == null) return;
      this.view = [min, max];
      this.zoomed = !(min <= 1e-6 && max >= this.p.duration - 1e-6);
      this.syncing = true;
      for (const o of [this.u, this.w, this.v]) {
        if (o && o !== u) o.setScale("x", { min, max });
        if (o) o.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false); // the synced drag box, once zoomed
      }
      this.syncing = false;
      this.afterScale();
    }

    afterScale() {
      const [min, max] = this.view;
      this.root.dataset.viewMin = min.toFixed(3);
      this.root.dataset.viewMax = max.toFixed(3);
      if (this.zoomed || this.p.live) saved.set(this.slotId, this.state());
      this.placeBand();
      this.drawHead();
    }

    state() {
      return { key: this.key, mode: this.mode, only: this.only, zoomed: this.zoomed, min: this.view[0], max: this.view[1] };
    }

    setView(a, b) {
      const D = this.p.duration;
      const span = Math.max(MIN_SPAN_S, Math.min(D, b - a));
      a = Math.max(0, Math.min(a, D - span));
      this.zoomed = !(a <= 0 && a + span >= D);
      this.view = [a, a + span];
      saved.set(this.slotId, this.state());
      if (this.u) this.u.setScale("x", { min: a, max: a + span });
      else this.afterScale();
    }

    zoomBy(f, at) {
      const [a, b] = this.view;
      const c = at != null ? at : this.t >= a && this.t <= b ? this.t : (a + b) / 2;
      this.setView(c - (c - a) * f, c + (b - c) * f);
    }

    setMode(m) {
      if (m === this.mode) return;
      this.mode = m;
      saved.set(this.slotId, this.state());
      this.build();
      this.root.focus({ preventScroll: true });
    }

    setOnly(i) {
      this.only = i;
      saved.set(this.slotId, this.state());
      this.build();
      this.root.focus({ preventScroll: true });
    }

    syncButtons() {
      for (const m in this.modeBtns) this.modeBtns[m].setAttribute("aria-pressed", String(m === this.mode));
      this.chips.forEach((b, i) => b.setAttribute("aria-pressed", String(this.only === i)));
      this.select.value = this.only == null ? "" : String(this.only);
      this.root.dataset.mode = this.mode;
      this.root.dataset.only = this.only == null ? "" : this.p.labels[this.only].key;
    }

    // --- band: segments as buttons over the plotting area ---
    segs() {
      this.segEls = this.p.segments.map((s) => {
        const l = this.p.labels.find((x) => x.key === s.k) || this.p.labels[8];
        const b = el("button", "e2v-tl-segment");
        b.type = "button";
        b.style.background = l.color;
        b.title = label(l) + "  " + fmt(s.s) + " – " + fmt(s.e);
        b.dataset.emotion = s.k;
        b.addEventListener("click", () => {
          this.seek(s.s);
          this.root.focus({ preventScroll: true });
        });
        this.bandInner.append(b);
        return { b, s, l };
      });
    }

    placeBand() {
      if (!this.u || this.band.hidden) return;
      const left = parseFloat(this.u.over.style.left) || 0;
      const width = parseFloat(this.u.over.style.width) || this.u.over.clientWidth;
      this.band.style.marginLeft = left + "px";
      this.band.style.width = width + "px";
      const [a, b] = this.view;
      const k = width / (b - a);
      for (const { b: e, s, l } of this.segEls) {
        const x0 = (s.s - a) * k;
        const x1 = (s.e - a) * k;
        if (x1 < 0 || x0 > width) {
          e.style.display = "none";
          continue;
        }
        e.style.display = "";
        e.style.left = x0 + "px";
        e.style.width = Math.max(1, x1 - x0) + "px";
        e.textContent = x1 - x0 > 90 ? label(l) : "";
      }
    }

    // --- playhead and playback ---
    now() {
      return this.audio ? this.audio.currentTime : this.t;
    }

    drawHead() {
      if (!this.u) return;
      const t = (this.t = this.now());
      const [a, b] = this.view;
      const inView = t >= a && t <= b;
      for (const [i, u] of this.charts().entries()) {
        const h = this.heads[i];
        h.style.display = inView ? "" : "none";
        if (inView) h.style.transform = "translateX(" + u.valToPos(t, "x") + "px)";
      }
      if (!this.band.hidden) {
        const width = parseFloat(this.band.style.width) || 0;
        this.bandHead.style.display = inView ? "" : "none";
        this.bandHead.style.transform = "translateX(" + ((t - a) / (b - a)) * width + "px)";
      }
      this.clock.textContent = fmt(t) + " / " + fmt(this.p.duration);
      this.root.dataset.playhead = t.toFixed(3);
    }

    loop() {
      cancelAnimationFrame(this.raf);
      const step = () => {
        this.drawHead();
        const t = this.t;
        if (this.audio && !this.audio.paused && this.zoomed && (t > this.view[1] || t < this.view[0])) {
          const span = this.view[1] - this.view[0]; // zoomed in: turn the page to keep the playhead in view
          this.setView(t - span * 0.05, t + span * 0.95);
        }
        if (this.audio && !this.audio.paused) this.raf = requestAnimationFrame(step);
      };
      this.raf = requestAnimationFrame(step);
    }

    seek(t) {
      t = Math.max(0, Math.min(this.p.duration, t));
      if (this.audio) this.audio.currentTime = t;
      this.t = t;
      lastActive = this;
      this.drawHead();
    }

    toggle() {
      if (!this.audio) return;
      lastActive = this;
      if (this.audio.paused) this.audio.play().catch(() => {});
      else this.audio.pause();
    }

    // A click seeks; a double click shows the whole recording and leaves the playhead where it was. The
    // double click's first click has already seeked when the browser says it was a double one, so that
    // click keeps where the playhead stood (and when) to put it back; its second click does not seek.
    clickSeek(t) {
      const playing = !!(this.audio && !this.audio.paused);
      this.beforeClick = { t: this.now(), at: performance.now(), playing };
      this.seek(t);
    }

    undoClickSeek() {
      const b = this.beforeClick;
      if (!b || performance.now() - b.at > 1500) return;
      const rate = (this.audio && this.audio.playbackRate) || 1;
      this.seek(b.t + (b.playing ? ((performance.now() - b.at) / 1000) * rate : 0));
      this.beforeClick = null;
    }

    bindPointer(u, scrub) {
      const over = u.over;
      let down = null;
      over.addEventListener("mousedown", (e) => {
        if (e.button !== 0) return;
        down = { x: e.clientX, y: e.clientY };
        lastActive = this;
        if (scrub && e.detail > 1) return; // a double click's second press: the dblclick resets the view
        if (scrub) {
          this.clickSeek(u.posToVal(e.offsetX, "x"));
          const move = (ev) => this.seek(u.posToVal(ev.clientX - over.getBoundingClientRect().left, "x"));
          const up = () => {
            document.removeEventListener("mousemove", move);
            document.removeEventListener("mouseup", up);
          };
          document.addEventListener("mousemove", move);
          document.addEventListener("mouseup", up);
        }
      });
      over.addEventListener("mouseup", (e) => {
        if (!down || scrub) return;
        const moved = Math.abs(e.clientX - down.x) + Math.abs(e.clientY - down.y);
        down = null;
        if (moved < 4 && e.detail <= 1) this.clickSeek(u.posToVal(e.clientX - over.getBoundingClientRect().left, "x"));
      });
      over.addEventListener("dblclick", () => {
        this.setView(0, this.p.duration);
        this.undoClickSeek();
      });
      over.addEventListener(
        "wheel",
        (e) => {
          const [a, b] = this.view;
          const at = u.posToVal(e.clientX - over.getBoundingClientRect().left, "x");
          if (e.ctrlKey || e.metaKey) {
            e.preventDefault();
            this.zoomBy(e.deltaY > 0 ? 1.25 : 0.8, at);
          } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
            e.preventDefault();
            const d = ((e.deltaX || e.deltaY) / over.clientWidth) * (b - a);
            this.setView(a + d, b + d);
          }
        },
        { passive: false },
      );
    }

    hover(u) {
      const left = u.cursor.left;
      if (left == null || left < 0 || !this.d) {
        this.tip.hidden = true;
        return;
      }
      const t = u.posToVal(left, "x");
      const n = this.p.n;
      const i = Math.max(0, Math.min(n - 1, Math.floor(t / this.p.hop + 1e-9)));
      const src = this.mode === "raw" ? this.d.raw : this.d.smooth;
      const vals = this.tipRows.map((r, c) => [src[c][i], r]);
      vals.sort((p, q) => q[0] - p[0]);
      this.tipHead.textContent = this.T.time + " " + fmt(i * this.p.hop) + " · " + (this.mode === "raw" ? this.T.raw : this.T.smoothed);
      for (const [v, r] of vals) {
        r.val.textContent = (100 * v).toFixed(1) + "%";
        r.r.classList.toggle("e2v-tl-only-row", this.only != null && r.l === this.p.labels[this.only]);
        this.tip.append(r.r); // sorted: highest first
      }
      const dsrc = this.d.dims && (this.mode === "raw" ? this.d.dims.raw : this.d.dims.smooth);
      this.dimRows.forEach((r, k) => {
        r.val.textContent = (+dsrc[k][i].toPrecision(3)).toString();
        this.tip.append(r.r); // after the nine scores, in the head's order
      });
      this.tip.hidden = false;
      // positions from uPlot's inline styles and sizes cached at build: no layout read per mouse move
      const x = (parseFloat(u.over.style.left) || 0) + left;
      const tw = TIP_WIDTH;
      this.tip.style.left = (x + 16 + tw > this.builtWidth ? x - 16 - tw : x + 16) + "px";
      this.tip.style.top = this.tipTop + "px";
      this.root.dataset.hoverIndex = String(i);
    }

    bindGlobal() {
      this.root.addEventListener("keydown", (e) => {
        const tag = (e.target.tagName || "").toLowerCase();
        if (tag === "select" || tag === "input" || tag === "textarea" || tag === "audio") return;
        if (e.key === " " || e.code === "Space") {
          e.preventDefault();
          this.toggle();
        } else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
          e.preventDefault();
          this.seek(this.now() + (e.key === "ArrowRight" ? 5 : -5));
        }
      });
      this.root.addEventListener("pointerdown", () => (lastActive = this));
      this.playBtn.addEventListener("click", () => {
        this.toggle();
        this.root.focus({ preventScroll: true });
      });
      if (this.audio) {
        const a = this.audio;
        a.addEventListener("play", () => {
          this.playBtn.textContent = "⏸";
          this.playBtn.title = this.T.pause + " (Space)";
          this.loop();
        });
        a.addEventListener("pause", () => {
          this.playBtn.textContent = "▶";
          this.playBtn.title = this.T.play + " (Space)";
          this.drawHead();
        });
        a.addEventListener("seeked", () => this.drawHead());
        a.addEventListener("timeupdate", () => a.paused && this.drawHead());
      }
    }

    exportPng() {
      if (!this.u) return;
      const pad = 12;
      const W = this.width();
      const charts = [this.w, this.u, this.v].filter(Boolean);
      const bandH = this.band.hidden ? 0 : 18;
      const shown = this.only != null ? [this.p.labels[this.only]] : this.p.labels; // one emotion alone, or all
      const legendH = (shown.length > 1 ? 44 : 26) + (this.p.dims ? 18 : 0);
      const H = pad + 24 + bandH + 4 + charts.reduce((s, u) => s + u.height, 0) + legendH + pad;
      const r = window.devicePixelRatio || 1;
      const cv = document.createElement("canvas");
      cv.width = Math.round(W * r);
      cv.height = Math.round(H * r);
      const g = cv.getContext("2d");
      g.scale(r, r);
      g.fillStyle = "#fff";
      g.fillRect(0, 0, W, H);
      g.fillStyle = "#111";
      g.font = "bold 14px 'Noto Sans', 'Noto Sans CJK SC', sans-serif";
      const what = this.only != null ? " · " + shown[0].zh + " " + shown[0].key : "";
      g.fillText(this.T.title + " · " + (this.mode === "raw" ? this.T.raw : this.T.smoothed) + what + (this.p.run_id ? " · " + this.p.run_id : ""), pad, pad + 14);
      let y = pad + 24;
      if (bandH) {
        const left = parseFloat(this.u.over.style.left) || 0;
        const width = parseFloat(this.band.style.width) || 0;
        const [a, b] = this.view;
        for (const { s, l } of this.segEls) {
          const x0 = Math.max(0, ((s.s - a) / (b - a)) * width);
          const x1 = Math.min(width, ((s.e - a) / (b - a)) * width);
          if (x1 <= x0) continue;
          g.fillStyle = l.color;
          g.fillRect(left + x0, y, x1 - x0, bandH - 4);
        }
        y += bandH;
      }
      y += 4;
      for (const u of charts) {
        g.drawImage(u.ctx.canvas, 0, y, u.width, u.height);
        y += u.height;
      }
      g.font = "12px 'Noto Sans', 'Noto Sans CJK SC', sans-serif";
      let x = pad;
      let ly = y + 16;
      const dims = this.p.dims ? this.p.dims.targets.map((d) => ({ zh: d.zh === d.key ? "" : d.zh, key: d.key, color: d.color, line: 1 })) : [];
      for (const l of [...shown, ...dims]) {
        if (l.line && l === dims[0]) {
          x = pad; // the head's lines on a row of their own
          ly += 18;
        }
        const txt = (l.zh ? l.zh + " " : "") + l.key;
        const w = g.measureText(txt).width + 26;
        if (x + w > W - pad) {
          x = pad;
          ly += 18;
        }
        g.fillStyle = l.color;
        if (l.line) g.fillRect(x, ly - 5, 12, 3);
        else g.fillRect(x, ly - 10, 12, 12);
        g.fillStyle = "#333";
        g.fillText(txt, x + 16, ly);
        x += w;
      }
      this.root.dataset.pngLegend = shown.map((l) => l.key).join(",");
      const link = document.createElement("a");
      link.download = "emotion_timeline_" + (this.p.run_id || "live") + ".png";
      link.href = cv.toDataURL("image/png");
      link.click();
    }

    destroy() {
      cancelAnimationFrame(this.raf);
      if (this.ro) this.ro.disconnect();
      if (this.audio) {
        this.audio.pause();
        this.audio.removeAttribute("src");
      }
      if (this.u) this.u.destroy();
      if (this.w) this.w.destroy();
      if (this.v) this.v.destroy();
      if (lastActive === this) lastActive = null;
    }
  }

  function slotOf(node) {
    // Gradio 6 puts elem_classes on the block (id = elem_id) and on an inner div (id = html-<random>)
    let slot = node.closest(".e2v-timeline-slot");
    while (slot && (!slot.id || slot.id.startsWith("html-"))) slot = slot.parentElement && slot.parentElement.closest(".e2v-timeline-slot");
    return slot ? slot.id : "timeline";
  }

  function scan() {
    if (!window.uPlot || typeof DecompressionStream === "undefined") return;
    for (const [id, ctl] of registry) {
      if (!document.contains(ctl.holder)) {
        ctl.destroy();
        registry.delete(id);
      }
    }
    document.querySelectorAll(".e2v-timeline[data-timeline]").forEach((holder) => {
      // Gradio may patch a slot in place (same element, new data-timeline, children replaced):
      // a holder is (re)built whenever its payload differs from the one it was built with.
      const payload = holder.dataset.timeline;
      if (holder.__e2v === payload && holder.querySelector(".e2v-tl")) return;
      holder.__e2v = payload;
      let p;
      try {
        p = JSON.parse(holder.dataset.timeline);
      } catch (err) {
        console.error("e2v timeline: bad payload", err);
        return;
      }
      const id = slotOf(holder);
      const old = registry.get(id);
      if (old) old.destroy();
      const ctl = new Timeline(holder, id, p);
      registry.set(id, ctl);
      ctl.load().catch((err) => console.error("e2v timeline:", err));
    });
  }

  let pending = false;
  const schedule = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      scan();
    }, 0);
  };
  new MutationObserver(schedule).observe(document.documentElement, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeFilter: ["data-timeline"],
  });
  const boot = () => (window.uPlot ? scan() : setTimeout(boot, 50));
  boot();

  // Space anywhere on the page (not in a field or on a control) plays/pauses the timeline last used.
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || !(e.key === " " || e.code === "Space")) return;
    const a = document.activeElement;
    if (a && a !== document.body && a.closest("input,textarea,select,button,audio,[contenteditable],.e2v-tl")) return;
    const ctl = lastActive && document.contains(lastActive.root) && lastActive.root.offsetParent ? lastActive : null;
    if (!ctl) return;
    e.preventDefault();
    ctl.toggle();
  });
})();
