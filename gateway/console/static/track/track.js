// The customer's tracking page: one order's timeline, its delivery with the rider on the plot and the ETA, and the
// pickup or finish code as digits and a rotating QR, live over the order's stream.
//
// Reached two ways, the token always in the address's fragment (never sent to a server, so never in a log):
//   /track/#link=<link token>             an SMS or shared link: traded for short access tokens that read this order
//                                          only, the customer's address and phone hidden (POST /v1/auth/tracking/exchange)
//   /track/#access=<jwt>&order=<order id>  the mini-program's web-view, with the customer's own token
//
// The page holds no privilege of its own: every read goes through the public API with that token.

import { Api, Problem, tokenClaims } from "/console/js/api.js";
import { clear, dateTime, h, svg, time } from "/console/js/dom.js";
import { drawPlot } from "/console/js/plot.js";
import { follow } from "/console/js/stream.js";
import qrcode from "/console/vendor/qrcode-generator.mjs";

const ORDER_STATUS = {
  pending_payment: "待支付 Awaiting payment",
  paid: "已支付 Paid",
  accepted: "商家已接单 Accepted",
  ready: "已出餐 Ready",
  ready_for_pickup: "待取餐 Ready for pickup",
  dispatching: "呼叫骑手 Finding a rider",
  in_delivery: "配送中 On the way",
  shipped: "已发货 Shipped",
  delivered: "已送达 Delivered",
  completed: "已完成 Completed",
  cancelled: "已取消 Cancelled",
  rejected: "商家已拒单 Rejected",
  refunding: "退款中 Refunding",
  refunded: "已退款 Refunded",
  partially_refunded: "部分退款 Partly refunded",
};
const DELIVERY_STATUS = {
  created: "等待骑手接单 Waiting for a rider",
  rider_assigned: "骑手已接单 Rider assigned",
  rider_at_store: "骑手已到店 Rider at the store",
  picked_up: "骑手已取货 Picked up",
  delivering: "配送中 On the way",
  delivered: "已送达 Delivered",
  pickup_failed: "取货失败 Pickup failed",
  returning: "返回门店 Returning",
  returned: "已退回 Returned",
  cancelled: "配送已取消 Delivery cancelled",
  failed: "配送失败 Delivery failed",
};
const LIVE = {
  connecting: "连接中 connecting",
  live: "实时 live",
  reconnecting: "重新连接 reconnecting",
  ended: "已结束 ended",
  refused: "无法跟踪 not available",
  closed: "",
};
const REFUSED_RETRY_MS = 3000;
// A token is renewed this long before it expires (at most a quarter of its life).
const EARLY_MS = 60_000;

// A tracking link: traded for short access tokens, renewed before they expire.
class LinkTokens {
  constructor(link) {
    this.link = link;
    this.token = null;
    this.expiresAt = 0;
    this.renewing = null;
    this.refusal = null;
  }

  async get() {
    if (!this.token || Date.now() > this.expiresAt) {
      if (!(await this.renew())) throw this.refusal;
    }
    return this.token;
  }

  // Whether a fresh token came; a refused link (expired, forged) is kept as `refusal` and the page says so.
  renew() {
    this.renewing ??= this.exchange().finally(() => (this.renewing = null));
    return this.renewing;
  }

  async exchange() {
    let response;
    try {
      response = await fetch("/v1/auth/tracking/exchange", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ link: this.link }),
      });
    } catch (error) {
      this.refusal = error;
      return false;
    }
    const body = await response.json();
    if (!response.ok) {
      this.token = null;
      this.refusal = new Problem(response.status, body);
      return false;
    }
    this.token = body.access_token;
    const life = body.expires_in * 1000;
    this.expiresAt = Date.now() + life - Math.min(EARLY_MS, life / 4);
    return true;
  }
}

// The mini-program's own customer token: used as it is (the mini-program opens the page anew with a fresh one).
class FixedToken {
  constructor(token) {
    this.token = token;
  }
  async get() {
    return this.token;
  }
  async renew() {
    return false;
  }
}

function fromFragment(hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const link = params.get("link");
  if (link) {
    let orderId = null;
    try {
      orderId = tokenClaims(link).order_id;
    } catch {
      return null; // not a token at all: cut short when copied, say
    }
    return orderId ? { tokens: new LinkTokens(link), orderId } : null;
  }
  const access = params.get("access");
  if (access && params.get("order")) return { tokens: new FixedToken(access), orderId: params.get("order") };
  return null;
}

