// The after-sales queue (售后): the store's open cases, the soonest deadline first, each with its countdown, lines,
// reason, the customer's photos, the merchant's actions the API offers now, and the case's history. Live: a case
// event on the store's stream reloads the queue.

import { Problem, requestId } from "../api.js";
import { clear, countdown, dateTime, h, stylesheet, yuan } from "../dom.js";
import { follow } from "../stream.js";

const TYPES = {
  refund_only: "仅退款 Refund only",
  return_refund: "退货退款 Return & refund",
  exchange: "换货 Exchange",
  cancel_request: "取消订单 Cancel request",
  non_delivery: "未送达 Non-delivery",
};
const STATES = {
  requested: "待处理 Requested",
  negotiating: "协商中 Negotiating",
  approved: "已同意 Approved",
  awaiting_return: "待退货 Awaiting return",
  return_in_transit: "退货在途 Return in transit",
  received: "已收货 Received",
  reshipping: "换货发出 Reshipping",
  refunding: "退款中 Refunding",
  refund_failed: "退款失败 Refund failed",
  rejected: "已拒绝 Rejected",
  in_arbitration: "平台介入 In arbitration",
  awaiting_ruling: "待裁决 Awaiting ruling",
};
// Whose deadline runs, and what happens when it ends (README, after-sales deadlines).
const DEADLINES = {
  cancel_answer: "商家答复 Your answer (then approved)",
  perishable_answer: "商家答复 Your answer (then approved)",
  standard_answer: "商家答复 Your answer (then approved)",
  customer_confirm: "顾客确认方案 Customer answers the offer",
  return_shipment: "顾客寄回 Customer ships the return",
  merchant_receipt: "商家收货 Your receipt (then refunded)",
  escalation: "顾客申诉 Customer may escalate",
  arbitration_evidence: "平台取证 Arbitration evidence",
};
// The merchant's actions: the API's name (next_actions), the URL's, the button's words.
const ACTIONS = {
  approve: { path: "approve", label: "同意 Approve", kind: "primary" },
  negotiate: { path: "negotiate", label: "协商金额 Offer an amount" },
  reject: { path: "reject", label: "拒绝 Reject", kind: "danger" },
  confirm_receipt: { path: "confirm-receipt", label: "确认收到退货 Confirm receipt", kind: "primary" },
  deliver_exchange: { path: "deliver-exchange", label: "发出换货 Ship the exchange", kind: "primary" },
  ship_return: { path: "ship-return", label: "店员上门取回 Our rider collects" },
};

