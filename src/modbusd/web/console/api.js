// The control API from the page: every request carries the token (kept in sessionStorage, never in a URL) in the
// Authorization header, and every write is JSON, so that the API's checks (Host, Origin, Content-Type) pass for this
// page and for no other.

const TOKEN_KEY = "modbusd-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let askToken = () => {};

export function onTokenNeeded(callback) {
  askToken = callback;
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    if (response.status === 401) askToken();
    throw new ApiError(response.status, (body && body.error) || response.statusText);
  }
  return body;
}

export async function get(path) {
  return answer(await fetch(path, { headers: headers(), cache: "no-store" }));
}

// A write: JSON, with the token; `body` undefined sends an empty JSON object (an action such as pause has none).
export async function send(method, path, body = {}) {
  const init = { method, headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  return answer(await fetch(path, init));
}

export const put = (path, body) => send("PUT", path, body);

// A file the API answers (GET /snapshot), saved under the name its Content-Disposition gives: fetched with the
// token in its header, which a plain link could not send, then handed to the browser as a download.
export async function download(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (!response.ok) await answer(response);
  const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? "download";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  return name;
}

export function pointPath(name, query = {}) {
  const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v != null));
  const text = params.toString();
  return `/points/${encodeURIComponent(name)}${text ? "?" + text : ""}`;
}

// GET /log?follow=1 as a stream of records: `onRecords(list)` per batch, until `signal` aborts.
export async function follow(path, onRecords, signal) {
  const response = await fetch(path, { headers: headers(), signal, cache: "no-store" });
  if (!response.ok) await answer(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop();
    const records = lines.filter((line) => line.trim()).map((line) => JSON.parse(line));
    if (records.length) onRecords(records);
  }
}
