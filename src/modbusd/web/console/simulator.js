// The Simulator panel: the server's value generators (docs/simulator.md) and fault rules (docs/faults.md), listed
// with their state and counts, paused and resumed or enabled and disabled, added from their spec text and removed,
// all through the control API's routes (GET/POST /generators, POST /generators/{id}/pause…, GET/POST /faults,
// PATCH and DELETE /faults/{id}). The server checks every spec: its message is shown beside the box.
import { ApiError, get, send } from "./api.js";

const $ = (id) => document.getElementById(id);

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  if (className) td.className = className;
  return td;
}

function button(text, action, onClick) {
  const made = document.createElement("button");
  made.type = "button";
  made.textContent = text;
  made.dataset.action = action;
  made.onclick = onClick;
  return made;
}

const path = (kind, id, action = "") => `/${kind}/${encodeURIComponent(id)}${action ? "/" + action : ""}`;

export class SimulatorPanel {
  constructor(status) {
    this.status = status;
    $("generator-form").onsubmit = (event) => {
      event.preventDefault();
      const body = { point: $("generator-point").value.trim(), generate: $("generator-spec").value.trim() };
      if ($("generator-type").value.trim()) body.type = $("generator-type").value.trim();
      this.add("generators", body, "generator-error", ["generator-point", "generator-spec"]);
    };
    $("fault-form").onsubmit = (event) => {
      event.preventDefault();
      this.add("faults", { rule: $("fault-rule").value.trim() }, "fault-error", ["fault-rule"]);
    };
  }

  async add(kind, body, errorId, clear) {
    $(errorId).textContent = "";
    try {
      await send("POST", `/${kind}`, body);
      for (const id of clear) $(id).value = "";
    } catch (failure) {
      $(errorId).textContent = failure instanceof ApiError ? failure.message : String(failure);
    }
    await this.refresh();
  }

  // One change (pause, enable, remove …), then the lists again; a refusal goes to the status line.
  async act(method, target, body) {
    try {
      await send(method, target, body);
    } catch (failure) {
      this.status(failure.message);
    }
    await this.refresh();
  }

  async refresh() {
    const [generators, faults] = await Promise.all([get("/generators"), get("/faults")]);
    const body = $("generators-body");
    body.replaceChildren();
    for (const g of generators.generators) {
      const row = body.insertRow();
      row.dataset.id = g.id;
      row.className = g.state;
      cell(row, g.id).title = g.address;
      cell(row, `${g.type}${g.order !== "ABCD" ? " " + g.order : ""}`);
      cell(row, g.spec, "value");
      cell(row, g.state, "state");
      cell(row, Array.isArray(g.value) ? g.value.join(" ") : g.value, "value");
      cell(row, g.updates, "updates");
      cell(row, g.errors, "errors").title = g.last_error;
      const actions = cell(row, "");
      const toggle = g.state === "paused" ? "resume" : "pause";
      actions.append(
        button(toggle === "pause" ? "Pause" : "Resume", toggle, () => this.act("POST", path("generators", g.id, toggle))),
        button("Reset", "reset", () => this.act("POST", path("generators", g.id, "reset"))),
        button("Remove", "remove", () => this.act("DELETE", path("generators", g.id))),
      );
    }
    $("generators-none").hidden = generators.generators.length > 0;
    const rules = $("faults-body");
    rules.replaceChildren();
    for (const f of faults.faults) {
      const row = rules.insertRow();
      row.dataset.id = f.id;
      row.className = f.enabled ? "enabled" : "disabled";
      cell(row, f.name ? `${f.id} ${f.name}` : f.id);
      cell(row, f.rule, "value");
      cell(row, f.enabled ? "on" : "off", "state");
      cell(row, f.matched, "matched");
      cell(row, f.applied, "applied");
      const actions = cell(row, "");
      actions.append(
        button(f.enabled ? "Disable" : "Enable", f.enabled ? "disable" : "enable", () =>
          this.act("PATCH", path("faults", f.id), { enabled: !f.enabled }),
        ),
        button("Reset", "reset", () => this.act("PATCH", path("faults", f.id), { reset: true })),
        button("Remove", "remove", () => this.act("DELETE", path("faults", f.id))),
      );
    }
    $("faults-none").hidden = faults.faults.length > 0;
  }
}