class TrackingPage {
  constructor(tokens, orderId) {
    this.api = new Api(tokens);
    this.tokens = tokens;
    this.orderId = orderId;
    this.order = null;
    this.store = null;
    this.delivery = null;
    this.code = null;
    this.trail = [];
    this.entries = new Map(); // stream entry id → timeline item: each shown once, whatever a reconnect replays
    this.qrTimer = null;
    this.el = {
      live: document.getElementById("live"),
      problem: document.getElementById("problem"),
      summary: document.getElementById("summary"),
      code: document.getElementById("code"),
      plot: document.getElementById("plot"),
      timeline: document.getElementById("timeline"),
    };
  }

  async start() {
    this.order = await this.api.get(`/v1/orders/${encodeURIComponent(this.orderId)}`);
    this.store = await this.api.get(`/v1/stores/${encodeURIComponent(this.order.store_id)}`);
    await Promise.all([this.loadDelivery(), this.loadCode()]);
    this.render();
    this.follow(null);
  }

  // The order's stream, from after `lastEventId`. The notify service hears of an order a moment after the order
  // service: a stream refused for an order the page could read is "not yet", so it is asked for again.
  follow(lastEventId) {
    const stream = follow(`/v1/notifications/streams/orders/${encodeURIComponent(this.orderId)}`, {
      tokens: this.tokens,
      lastEventId,
      onEntry: (entry) => this.onEntry(entry),
      onState: (state) => {
        this.showState(state);
        if (state !== "refused") return;
        const refusal = this.tokens.refusal; // the link itself refused (expired, forged): said once, not retried
        if (refusal instanceof Problem && (refusal.status === 401 || refusal.status === 403)) this.showProblem(refusal);
        else setTimeout(() => this.follow(stream.lastEventId), REFUSED_RETRY_MS);
      },
    });
  }

  async loadOrder() {
    this.order = await this.api.get(`/v1/orders/${encodeURIComponent(this.orderId)}`);
  }

  async loadDelivery() {
    const page = await this.api.get("/v1/deliveries", { order_id: this.orderId });
    this.delivery = page.items[0] || null;
    if (this.delivery && this.delivery.rider_lat !== null && this.trail.length === 0) {
      this.trail.push({ lat: this.delivery.rider_lat, lng: this.delivery.rider_lng });
    }
  }

  // The order's code, fetched again just after its QR token rotates: the token shown is always the current one
  // (the one before it is still accepted for one more step, so a scan as it changes does not fail).
  async loadCode() {
    clearTimeout(this.qrTimer);
    try {
      const page = await this.api.get("/v1/codes", { order_id: this.orderId });
      this.code = page.items.find((c) => c.status === "active") || page.items[0] || null;
      this.renderCode();
      if (this.code && this.code.qr_token) {
        this.qrTimer = setTimeout(() => this.loadCode(), this.code.qr_expires_in * 1000 + 500);
      }
    } catch (error) {
      // A refusal (the link expired, the order not readable) is said once; anything else is tried again shortly.
      if (error instanceof Problem && [401, 403, 404].includes(error.status)) this.showProblem(error);
      else this.qrTimer = setTimeout(() => this.loadCode(), 3000);
    }
  }

  async onEntry(entry) {
    const { type, id, data } = entry;
    if (type === "position") {
      this.trail.push({ lat: data.lat, lng: data.lng });
      if (this.delivery) {
        Object.assign(this.delivery, {
          rider_lat: data.lat,
          rider_lng: data.lng,
          eta_at: data.eta || this.delivery.eta_at,
        });
      }
      this.render();
      return;
    }
    if (type === "end") {
      this.showState("ended");
      return;
    }
    this.addToTimeline(id, type, data);
    try {
      if (type === "delivery") await this.loadDelivery();
      if (type !== "code") await this.loadOrder(); // the order's status follows its delivery's too
      if (type === "status" || type === "code") await this.loadCode();
    } catch (error) {
      this.showProblem(error);
    }
    this.render();
    if (type === "delivery" && data.status === "delivered") this.awaitOrderDelivered(5);
  }

  // The order service hears of the delivery on its own: ask again, a few times, until the order says delivered.
  awaitOrderDelivered(tries) {
    if (tries === 0 || !["ready", "dispatching", "in_delivery"].includes(this.order.status)) return;
    setTimeout(async () => {
      try {
        await this.loadOrder();
        this.render();
      } finally {
        this.awaitOrderDelivered(tries - 1);
      }
    }, 1000);
  }