export function mount(root, { api, session, store, toast }) {
  stylesheet("css/aftersales.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const count = h("span", { class: "muted", id: "aftersales-count" });
  const list = h("div", { class: "aftersales-list", id: "aftersales-list" });
  root.append(
    h(
      "div",
      { class: "aftersales-head" },
      h("h1", {}, `售后 After-sales · ${store.name || store.id}`),
      count,
      h("button", { type: "button", onclick: () => load(true) }, "刷新 Refresh"),
    ),
    list,
  );
  const photos = new Photos(session);
  let reasons = { apply: new Map(), reject: [] };
  let cases = [];
  const open = new Set(); // the cases whose history is unfolded, kept across reloads

  // Only the latest load lands (an earlier one answering last would show an older queue), and none once the view
  // is left; a forced redraw asked for by a superseded load is kept for the one that lands.
  let loads = 0;
  let forced = false;
  let left = false;
  const load = async (force = false) => {
    const turn = ++loads;
    forced ||= force;
    try {
      const page = await api.get("/v1/aftersales/cases", {
        store_id: store.id,
        open: true,
        sort: "deadline",
        limit: 100,
      });
      if (left || turn !== loads) return;
      cases = page.items;
      count.textContent = page.total > cases.length ? `${cases.length} / ${page.total}` : `${cases.length}`;
      render(forced);
      forced = false;
    } catch (failure) {
      if (!left) toast(failure.message, "error");
    }
  };
  const closeForm = (panel) => {
    clear(panel);
    if (stale) render();
  };

  // A reload never wipes a form being filled in: the queue is redrawn once it closes.
  let stale = false;
  const render = (force = false) => {
    if (!force && list.querySelector(".aftersales-form")) {
      stale = true;
      return;
    }
    stale = false;
    clear(list);
    if (!cases.length) list.append(h("p", { class: "muted aftersales-empty" }, "没有待处理的售后 No open cases"));
    for (const item of cases) list.append(caseCard(item));
  };

  const act = async (item, name, body) => {
    try {
      await api.post(`/v1/aftersales/cases/${encodeURIComponent(item.id)}/${ACTIONS[name].path}`, body);
      toast(`${ACTIONS[name].label} ✓`);
      await load(true);
    } catch (failure) {
      toast(failure.message, "error");
      throw failure;
    }
  };

  const caseCard = (item) => {
    const mine = item.next_actions.merchant || [];
    const panel = h("div", { class: "aftersales-panel" });
    const card = h(
      "article",
      {
        class: `card aftersales-case${mine.length ? " yours" : ""}`,
        "data-case": item.id,
        "data-state": item.state,
      },
      h(
        "div",
        { class: "aftersales-top" },
        deadlineBadge(item),
        h("strong", { class: "aftersales-type" }, TYPES[item.type] || item.type),
        h("span", { class: "aftersales-state" }, STATES[item.state] || item.state),
        h("strong", { class: "aftersales-amount" }, `申请 Asked ${yuan(item.asked_fen)}`),
      ),
      h(
        "div",
        { class: "muted" },
        `订单 Order ${item.order_id} · ${dateTime(item.created_at)} · ${item.id}`,
      ),
      h(
        "p",
        { class: "aftersales-reason" },
        h("strong", {}, reasons.apply.get(item.reason_code) || item.reason_code),
        item.description ? ` — ${item.description}` : "",
      ),
      h(
        "ul",
        { class: "aftersales-lines" },
        item.lines.map((line) =>
          h("li", {}, `${lineName(line)} × ${line.quantity}`),
        ),
      ),
      facts(item),
      evidence(item),
      h(
        "div",
        { class: "row aftersales-actions" },
        mine
          .filter((name) => ACTIONS[name])
          .map((name) =>
            h(
              "button",
              {
                type: "button",
                class: ACTIONS[name].kind || "",
                "data-action": name,
                onclick: () => showForm(panel, item, name),
              },
              ACTIONS[name].label,
            ),
          ),
      ),
      panel,
      history(item),
    );
    return card;
  };

  const facts = (item) => {
    const shown = [];
    if (item.agreed_fen !== null) shown.push(`同意金额 Agreed ${yuan(item.agreed_fen)}`);
    if (item.refunded_fen !== null) shown.push(`已退 Refunded ${yuan(item.refunded_fen)}`);
    if (item.proposal) {
      shown.push(
        `方案 Offer ${yuan(item.proposal.amount_fen)}${item.proposal.without_return ? " · 无需退货 no return" : ""}`,
      );
    }
    if (item.return_shipment) {
      const s = item.return_shipment;
      shown.push(`退货 Return: ${[s.carrier, s.tracking_no, s.collected_by].filter(Boolean).join(" ")}`);
    }
    if (item.reject_reason_code) {
      const reason = reasons.reject.find((r) => r.code === item.reject_reason_code);
      shown.push(`拒绝理由 Rejected: ${reason ? reason.title : item.reject_reason_code}`);
    }
    return shown.length ? h("ul", { class: "aftersales-facts" }, shown.map((fact) => h("li", {}, fact))) : null;
  };

  // The customer's photos: fetched with the token (an <img> can't send one) and shown as blob: URLs.
  const evidence = (item) => {
    if (!item.evidence.length) return null;
    return h(
      "div",
      { class: "aftersales-evidence" },
      item.evidence.map((file) => {
        const img = h("img", { alt: `凭证 Evidence ${file.side}`, "data-evidence": file.id });
        const link = h("a", { target: "_blank", rel: "noopener" }, img);
        photos.url(file.id).then(
          (url) => {
            img.src = url;
            link.href = url;
          },
          () => img.replaceWith(h("span", { class: "muted" }, "图片无法加载 Photo unavailable")),
        );
        return link;
      }),
    );
  };

  const history = (item) => {
    const entries = h("ol", { class: "aftersales-history" });
    const fold = h(
      "details",
      { class: "aftersales-fold", open: open.has(item.id) },
      h("summary", {}, "记录 History"),
      entries,
    );
    const fill = async () => {
      try {
        const changes = await api.get(`/v1/aftersales/cases/${encodeURIComponent(item.id)}/history`);
        clear(entries).append(
          ...changes.map((c) =>
            h(
              "li",
              {},
              h("span", { class: "muted" }, dateTime(c.at)),
              ` ${c.side} · ${c.action} → ${STATES[c.to_state] || c.to_state}`,
              c.note ? ` — ${c.note}` : "",
            ),
          ),
        );
      } catch (failure) {
        clear(entries).append(h("li", { class: "error" }, failure.message));
      }
    };
    fold.addEventListener("toggle", () => {
      if (fold.open) {
        open.add(item.id);
        fill();
      } else open.delete(item.id);
    });
    if (fold.open) fill();
    return fold;
  };

  // The form of one action under the card's buttons: a confirmation, an amount, a reason and photos, a shipment.
  const showForm = (panel, item, name) => {
    clear(panel);
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "aftersales-form", "data-form": name });
    const note = h("textarea", { name: "note", rows: 2, maxlength: 500 });
    const fields = [];
    if (name === "approve") {
      const amount = item.agreed_fen ?? item.asked_fen;
      fields.push(h("p", { class: "aftersales-confirm" }, `同意并退款 ${yuan(amount)}？ Approve, refund ${yuan(amount)}?`));
    } else if (name === "negotiate") {
      fields.push(
        h(
          "label",
          {},
          "金额 (元) Amount (yuan)",
          h("input", { name: "amount", type: "number", min: "0.01", step: "0.01", required: true }),
        ),
        h(
          "label",
          { class: "inline" },
          h("input", { name: "without_return", type: "checkbox" }),
          "无需退货 No return needed",
        ),
      );
    } else if (name === "reject") {
      const usable = reasons.reject.filter((r) => r.types.includes(item.type));
      fields.push(
        h(
          "label",
          {},
          "理由 Reason",
          h(
            "select",
            { name: "reason_code", required: true },
            usable.map((r) => h("option", { value: r.code }, `${r.title} (${r.code})`)),
          ),
        ),
        h(
          "label",
          {},
          "照片 Photos",
          h("input", { name: "photos", type: "file", accept: "image/jpeg,image/png,image/webp", multiple: true }),
        ),
      );
    } else if (name === "deliver_exchange") {
      fields.push(
        h("label", {}, "快递公司 Carrier", h("input", { name: "carrier", required: true, maxlength: 64 })),
        h("label", {}, "运单号 Tracking no.", h("input", { name: "tracking_no", required: true, maxlength: 64 })),
      );
    } else if (name === "ship_return") {
      fields.push(
        h("label", {}, "取件骑手 Collected by", h("input", { name: "collected_by", required: true, maxlength: 64 })),
      );
    }
    fields.push(h("label", {}, "备注 Note", note));
    const submit = h(
      "button",
      { type: "submit", class: ACTIONS[name].kind || "primary" },
      `确认 Confirm · ${ACTIONS[name].label}`,
    );
    form.append(
      ...fields,
      h("div", { class: "row" }, submit, h("button", { type: "button", onclick: () => closeForm(panel) }, "取消 Cancel")),
      error,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      const data = new FormData(form);
      const body = { note: String(data.get("note") || "") };
      try {
        if (name === "negotiate") {
          body.amount_fen = Math.round(Number(data.get("amount")) * 100);
          body.without_return = data.get("without_return") === "on";
        } else if (name === "reject") {
          body.reason_code = String(data.get("reason_code"));
          const files = data.getAll("photos").filter((f) => f instanceof File && f.size);
          body.evidence_ids = await Promise.all(files.map((file) => upload(session, item.id, file)));
        } else if (name === "deliver_exchange") {
          body.carrier = String(data.get("carrier"));
          body.tracking_no = String(data.get("tracking_no"));
        } else if (name === "ship_return") {
          body.collected_by = String(data.get("collected_by"));
        }
        await act(item, name, body);
      } catch (failure) {
        error.textContent = failure.message;
        submit.disabled = false;
      }
    });
    panel.append(form);
    form.querySelector("input, select, textarea, button[type=submit]")?.focus();
  };

  // The reason tables name the codes; the queue shows without them if they fail.
  api
    .get("/v1/aftersales/reasons")
    .then((table) => {
      reasons = { apply: new Map(table.apply.map((r) => [r.code, r.title])), reject: table.reject };
    })
    .catch(() => {})
    .then(() => load());
  const stream = follow(`/v1/notifications/streams/stores/${encodeURIComponent(store.id)}`, {
    tokens: session,
    onEntry: (entry) => {
      if (entry.type === "aftersales") load();
    },
  });
  // Countdowns tick without reloading anything.
  const ticking = setInterval(() => {
    for (const badge of list.querySelectorAll(".aftersales-deadline[data-deadline]")) tick(badge);
  }, 1000);
  return () => {
    left = true;
    stream.close();
    clearInterval(ticking);
    photos.release();
  };
}

