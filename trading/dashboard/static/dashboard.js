// The dashboard page: loads every panel from the JSON API, then applies the live events pushed
// on /api/stream (Server-Sent Events). Charts are uPlot (vendored, zoom by drag, hover legend,
// double-click to reset). Series events carry only new points; a point not newer than the last
// one held is dropped, so an event overlapping the first load is harmless.
//
// One clock: every time shown is market (exchange) time, New York; the simulated market's when
// the simulator runs (the header says so). Times this machine stamped (P&L, fills, alerts) are
// put on that clock with the clock panel (market_ts + (t - wall_ts) x rate). Chart x axes skip
// closed-market time: a gap longer than BREAK_AFTER_S loses whole hours down to at most
// KEEP_S + 1 h, the lines break there and a dashed line marks the new session.
"use strict";

const MAX_POINTS = 20000;
const MARKET_TZ = "America/New_York";
const BREAK_AFTER_S = 1800;  // a gap in a series longer than this is closed market (or an outage)
const KEEP_S = 1800;  // what a collapsed gap keeps, at least (whole hours are removed)
const X_INCRS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800];
const PANELS = ["clock", "spread", "prices", "hedge", "option", "book", "risk", "health",
  "alerts"];
const state = { clock: null, clockAt: 0, spread: null, prices: null, hedge: null, book: null,
  alerts: null, charts: {}, axes: {}, loaded: new Set() };

// ---------------------------------------------------------------------------- formatting

function num(x, digits = 2) {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}
function signed(x, digits = 2) {
  return x === null || x === undefined ? "–" : (x > 0 ? "+" : "") + x.toFixed(digits);
}
function time(ts) {
  // "sv-SE" formats as YYYY-MM-DD HH:MM:SS.
  return ts ? new Date(ts * 1000).toLocaleString("sv-SE", { timeZone: MARKET_TZ }) : "–";
}
function parts(ts) {  // [YYYY-MM-DD, HH:MM] in exchange time
  const [day, clock] = time(ts).split(" ");
  return [day, clock.slice(0, 5)];
}
// A time this machine stamped, on the market clock (identity before the clock is known).
function marketTime(wallTs) {
  const c = state.clock;
  if (!wallTs || !c || c.market_ts === null) return wallTs;
  return c.market_ts + (wallTs - c.wall_ts) * c.rate;
}
function marketNow() {
  const c = state.clock;
  if (!c || c.market_ts === null) return null;
  const elapsed = Math.min(Date.now() / 1000 - state.clockAt, c.stale_after_s);
  return c.market_ts + Math.max(0, elapsed) * c.rate;
}
// "12 s ago", flagged stale past the limit.
function ago(age, staleAfter) {
  if (age === null || age === undefined) return ["never", "stale"];
  const text = age < 90 ? `${age.toFixed(age < 10 ? 1 : 0)} s ago`
    : age < 5400 ? `${Math.round(age / 60)} min ago` : `${(age / 3600).toFixed(1)} h ago`;
  return [text, age > staleAfter ? "stale" : "fresh"];
}
function staleAfter() {
  return state.clock ? state.clock.stale_after_s : 30;
}
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}
function setText(id, text, cls) {
  const node = document.getElementById(id);
  node.textContent = text;
  if (cls !== undefined) node.className = cls;
}
function fillTable(id, rows, columns, emptyText = "no data yet") {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (!rows.length) {
    const cell = el("td", emptyText, "empty");
    cell.colSpan = columns;
    body.appendChild(el("tr")).appendChild(cell);
    return;
  }
  for (const row of rows) {
    const tr = el("tr");
    if (row.key) tr.dataset.key = row.key;
    for (const cell of row.cells) {
      const [text, cls] = Array.isArray(cell) ? cell : [cell, undefined];
      tr.appendChild(el("td", text, cls));
    }
    body.appendChild(tr);
  }
}
function keyValues(id, pairs) {
  fillTable(id, pairs.map(([k, v, key]) => ({ key, cells: [k, v] })), 2);
}
function timeCell(wallTs) {  // a time this machine stamped, on the market clock
  return time(marketTime(wallTs));
}

