// The table grid: one row per value of the chosen type, only the visible rows in the DOM (a 65,536-entry table is a
// tall empty box with a few dozen rows placed in it), values from GET /window at most ten times a second.
import { ApiError, get, put } from "./api.js";

const ROW_HEIGHT = 22; // px: must match #grid-body .row in style.css
const OVERSCAN = 4; // rows drawn above and below the visible ones
const POLL_MS = 100; // at most ten windows a second
const FLASH_MS = 1000; // how long a changed value stays highlighted
const PREFIX = { co: 0, di: 1, ir: 3, hr: 4 };
const REGISTERS = { ushort: 1, short: 1, hex: 1, bits: 1, uint: 2, int: 2, float: 2, ulong: 4, long: 4, double: 4 };

export function registersOf(type) {
  if (type.startsWith("string:")) return Math.ceil(Number(type.slice(7)) / 2);
  return REGISTERS[type] || 1;
}

// The address column's text: display only; every address typed in goes to the server's own parser.
export function spell(table, address, notation) {
  const number = address + 1;
  switch (notation) {
    case "5-digit":
      return number <= 9999 ? `${PREFIX[table]}${String(number).padStart(4, "0")}` : spell(table, address, "6-digit");
    case "6-digit":
      return `${PREFIX[table]}${String(number).padStart(5, "0")}`;
    case "hex":
      return "0x" + address.toString(16).toUpperCase().padStart(4, "0");
    default:
      return String(address);
  }
}

export class Grid {
  constructor(elements, { pointAt, onSelect, status }) {
    this.box = elements.grid;
    this.body = elements.body;
    this.foot = elements.foot;
    this.pointAt = pointAt; // (unit, table, address) → named point or undefined
    this.onSelect = onSelect;
    this.status = status;
    this.view = { unit: null, table: "hr", type: "ushort", order: "", notation: "protocol", base: 0, size: 0 };
    this.texts = new Map(); // address → text, for the current unit, table, type and order
    this.flashed = new Map(); // address → time it changed
    this.rows = [];
    this.paused = false;
    this.editing = null;
    this.selection = null;
    this.box.addEventListener("scroll", () => this.render());
    this.body.addEventListener("click", (event) => this.clicked(event));
    new ResizeObserver(() => this.render()).observe(this.box);
  }

  get step() {
    return this.view.table === "co" || this.view.table === "di" ? 1 : registersOf(this.view.type);
  }

  get count() {
    const { size, base } = this.view;
    return Math.max(0, Math.floor((size - base) / this.step));
  }

  addressOf(row) {
    return this.view.base + row * this.step;
  }

  name(address) {
    const { unit, table } = this.view;
    return unit === null ? `${address}.${table}` : `${unit}.${address}.${table}`;
  }

  // Change what is shown; values of another type or table are not compared with the old ones (no flash).
  show(changes) {
    const before = this.view;
    this.view = { ...before, ...changes };
    if (["unit", "table", "type", "order", "base"].some((key) => this.view[key] !== before[key])) {
      this.texts.clear();
      this.flashed.clear();
      this.cancelEdit();
    }
    this.body.style.height = `${this.count * ROW_HEIGHT}px`;
    this.render();
    this.poll(true);
  }

  scrollTo(address) {
    const row = Math.floor((address - this.view.base) / this.step);
    this.box.scrollTop = Math.max(0, row * ROW_HEIGHT - this.box.clientHeight / 3);
    this.render();
    this.poll(true);
  }

