// The console's shell: sign-in, the store picker, the navigation bar and the view the location's hash names
// (#/board, #/counter, ...). Views get the API client and the current store; they hold no privileges of their own.

import { Api } from "./api.js";
import { clear, h } from "./dom.js";
import { Session } from "./session.js";
import { VIEWS } from "./views/index.js";

const session = new Session();
const api = new Api(session);
const root = document.getElementById("app");
let unmount = () => {};
let stores = [];
let views = VIEWS;

session.onEnd = () => render();
window.addEventListener("hashchange", () => showView());
render();

function render() {
  unmount();
  unmount = () => {};
  clear(root);
  if (!session.signedIn) {
    root.append(signInForm());
    return;
  }
  shell().then(() => showView());
}

function signInForm() {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "sign-in", id: "sign-in" },
    h("h1", {}, "送达 Songda"),
    h("p", { class: "muted" }, "商家后台 · Merchant console"),
    h("label", {}, "账号 Login", h("input", { name: "login", autocomplete: "username", required: true })),
    h(
      "label",
      {},
      "密码 Password",
      h("input", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    ),
    h("button", { type: "submit", class: "primary" }, "登录 Sign in"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    try {
      await session.signIn(String(data.get("login")), String(data.get("password")));
      render();
    } catch (failure) {
      error.textContent = failure.message || "Sign-in failed";
    }
  });
  return form;
}

async function shell() {
  const claims = session.claims;
  stores = await loadStores(claims);
  views = await allowedViews(claims);
  const chosen = sessionStorage.getItem("songda.console.store");
  const current = stores.find((s) => s.id === chosen) || stores[0] || null;
  const picker = h(
    "select",
    { id: "store-picker", "aria-label": "门店 Store" },
    stores.map((s) => h("option", { value: s.id, selected: current && s.id === current.id }, s.name || s.id)),
  );
  picker.addEventListener("change", () => {
    sessionStorage.setItem("songda.console.store", picker.value);
    showView();
  });
  if (current) sessionStorage.setItem("songda.console.store", current.id);
  const nav = h(
    "nav",
    { class: "tabs" },
    views.map((v) => h("a", { href: `#/${v.path}`, "data-view": v.path }, v.title)),
  );
  const signOut = h("button", { class: "quiet", id: "sign-out", onclick: () => session.signOut() }, "退出 Sign out");
  root.append(
    h(
      "header",
      { class: "top" },
      h("strong", { class: "brand" }, "送达"),
      picker,
      nav,
      h("span", { class: "who" }, claims.sub),
      signOut,
    ),
    h("section", { id: "view" }),
  );
}

// The stores this account covers: its scope's stores, or every store of its merchant for an admin.
async function loadStores(claims) {
  try {
    const page = await api.get("/v1/stores", { limit: 100 });
    return page.items;
  } catch {
    return (claims.store_ids || []).map((id) => ({ id, name: id }));
  }
}

// The views this account may use: a view with `allowed({api, claims})` asks the API (the staff screen: only a
// merchant's admin or ops may list staff); the others are for every signed-in account.
async function allowedViews(claims) {
  const allowed = await Promise.all(VIEWS.map((v) => (v.allowed ? v.allowed({ api, claims }) : true)));
  return VIEWS.filter((_, index) => allowed[index]);
}

// Which showing is the latest: a view whose module loads after the user moved on is never mounted.
let showing = 0;

function showView() {
  if (!session.signedIn) return;
  const view = document.getElementById("view");
  if (!view) return;
  const turn = ++showing;
  unmount();
  unmount = () => {};
  clear(view);
  const path = location.hash.replace(/^#\/?/, "").split("/")[0] || views[0].path;
  const chosen = views.find((v) => v.path === path) || views[0];
  for (const link of document.querySelectorAll("nav.tabs a")) {
    link.classList.toggle("active", link.dataset.view === chosen.path);
  }
  const storeId = sessionStorage.getItem("songda.console.store");
  const ctx = {
    api,
    session,
    claims: session.claims,
    store: stores.find((s) => s.id === storeId) || null,
    stores,
    toast,
    navigate: (hash) => (location.hash = hash),
    route: location.hash.replace(/^#\/?/, "").split("/").slice(1),
  };
  chosen.load().then((module) => {
    if (turn === showing && document.getElementById("view") === view) unmount = module.mount(view, ctx) || (() => {});
  });
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}
