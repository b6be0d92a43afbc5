// Building DOM nodes without markup: every value lands as text (textContent), never parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

// ¥12.50 from 1250 fen.
export function yuan(fen) {
  if (fen === undefined || fen === null) return "";
  return "¥" + (fen / 100).toFixed(2);
}

export function time(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function dateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString([], { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

// "4:05" or "-0:12" until a deadline.
export function countdown(iso, now = Date.now()) {
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const sign = seconds < 0 ? "-" : "";
  const left = Math.abs(seconds);
  return `${sign}${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
}

// A view's own stylesheet (css/<view>.css), linked once when the view is first shown.
export function stylesheet(href) {
  const url = new URL(href, new URL("../", import.meta.url)).href;
  if (![...document.querySelectorAll("link[rel=stylesheet]")].some((link) => link.href === url)) {
    document.head.append(h("link", { rel: "stylesheet", href: url }));
  }
}
