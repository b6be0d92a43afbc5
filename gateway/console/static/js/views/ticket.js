// The kitchen ticket: a printable `.ticket` sheet (css/print.css prints only it, sized for a receipt printer) filled
// with one order, then the browser's print dialog.

import { dateTime, h, stylesheet, yuan } from "../dom.js";
import { modeLabel, pickupNumber } from "./order_labels.js";

stylesheet("css/ticket.css");

export function printTicket(order, storeName = "") {
  document.getElementById("ticket")?.remove();
  const sheet = h(
    "div",
    { id: "ticket", class: "ticket", "aria-hidden": "true" },
    h("div", {}, storeName),
    h("div", { class: "seq" }, `#${pickupNumber(order)}`),
    h("div", {}, `${modeLabel(order.fulfilment_mode)} · ${dateTime(order.paid_at || order.placed_at)}`),
    h("div", {}, order.id),
    h("hr"),
    order.items.map((line) => h("div", {}, `${line.name} × ${line.quantity}`)),
    order.note ? [h("hr"), h("div", {}, `备注 Note: ${order.note}`)] : null,
    h("hr"),
    h("div", {}, `合计 Total ${yuan(order.total_fen)}`),
  );
  document.body.append(sheet);
  window.print();
}