// ---------------------------------------------------------------------------- series

// Append `incoming` columns to `held` (both {ts: [...], ...}), keeping points newer than the
// last held one and at most MAX_POINTS.
function mergeColumns(held, incoming) {
  if (!held) return incoming;
  const last = held.ts.length ? held.ts[held.ts.length - 1] : -Infinity;
  let first = 0;
  while (first < incoming.ts.length && incoming.ts[first] <= last) first++;
  if (first === incoming.ts.length) return held;
  for (const name of Object.keys(held)) {
    held[name] = held[name].concat(incoming[name].slice(first));
    if (held[name].length > MAX_POINTS) held[name] = held[name].slice(-MAX_POINTS);
  }
  return held;
}

// Closed-market time out of a chart: x is the time less every collapsed gap before it.
// Returns the chart data with a null row in each gap (the lines break there) and the axis.
function sessionAxis(columns) {
  const ts = columns[0];
  const out = columns.map(() => []);
  const breaks = [];  // {x, offset, ts}: from x on, time = x + offset
  let offset = 0;
  for (let i = 0; i < ts.length; i++) {
    if (i > 0 && ts[i] - ts[i - 1] > BREAK_AFTER_S) {
      const gap = ts[i] - ts[i - 1];
      const removed = Math.max(0, Math.floor((gap - KEEP_S) / 3600) * 3600);
      const before = ts[i - 1] - offset;
      offset += removed;
      out[0].push((before + ts[i] - offset) / 2);
      for (let k = 1; k < out.length; k++) out[k].push(null);
      breaks.push({ x0: before, x: ts[i] - offset, offset, ts: ts[i] });
    }
    out[0].push(ts[i] - offset);
    for (let k = 1; k < out.length; k++) out[k].push(columns[k][i]);
  }
  // The time a chart x stands for; null inside a collapsed gap (closed market: no label).
  const toTs = (x) => {
    let shift = 0;
    for (const b of breaks) {
      if (x >= b.x - 1) shift = b.offset;
      else if (x > b.x0 + 1) return null;
      else break;
    }
    return x + shift;
  };
  return { data: out, breaks, toTs };
}

