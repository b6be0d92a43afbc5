// One order (#/orders/<id>): its lines, note, amounts and timeline, the actions its status allows, and its delivery:
// carrier, status, rider, fees, the rider on the plot (store, customer, rider and trail), tip raise, cancel after the
// fee preview, re-dispatch once a delivery ended. Live from the order's stream, which replays its kept entries first:
// the rider's positions among them draw the trail. Without an id: the store's latest orders, and a lookup by number.

import { dateTime, h, stylesheet, svg, yuan } from "../dom.js";
import { drawPlot } from "../plot.js";
import { follow } from "../stream.js";
import { orderActions } from "./order_actions.js";
import { modeLabel, pickupNumber, statusLabel } from "./order_labels.js";

const LOCATE_EVERY_MS = 15_000;
const REFUSED_RETRY_MS = 3_000;
// An order still waiting for its delivery: one whose delivery ended may get another.
const OPEN = new Set(["accepted", "ready", "dispatching", "in_delivery"]);
const LIST_HEADINGS = ["#", "订单号 Order", "状态 Status", "方式 Mode", "金额 Total", "下单 Placed"];
const DELIVERY_LABELS = {
  created: "待接单 Waiting for a rider",
  rider_assigned: "骑手已接单 Rider assigned",
  rider_at_store: "骑手到店 Rider at the store",
  picked_up: "已取货 Picked up",
  delivering: "配送中 Delivering",
  delivered: "已送达 Delivered",
  pickup_failed: "取货失败 Pickup failed",
  returning: "退回中 Returning",
  returned: "已退回 Returned",
  cancelled: "已取消 Cancelled",
  failed: "配送失败 Failed",
};

export function mount(root, ctx) {
  stylesheet("css/board.css");
  stylesheet("css/orders.css");
  const orderId = ctx.route[0] ? decodeURIComponent(ctx.route[0]) : null;
  return orderId ? showOrder(root, ctx, orderId) : showList(root, ctx);
}

// --- the store's latest orders ------------------------------------------------------------------------------------

function showList(root, { api, store, navigate, toast }) {
  const lookup = h("input", { name: "order-id", placeholder: "订单号 Order number", "aria-label": "订单号 Order number" });
  const form = h(
    "form",
    { class: "row lookup" },
    lookup,
    h("button", { type: "submit", class: "primary" }, "查看 Open"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (lookup.value.trim()) navigate(`#/orders/${encodeURIComponent(lookup.value.trim())}`);
  });
  const rows = h("tbody");
  root.append(
    form,
    h(
      "table",
      { class: "list" },
      h("thead", {}, h("tr", {}, LIST_HEADINGS.map((heading) => h("th", {}, heading)))),
      rows,
    ),
  );
  if (!store) return () => {};
  api
    .get("/v1/orders", { store_id: store.id, limit: 50 })
    .then((page) => {
      for (const order of page.items) {
        const link = h("a", { href: `#/orders/${encodeURIComponent(order.id)}` }, order.id);
        rows.append(
          h(
            "tr",
            { "data-order": order.id },
            h("td", {}, pickupNumber(order)),
            h("td", {}, link),
            h("td", {}, statusLabel(order.status)),
            h("td", {}, modeLabel(order.fulfilment_mode)),
            h("td", {}, yuan(order.total_fen)),
            h("td", {}, dateTime(order.placed_at)),
          ),
        );
      }
    })
    .catch((problem) => toast(problem.message, "error"));
  return () => {};
}

// --- one order -----------------------------------------------------------------------------------------------------

