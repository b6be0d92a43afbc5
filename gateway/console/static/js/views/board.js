// The order board: the store's orders in columns by what staff must do next, live from the store's stream. A new
// paid order appears within a second (the stream's entry names it; the board reads it from the order API), blinks
// and, once alerts are on, beeps. Each card counts down to its deadline (accept by, completes by itself).
//
// The store's stream replays its kept entries (up to the notify service's retention) to a new reader: entries older
// than what the board loaded are skipped, so opening the board reads each order once, not once per entry.

import { clear, countdown, h, stylesheet, time, yuan } from "../dom.js";
import { follow } from "../stream.js";
import { alertsOn, beep, enableAlerts } from "./alerts.js";
import { orderActions } from "./order_actions.js";
import { modeLabel, pickupNumber, statusLabel } from "./order_labels.js";

const COLUMNS = [
  { key: "new", title: "新订单 New" },
  { key: "preparing", title: "待出餐 Preparing" },
  { key: "dispatching", title: "配送/待取 Delivery & pickup" },
  { key: "exceptions", title: "异常 Exceptions" },
  { key: "done", title: "今日完成 Done today" },
];
// Read one by one when the board opens, so an older open order is never cut off by the newest-first page.
const OPEN_STATUSES = ["paid", "accepted", "ready", "ready_for_pickup", "dispatching", "in_delivery", "shipped"];
const ON_THE_WAY = new Set(["ready", "ready_for_pickup", "dispatching", "in_delivery", "shipped"]);
const DONE = new Set(["delivered", "completed", "cancelled", "refunding", "refunded", "partially_refunded"]);
// What a carrier reports when a delivery did not happen: the order waits for staff (re-dispatch, or cancel).
const DELIVERY_TROUBLE = new Set(["cancelled", "failed", "returning", "returned", "pickup_failed", "exception"]);
const FETCHES_AT_ONCE = 4;
const REFUSED_RETRY_MS = 3_000;
const SETTLE_MS = 2_000;
const STREAM_STATES = {
  connecting: "连接中 Connecting",
  live: "● 实时 Live",
  reconnecting: "重连中 Reconnecting",
  refused: "暂无动态 No live feed yet",
  ended: "",
  closed: "",
};

function columnOf(order, now = new Date()) {
  if (order.open_aftersales > 0) return "exceptions";
  if (OPEN_STATUSES.includes(order.status) && DELIVERY_TROUBLE.has(order.delivery?.status)) return "exceptions";
  if (order.status === "paid") return "new";
  if (order.status === "accepted") return "preparing";
  if (ON_THE_WAY.has(order.status)) return "dispatching";
  if (DONE.has(order.status) && new Date(order.updated_at).toDateString() === now.toDateString()) return "done";
  return null;
}