function lineName(line) {
  return line.sku_id === "delivery_fee" ? "配送费 Delivery fee" : line.name || line.sku_id;
}

function deadlineBadge(item) {
  if (!item.deadline_at) return h("span", { class: "aftersales-deadline none" }, "无时限 No deadline");
  const badge = h(
    "span",
    { class: "aftersales-deadline", "data-deadline": item.deadline_at },
    h("span", { class: "aftersales-countdown" }),
    h("span", { class: "aftersales-deadline-name" }, DEADLINES[item.deadline] || item.deadline || ""),
  );
  tick(badge);
  return badge;
}

function tick(badge) {
  const left = new Date(badge.dataset.deadline).getTime() - Date.now();
  badge.classList.toggle("overdue", left < 0);
  badge.classList.toggle("soon", left >= 0 && left < 15 * 60_000);
  const shown = Math.abs(left) >= 3_600_000 ? hours(left) : countdown(badge.dataset.deadline);
  badge.querySelector(".aftersales-countdown").textContent = shown;
}

// "2 h 05" for deadlines hours away (the after-sales ones run for hours or days).
function hours(ms) {
  const sign = ms < 0 ? "-" : "";
  const minutes = Math.floor(Math.abs(ms) / 60_000);
  const days = Math.floor(minutes / 1440);
  const rest = `${Math.floor((minutes % 1440) / 60)} h ${String(minutes % 60).padStart(2, "0")}`;
  return `${sign}${days ? `${days} d ` : ""}${rest}`;
}

