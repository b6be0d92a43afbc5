// What staff can do to an order, by its status, as buttons for the board's cards and the order view: accept, reject
// with a reason, ready, cancel with a reason, print the kitchen ticket. Each goes through the public order API; the
// order it answers is handed to `onChanged`, and a refusal (a problem document) is shown as it reads.

import { h } from "../dom.js";
import { printTicket } from "./ticket.js";

// The statuses the merchant may still cancel from (the order service's `merchant_cancel` sources).
const CANCELLABLE = new Set(["accepted", "ready", "ready_for_pickup", "dispatching"]);
const PRINTABLE = new Set(["paid", "accepted", "ready", "ready_for_pickup", "dispatching", "in_delivery"]);

const REJECT_REASONS = ["商品售罄 Sold out", "店铺太忙 Too busy", "暂停营业 Closing", "地址太远 Too far"];
const CANCEL_REASONS = ["商品售罄 Sold out", "无法出餐 Can't prepare", "顾客要求 Customer asked"];

// ctx: { api, toast, store }; onChanged(order) after a successful action. reopen: { name, value, focused }, a reason
// form that was open on the card this one replaces: opened again, as it was, if this order still offers it.
export function orderActions(order, { api, toast, store }, onChanged, reopen = null) {
  const bar = h("div", { class: "actions" });
  const act = async (button, path, body) => {
    button.disabled = true;
    try {
      onChanged(await api.post(`/v1/orders/${encodeURIComponent(order.id)}/${path}`, body));
    } catch (problem) {
      toast(problem.message, "error");
      button.disabled = false;
    }
  };
  const button = (label, name, kind, onclick) =>
    h("button", { type: "button", class: kind, "data-action": name, onclick: (e) => onclick(e.currentTarget) }, label);
  const asks = new Map(); // action name -> (typed, focus) => opens its reason form
  const ask = (name, title, reasons, path) => {
    const opener = (typed = "", focus = true) => {
      bar.replaceChildren(
        reasonForm(name, title, reasons, {
          submit: (reason, submitButton) => act(submitButton, path, { reason }),
          back: () => bar.replaceChildren(...buttons()),
        }),
      );
      const input = bar.querySelector("input");
      input.value = typed;
      // Reopened while the board is rebuilt, the bar is attached only once the render is done.
      if (focus) queueMicrotask(() => input.focus());
    };
    asks.set(name, opener);
    return () => opener();
  };
  const buttons = () => {
    const list = [];
    if (order.status === "paid") {
      list.push(button("接单 Accept", "accept", "primary", (b) => act(b, "accept")));
      list.push(button("拒单 Reject", "reject", "danger", ask("reject", "拒单原因 Reason", REJECT_REASONS, "reject")));
    }
    if (order.status === "accepted") list.push(button("出餐 Ready", "ready", "primary", (b) => act(b, "ready")));
    if (CANCELLABLE.has(order.status)) {
      list.push(button("取消 Cancel", "cancel", "danger", ask("cancel", "取消原因 Reason", CANCEL_REASONS, "cancel")));
    }
    if (PRINTABLE.has(order.status)) {
      list.push(button("打印 Print", "print", "", () => printTicket(order, store ? store.name : "")));
    }
    return list;
  };
  bar.append(...buttons());
  if (reopen && asks.has(reopen.name)) asks.get(reopen.name)(reopen.value, reopen.focused);
  return bar;
}

function reasonForm(name, title, reasons, { submit, back }) {
  const input = h("input", { name: "reason", required: true, maxlength: 200, "aria-label": title });
  const form = h(
    "form",
    { class: "reason-form", "data-form": name },
    h("strong", {}, title),
    h(
      "div",
      { class: "reasons" },
      reasons.map((reason) =>
        h("button", { type: "button", class: "chip", onclick: () => (input.value = reason) }, reason),
      ),
    ),
    input,
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", class: "danger" }, "确认 Confirm"),
      h("button", { type: "button", class: "quiet", onclick: back }, "返回 Back"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(input.value.trim(), form.querySelector("button[type=submit]"));
  });
  return form;
}
