// Charts: picked points sampled twice a second by this page (GET /points/{point}?type=), the last minutes of them
// drawn with uPlot (vendored: uPlot.iife.min.js, see docs/console.md). The history lives in the page only.
import { get, pointPath } from "./api.js";

const SAMPLE_MS = 500;
const KEEP_S = 900; // the longest span offered
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

export class Charts {
  constructor(status) {
    this.status = status;
    this.series = []; // {name, type, label}
    this.times = [];
    this.values = []; // one array per series
    this.paused = false;
    this.box = document.getElementById("chart");
    this.span = document.getElementById("chart-span");
    this.span.onchange = () => this.draw();
    document.getElementById("chart-form").onsubmit = (event) => {
      event.preventDefault();
      this.add(document.getElementById("chart-point").value.trim(), document.getElementById("chart-type").value);
    };
    document.getElementById("chart-clear").onclick = () => this.clear();
    new ResizeObserver(() => this.plot?.setSize(this.size())).observe(this.box);
  }

  size() {
    return { width: Math.max(200, this.box.clientWidth), height: 260 };
  }

  async add(name, type) {
    const error = document.getElementById("chart-error");
    error.textContent = "";
    if (!name) return;
    try {
      const point = await get(pointPath(name, { type }));
      if (typeof point.value !== "number" && typeof point.value !== "boolean") {
        throw new Error(`${name} reads as ${point.type}, not a number: pick a numeric type`);
      }
      this.series.push({ name, type, label: `${point.name ?? name}${point.unit ? " (" + point.unit + ")" : ""}` });
      this.values.push(this.times.map(() => null));
      this.rebuild();
      this.start();
    } catch (failure) {
      error.textContent = failure.message;
    }
  }

  clear() {
    this.series = [];
    this.values = [];
    this.times = [];
    this.rebuild();
  }

  rebuild() {
    this.plot?.destroy();
    this.plot = null;
    if (!this.series.length) return;
    const options = {
      ...this.size(),
      series: [{}, ...this.series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
      axes: [{}, {}],
      scales: { x: { time: true } },
    };
    this.plot = new uPlot(options, [this.times, ...this.values], this.box);
  }

  start() {
    if (this.timer) return;
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
  }

  async sample() {
    if (!this.series.length || this.paused || document.hidden || this.sampling) return;
    this.sampling = true;
    try {
      const read = await Promise.all(this.series.map((s) => get(pointPath(s.name, { type: s.type }))));
      this.times.push(Date.now() / 1000);
      read.forEach((point, i) => this.values[i].push(Number(point.value)));
      while (this.times.length && this.times[0] < Date.now() / 1000 - KEEP_S) {
        this.times.shift();
        this.values.forEach((v) => v.shift());
      }
      this.draw();
    } catch (failure) {
      this.status(`charts: ${failure.message}`);
    } finally {
      this.sampling = false;
    }
  }

  draw() {
    if (!this.plot) return;
    this.plot.setData([this.times, ...this.values], false);
    const end = this.times.at(-1) ?? Date.now() / 1000;
    this.plot.setScale("x", { min: end - Number(this.span.value), max: end });
    document.getElementById("chart-status").textContent =
      `${this.times.length} samples of ${this.series.length} point${this.series.length > 1 ? "s" : ""}`;
  }
}
