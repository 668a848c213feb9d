// The console's entry point: the unit and table selectors, the tabs, the token, and what runs while each is shown.
import { ApiError, download, get, onTokenNeeded, pointPath, setToken } from "./api.js";
import { Charts } from "./charts.js";
import { Grid } from "./grid.js";
import { PointsPanel, SelectionPanel, TrafficPanel, refreshConnections } from "./panels.js";
import { SimulatorPanel } from "./simulator.js";

const $ = (id) => document.getElementById(id);
const statusLine = $("status");
const status = (text) => {
  statusLine.textContent = text;
};

let devices = [];
const points = new Map(); // "unit|table|address" → named point, for the grid's name column

function pointAt(unit, table, address) {
  return points.get(`${unit}|${table}|${address}`) ?? points.get(`null|${table}|${address}`);
}

const grid = new Grid(
  { grid: $("grid"), body: $("grid-body"), foot: $("grid-foot") },
  { pointAt, onSelect: (first, last) => selection.show(grid, first, last), status },
);
const selection = new SelectionPanel();
const pointsPanel = new PointsPanel(status);
const traffic = new TrafficPanel(status);
const charts = new Charts(status);
const simulator = new SimulatorPanel(status);
let tab = "points";

async function loadPoints() {
  let offset = 0;
  while (offset !== null && offset < 100000) {
    const page = await get(`/points?offset=${offset}&limit=1000`);
    for (const p of page.points) {
      const [address, suffix] = p.address.name.split(".").slice(-2);
      if (["co", "di", "ir", "hr"].includes(suffix)) points.set(`${p.unit_id}|${suffix}|${address}`, p);
    }
    offset = page.next_offset;
  }
}

function showTable() {
  const device = devices[Number($("unit").value)] ?? devices[0];
  const table = $("table").value;
  const bits = table === "co" || table === "di";
  $("type").disabled = $("order").disabled = bits;
  grid.show({
    unit: device.unit_id,
    table,
    size: device.tables[table].size,
    type: bits ? "bit" : $("type").value,
    order: $("order").value,
    notation: $("notation").value,
  });
  $("grid-foot").textContent =
    `${device.tables[table].size} ${device.tables[table].label}s${device.tables[table].sparse ? " (sparse)" : ""}`;
}

// Go to any address or point name, parsed by the server (GET /points/{text}): every notation it accepts works.
async function goTo(text) {
  $("goto-error").textContent = "";
  try {
    const found = await get(pointPath(text));
    const parts = found.address.name.split(".");
    const at = parts.findIndex((part) => ["co", "di", "ir", "hr"].includes(part));
    const address = Number(parts[at - 1]);
    if (found.unit_id !== null) {
      const index = devices.findIndex((d) => d.unit_id === found.unit_id);
      if (index >= 0) $("unit").value = index;
    }
    $("table").value = parts[at];
    if (found.name && !["bit"].includes(found.type)) {
      $("type").value = found.type;
      $("order").value = found.order;
    }
    showTable();
    const step = grid.step;
    if ((address - grid.view.base) % step) grid.show({ base: address % step });
    grid.scrollTo(address);
    grid.selection = [address, address + step - 1, address];
    selection.show(grid, address, address + step - 1);
  } catch (failure) {
    $("goto-error").textContent = failure.message;
  }
}

function showTab(name) {
  tab = name;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== `panel-${name}`;
  if (name === "traffic") traffic.start();
  else traffic.stop();
  refreshTab();
}

async function refreshTab() {
  try {
    if (tab === "points") await pointsPanel.refresh();
    if (tab === "connections") await refreshConnections();
    if (tab === "simulator") await simulator.refresh();
  } catch (failure) {
    status(failure.message);
  }
}

async function start() {
  try {
    const index = await get("/");
    $("version").textContent = index.modbusd;
    devices = (await get("/devices")).devices;
  } catch (failure) {
    status(failure instanceof ApiError && failure.status === 401 ? "enter the token" : failure.message);
    return;
  }
  $("unit").replaceChildren(
    ...devices.map((d, i) => new Option(d.unit_id === null ? "every unit id" : `unit ${d.unit_id}`, i)),
  );
  for (const id of ["unit", "table", "type", "order", "notation"]) $(id).onchange = showTable;
  $("goto-form").onsubmit = (event) => {
    event.preventDefault();
    goTo($("goto").value);
  };
  for (const button of document.querySelectorAll("#tabs button")) button.onclick = () => showTab(button.dataset.tab);
  await loadPoints().catch((failure) => status(failure.message));
  showTable();
  showTab("points");
  setInterval(() => grid.paused || document.hidden || refreshTab(), 1000);
  document.body.dataset.ready = "true";
}

onTokenNeeded(() => {
  $("token-dialog").hidden = false;
  $("token-button").hidden = false;
});
$("token-button").onclick = () => {
  $("token-dialog").hidden = !$("token-dialog").hidden;
};
$("token-dialog").onsubmit = (event) => {
  event.preventDefault();
  setToken($("token-input").value);
  $("token-input").value = "";
  $("token-dialog").hidden = true;
  status("");
  if (!devices.length) start();
};
$("pause").onclick = () => {
  grid.paused = charts.paused = !grid.paused;
  $("pause").textContent = grid.paused ? "Resume" : "Pause";
  $("pause").classList.toggle("on", grid.paused);
  if (!grid.paused) grid.poll(true);
};
$("snapshot").onclick = async () => {
  try {
    await download("/snapshot");
  } catch (failure) {
    status(failure.message);
  }
};
document.addEventListener("visibilitychange", () => document.hidden || grid.poll(true));
start();