// A photo's bytes as the API body (the evidence endpoint takes the image itself, not JSON); answers its id.
async function upload(session, caseId, file) {
  const response = await fetch(`/v1/aftersales/evidence?case_id=${encodeURIComponent(caseId)}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await session.get()}`,
      "content-type": file.type || "application/octet-stream",
      "idempotency-key": requestId(),
    },
    body: file,
  });
  const body = await response.json();
  if (!response.ok) throw new Problem(response.status, body);
  return body.id;
}

// Evidence images by id as blob: URLs, fetched once each with the token and released when the view goes.
class Photos {
  constructor(session) {
    this.session = session;
    this.urls = new Map();
  }

  url(id) {
    if (!this.urls.has(id)) {
      const pending = this.fetch(id);
      pending.catch(() => this.urls.delete(id)); // tried again the next time the case is drawn
      this.urls.set(id, pending);
    }
    return this.urls.get(id);
  }

  async fetch(id) {
    const response = await fetch(`/v1/aftersales/evidence/${encodeURIComponent(id)}`, {
      headers: { authorization: `Bearer ${await this.session.get()}` },
    });
    if (!response.ok) throw new Problem(response.status, { detail: `HTTP ${response.status}` });
    return URL.createObjectURL(await response.blob());
  }

  release() {
    for (const pending of this.urls.values()) pending.then((url) => URL.revokeObjectURL(url), () => {});
    this.urls.clear();
  }
}
