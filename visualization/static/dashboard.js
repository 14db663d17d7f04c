// The dashboard page: loads every panel from the JSON API, then applies the live events pushed
// on /api/stream (Server-Sent Events). Charts are uPlot (vendored, zoom by drag, hover legend,
// double-click to reset). Series events carry only new points; a point not newer than the last
// one held is dropped, so an event overlapping the first load is harmless.
"use strict";

const MAX_POINTS = 20000;
const MARKET_TZ = "America/New_York";  // chart times in exchange time, as the plots are
const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1000), MARKET_TZ);
const PANELS = ["spread", "prices", "hedge", "option", "book", "risk", "health", "alerts"];
const state = { spread: null, prices: null, hedge: null, charts: {}, loaded: new Set() };

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

function chartFor(id, opts, data) {
  const box = document.getElementById(id);
  const points = data[0].length;
  box.dataset.points = String(points);
  if (!points) {
    if (!state.charts[id]) box.replaceChildren(el("div", "no data yet", "empty"));
    return;
  }
  let chart = state.charts[id];
  if (!chart) {
    box.replaceChildren();
    const width = Math.max(300, box.clientWidth - 8);
    chart = new uPlot({ width, height: box.classList.contains("small") ? 180 : 240, tzDate,
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
  const keys = ["TLT", "buy_write_index", "TLTW"];
  const tables = keys.map((k) => {
    const s = p.series[k] || { ts: [], price: [] };
    return [s.ts, s.price];
  });
  const joined = tables.some((t) => t[0].length) ? uPlot.join(tables) : [[], [], [], []];
  chartFor("chart-prices", {
    series: [{}, { label: "TLT", stroke: "#1565c0", spanGaps: true, scale: "usd" },
      { label: "buy-write index", stroke: "#2e7d32", spanGaps: true, scale: "usd" },
      { label: "TLTW", stroke: "#ef6c00", spanGaps: true, scale: "tltw" }],
    axes: [{}, { scale: "usd" }, { scale: "tltw", side: 1, grid: { show: false } }],
  }, joined);
  fillTable("prices-table", p.instruments.map((i) => ({
    key: i.symbol,
    cells: [i.symbol, num(i.quote && i.quote.bid, 2), num(i.quote && i.quote.ask, 2),
      num(i.mid, 3), num(i.nav, 3), num(i.premium_bp, 1), num(i.age_s, 1)],
  })), 7);
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
      ["contract", q ? q.local_symbol : String(p.con_id), "contract"],
      ["strike / expiry", `${num(p.strike, 2)} / ${p.expiry}`, "strike"],
      ["bid / ask", q ? `${num(q.bid, 2)} / ${num(q.ask, 2)}` : "no quote yet", "bid-ask"],
      ["implied vol", q ? num(q.implied_vol * 100, 2) + "%" : "–", "iv"],
      ["delta (per share)", q ? num(q.delta, 4) : "–", "delta"],
      ["gamma (per share)", q ? num(q.gamma, 4) : "–", "gamma"],
      ["vega $/vol pt (contract)", num(p.vega_usd_per_point_per_contract, 2), "vega"],
      ["theta $/day (contract)", num(p.theta_usd_per_day_per_contract, 2), "theta"],
      ["underlying", q ? num(q.underlying_price, 2) : "–", "underlying"],
      ["age s", num(p.age_s, 1), "age"],
    ]);
  },
  book(p) {
    const pnl = p.pnl;
    setText("pnl-total", pnl ? signed(pnl.total, 2) : "–",
      pnl ? (pnl.total < 0 ? "HALTED" : "ok") : "");
    keyValues("pnl-table", pnl ? [
      ["realized", signed(pnl.realized, 2), "realized"],
      ["unrealized", signed(pnl.unrealized, 2), "unrealized"],
      ["commissions", num(pnl.commissions, 2), "commissions"],
      ["distributions", signed(pnl.distributions, 2) +
        (pnl.distributions_accrued ? ` (${signed(pnl.distributions_accrued, 2)} accrued)` : ""),
        "distributions"],
      ["total", signed(pnl.total, 2), "total"],
      ["as of", time(pnl.ts), "ts"],
    ] : []);
    fillTable("positions-table", p.positions.map((x) => ({
      key: x.local_symbol || x.symbol,
      cells: [x.local_symbol || x.symbol, x.sec_type, num(x.quantity, 0), num(x.avg_cost, 2),
        num(x.market_price, 2), signed(x.unrealized_pnl, 2), signed(x.realized_pnl, 2)],
    })), 7, "no positions");
    fillTable("orders-table", p.open_orders.map((o) => ({
      key: String(o.order_id),
      cells: [o.intent_id, o.symbol, o.side, num(o.quantity, 0), o.order_type,
        num(o.limit_price, 2), o.status, num(o.filled, 0), num(o.remaining, 0)],
    })), 9, "no open orders");
    fillTable("fills-table", p.fills.map((f) => ({
      key: f.exec_id,
      cells: [time(f.ts), f.local_symbol || f.symbol, f.side, num(f.quantity, 0),
        num(f.price, 2), num(f.commission, 2), f.intent_id],
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
      key: i.symbol, cells: [i.symbol, [i.status, i.status], i.reason, num(i.age_s, 1)],
    })), 4);
    fillTable("services-table", p.services.map((s) => ({
      key: s.service, cells: [s.service, [s.status, s.status], num(s.age_s, 1)],
    })), 3);
  },
  alerts(p) {
    fillTable("alerts-table", p.alerts.map((a) => ({
      cells: [time(a.ts), [a.severity, a.severity], a.source, a.code, a.message],
    })), 5, "no alerts");
  },
};

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
connect();
