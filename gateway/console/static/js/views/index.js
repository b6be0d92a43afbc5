// The console's screens, in the order of the navigation bar. Each module exports
// `mount(root, ctx) -> unmount` (ctx: api, session, claims, store, stores, toast, navigate, route); a view with
// `allowed({api, claims}) -> Promise<boolean>` shows only to accounts it answers true for.

export const VIEWS = [
  { path: "board", title: "看板 Board", load: () => import("./board.js") },
  { path: "orders", title: "订单 Orders", load: () => import("./orders.js") },
  { path: "counter", title: "核销 Counter", load: () => import("./counter.js") },
  { path: "aftersales", title: "售后 After-sales", load: () => import("./aftersales.js") },
  { path: "catalogue", title: "商品 Catalogue", load: () => import("./catalogue.js") },
  { path: "store", title: "门店 Store", load: () => import("./store.js") },
  { path: "carriers", title: "配送 Carriers", load: () => import("./carriers.js") },
  {
    path: "staff",
    title: "员工 Staff",
    load: () => import("./staff.js"),
    allowed: (ctx) => import("./staff.js").then((m) => m.allowed(ctx)),
  },
  { path: "notifications", title: "通知 Notifications", load: () => import("./notifications.js") },
  { path: "reviews", title: "评价 Reviews", load: () => import("./reviews.js") },
];