  visibleRows() {
    const first = Math.max(0, Math.floor(this.box.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const shown = Math.ceil(this.box.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    return [first, Math.min(this.count, first + shown)];
  }

  render() {
    const [first, end] = this.visibleRows();
    while (this.rows.length < end - first) {
      const row = document.createElement("div");
      row.className = "row";
      row.innerHTML = '<span class="addr"></span><span class="value"></span><span class="name"></span>';
      this.body.append(row);
      this.rows.push(row);
    }
    const now = performance.now();
    this.rows.forEach((row, i) => {
      const index = first + i;
      if (index >= end) {
        row.hidden = true;
        return;
      }
      const address = this.addressOf(index);
      row.hidden = false;
      row.style.top = `${index * ROW_HEIGHT}px`;
      row.dataset.address = address;
      row.children[0].textContent = spell(this.view.table, address, this.view.notation);
      const value = row.children[1];
      if (this.editing?.address !== address) {
        const text = this.texts.get(address);
        value.textContent = text === undefined ? "" : text === null ? "—" : text;
        value.classList.toggle("missing", text === null);
      } else if (!value.contains(this.editing.input)) {
        value.replaceChildren(this.editing.input, this.editing.error);
        this.editing.input.focus();
      }
      value.classList.toggle("changed", now - (this.flashed.get(address) ?? -FLASH_MS) < FLASH_MS);
      const point = this.pointAt(this.view.unit, this.view.table, address);
      row.children[2].textContent = point ? point.name + (point.unit ? ` (${point.unit})` : "") : "";
      row.children[2].title = point ? `${point.type} ${point.comment || ""}` : "";
      const selected = this.selection && address >= this.selection[0] && address <= this.selection[1];
      row.classList.toggle("selected", Boolean(selected));
    });
  }

  // One window read, then the next one POLL_MS after it is answered: never two at once, never more than 10/s.
  async poll(now = false) {
    if (now) {
      this.wanted = true;
      if (this.busy) return;
    }
    clearTimeout(this.timer);
    if (!this.paused && !document.hidden && this.count > 0) {
      this.busy = true;
      this.wanted = false;
      try {
        await this.read();
        this.status("");
      } catch (error) {
        this.status(error.message);
      }
      this.busy = false;
    }
    this.timer = setTimeout(() => this.poll(), this.wanted ? 0 : POLL_MS);
  }

  async read() {
    const [first, end] = this.visibleRows();
    if (end <= first) return;
    const view = this.view;
    const query = new URLSearchParams({ table: view.table, start: this.addressOf(first), count: end - first });
    if (view.unit !== null) query.set("unit", view.unit);
    if (!(view.table === "co" || view.table === "di")) {
      query.set("type", view.type);
      if (view.order) query.set("order", view.order);
    }
    const window = await get(`/window?${query}`);
    if (view !== this.view) return; // the user changed the view meanwhile: this answer is for the old one
    const now = performance.now();
    window.values.forEach((text, i) => {
      const address = window.start + i * window.step;
      if (this.texts.has(address) && this.texts.get(address) !== text) this.flashed.set(address, now);
      this.texts.set(address, text);
    });
    this.render();
    if (this.flashed.size) setTimeout(() => this.render(), FLASH_MS + 20);
  }

  clicked(event) {
    const row = event.target.closest(".row");
    if (!row || event.target.tagName === "INPUT") return;
    const address = Number(row.dataset.address);
    if (event.shiftKey && this.selection) {
      const anchor = this.selection[2];
      this.selection = [Math.min(anchor, address), Math.max(anchor, address) + this.step - 1, anchor];
    } else {
      this.selection = [address, address + this.step - 1, address];
    }
    this.onSelect(this.selection[0], this.selection[1]);
    if (event.target.classList.contains("value") && !event.shiftKey) this.edit(address);
    this.render();
  }

  // Click a value, type, Enter: PUT /points/{address} in the grid's type and order. A value that does not fit
  // gets the server's message beside it and nothing is written; Escape gives up.
  edit(address) {
    this.cancelEdit();
    const input = document.createElement("input");
    input.className = "edit";
    input.value = this.texts.get(address) ?? "";
    const error = document.createElement("span");
    error.className = "error inline";
    this.editing = { address, input, error };
    input.addEventListener("keydown", async (event) => {
      if (event.key === "Escape") {
        this.cancelEdit();
        this.render();
      } else if (event.key === "Enter") {
        event.preventDefault();
        await this.write(address, input.value, error);
      }
    });
    this.render();
  }

  async write(address, text, error) {
    const view = this.view;
    const bits = view.table === "co" || view.table === "di";
    const body = bits ? { type: "bit", value: text } : { type: view.type, value: text };
    if (!bits && view.order) body.order = view.order;
    try {
      const written = await put(`/points/${encodeURIComponent(this.name(address))}`, body);
      this.texts.set(address, written.text);
      this.cancelEdit();
      this.render();
    } catch (failure) {
      error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
  }

  cancelEdit() {
    this.editing = null;
  }
}
