// The side panels: named points, the typed view of a selection, the traffic log, connections and counters.
import { ApiError, follow, get, pointPath, put } from "./api.js";

const TRAFFIC_RING = 500; // records the page keeps; the server's ring and each follower's queue are bounded too
// Records a second the page asks for: more than anyone reads, few enough that a busy server records and sends only
// these (the rest are counted: "N requests not shown"); benchmarks/bench_console.py measures what following costs.
export const TRAFFIC_PER_SECOND = 200;
const SELECTION_TYPES = ["ushort", "short", "hex", "bits", "uint", "int", "float", "ulong", "long", "double"];

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

// Named points, a page at a time, values read with GET /points (the listing reads them as it serves the page).
export class PointsPanel {
  constructor(status) {
    this.status = status;
    this.offset = 0;
    this.limit = 50;
    this.body = document.getElementById("points-body");
    document.getElementById("points-prev").onclick = () => this.turn(-this.limit);
    document.getElementById("points-next").onclick = () => this.turn(this.limit);
    this.editing = null;
  }

  turn(by) {
    if (this.offset + by < 0 || (by > 0 && this.next === null)) return;
    this.offset += by;
    this.refresh();
  }

  async refresh() {
    if (this.editing) return; // the value being typed stays where it is
    const page = await get(`/points?offset=${this.offset}&limit=${this.limit}`);
    this.next = page.next_offset;
    document.getElementById("points-page").textContent =
      ` ${page.total ? this.offset + 1 : 0}–${this.offset + page.points.length} of ${page.total} `;
    this.body.replaceChildren();
    for (const point of page.points) {
      const row = this.body.insertRow();
      cell(row, point.name);
      cell(row, point.address["5-digit"] ?? point.address["6-digit"] ?? point.address.name).title = point.address.name;
      cell(row, `${point.type}${point.order !== "ABCD" ? " " + point.order : ""}`);
      const value = cell(row, point.text, "value");
      value.onclick = () => this.edit(point, value);
      cell(row, point.unit);
      cell(row, point.comment, "comment");
    }
  }

  edit(point, td) {
    const input = document.createElement("input");
    input.className = "edit";
    input.value = point.text;
    const error = document.createElement("span");
    error.className = "error inline";
    td.replaceChildren(input, error);
    input.focus();
    this.editing = point.name;
    input.onkeydown = async (event) => {
      if (event.key === "Escape") {
        this.editing = null;
        this.refresh();
      } else if (event.key === "Enter") {
        try {
          await put(pointPath(point.name), { value: input.value });
          this.editing = null;
          this.refresh();
        } catch (failure) {
          error.textContent = failure instanceof ApiError ? failure.message : String(failure);
        }
      }
    };
  }
}

// The selected range as every type, each read by the server (GET /points/{first}?count=&type=&order=).
export class SelectionPanel {
  constructor() {
    this.body = document.getElementById("selection-body");
    this.title = document.getElementById("selection-title");
  }

  async show(grid, first, last) {
    const { table, order } = grid.view;
    const name = grid.name(first);
    this.title.textContent = `${name} … ${grid.name(last)}${order ? " in " + order : ""}`;
    this.body.replaceChildren();
    const bits = table === "co" || table === "di";
    const registers = last - first + 1;
    for (const type of bits ? ["bit"] : SELECTION_TYPES) {
      const width = { uint: 2, int: 2, float: 2, ulong: 4, long: 4, double: 4 }[type] || 1;
      const count = Math.floor(registers / width);
      if (count < 1) continue;
      const row = this.body.insertRow();
      cell(row, type);
      const values = cell(row, "…", "value");
      try {
        const range = await get(pointPath(name, { count: Math.min(count, 16), type, order }));
        values.textContent = range.values.map((v) => v.text).join("  ");
      } catch (failure) {
        values.textContent = failure.message;
      }
    }
    if (!bits && registers >= 2) {
      const row = this.body.insertRow();
      cell(row, `string:${2 * Math.min(registers, 60)}`);
      const values = cell(row, "…", "value");
      try {
        values.textContent = (await get(pointPath(name, { type: `string:${2 * Math.min(registers, 60)}` }))).text;
      } catch (failure) {
        values.textContent = failure.message;
      }
    }
  }
}

