// How an order's status, mode and number read on screen and on paper (Chinese and English side by side).

export const STATUS_LABELS = {
  pending_payment: "待支付 Unpaid",
  paid: "新订单 New",
  accepted: "待出餐 Preparing",
  ready: "待配送 Ready",
  ready_for_pickup: "待取餐 Awaiting pickup",
  dispatching: "配送中 Dispatching",
  in_delivery: "配送中 In delivery",
  delivered: "已送达 Delivered",
  shipped: "已发货 Shipped",
  completed: "已完成 Completed",
  cancelled: "已取消 Cancelled",
  refunding: "退款中 Refunding",
  refunded: "已退款 Refunded",
  partially_refunded: "部分退款 Partly refunded",
};

const MODE_LABELS = { delivery: "外送 Delivery", pickup: "自提 Pickup", express: "快递 Express" };

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

export function modeLabel(mode) {
  return MODE_LABELS[mode] || mode;
}

// The number a counter calls out, as the customer's notices give it: the order number's last four characters.
export function pickupNumber(order) {
  return order.id.slice(-4).toUpperCase();
}