// uPlot options that label a session axis in exchange time and mark each session's start.
function sessionOpts(id) {
  const axis = () => state.axes[id];
  return {
    scales: { x: { time: false } },
    xAxis: {
      incrs: X_INCRS, space: 70,
      values: (u, splits) => {
        let last = null;
        return splits.map((x) => {
          const t = axis().toTs(x);
          if (t === null) return "";
          const [day, clock] = parts(t);
          const label = day === last ? clock : `${day.slice(5)} ${clock}`;
          last = day;
          return label;
        });
      },
    },
    xSeries: { label: "time (ET)", value: (u, x) => (x === null || x === undefined ? "–"
      : time(axis().toTs(x))) },
    hook: (u) => {
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "#888";
      ctx.fillStyle = "#555";
      ctx.setLineDash([3, 3]);
      ctx.font = `${11 * devicePixelRatio}px system-ui`;
      for (const b of axis().breaks) {
        const x = u.valToPos(b.x, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.fillText(parts(b.ts)[0], x + 3, u.bbox.top + 12 * devicePixelRatio);
      }
      ctx.restore();
    },
  };
}

function chartFor(id, opts, columns) {
  const axis = sessionAxis(columns);
  state.axes[id] = axis;
  const data = axis.data;
  const sessions = columns[0].length ? axis.breaks.length + 1 : 0;
  document.getElementById(id).dataset.sessions = String(sessions);
  const session = sessionOpts(id);
  const [xSeries, ...ySeries] = opts.series;
  const [xAxis, ...yAxes] = opts.axes || [{}, {}];
  opts = {
    ...opts,
    scales: { ...(opts.scales || {}), ...session.scales },
    series: [{ ...xSeries, ...session.xSeries }, ...ySeries],
    axes: [{ ...xAxis, ...session.xAxis }, ...yAxes],
    hooks: { ...(opts.hooks || {}),
      drawAxes: [...((opts.hooks || {}).drawAxes || []), session.hook] },
  };
  const box = document.getElementById(id);
  const points = columns[0].length;
  box.dataset.points = String(points);
  if (!points) {
    if (!state.charts[id]) box.replaceChildren(el("div", "no data yet", "empty"));
    return;
  }
  let chart = state.charts[id];
  if (!chart) {
    box.replaceChildren();
    const width = Math.max(300, box.clientWidth - 8);
    chart = new uPlot({ width, height: box.classList.contains("small") ? 180 : 240,
      ...opts }, data, box);
    state.charts[id] = chart;
  } else {
    // Keep the reader's zoom: rescale only when the whole held range was in view.
    const held = chart.data[0];
    const x = chart.scales.x;
    const zoomed = held.length > 1 && (x.min > held[0] || x.max < held[held.length - 1]);
    chart.setData(data, !zoomed);
  }
  box.dataset.drawn = "true";
}

function nearestIndex(ts, t) {  // the last index with ts[i] <= t
  let lo = 0, hi = ts.length - 1;
  if (hi < 0 || t < ts[0]) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (ts[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return lo;
}

function bandsHook(getBands) {
  return (u) => {
    const bands = getBands();
    if (!bands) return;
    const ctx = u.ctx;
    const levels = [[bands.entry_z, "#ef6c00", [6, 4]], [bands.exit_z, "#2e7d32", [2, 3]],
                    [bands.stop_z, "#c62828", [8, 3, 2, 3]]];
    ctx.save();
    ctx.lineWidth = 1;
    for (const [level, color, dash] of levels) {
      for (const value of [level, -level]) {
        const y = u.valToPos(value, "y", true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) continue;
        ctx.strokeStyle = color;
        ctx.setLineDash(dash);
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
      }
    }
    ctx.restore();
  };
}

const markerSeries = (label, color, shape) => ({
  label, stroke: color, fill: color, paths: () => null,
  points: { show: true, size: 11, stroke: color, fill: color, shape },
});

function drawSpread() {
  const p = state.spread;
  const s = p.series;
  const entries = new Array(s.ts.length).fill(null);
  const exits = new Array(s.ts.length).fill(null);
  for (const m of p.markers) {
    const i = nearestIndex(s.ts, m.ts);
    if (i < 0) continue;
    (m.action.startsWith("ENTER") ? entries : exits)[i] = m.z;
  }
  const bands = p.bands;
  const zMax = Math.max(bands.stop_z * 1.1, ...s.z.map(Math.abs));
  chartFor("chart-z", {
    scales: { y: { range: [-zMax, zMax] } },
    series: [{}, { label: "z", stroke: "#6a1b9a", width: 1 },
      markerSeries("entry", "#2e7d32"), markerSeries("exit/stop", "#1565c0")],
    hooks: { drawAxes: [bandsHook(() => state.spread && state.spread.bands)] },
    cursor: { drag: { x: true, y: false } },
  }, [s.ts, s.z, entries, exits]);
  const upper = s.mean.map((m, i) => m + bands.entry_z * s.std[i]);
  const lower = s.mean.map((m, i) => m - bands.entry_z * s.std[i]);
  chartFor("chart-spread", {
    series: [{}, { label: "spread", stroke: "#1565c0", width: 1 },
      { label: "mean", stroke: "#777", width: 1 },
      { label: `+${bands.entry_z} std`, stroke: "#ef6c00", dash: [6, 4] },
      { label: `-${bands.entry_z} std`, stroke: "#ef6c00", dash: [6, 4] }],
  }, [s.ts, s.spread, s.mean, upper, lower]);
  const latest = p.latest;
  setText("z-value", latest ? num(latest.z, 2) : "–");
  setText("pair-state", latest ? latest.state : "–");
}

function drawPrices() {
  const p = state.prices;
  // The pair's names come with the panel (its PairSpec, from the settings): never spelled here.
  const { underlying: u, etf: e } = p.pair;
  const series = (k) => p.series[k] || { ts: [], price: [] };
  const under = series(u), fund = series(e), index = series("buy_write_index");
  const tables = [under, fund].filter((t) => t.ts.length).map((t) => [t.ts, t.price]);
  const joined = tables.length === 2 ? uPlot.join(tables)
    : tables.length === 1 ? (under.ts.length ? [...tables[0], []] : [tables[0][0], [],
      tables[0][1]]) : [[], [], []];
  chartFor("chart-prices", {
    series: [{}, { label: u, stroke: "#1565c0", scale: "underlying", width: 1.5 },
      { label: e, stroke: "#ef6c00", scale: "etf", width: 1.5 }],
    axes: [{}, { scale: "underlying", label: `${u} (USD)`, stroke: "#1565c0" },
      { scale: "etf", side: 1, label: `${e} (USD)`, stroke: "#ef6c00", grid: { show: false } }],
  }, joined);
  // The buy-write index against the underlying's mid it writes calls on, per share.
  const basis = index.ts.map((t, i) => {
    const j = nearestIndex(under.ts, t);
    return j < 0 ? null : index.price[i] - under.price[j];
  });
  chartFor("chart-basis", {
    series: [{}, { label: `buy-write index − ${u} (USD/share)`, stroke: "#2e7d32",
      width: 1.5 }],
  }, [index.ts, basis]);
  const stale = staleAfter();
  fillTable("prices-table", p.instruments.map((i) => ({
    key: i.symbol,
    cells: [i.symbol, num(i.quote && i.quote.bid, 2), num(i.quote && i.quote.ask, 2),
      num(i.mid, 3), num(i.nav, 3), num(i.premium_bp, 1), ago(i.age_s, stale)],
  })), 7);
  setText("index-value", num(p.buy_write_index, 3));
}

function drawHedge() {
  const p = state.hedge;
  chartFor("chart-hedge", {
    series: [{}, { label: "beta", stroke: "#1565c0", width: 1 }],
  }, [p.series.ts, p.series.beta]);
  setText("hedge-beta", num(p.beta, 4));
  setText("hedge-alpha", num(p.alpha, 4));
  setText("hedge-method", p.method || "–");
}

// ---------------------------------------------------------------------------- panels

const render = {
  spread(p, live) {
    if (live && state.spread) {
      state.spread.series = mergeColumns(state.spread.series, p.series);
      Object.assign(state.spread, { latest: p.latest, bands: p.bands, markers: p.markers });
    } else state.spread = p;
    drawSpread();
  },
  prices(p, live) {
    if (live && state.prices) {
      for (const [k, s] of Object.entries(p.series)) {
        state.prices.series[k] = mergeColumns(state.prices.series[k], s);
      }
      Object.assign(state.prices, { instruments: p.instruments,
        buy_write_index: p.buy_write_index });
    } else state.prices = p;
    drawPrices();
  },
  hedge(p, live) {
    if (live && state.hedge) {
      state.hedge.series = mergeColumns(state.hedge.series, p.series);
      Object.assign(state.hedge, { beta: p.beta, alpha: p.alpha, method: p.method });
    } else state.hedge = p;
    drawHedge();
  },
  option(p) {
    if (p.con_id === null) {
      keyValues("option-table", [["call", "no call selected yet"]]);
      return;
    }
    const q = p.quote;
    keyValues("option-table", [
      ["contract", p.name || String(p.con_id), "contract"],
      ["strike / expiry", `${num(p.strike, 2)} / ${p.expiry}`, "strike"],
      ["bid / ask", q ? `${num(q.bid, 2)} / ${num(q.ask, 2)}` : "no quote yet", "bid-ask"],
      ["implied vol", q ? num(q.implied_vol * 100, 2) + "%" : "–", "iv"],
      ["delta (per share)", q ? num(q.delta, 4) : "–", "delta"],
      ["gamma (per share)", q ? num(q.gamma, 4) : "–", "gamma"],
      ["vega $/vol pt (contract)", num(p.vega_usd_per_point_per_contract, 2), "vega"],
      ["theta $/day (contract)", num(p.theta_usd_per_day_per_contract, 2), "theta"],
      ["underlying", q ? num(q.underlying_price, 2) : "–", "underlying"],
      ["updated", ago(p.age_s, staleAfter()), "age"],
    ]);
  },
  book(p) {
    state.book = p;
    const pnl = p.pnl;
    setText("pnl-total", pnl ? signed(pnl.total, 2) : "–",
      pnl ? (pnl.total < 0 ? "HALTED" : "ok") : "");
    // Every figure the P&L message carries, the known ones first.
    const known = ["realized", "unrealized", "commissions", "distributions",
      "distributions_accrued", "total"];
    const figures = pnl ? [...known.filter((k) => k in pnl), ...Object.keys(pnl).filter(
      (k) => !known.includes(k) && typeof pnl[k] === "number" && k !== "ts")] : [];
    keyValues("pnl-table", pnl ? [
      ...figures.map((k) => [k, k === "commissions" ? num(pnl[k], 2) : signed(pnl[k], 2), k]),
      ["as of", timeCell(pnl.ts), "ts"],
    ] : []);
    const name = (conId, fallback) => p.contracts[String(conId)] || fallback;
    fillTable("positions-table", p.positions.map((x) => ({
      key: x.local_symbol || x.symbol,
      cells: [name(x.con_id, x.local_symbol || x.symbol), x.sec_type, num(x.quantity, 0),
        num(x.avg_cost, 2), num(x.market_price, 2), signed(x.unrealized_pnl, 2),
        signed(x.realized_pnl, 2)],
    })), 7, "no positions");
    fillTable("orders-table", p.open_orders.map((o) => ({
      key: String(o.order_id),
      cells: [o.intent_id, p.orders[String(o.order_id)] || o.symbol, o.side,
        num(o.quantity, 0), o.order_type, num(o.limit_price, 2), o.status, num(o.filled, 0),
        num(o.remaining, 0)],
    })), 9, "no open orders");
    fillTable("fills-table", p.fills.map((f) => ({
      key: f.exec_id,
      cells: [timeCell(f.ts), name(f.con_id, f.local_symbol || f.symbol), f.side,
        num(f.quantity, 0), num(f.price, 2), num(f.commission, 2), f.intent_id],
    })), 7, "no fills yet");
  },
  risk(p) {
    setText("risk-state", p.state || "–", p.state || "");
    setText("risk-reason", p.reason ? `(${p.reason})` : "");
    const box = document.getElementById("risk-limits");
    box.replaceChildren();
    if (!p.limits.length) box.appendChild(el("div", "no data yet", "empty"));
    for (const limit of p.limits) {
      const row = el("div", undefined, "limit");
      row.dataset.limit = limit.name;
      row.appendChild(el("span", limit.name));
      const bar = row.appendChild(el("div", undefined, "bar"));
      const cls = limit.breached ? "breached" : limit.used >= 0.8 ? "warn" : "";
      const fill = bar.appendChild(el("div", undefined, cls));
      fill.style.width = `${Math.min(100, limit.used * 100)}%`;
      row.appendChild(el("span", `${num(limit.used * 100, 0)}%`, limit.breached ? "breached" : ""));
      box.appendChild(row);
    }
  },
  health(p) {
    fillTable("data-health-table", p.instruments.map((i) => ({
      key: i.symbol,
      cells: [i.name, [i.status, i.status], i.reason, ago(i.age_s, p.stale_after_s)],
    })), 4);
    fillTable("services-table", p.services.map((s) => {
      const [age] = ago(s.age_s, Infinity);
      const cls = s.late ? "stale" : s.status;
      const why = s.problems.join("; ") || (s.late ? "no heartbeat for two intervals" : "");
      return { key: s.service, cells: [s.service, [s.status, cls], why, [age, cls]] };
    }), 4);
    const gateway = p.gateway.map((g) => ({ key: g.service, text: gatewayText(g), g }));
    fillTable("gateway-table", gateway.map(({ key, text, g }) => ({
      key, cells: [key, [text, g.status === "connected" ? "ok" : "HALTED"]],
    })), 2, "no broker connection reported yet");
    const worst = gateway.find(({ g }) => g.status !== "connected") || gateway[0];
    setText("gateway-state", worst ? gatewayText(worst.g) : "–",
      worst ? (worst.g.status === "connected" ? "ok" : "HALTED") : "");
  },
  alerts(p) {
    state.alerts = p;
    fillTable("alerts-table", p.alerts.map((a) => ({
      cells: [timeCell(a.ts), [a.severity, a.severity], a.source, a.code, a.message],
    })), 5, "no alerts");
  },
  clock(p) {
    state.clock = p;
    state.clockAt = Date.now() / 1000;
    setText("clock-source", p.simulated ? `simulated market (${p.source})` : p.source,
      p.simulated ? "simulated" : "");
    tick();
  },
};

// "unreachable at 127.0.0.1:4002 (attempt 3, next try in 4 s)"
function gatewayText(g) {
  const where = `${g.host}:${g.port}`;
  const next = g.next_try_in_s === null ? "" : `, next try in ${Math.round(g.next_try_in_s)} s`;
  if (g.status === "connected") return `connected to ${where}`;
  if (g.status === "unreachable") return `unreachable at ${where} (attempt ${g.attempt}${next})`;
  if (g.status === "disconnected") return `connection to ${where} lost (reconnecting${next})`;
  return `${g.status} ${where}`;
}

// The header's market clock, every second between pushes.
function tick() {
  const now = marketNow();
  setText("market-time", now === null ? "no market data yet" : `${time(now)} ET`);
}

async function load(panel) {
  const response = await fetch(`api/${panel}`);
  if (!response.ok) throw new Error(`${panel}: HTTP ${response.status}`);
  render[panel](await response.json(), false);
  state.loaded.add(panel);
}

async function loadAll() {
  const results = await Promise.allSettled(PANELS.map(load));
  const failed = results.filter((r) => r.status === "rejected");
  if (failed.length) setText("live-status", "data unavailable", "HALTED");
  if (state.loaded.size === PANELS.length) document.body.dataset.ready = "true";
}

function connect() {
  const source = new EventSource("api/stream");
  source.addEventListener("hello", () => {
    setText("live-status", "live", "ok");
    loadAll();
  });
  source.addEventListener("reset", loadAll);
  for (const panel of PANELS) {
    source.addEventListener(panel, (event) => {
      render[panel](JSON.parse(event.data), true);
      document.body.dataset.pushes = String(Number(document.body.dataset.pushes || 0) + 1);
    });
  }
  source.onerror = () => setText("live-status", "reconnecting", "stale");
}

// ---------------------------------------------------------------------------- controls

async function sendControl(command) {
  if (["flatten", "kill"].includes(command) && !window.confirm(`Really ${command}?`)) return;
  const token = document.getElementById("control-token").value;
  const reason = document.getElementById("control-reason").value;
  const response = await fetch(`api/control/${command}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ reason, issued_by: "dashboard" }),
  });
  const body = await response.json().catch(() => ({}));
  setText("control-result", response.ok ? `${command} sent (${body.command_id})`
    : `${command} refused: ${body.detail || response.status}`, response.ok ? "ok" : "HALTED");
}

for (const button of document.querySelectorAll("button.control")) {
  button.addEventListener("click", () => sendControl(button.dataset.command));
}
window.addEventListener("resize", () => {
  for (const [id, chart] of Object.entries(state.charts)) {
    const box = document.getElementById(id);
    chart.setSize({ width: Math.max(300, box.clientWidth - 8), height: chart.height });
  }
});
window.dashboard = state;
setInterval(tick, 1000);
connect();
