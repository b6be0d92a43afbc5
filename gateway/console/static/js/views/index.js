// The console's screens, in the order of the navigation bar. Each module exports
// `mount(root, ctx) -> unmount` (ctx: api, session, claims, store, stores, toast, navigate).

export const VIEWS = [
  { path: "board", title: "订单 Orders", load: () => import("./board.js") },
  { path: "counter", title: "核销 Counter", load: () => import("./counter.js") },
  { path: "aftersales", title: "售后 After-sales", load: () => import("./aftersales.js") },
];