  addToTimeline(id, type, data) {
    if (id !== null && this.entries.has(id)) return;
    const what =
      type === "status"
        ? ORDER_STATUS[data.status] || data.status
        : type === "delivery"
          ? [DELIVERY_STATUS[data.status] || data.status, data.rider_name].filter(Boolean).join(" · ")
          : type === "code"
            ? `${data.kind === "pickup" ? "取餐码" : "收货码"}已核销 Code redeemed`
            : `售后 After-sales: ${data.state}`;
    const item = h(
      "li",
      { "data-entry-id": id, "data-type": type, "data-status": data.status || data.state || "" },
      h("time", { datetime: data.at }, dateTime(data.at)),
      h("span", {}, what),
    );
    this.entries.set(id, item);
    // In stream order: entries come in order, but a replay after a reconnect must not reorder them.
    const after = [...this.el.timeline.children].find((li) => Number(li.dataset.entryId) > Number(id));
    this.el.timeline.insertBefore(item, after || null);
  }

  render() {
    const { order, delivery, store } = this;
    const eta = delivery && !delivery.ended_at ? delivery.eta_at : null;
    const riderName = delivery && delivery.rider && delivery.rider.name ? ` · 骑手 ${delivery.rider.name}` : "";
    // Through dom.h, which leaves out the parts that are absent (the native append would write "null").
    const summary = h(
      "div",
      {},
      h(
        "div",
        { class: "row spread" },
        h("strong", { id: "order-status", "data-status": order.status }, ORDER_STATUS[order.status] || order.status),
        h("span", { class: "muted" }, store.name),
      ),
      h("div", { class: "muted" }, `订单 Order ${order.id}`),
      delivery &&
        h(
          "div",
          { id: "delivery", "data-status": delivery.status },
          DELIVERY_STATUS[delivery.status] || delivery.status,
          riderName,
        ),
      eta && h("div", { id: "eta", class: "eta", "data-eta": eta }, `预计送达 ETA ${time(eta)}`),
      order.redacted && h("p", { class: "muted small" }, "通过链接查看：地址和电话已隐藏 · Address and phone hidden"),
    );
    clear(this.el.summary).append(...summary.childNodes);
    // The rider where last seen (at the door, once delivered).
    const rider = delivery && delivery.rider_lat !== null ? { lat: delivery.rider_lat, lng: delivery.rider_lng } : null;
    drawPlot(this.el.plot, {
      store: { lat: store.lat, lng: store.lng },
      customer: order.address && order.address.lat !== undefined ? order.address : null,
      rider,
      trail: rider ? this.trail : [],
      radiusM: store.range_radius_m,
    });
  }

  renderCode() {
    const code = this.code;
    const box = this.el.code;
    box.hidden = !code;
    if (!code) return;
    const title = code.kind === "pickup" ? "取餐码 Pickup code" : "收货码 Finish code (show it to the rider)";
    const parts = h(
      "div",
      {},
      h("h2", {}, title),
      h("div", { id: "code-status", "data-status": code.status }, code.status === "active" ? "" : code.status),
      code.code && h("p", { id: "code-digits", class: "digits" }, code.code),
      code.qr_token && qrSvg(code.qr_token),
      code.qr_token && h("p", { class: "muted small" }, "二维码会自动更新 · The QR code renews itself"),
    );
    clear(box).append(...parts.childNodes);
  }

  showState(state) {
    this.el.live.dataset.state = state;
    this.el.live.textContent = LIVE[state] ?? state;
  }

  showProblem(error) {
    this.el.problem.textContent =
      error instanceof Problem && error.status === 401
        ? "链接已失效 · This link has expired or is not valid"
        : error instanceof Problem && (error.status === 403 || error.status === 404)
          ? "找不到这个订单 · No such order"
          : `暂时无法加载 · Could not load (${error.message})`;
  }
}

// The QR code as SVG squares, one per dark module (no markup parsed, nothing fetched).
function qrSvg(token) {
  const qr = qrcode(0, "M");
  qr.addData(token);
  qr.make();
  const count = qr.getModuleCount();
  const quiet = 4;
  const size = count + quiet * 2;
  const cells = [];
  for (let row = 0; row < count; row += 1) {
    for (let col = 0; col < count; col += 1) {
      if (qr.isDark(row, col)) cells.push(`M${col + quiet} ${row + quiet}h1v1h-1z`);
    }
  }
  return svg(
    "svg",
    { id: "qr", class: "qr", viewBox: `0 0 ${size} ${size}`, "data-token": token, role: "img", "aria-label": "QR" },
    svg("rect", { width: size, height: size, fill: "#fff" }),
    svg("path", { d: cells.join(""), fill: "#000", "shape-rendering": "crispEdges" }),
  );
}

const found = fromFragment(location.hash);
if (!found) {
  document.getElementById("problem").textContent = "链接不完整 · This tracking link is incomplete";
} else {
  const page = new TrackingPage(found.tokens, found.orderId);
  page.start().catch((error) => page.showProblem(error));
}
