// The picture of a simulation run (sim/src/html.rs): draws what is in view
// from the page's JSON data, and handles zoom, pan, hover and the toggles.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const MSG_DRAW_MAX = 2500;
  // A message longer than this on its way (a straggler, a clogged link)
  // is drawn faint, so that it does not hide the ordinary traffic.
  const SLOW_NANOS = 50e6;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476"];
  const PHASE_COLOURS = { heal: "#2ca02c", liveness: "#1f77b4", settle: "#9467bd", done: "#999" };
  const lanesSvg = document.getElementById("lanes");
  const axisSvg = document.getElementById("axis");
  const overview = document.getElementById("overview");
  const hoverBox = document.getElementById("hover");
  const msgHint = document.getElementById("msghint");
  const end = Math.max(D.end, 1);

  // Lane geometry.
  // Lanes grow (up to twice their height) to fill the window when there
  // are few of them; the labels drawn with the page follow.
  const natural = D.lanes.reduce((sum, l) => sum + l[1], 0);
  const room = document.getElementById("chart").clientHeight - 30;
  const grow = Math.min(2, Math.max(1, room / natural));
  const lanes = [];
  let y = 0;
  for (const [name, h0, cls] of D.lanes) { const h = Math.floor(h0 * grow); lanes.push({ name, y, h, cls }); y += h; }
  const totalH = y;
  const labelSvg = document.getElementById("labels");
  labelSvg.setAttribute("height", totalH);
  labelSvg.querySelectorAll("g.lane").forEach((g, i) => {
    const l = lanes[i];
    if (!l) return;
    g.querySelector("rect").setAttribute("y", l.y);
    g.querySelector("rect").setAttribute("height", l.h);
    g.querySelector("text").setAttribute("y", l.y + l.h / 2 + 4);
  });
  const netLane = lanes[0];
  const nodeLane = (n) => lanes[1 + n];
  const clientLane = (c) => lanes[1 + D.nodes + c];

  // State.
  const kindOn = D.kinds.map((k) => !/^gossip/.test(k));
  let showMsgs = true;
  let focusKey = D.focusKey === null || D.focusKey === undefined ? -1 : D.focusKey;
  let dimOthers = !D.passed && focusKey >= 0;
  let t0 = 0, t1 = end;
  if (D.window) { t0 = D.window[0]; t1 = D.window[1]; }
  // `#view=FROM_MS,TO_MS` in the address opens on that span instead.
  const asked = /view=([0-9.]+),([0-9.]+)/.exec(location.hash);
  if (asked && +asked[2] > +asked[1]) { t0 = +asked[1] * 1e6; t1 = Math.min(+asked[2] * 1e6, end); }
  let hovered = null, pinned = null;

  const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const ms = (t) => (t / 1e6).toFixed(3) + " ms";
  const width = () => Math.max(lanesSvg.clientWidth || lanesSvg.getBoundingClientRect().width, 100);
  const X = (t) => ((t - t0) / (t1 - t0)) * width();
  const T = (x) => t0 + (x / width()) * (t1 - t0);
  const f1 = (v) => v.toFixed(1);

  // Messages are in send order; the first index sent at or after t.
  function firstMsgAt(t) {
    let lo = 0, hi = D.msgs.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (D.msgs[mid][3] < t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  const downSpans = D.spans.filter((s) => s.k === "down");
  const netSpans = D.spans.filter((s) => s.k === "partition");
  function fate(m) {
    const [from, to, , , due] = m;
    if (due < 0) return "lost";
    for (const s of downSpans) if (s.n === to && due >= s.s && due < s.e) return "dropped";
    for (const s of netSpans) if (due >= s.s && due < s.e && s.links.some((l) => l[0] === from && l[1] === to)) return "dropped";
    return "";
  }

  // The links a partition cuts: n1↔n2 both ways, n1→n2 one way.
  function linkSummary(links) {
    if (!links.length) return "";
    const cut = new Set(links.map(([a, b]) => a + "," + b));
    const parts = [];
    for (const [a, b] of links) {
      if (cut.has(b + "," + a)) { if (a < b) parts.push(`n${a + 1}↔n${b + 1}`); } else parts.push(`n${a + 1}→n${b + 1}`);
    }
    return ": " + parts.join(" ");
  }
  function niceStep(span, target) {
    const raw = span / target;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  function fmtTick(t, step) {
    const decimals = (unit) => Math.max(0, -Math.floor(Math.log10(step / unit) + 1e-9));
    if (step >= 1e6) return (t / 1e9).toFixed(decimals(1e9)) + "s";
    return (t / 1e6).toFixed(decimals(1e6)) + "ms";
  }

  function draw() {
    const W = width();
    const out = [];
    // Lane backgrounds.
    for (const l of lanes) {
      out.push(`<rect class="bg-${l.cls}" x="0" y="${l.y}" width="${W}" height="${l.h}"/>`);
      out.push(`<line class="lane-line" x1="0" x2="${W}" y1="${l.y + l.h}" y2="${l.y + l.h}"/>`);
    }
    // Ticks and the axis.
    const step = niceStep(t1 - t0, Math.max(2, W / 110));
    const axis = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const x = f1(X(t));
      out.push(`<line class="tick" x1="${x}" x2="${x}" y1="0" y2="${totalH}"/>`);
      axis.push(`<line x1="${x}" x2="${x}" y1="18" y2="26" stroke="#889"/><text x="${x}" y="14" text-anchor="${X(t) < 20 ? "start" : "middle"}">${fmtTick(t, step)}</text>`);
    }
    // Phases after the safety phase.
    for (let i = 0; i < D.phases.length; i++) {
      const [s, name] = D.phases[i];
      const e = i + 1 < D.phases.length ? D.phases[i + 1][0] : end;
      if (name === "safety" || e < t0 || s > t1) continue;
      const a = Math.max(X(s), 0), b = Math.min(X(e), W);
      out.push(`<rect class="phase" x="${f1(a)}" y="0" width="${f1(Math.max(b - a, 1))}" height="${totalH}" fill="${PHASE_COLOURS[name] || "#999"}"/>`);
      if (b - a > 50) axis.push(`<text x="${f1(a + 3)}" y="24" fill="${PHASE_COLOURS[name] || "#999"}" font-weight="bold">${esc(name)}</text>`);
    }
    // The failing window.
    if (D.window) {
      const a = X(D.window[0]), b = X(D.window[1]);
      if (b > 0 && a < W) out.push(`<rect class="window" x="${f1(Math.max(a, -5))}" y="0" width="${f1(Math.min(b, W + 5) - Math.max(a, -5))}" height="${totalH}"/>`);
    }
    // Fault spans.
    D.spans.forEach((s, i) => {
      if (s.e < t0 || s.s > t1) return;
      const a = Math.max(X(s.s), -5), b = Math.min(X(s.e), W + 5), w = f1(Math.max(b - a, 2));
      const h = `data-h="s${i}"`;
      if (s.n === null || s.n === undefined) {
        const l = netLane;
        out.push(`<rect class="${s.k}" ${h} x="${f1(a)}" y="${l.y + 2}" width="${w}" height="${l.h - 4}"/>`);
        if (b - a > 60) out.push(`<text class="span-text" x="${f1(Math.max(a, 0) + 3)}" y="${l.y + l.h / 2 + 4}">${esc(s.l + linkSummary(s.links))}</text>`);
        if (s.k === "partition") {
          const cutNodes = new Set();
          for (const [f, t] of s.links) { cutNodes.add(f); cutNodes.add(t); }
          for (const n of cutNodes) {
            const nl = nodeLane(n);
            if (nl) out.push(`<rect class="cut" ${h} x="${f1(a)}" y="${nl.y + 1}" width="${w}" height="5"/>`);
          }
        }
        return;
      }
      const l = nodeLane(s.n);
      if (!l) return;
      if (s.k === "down" || s.k === "pause") {
        out.push(`<rect class="${s.k}" ${h} x="${f1(a)}" y="${l.y + 8}" width="${w}" height="${l.h - 22}"/>`);
        if (b - a > 40) out.push(`<text class="${s.k === "down" ? "down-text" : "span-text"}" x="${f1(Math.max(a, 0) + 3)}" y="${l.y + l.h / 2 + 1}">${s.k === "down" ? "down" : "paused"}</text>`);
      } else {
        const yy = s.k === "bad-reads" ? l.y + l.h - 6 : l.y + l.h - 12;
        out.push(`<rect class="${s.k}" ${h} x="${f1(a)}" y="${yy}" width="${w}" height="5"/>`);
      }
    });
    // Message density on the network lane (every kind shown).
    const lo = firstMsgAt(t0 - 2e9), hi = firstMsgAt(t1 + 1);
    const buckets = new Array(Math.ceil(W / 3) + 1).fill(0);
    let visible = 0;
    for (let i = lo; i < hi; i++) {
      const m = D.msgs[i];
      if (!kindOn[m[2]]) continue;
      if (m[3] >= t0) buckets[Math.floor(X(m[3]) / 3)]++;
      const e = m[4] < 0 ? m[3] : m[4];
      if (e >= t0) visible++;
    }
    const peak = Math.max(1, ...buckets);
    buckets.forEach((c, i) => {
      if (c > 0) {
        const h = Math.max(1, (c / peak) * (netLane.h - 6));
        out.push(`<rect class="density" x="${i * 3}" y="${f1(netLane.y + netLane.h - 1 - h)}" width="2" height="${f1(h)}"/>`);
      }
    });
    // Marks.
    D.marks.forEach((m, i) => {
      if (m.t < t0 || m.t > t1) return;
      const l = nodeLane(m.n);
      if (!l) return;
      const x = X(m.t), cy = l.y + l.h / 2;
      const h = `data-h="k${i}"`;
      if (m.k === "clock") {
        out.push(`<path class="mark clock" ${h} d="M${f1(x)} ${cy - 7}l6 7l-6 7l-6 -7z"/>`);
      } else if (m.k === "sync-fail") {
        out.push(`<path class="mark sync-fail" ${h} d="M${f1(x - 5)} ${cy - 5}l10 10m0 -10l-10 10" stroke="#d00000" stroke-width="3"/>`);
      } else {
        out.push(`<path class="mark ${m.k}" ${h} d="M${f1(x)} ${l.y + 8}l5 9h-10z"/>`);
      }
    });
    // Messages, when few enough are in view.
    msgHint.textContent = "";
    msgHint.style.display = "none";
    if (showMsgs) {
      if (visible <= MSG_DRAW_MAX) {
        for (let i = lo; i < hi; i++) {
          const m = D.msgs[i];
          if (!kindOn[m[2]]) continue;
          const [from, to, kind, sent, due] = m;
          const a = nodeLane(from), b = nodeLane(to);
          if (!a || !b) continue;
          const fate_ = fate(m);
          const x1 = X(sent), y1 = a.y + a.h / 2;
          const x2 = due < 0 ? x1 + 10 : X(due), y2 = due < 0 ? y1 + (b.y > a.y ? 8 : -8) : b.y + b.h / 2;
          if (Math.max(x1, x2) < 0 || Math.min(x1, x2) > W) continue;
          const c = PALETTE[kind % PALETTE.length];
          const slow = !fate_ && due - sent > SLOW_NANOS ? " slow" : "";
          out.push(`<line class="msg ${fate_}${slow}" data-h="m${i}" x1="${f1(x1)}" y1="${y1}" x2="${f1(x2)}" y2="${y2}" stroke="${c}"/>`);
          if (fate_) {
            out.push(`<path d="M${f1(x2 - 3)} ${y2 - 3}l6 6m0 -6l-6 6" stroke="${c}" stroke-width="1.5"/>`);
          } else {
            const ang = Math.atan2(y2 - y1, x2 - x1), s = 6;
            const p1 = [x2 - s * Math.cos(ang - 0.4), y2 - s * Math.sin(ang - 0.4)];
            const p2 = [x2 - s * Math.cos(ang + 0.4), y2 - s * Math.sin(ang + 0.4)];
            out.push(`<path d="M${f1(x2)} ${f1(y2)}L${f1(p1[0])} ${f1(p1[1])}L${f1(p2[0])} ${f1(p2[1])}z" fill="${c}"/>`);
          }
        }
      } else {
        msgHint.textContent = `${visible} messages in view: zoom in (or untick kinds) to draw them as arrows`;
        msgHint.style.display = "block";
      }
    }
    // Client operations.
    const later = [];
    D.ops.forEach((o, i) => {
      const e = o.e < 0 ? end : o.e;
      if (e < t0 || o.s > t1) return;
      const l = clientLane(o.c);
      if (!l) return;
      const a = Math.max(X(o.s), -5), b = Math.min(X(e), W + 5), w = Math.max(b - a, 2);
      const cls = ["op", o.o];
      if (o.e < 0) cls.push("pending");
      if (focusKey >= 0) cls.push(o.k === focusKey ? "keyed" : dimOthers ? "dim" : "");
      if (o.bad === 2) cls.push("bad"); else if (o.bad === 1) cls.push("context");
      const rect = `<rect class="${cls.join(" ")}" data-h="o${i}" x="${f1(a)}" y="${l.y + 3}" width="${f1(w)}" height="${l.h - 6}" rx="2"/>`;
      const label = w > 28 ? `<text class="op-text${o.bad === 2 ? " bad" : ""}" x="${f1(Math.max(a, 0) + 3)}" y="${l.y + l.h / 2 + 4}">${esc(o.t + (w > 90 ? "  " + D.keys[o.k] : ""))}</text>` : "";
      if (o.bad) later.push(rect + label); else out.push(rect + label);
    });
    out.push(...later);
    // Violations found at an instant.
    let lastLabel = -1e9;
    D.violations.forEach((v, i) => {
      if (v.t < t0 || v.t > t1) return;
      const x = X(v.t);
      out.push(`<line class="violation-line" data-h="v${i}" x1="${f1(x)}" x2="${f1(x)}" y1="0" y2="${totalH}"/>`);
      if (x - lastLabel > 120) {
        out.push(`<text x="${f1(x - 2)}" y="${netLane.y + netLane.h - 4}" text-anchor="end" fill="#d00000" font-weight="bold" data-h="v${i}">${esc(v.p)} ▶</text>`);
        lastLabel = x;
      }
    });
    // Where the hovered or pinned operation went.
    const sel = pinned || hovered;
    if (sel && sel[0] === "o") {
      const o = D.ops[+sel.slice(1)];
      const l = clientLane(o.c);
      for (const [t, n] of o.co) {
        const nl = nodeLane(n);
        if (nl) out.push(`<path class="coord" d="M${f1(X(t))} ${l.y + l.h / 2}L${f1(X(t))} ${nl.y + nl.h / 2}"/><circle cx="${f1(X(t))}" cy="${nl.y + nl.h / 2}" r="4" fill="#1d2330"/>`);
      }
    }
    lanesSvg.setAttribute("height", totalH);
    lanesSvg.innerHTML = out.join("");
    axisSvg.innerHTML = axis.join("");
    drawOverview();
  }

  function drawOverview() {
    const W = overview.clientWidth || 800, H = 40;
    const x = (t) => (t / end) * W;
    const out = [`<rect x="0" y="0" width="${W}" height="${H}" fill="#eef0f4"/>`];
    for (let i = 0; i < D.phases.length; i++) {
      const [s, name] = D.phases[i];
      const e = i + 1 < D.phases.length ? D.phases[i + 1][0] : end;
      if (name !== "safety") out.push(`<rect x="${f1(x(s))}" y="0" width="${f1(Math.max(x(e) - x(s), 1))}" height="${H}" fill="${PHASE_COLOURS[name] || "#999"}" fill-opacity="0.15"/>`);
    }
    const rowH = Math.max(2, Math.floor((H - 4) / Math.max(D.nodes, 1)));
    for (const s of D.spans) {
      if (s.n === null || s.n === undefined) { out.push(`<rect x="${f1(x(s.s))}" y="0" width="${f1(Math.max(x(s.e) - x(s.s), 1))}" height="${H}" fill="#e74c3c" fill-opacity="0.12"/>`); continue; }
      const fill = { down: "#3c4250", pause: "#f6c26b", "bad-reads": "#b58de0", "disk-full": "#b0835a" }[s.k] || "#888";
      out.push(`<rect x="${f1(x(s.s))}" y="${2 + s.n * rowH}" width="${f1(Math.max(x(s.e) - x(s.s), 1))}" height="${rowH - 1}" fill="${fill}"/>`);
    }
    for (const o of D.ops) if (o.bad === 2) out.push(`<rect x="${f1(x(o.s))}" y="${H - 6}" width="2" height="6" fill="#d00000"/>`);
    for (const v of D.violations) out.push(`<line x1="${f1(x(v.t))}" x2="${f1(x(v.t))}" y1="0" y2="${H}" stroke="#d00000" stroke-width="2"/>`);
    out.push(`<rect class="view" x="${f1(x(t0))}" y="1" width="${f1(Math.max(x(t1) - x(t0), 3))}" height="${H - 2}"/>`);
    overview.innerHTML = out.join("");
  }

  function setView(a, b) {
    const min = 20000; // 20 us
    if (b - a < min) { const c = (a + b) / 2; a = c - min / 2; b = c + min / 2; }
    const span = b - a;
    if (span >= end) { a = 0; b = end; } else {
      if (a < 0) { a = 0; b = span; }
      if (b > end) { b = end; a = end - span; }
    }
    t0 = a; t1 = b;
    draw();
  }
  const zoom = (factor, at) => { const c = at === undefined ? (t0 + t1) / 2 : at; setView(c - (c - t0) * factor, c + (t1 - c) * factor); };

  // Details of whatever is under the pointer.
  function describe(h) {
    if (!h) return "";
    const i = +h.slice(1);
    switch (h[0]) {
      case "o": {
        const o = D.ops[i];
        const co = o.co.map(([t, n]) => `n${n + 1} at ${ms(t)}`).join(", then ");
        const role = o.bad === 2 ? "\n<b class=violation>named by the violation</b>" : o.bad === 1 ? "\n<b>the linearized prefix just before the failure</b>" : "";
        return `<b>operation #${o.id}</b> (client ${D.clients[o.c]}, key ${esc(D.keys[o.k])})\n${esc(o.line)}\noutcome: ${o.o}${o.e < 0 ? " (never answered)" : ""}\ninvoked ${ms(o.s)}, ${o.e < 0 ? "pending" : "completed " + ms(o.e) + " (" + ((o.e - o.s) / 1e6).toFixed(3) + " ms)"}\nversion: ${o.v || "-"}\ncoordinator: ${co || "-"}${role}`;
      }
      case "m": {
        const [from, to, kind, sent, due] = D.msgs[i];
        const f = fate(D.msgs[i]);
        return `<b>message ${esc(D.kinds[kind])}</b>\nn${from + 1} → n${to + 1}\nsent ${ms(sent)}${due < 0 ? "\nlost by the network" : "\ndue " + ms(due) + " (" + ((due - sent) / 1e6).toFixed(3) + " ms)"}${f === "dropped" ? "\ndropped: the link was cut or the receiver down when it arrived" : ""}`;
      }
      case "s": {
        const s = D.spans[i];
        const links = s.links.length ? "\nlinks" + linkSummary(s.links) : "";
        return `<b>${esc(s.k)}</b>${s.n === null || s.n === undefined ? "" : " on n" + (s.n + 1)}\n${esc(s.l)}\nfrom ${ms(s.s)} to ${ms(s.e)} (${((s.e - s.s) / 1e6).toFixed(1)} ms)${links}`;
      }
      case "k": {
        const m = D.marks[i];
        return `<b>${esc(m.k)}</b> on n${m.n + 1} at ${ms(m.t)}\n${esc(m.l)}`;
      }
      case "v": {
        const v = D.violations[i];
        return `<b class=violation>violated: ${esc(v.p)}</b> (found at ${ms(v.t)})\n${esc(v.d)}`;
      }
    }
    return "";
  }
  function showHover() {
    const h = pinned || hovered;
    hoverBox.innerHTML = h ? (pinned ? "<i>pinned (click empty space to unpin)</i>\n" : "") + describe(h) : "Hover over an operation, a message or a fault for its details; click to pin it.";
  }
  lanesSvg.addEventListener("mousemove", (ev) => {
    if (drag) return;
    const h = ev.target.getAttribute && ev.target.getAttribute("data-h");
    if (h !== hovered) { hovered = h; showHover(); if (!pinned) draw(); }
  });
  lanesSvg.addEventListener("click", (ev) => {
    if (moved) return;
    const h = ev.target.getAttribute && ev.target.getAttribute("data-h");
    pinned = h || null;
    showHover(); draw();
  });

  // Zoom with the wheel, pan by dragging.
  const onWheel = (ev) => {
    ev.preventDefault();
    const rect = lanesSvg.getBoundingClientRect();
    if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      const d = (ev.shiftKey ? ev.deltaY : ev.deltaX) / rect.width * (t1 - t0);
      setView(t0 + d, t1 + d);
    } else {
      zoom(ev.deltaY > 0 ? 1.25 : 0.8, T(ev.clientX - rect.left));
    }
  };
  lanesSvg.addEventListener("wheel", onWheel, { passive: false });
  axisSvg.addEventListener("wheel", onWheel, { passive: false });
  let drag = null, moved = false;
  const startDrag = (ev) => { drag = { x: ev.clientX, a: t0, b: t1 }; moved = false; lanesSvg.classList.add("dragging"); };
  lanesSvg.addEventListener("mousedown", startDrag);
  axisSvg.addEventListener("mousedown", startDrag);
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    const dx = ev.clientX - drag.x;
    if (Math.abs(dx) > 2) moved = true;
    const d = (dx / width()) * (drag.b - drag.a);
    setView(drag.a - d, drag.b - d);
  });
  window.addEventListener("mouseup", () => { drag = null; lanesSvg.classList.remove("dragging"); });
  const fromOverview = (ev) => {
    const r = overview.getBoundingClientRect();
    const c = ((ev.clientX - r.left) / r.width) * end, half = (t1 - t0) / 2;
    setView(c - half, c + half);
  };
  let overviewDrag = false;
  overview.addEventListener("mousedown", (ev) => { overviewDrag = true; fromOverview(ev); });
  window.addEventListener("mousemove", (ev) => { if (overviewDrag) fromOverview(ev); });
  window.addEventListener("mouseup", () => { overviewDrag = false; });
  window.addEventListener("resize", draw);
  window.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "SELECT") return;
    const span = t1 - t0;
    if (ev.key === "+" || ev.key === "=") zoom(0.8);
    else if (ev.key === "-") zoom(1.25);
    else if (ev.key === "ArrowLeft") setView(t0 - span / 4, t1 - span / 4);
    else if (ev.key === "ArrowRight") setView(t0 + span / 4, t1 + span / 4);
  });

  // Controls.
  const controls = document.getElementById("controls");
  const button = (text, title, action) => {
    const b = document.createElement("button");
    b.textContent = text; b.title = title; b.onclick = action;
    controls.appendChild(b);
  };
  button("whole run", "show the whole run", () => setView(0, end));
  if (D.window) button("failing window", "the operations the violation names", () => setView(D.window[0], D.window[1]));
  button("−", "zoom out (-, or the wheel)", () => zoom(1.25));
  button("+", "zoom in (+, or the wheel)", () => zoom(0.8));
  button("◀", "back in time (arrow key, or drag)", () => { const s = t1 - t0; setView(t0 - s / 4, t1 - s / 4); });
  button("▶", "forward in time", () => { const s = t1 - t0; setView(t0 + s / 4, t1 + s / 4); });
  const keySel = document.createElement("select");
  keySel.innerHTML = `<option value="-1">no key highlighted</option>` + D.keys.map((k, i) => `<option value="${i}"${i === focusKey ? " selected" : ""}>key ${esc(k)}${i === D.focusKey ? " (the violation's)" : ""}</option>`).join("");
  keySel.onchange = () => { focusKey = +keySel.value; draw(); };
  controls.appendChild(keySel);
  const check = (text, on, action, colour) => {
    const l = document.createElement("label");
    if (colour) l.style.borderLeftColor = colour;
    const c = document.createElement("input");
    c.type = "checkbox"; c.checked = on; c.onchange = () => { action(c.checked); draw(); };
    l.appendChild(c); l.appendChild(document.createTextNode(" " + text));
    return l;
  };
  controls.appendChild(check("dim other keys", dimOthers, (v) => { dimOthers = v; }));
  controls.appendChild(check("messages", showMsgs, (v) => { showMsgs = v; }));
  const kinds = document.getElementById("kinds");
  kinds.innerHTML = "<b>message kinds</b> (sent in the run; untick to hide)\n";
  D.kinds.forEach((k, i) => kinds.appendChild(check(`${k} ${D.kindTotals[i]}`, kindOn[i], (v) => { kindOn[i] = v; }, PALETTE[i % PALETTE.length])));

  // The report beside the picture.
  const rep = [];
  rep.push(`<h2>${D.passed ? "run passed" : "run FAILED"} (seed ${esc(D.seed)})</h2>`);
  // Each violation's text; past three of one property, the rest folded.
  const seen = {};
  const folded = [];
  D.violations.forEach((v, i) => {
    seen[v.p] = (seen[v.p] || 0) + 1;
    const html = `<div class="v-head" data-v="${i}" title="show when it was found">violated: ${esc(v.p)}</div><div class="violation${v.d.includes("\n") ? " picture" : ""}">${esc(v.d)}</div>`;
    if (seen[v.p] > 3) folded.push(html); else rep.push(html);
  });
  if (folded.length) rep.push(`<details><summary>${folded.length} more violation(s)</summary>${folded.join("")}</details>`);
  if (D.focusKeyName) rep.push(`\nkey: <b>${esc(D.focusKeyName)}</b>; operations the violation names are outlined in red, the linearized operations just before them in purple.`);
  rep.push(`\n<b>checks</b>\n` + D.checks.map(([c, s, n]) => `<span class="check-${s.toLowerCase()}">${esc(c)} ${esc(s)}</span>${s === "violated" ? "" : ""}`).join("\n"));
  if (D.clocks.some(([o, d]) => o !== 0 || d !== 0)) {
    rep.push(`\n\n<b>clocks at the start</b> (offset from true time, drift)\n` + D.clocks.map(([o, d], n) => `n${n + 1} ${o >= 0 ? "+" : ""}${(o / 1e6).toFixed(1)} ms, ${d} ppm`).join("\n"));
  }
  rep.push(`\n\n<b>repro</b>\n<div class="repro">${esc(D.repro)}</div>swarm: ${esc(D.swarm)}\n${esc(D.summary)}\ndigest ${esc(D.digest)}`);
  rep.push(`\n\n<div class="legend"><span><i style="background:#5cb85c"></i>ok</span><span><i style="background:#8fd1c5"></i>cas refused</span><span><i style="background:#e07b7b"></i>fail</span><span><i style="background:#f0ad4e"></i>info</span><span><i style="background:#fff;border:3px solid #d00000"></i>violating</span><span><i style="background:#3c4250"></i>down</span><span><i style="background:#f6c26b"></i>paused</span><span><i style="background:#b58de0"></i>bad reads</span><span><i style="background:#b0835a"></i>disk full</span><span><i style="background:#e74c3c"></i>partition (cut node)</span><span><i style="background:#7f8c8d"></i>clogged</span><span><i style="background:#1f6feb"></i>clock jump</span><span><i style="background:#d00000"></i>✕ failed sync</span><span><i style="background:#e67e22"></i>crash armed</span><span>- - lost / ·· dropped message</span></div>`);
  const report = document.getElementById("report");
  report.innerHTML = rep.join("");
  report.addEventListener("click", (ev) => {
    const v = ev.target.getAttribute("data-v");
    if (v === null) return;
    const t = D.violations[+v].t, s = t1 - t0;
    if (D.window && +v === 0) setView(D.window[0], D.window[1]); else setView(t - s * 0.8, t + s * 0.2);
  });
  const notes = [];
  notes.push(`${D.nodes} nodes, ${D.clients.length} clients, ${D.opTotal} operations` + (D.opSampled ? ` (the page shows ${D.ops.length}: every one in the failing window, an even sample of the rest)` : ""));
  notes.push(`${D.msgTotal} messages sent` + (D.msgSampled ? `, the page carries ${D.msgs.length} (sampled: all of the failing window first, then evenly)` : ", all on the page") + `; gossip is unticked by default`);
  notes.push("wheel: zoom, shift+wheel or drag: pan, click the strip above to jump");
  document.getElementById("notes").textContent = notes.join(" · ");
  // A failing run opens with the last operation the violation names pinned.
  let last = -1;
  D.ops.forEach((o, i) => { if (o.bad === 2 && (last < 0 || o.s > D.ops[last].s)) last = i; });
  if (last >= 0) { pinned = "o" + last; showHover(); }
  draw();
})();