export function mount(root, ctx) {
  const { api, session, store, toast } = ctx;
  stylesheet("css/board.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "此账号没有门店 No store in this account's scope."));
    return () => {};
  }
  const orders = new Map();
  const fresh = new Set(); // new orders that arrived live: they blink until handled
  let loadedUpTo = -Infinity; // the newest change the opening read saw (server time)
  let opened = false;

  const liveState = h("span", { class: "live-state", "data-state": "connecting" }, "连接中 Connecting");
  const alertButton = h("button", { type: "button", class: "primary", id: "enable-alerts" }, "开启提醒 Enable alerts");
  const columns = h("div", { class: "columns" });
  const board = h(
    "div",
    { class: "board", "data-alerts": alertsOn() ? "on" : "off" },
    h("div", { class: "board-bar row" }, h("h1", {}, store.name || store.id), liveState, alertButton),
    columns,
  );
  alertButton.hidden = alertsOn();
  alertButton.addEventListener("click", async () => {
    const on = await enableAlerts();
    board.dataset.alerts = on ? "on" : "off";
    alertButton.hidden = on;
    if (!on) toast("浏览器未允许声音 The browser did not allow sound", "error");
  });
  root.append(board);

  // The delivery as the store's stream last told it: the order service hears of it on its own, perhaps a moment
  // after the board does, so what it answers may be older.
  const deliveryNews = new Map();
  const changed = (answered) => {
    let order = answered;
    const news = deliveryNews.get(order.id);
    if (news && !(Date.parse(order.delivery?.updated_at) >= Date.parse(news.at))) {
      const facts = { status: news.status, carrier: news.carrier, updated_at: news.at };
      order = { ...order, delivery: { ...order.delivery, ...facts } };
    }
    if (order.status !== "paid") fresh.delete(order.id);
    orders.set(order.id, order);
    render();
  };

  // Cards are kept while their order is unchanged (the same answer, or one read again with nothing new: the stream's
  // first entries are often what the opening read already saw), so a re-render leaves a half-filled reason form where
  // it is; a card built again for a changed order opens the form again, with what was typed, if the order still
  // offers that action.
  const built = new Map(); // order id -> { order, element, shape }
  let focusedBefore = null; // what had the focus before the render took the cards out (which blurs it)
  const cardOf = (order) => {
    const kept = built.get(order.id);
    const shape = JSON.stringify(order);
    if (kept && (kept.order === order || kept.shape === shape)) {
      kept.order = order;
      kept.element.classList.toggle("fresh", fresh.has(order.id));
      return kept.element;
    }
    const open = kept?.element.querySelector("form[data-form]");
    const reopen = open && {
      name: open.dataset.form,
      value: open.querySelector("input").value,
      focused: open.contains(focusedBefore),
    };
    const element = card(order, reopen);
    built.set(order.id, { order, element, shape });
    return element;
  };
  const card = (order, reopen) => {
    const deadline = deadlineOf(order);
    const rider = order.delivery?.rider?.name;
    const element = h(
      "article",
      {
        class: `card order${fresh.has(order.id) ? " fresh" : ""}`,
        "data-order": order.id,
        "data-status": order.status,
        // Touching a new card acknowledges it: it stops blinking.
        onclick: () => fresh.delete(order.id) && element.classList.remove("fresh"),
      },
      h(
        "header",
        { class: "row" },
        h("span", { class: "pickup-no" }, `#${pickupNumber(order)}`),
        h("span", { class: "mode" }, modeLabel(order.fulfilment_mode)),
        deadline
          ? h(
              "span",
              { class: "deadline", "data-deadline": deadline.at, title: deadline.label },
              `${deadline.label} ${countdown(deadline.at)}`,
            )
          : null,
      ),
      h(
        "ul",
        { class: "lines" },
        order.items.map((line) => h("li", {}, `${line.name} × ${line.quantity}`)),
      ),
      order.note ? h("p", { class: "note" }, `备注 ${order.note}`) : null,
      h(
        "p",
        { class: "facts muted" },
        `${statusLabel(order.status)} · ${yuan(order.total_fen)} · ${time(order.paid_at || order.placed_at)}`,
        order.delivery?.status ? ` · 配送 ${order.delivery.status}` : "",
        rider ? ` · ${rider}` : "",
      ),
      h(
        "footer",
        { class: "row" },
        orderActions(order, ctx, changed, reopen),
        h("a", { class: "details", href: `#/orders/${encodeURIComponent(order.id)}` }, "详情 Details"),
      ),
    );
    return element;
  };

  const render = () => {
    const now = new Date();
    const byColumn = Object.fromEntries(COLUMNS.map((c) => [c.key, []]));
    for (const order of orders.values()) {
      if (order.store_id !== store.id) continue;
      const key = columnOf(order, now);
      if (key) byColumn[key].push(order);
    }
    focusedBefore = document.activeElement;
    clear(columns);
    for (const column of COLUMNS) {
      // New orders oldest first (the closest deadline on top); the rest newest first.
      const cards = byColumn[column.key].sort((a, b) =>
        column.key === "new" ? a.placed_at.localeCompare(b.placed_at) : b.updated_at.localeCompare(a.updated_at),
      );
      columns.append(
        h(
          "section",
          { class: `column column-${column.key}`, "data-column": column.key },
          h("h2", {}, column.title, h("span", { class: "count" }, String(cards.length))),
          cards.map(cardOf),
        ),
      );
    }
    // A kept card was taken out and put back, which blurs what staff were typing in: give it the focus back.
    if (focusedBefore?.isConnected && focusedBefore !== document.activeElement) focusedBefore.focus();
  };

  // --- the opening read, then the stream ---------------------------------------------------------------------

  const opening = (async () => {
    const pages = await Promise.all([
      api.get("/v1/orders", { store_id: store.id, limit: 100 }),
      ...OPEN_STATUSES.map((status) => api.get("/v1/orders", { store_id: store.id, status, limit: 100 })),
    ]);
    for (const page of pages) {
      for (const order of page.items) {
        orders.set(order.id, order);
        loadedUpTo = Math.max(loadedUpTo, Date.parse(order.updated_at));
      }
    }
    opened = true;
    render();
  })().catch((problem) => toast(problem.message, "error"));

  const wanted = new Set();
  let reading = false;
  let closed = false;
  const want = (orderId) => {
    wanted.add(orderId);
    readWanted();
  };
  const readWanted = async () => {
    if (reading || closed) return;
    reading = true;
    while (wanted.size) {
      const batch = [...wanted].slice(0, FETCHES_AT_ONCE);
      batch.forEach((id) => wanted.delete(id));
      await Promise.all(batch.map(readOne));
    }
    reading = false;
  };
  const readOne = async (orderId) => {
    let order;
    try {
      order = await api.get(`/v1/orders/${encodeURIComponent(orderId)}`);
    } catch {
      return; // gone from this account's view: nothing to show
    }
    if (closed) return; // the board was left meanwhile: no card, no sound
    const before = orders.get(orderId);
    // Older than what the board holds (an action's own answer landed first): it would undo that, and beep again.
    if (before && Date.parse(order.updated_at) < Date.parse(before.updated_at)) return;
    if (order.status === "paid" && before?.status !== "paid") {
      fresh.add(order.id);
      beep();
    }
    changed(order);
  };

  // An entry is news if it is newer than what the board holds of its order (or, for an order the opening read did
  // not list, newer than anything that read saw: older ones were about orders neither open nor recent).
  const isNews = (known, at) => {
    const when = Date.parse(at);
    if (Number.isNaN(when)) return true;
    return known ? when >= Date.parse(known.updated_at) : when >= loadedUpTo;
  };

  // A store that never had an order has no stream yet (404: the notify service learns a store's merchant from its
  // first entry, and only then can tell who may watch it): look again shortly, until the first order makes one.
  let stream = null;
  let retry = null;
  const followStore = () => {
    stream = follow(`/v1/notifications/streams/stores/${encodeURIComponent(store.id)}`, {
      tokens: session,
      onState: (state) => {
        liveState.dataset.state = state;
        liveState.textContent = STREAM_STATES[state] ?? "";
        if (state === "refused") retry = setTimeout(followStore, REFUSED_RETRY_MS);
      },
      onEntry: async ({ type, data }) => {
        if (type === "position" || !data || !data.order_id) return; // the rider's moves change no card
        await opening;
        if (!opened || !isNews(orders.get(data.order_id), data.at)) return;
        if (type === "delivery") deliveryNews.set(data.order_id, data);
        want(data.order_id);
        // Another service's news (a delivery, a code, an after-sales case) reaches the order service on its own:
        // read the order again once it has, for the status that news moved it to.
        if (type !== "status") setTimeout(() => want(data.order_id), SETTLE_MS);
      },
    });
  };
  followStore();

  const ticking = setInterval(() => {
    for (const element of columns.querySelectorAll("[data-deadline]")) {
      element.textContent = `${element.title} ${countdown(element.dataset.deadline)}`;
      element.classList.toggle("overdue", Date.parse(element.dataset.deadline) < Date.now());
    }
  }, 1000);

  return () => {
    closed = true;
    clearTimeout(retry);
    stream.close();
    clearInterval(ticking);
  };
}

function deadlineOf(order) {
  if (order.status === "paid" && order.accept_by) return { at: order.accept_by, label: "接单 Accept in" };
  if (order.auto_complete_by) return { at: order.auto_complete_by, label: "自动完成 Completes in" };
  if (order.delivery?.eta && ON_THE_WAY.has(order.status)) return { at: order.delivery.eta, label: "送达 ETA" };
  return null;
}
