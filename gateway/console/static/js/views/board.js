// The order board: the store's orders by status, live from the store's stream.

import { clear, h, time, yuan } from "../dom.js";
import { follow } from "../stream.js";

const COLUMNS = [
  { title: "新订单 New", statuses: ["paid"] },
  { title: "待出餐 Preparing", statuses: ["accepted"] },
  { title: "配送中 Delivering", statuses: ["ready", "shipped"] },
  { title: "已完成 Done", statuses: ["delivered", "completed"] },
];

export function mount(root, { api, session, store }) {
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const board = h("div", { class: "board" });
  root.append(board);
  const orders = new Map();

  const render = () => {
    clear(board);
    for (const column of COLUMNS) {
      const cards = [...orders.values()].filter((o) => column.statuses.includes(o.status));
      board.append(
        h(
          "section",
          { class: "column", "data-statuses": column.statuses.join(" ") },
          h("h2", {}, `${column.title} (${cards.length})`),
          cards.map((o) =>
            h(
              "article",
              { class: "card order", "data-order": o.id, "data-status": o.status },
              h("strong", {}, o.id),
              h("div", { class: "muted" }, `${o.fulfilment_mode} · ${yuan(o.total_fen)} · ${time(o.paid_at)}`),
            ),
          ),
        ),
      );
    }
  };

  const load = async (orderId) => {
    orders.set(orderId, await api.get(`/v1/orders/${orderId}`));
    render();
  };

  api.get("/v1/orders", { store_id: store.id, limit: 100 }).then((page) => {
    for (const order of page.items) orders.set(order.id, order);
    render();
  });
  const stream = follow(`/v1/notifications/streams/stores/${encodeURIComponent(store.id)}`, {
    tokens: session,
    onEntry: (entry) => {
      if (entry.data && entry.data.order_id) load(entry.data.order_id);
    },
  });
  return () => stream.close();
}
