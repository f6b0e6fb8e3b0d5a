// The page's small tools: DOM building, the API (with the page's token), messages, number formats, tabs.
export const $ = (sel, root = document) => root.querySelector(sel);
export const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
const SVG = "http://www.w3.org/2000/svg";
export const svg = (tag, attrs = {}) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};

// ---- the API: the token of the page's own URL goes on every call --------------------------------
export const TOKEN = new URLSearchParams(location.search).get("token");

export async function api(path, body, {raw = false} = {}) {
  const headers = {};
  if (TOKEN) headers["X-FT-Token"] = TOKEN;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch { /* not JSON */ }
    throw new Error(message);
  }
  return raw ? response : response.json();
}

export function toast(message) {
  const box = $("#toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}
export const guarded = (fn) => (...args) => fn(...args).catch((e) => toast(e.message));

export const formatValue = (v) => {
  if (v === null || v === undefined) return "";
  if (Array.isArray(v)) return "[" + v.map(formatValue).join(", ") + "]";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
};
export const fmtNum = (v, digits = 4) => (typeof v === "number" ? Number(v.toPrecision(digits)).toString() : "");
export const fmtTime = (s) => {
  if (s === null || s === undefined) return "";
  s = Math.round(s);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`
    : s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
};

// ---- tabs: each view's module listens for "studio:tab" to refresh itself when shown ------------------------
export function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("active", v.id === name);
  document.dispatchEvent(new CustomEvent("studio:tab", {detail: name}));
}