// The live request log (GET /log?follow=1), followed only while the traffic panel is shown: the server records
// requests only while someone follows, so a console left on the grid costs the server nothing.
export class TrafficPanel {
  constructor(status) {
    this.status = status;
    this.records = [];
    this.missed = 0; // requests the server did not send this page: over its records-per-second cap, or lost
    this.paused = false;
    this.body = document.getElementById("traffic-body");
    this.filters = ["filter-client", "filter-unit", "filter-function", "filter-outcome"].map((id) =>
      document.getElementById(id),
    );
    for (const input of this.filters) input.addEventListener("input", () => this.render());
    const pause = document.getElementById("traffic-pause");
    pause.onclick = () => {
      this.paused = !this.paused;
      pause.textContent = this.paused ? "Resume" : "Pause";
      pause.classList.toggle("on", this.paused);
      this.render();
    };
  }

  start() {
    if (this.abort) return;
    this.abort = new AbortController();
    const signal = this.abort.signal;
    follow(`/log?follow=1&per_second=${TRAFFIC_PER_SECOND}`, (records) => this.add(records), signal)
      .catch((error) => signal.aborted || this.status(`traffic: ${error.message}`))
      .finally(() => {
        if (this.abort?.signal === signal) this.abort = null;
      });
  }

  stop() {
    this.abort?.abort();
    this.abort = null;
  }

  add(records) {
    for (const record of records) {
      if ("dropped" in record || "not_shown" in record) this.missed += (record.dropped ?? 0) + (record.not_shown ?? 0);
      else this.records.push(record);
    }
    if (this.records.length > TRAFFIC_RING) this.records.splice(0, this.records.length - TRAFFIC_RING);
    if (!this.paused) this.render();
  }

  render() {
    const [client, unit, fc, outcome] = this.filters.map((input) => input.value.trim());
    const shown = this.records.filter(
      (r) =>
        (!client || String(r.client).includes(client)) &&
        (!unit || String(r.unit_id) === unit) &&
        (!fc || String(r.function) === fc) &&
        (!outcome || r.outcome === outcome),
    );
    document.getElementById("traffic-count").textContent =
      `${shown.length} of ${this.records.length}` + (this.missed ? `; ${this.missed} requests not shown` : "");
    if (this.paused) return;
    this.body.replaceChildren();
    for (const r of shown.slice(-200).reverse()) {
      const row = this.body.insertRow();
      row.className = r.outcome;
      cell(row, new Date(r.time * 1000).toISOString().slice(11, 23));
      cell(row, r.client);
      // a request to one of the server's [[endpoint]]s names it (the default endpoint's have no "endpoint")
      const transport = cell(row, r.endpoint ? `${r.transport} ${r.endpoint}` : r.transport);
      transport.title = r.endpoint ? `endpoint ${r.endpoint}` : "";
      cell(row, r.unit_id);
      cell(row, r.function).title = r.function_name ?? "";
      cell(row, r.address);
      cell(row, r.quantity);
      cell(row, r.outcome === "exception" ? `exception ${r.exception} (${r.exception_name})` : r.outcome, "outcome");
      cell(row, r.latency_ms);
    }
  }
}

// The open connections, the server's own request counts (every request since it started, per transport, function
// and exception: GET /counters, what /metrics reads too) and each device's FC08 counters.
export async function refreshConnections() {
  const [connections, counters] = await Promise.all([get("/connections"), get("/counters")]);
  const body = document.getElementById("connections-body");
  body.replaceChildren();
  for (const c of connections.connections) {
    const row = body.insertRow();
    cell(row, c.peer);
    cell(row, c.requests);
    cell(row, c.open_s);
    cell(row, c.idle_s);
  }
  const functions = document.getElementById("functions-body");
  const exceptions = document.getElementById("exceptions-body");
  functions.replaceChildren();
  exceptions.replaceChildren();
  for (const [transport, counts] of Object.entries(counters.requests)) {
    for (const f of counts.functions) {
      const row = functions.insertRow();
      cell(row, transport);
      cell(row, `${f.function} ${f.name ?? ""}`);
      cell(row, f.ok);
      cell(row, f.exception);
      cell(row, f.silent);
    }
    for (const e of counts.exceptions) {
      const row = exceptions.insertRow();
      cell(row, transport);
      cell(row, e.function);
      cell(row, `${e.code} ${e.name ?? ""}`);
      cell(row, e.count);
    }
  }
  const diagnostics = document.getElementById("diagnostics-body");
  diagnostics.replaceChildren();
  const devices = Object.entries(counters.devices);
  const names = devices.length ? Object.keys(devices[0][1]) : [];
  const head = diagnostics.insertRow();
  cell(head, "unit", "head");
  for (const [unit] of devices) cell(head, unit === "*" ? "every unit" : unit, "head");
  for (const name of names) {
    const row = diagnostics.insertRow();
    cell(row, name.replaceAll("_", " "));
    for (const [, values] of devices) cell(row, String(values[name]));
  }
}