function showOrder(root, ctx, orderId) {
  const { api, session, toast } = ctx;
  const path = `/v1/orders/${encodeURIComponent(orderId)}`;
  const view = h("div", { class: "order-view", "data-order": orderId }, h("p", { class: "loading" }, "Loading…"));
  root.append(view);
  let order = null;
  let store = null;
  let delivery = null;
  let history = [];
  let rider = null;
  const trail = [];
  let closed = false;
  let missing = false; // the order is not found: nothing to follow
  let actions = null;
  let actionsKey = null;

  const plot = svg("svg", { class: "plot", "aria-label": "配送位置 Delivery map" });
  const summary = h("section", { class: "card summary" });
  const lines = h("section", { class: "card lines-card" });
  const timeline = h("section", { class: "card timeline" });
  const deliveryPanel = h("section", { class: "card delivery" });

  const read = coalesced(async () => {
    const answers = await Promise.all([
      api.get(path),
      api.get(`${path}/history`),
      api.get("/v1/deliveries", { order_id: orderId, limit: 1 }),
    ]);
    [order, history] = answers;
    delivery = answers[2].items[0] || null;
    if (delivery && delivery.rider_lat !== null && delivery.rider_lng !== null && !rider) {
      rider = { lat: delivery.rider_lat, lng: delivery.rider_lng };
    }
    store ??= await api.get(`/v1/stores/${encodeURIComponent(order.store_id)}`).catch(() => null);
    render();
  });

  // Where the rider is now. Some carriers push positions (they come on the stream); others only answer when asked,
  // which this does while the delivery has a rider (dispatch asks the carrier at most every 30 s, whoever calls).
  const locate = async () => {
    if (!delivery || delivery.ended_at !== null || delivery.status === "created") return;
    try {
      const tracking = await api.get(`/v1/deliveries/${encodeURIComponent(delivery.id)}/track`);
      if (tracking.lat === null || tracking.lng === null) return;
      const last = trail[trail.length - 1];
      rider = { lat: tracking.lat, lng: tracking.lng };
      if (!last || last.lat !== rider.lat || last.lng !== rider.lng) trail.push(rider);
      drawRider();
    } catch {
      // not worth a toast: the next look may answer
    }
  };
  const locating = setInterval(locate, LOCATE_EVERY_MS);

  const refresh = () => read().catch((problem) => toast(problem.message, "error"));

  const render = () => {
    if (closed) return;
    if (!view.contains(summary)) {
      fill(
        view,
        h("p", {}, h("a", { href: "#/board" }, "← 看板 Board")),
        h("div", { class: "order-grid" }, h("div", {}, summary, lines, timeline), h("div", {}, deliveryPanel)),
      );
    }
    renderSummary();
    renderLines();
    renderTimeline();
    renderDelivery();
  };

  const renderSummary = () => {
    const deadline = order.status === "paid" ? order.accept_by : order.auto_complete_by;
    fill(
      summary,
      h(
        "div",
        { class: "row" },
        h("span", { class: "pickup-no" }, `#${pickupNumber(order)}`),
        h("span", { class: "status", "data-status": order.status }, statusLabel(order.status)),
        h("span", { class: "muted" }, modeLabel(order.fulfilment_mode)),
      ),
      h("p", { class: "muted order-id" }, order.id),
      deadline
        ? h("p", {}, order.status === "paid" ? "接单截止 Accept by " : "自动完成 Completes at ", dateTime(deadline))
        : null,
      orderActions(order, { ...ctx, store }, (changed) => {
        order = changed;
        refresh();
      }),
    );
  };

  const renderLines = () => {
    const address = order.address;
    fill(
      lines,
      h("h2", {}, "商品 Items"),
      h(
        "table",
        { class: "list" },
        h(
          "tbody",
          {},
          order.items.map((line) =>
            h(
              "tr",
              {},
              h("td", {}, line.name),
              h("td", {}, `× ${line.quantity}`),
              h("td", {}, yuan(line.price_fen * line.quantity)),
            ),
          ),
        ),
      ),
      order.note ? h("p", { class: "note" }, `备注 Note: ${order.note}`) : null,
      facts("amounts", [
        ["商品 Items", yuan(order.items_fen)],
        ["配送费 Delivery fee", yuan(order.delivery_fee_fen)],
        ["合计 Total", yuan(order.total_fen)],
        ["已退 Refunded", order.refunded_fen ? yuan(order.refunded_fen) : null],
      ]),
      h("p", {}, `${order.contact.name} ${order.contact.phone}`),
      address ? h("p", { class: "muted" }, address.text) : null,
      order.cancel_reason ? h("p", { class: "error" }, `取消原因 Reason: ${order.cancel_reason}`) : null,
    );
  };

  const renderTimeline = () => {
    fill(
      timeline,
      h("h2", {}, "进度 Timeline"),
      h(
        "ol",
        { class: "steps" },
        history.map((change) =>
          h(
            "li",
            { "data-status": change.to_status },
            h("time", {}, dateTime(change.at)),
            " ",
            statusLabel(change.to_status),
            h("span", { class: "muted" }, ` · ${change.actor}`),
          ),
        ),
      ),
    );
  };

  const renderDelivery = () => {
    fill(deliveryPanel, h("h2", {}, "配送 Delivery"));
    if (order.fulfilment_mode !== "delivery") {
      deliveryPanel.append(h("p", { class: "muted" }, modeLabel(order.fulfilment_mode)));
      return;
    }
    if (!delivery) {
      deliveryPanel.append(h("p", { class: "muted", "data-delivery": "none" }, "尚未配送 Not dispatched yet"));
    } else {
      const person = delivery.rider || {};
      const shown = facts("delivery-facts", [
        ["承运 Carrier", delivery.carrier || "—", "carrier"],
        ["状态 Status", DELIVERY_LABELS[delivery.status] || delivery.status, "delivery-status"],
        ["骑手 Rider", person.name ? `${person.name} ${person.phone || ""}` : "—", "rider"],
        ["运费 Fee", delivery.fee_fen === null ? "—" : yuan(delivery.fee_fen)],
        ["小费 Tip", yuan(delivery.tip_fen)],
        ["取消费 Cancel fee", delivery.cancel_fee_fen ? yuan(delivery.cancel_fee_fen) : null],
        ["预计送达 ETA", delivery.eta_at ? dateTime(delivery.eta_at) : null],
        ["原因 Reason", delivery.reason],
      ]);
      shown.dataset.delivery = delivery.status;
      deliveryPanel.append(shown);
    }
    // The actions are built again only when what they depend on changed: a stream entry must not wipe a tip being
    // typed or a cancellation being confirmed.
    const key = [delivery?.id, delivery?.status, delivery?.ended_at, order.status].join("|");
    if (key !== actionsKey) {
      actionsKey = key;
      actions = deliveryActions();
    }
    deliveryPanel.append(plot, actions);
    drawRider();
  };

  const drawRider = () =>
    drawPlot(plot, {
      store: store ? { lat: store.lat, lng: store.lng } : null,
      customer: order.address ? { lat: order.address.lat, lng: order.address.lng } : null,
      rider,
      trail,
      radiusM: store?.range_radius_m || null,
    });

  const deliveryActions = () => {
    const bar = h("div", { class: "actions delivery-actions" });
    if (!delivery) return bar;
    const id = encodeURIComponent(delivery.id);
    const live = delivery.ended_at === null; // an ended delivery can be followed by another (re-dispatch)
    if (delivery.status === "created") {
      const tip = h("input", { name: "tip", type: "number", min: "1", step: "1", "aria-label": "小费(元) Tip (yuan)" });
      const form = h("form", { class: "row tip-form" }, tip, h("button", { type: "submit" }, "加小费 Raise tip"));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        try {
          // The tip is the new total, strictly higher than the one the carrier has.
          delivery = await api.post(`/v1/deliveries/${id}/tip`, { tip_fen: Math.round(Number(tip.value) * 100) });
          render();
        } catch (problem) {
          toast(problem.message, "error");
        }
      });
      bar.append(form);
    }
    if (live) {
      const cancel = () => previewCancel(bar);
      bar.append(
        h(
          "button",
          { type: "button", class: "danger", "data-action": "cancel-delivery", onclick: cancel },
          "取消配送 Cancel delivery",
        ),
      );
    }
    if (!live && delivery.status !== "delivered" && OPEN.has(order.status)) {
      bar.append(
        h(
          "button",
          { type: "button", class: "primary", "data-action": "redispatch", onclick: redispatch },
          "重新派单 Re-dispatch",
        ),
      );
    }
    return bar;
  };

  const previewCancel = async (bar) => {
    const id = encodeURIComponent(delivery.id);
    let preview;
    try {
      preview = await api.get(`/v1/deliveries/${id}/cancel-preview`);
    } catch (problem) {
      toast(problem.message, "error");
      return;
    }
    const fees = Object.entries(preview.offers).map(([carrier, fen]) => `${carrier} ${yuan(fen)}`);
    const keep = () => {
      actionsKey = null;
      renderDelivery();
    };
    const confirm = async (event) => {
      event.currentTarget.disabled = true;
      try {
        delivery = await api.post(`/v1/deliveries/${id}/cancel`, { reason: "商家取消 merchant cancelled" });
      } catch (problem) {
        toast(problem.message, "error");
      }
      refresh();
    };
    bar.replaceChildren(
      h(
        "div",
        { class: "confirm", "data-confirm": "cancel-delivery" },
        h(
          "p",
          {},
          `取消将扣费 Cancelling now costs ${yuan(preview.deduct_fen)}`,
          fees.length ? ` (${fees.join(", ")})` : "",
        ),
        h(
          "button",
          { type: "button", class: "danger", "data-action": "confirm-cancel", onclick: confirm },
          "确认 Confirm",
        ),
        h("button", { type: "button", class: "quiet", onclick: keep }, "不取消 Keep it"),
      ),
    );
  };

  const redispatch = async (event) => {
    event.currentTarget.disabled = true;
    try {
      delivery = await api.post("/v1/deliveries", { order_id: order.id });
      rider = null;
      trail.length = 0;
    } catch (problem) {
      toast(problem.message, "error");
    }
    refresh();
  };

  read().then(locate, (problem) => {
    missing = problem.status === 404;
    const words = missing ? `订单不存在 No order ${orderId}` : problem.message;
    fill(view, h("p", { class: missing ? "not-found" : "error", role: "alert" }, words));
  });

  let stream = null;
  let retry = null;
  const followOrder = () => {
    stream = follow(`/v1/notifications/streams/orders/${encodeURIComponent(orderId)}`, {
      tokens: session,
      // The notify service may not have heard of a new order yet (404): look again shortly, unless the order
      // itself is not found.
      onState: (state) => {
        if (state === "refused" && !missing) retry = setTimeout(followOrder, REFUSED_RETRY_MS);
      },
      onEntry: ({ type, data }) => {
        if (type === "position") {
          rider = { lat: data.lat, lng: data.lng };
          trail.push(rider);
          if (order) drawRider();
        } else if (type !== "end" && order) {
          refresh();
        }
      },
    });
  };
  followOrder();
  return () => {
    closed = true;
    clearInterval(locating);
    clearTimeout(retry);
    stream.close();
  };
}

// A definition list of [term, value, class?] pairs; a null value leaves its pair out.
function facts(kind, pairs) {
  return h(
    "dl",
    { class: kind },
    pairs
      .filter(([, value]) => value !== null && value !== undefined)
      .map(([term, value, name]) => [h("dt", {}, term), h("dd", { class: name }, value)]),
  );
}

// Replaces a node's children as `h` takes them: text, nodes, nested lists; null and false left out.
function fill(node, ...children) {
  node.replaceChildren(...h("div", {}, ...children).childNodes);
}

// Runs `read` now, or once more after the run in progress: a burst of stream entries reads the order twice, not
// once per entry.
function coalesced(read) {
  let running = null;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await read();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
  return run;
}
