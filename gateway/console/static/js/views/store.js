// 门店 Store settings: opening hours, delivery range, fees and distance tiers, minimum order, prep time, fulfilment
// modes, auto-accept and the acceptance limit, the dispatch trigger and strategy; saved with PATCH /v1/stores/{id},
// the API's refusals shown beside the fields they name.

import { clear, h, stylesheet } from "../dom.js";
import { checkbox, choice, fen, field, formError, number, onSubmit } from "../form.js";

const WEEKDAYS = ["一 Mon", "二 Tue", "三 Wed", "四 Thu", "五 Fri", "六 Sat", "日 Sun"];
const MODES = [
  ["delivery", "配送 Delivery"],
  ["pickup", "自提 Pickup"],
  ["express", "快递 Express"],
];
const TRIGGERS = [
  ["on_ready", "出餐后 When ready"],
  ["on_accept", "接单后 When accepted"],
];
const STRATEGIES = [
  ["cheapest", "最便宜 Cheapest"],
  ["fastest", "最快 Fastest"],
  ["preferred", "按顺序 Preferred order"],
  ["own_fleet_first", "自有骑手优先 Own riders first"],
  ["broadcast", "同时呼叫 Broadcast"],
];

export function mount(root, { api, store, toast }) {
  stylesheet("css/settings.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const holder = h("div");
  root.append(h("h2", {}, "门店设置 Store settings"), holder);
  const url = `/v1/stores/${encodeURIComponent(store.id)}`;

  const show = (settings) => clear(holder).append(settingsForm(settings));

  function settingsForm(s) {
    const hours = h("div", { class: "periods" }, s.opening_hours.map(periodRow));
    const tiers = h("div", { class: "tiers" }, s.delivery_tiers.map(tierRow));
    const strategy = s.dispatch_strategy;
    const form = h(
      "form",
      { class: "settings-form", id: "store-settings" },
      h(
        "fieldset",
        { class: "card", "data-field": "opening_hours" },
        h("legend", {}, "营业时间 Opening hours"),
        h(
          "p",
          { class: "muted" },
          "不填即全天营业 None: always open. 打烊早于开门即跨夜 A close before the open runs past midnight.",
        ),
        hours,
        h(
          "button",
          {
            type: "button",
            onclick: () => hours.append(periodRow({ weekdays: [1, 2, 3, 4, 5, 6, 7], open: "09:00", close: "21:00" })),
          },
          "添加时段 Add a period",
        ),
      ),
      h(
        "fieldset",
        { class: "card" },
        h("legend", {}, "配送范围与费用 Range and fees"),
        s.range_polygon
          ? h(
              "p",
              { class: "muted", "data-field": "range_polygon" },
              `多边形范围 Polygon range (${s.range_polygon.length} points): the radius is not used`,
            )
          : null,
        h(
          "div",
          { class: "row" },
          field("range_radius_m", "配送半径 Radius (m)", {
            type: "number",
            min: 100,
            max: 50000,
            value: s.range_radius_m ?? "",
          }),
          field("min_order_fen", "起送价 Minimum order ¥", {
            name: "min_order",
            inputmode: "decimal",
            value: yuanText(s.min_order_fen),
          }),
          field("delivery_base_fen", "配送费 Delivery fee ¥", {
            name: "delivery_base",
            inputmode: "decimal",
            value: yuanText(s.delivery_base_fen),
          }),
          field("free_delivery_above_fen", "满额免配送费 Free above ¥ (empty: never)", {
            name: "free_delivery_above",
            inputmode: "decimal",
            value: s.free_delivery_above_fen == null ? "" : yuanText(s.free_delivery_above_fen),
          }),
        ),
        h(
          "div",
          { "data-field": "delivery_tiers" },
          h("p", { class: "muted" }, "距离加价 Distance tiers: beyond a distance, add a fee"),
          tiers,
        ),
        h(
          "button",
          { type: "button", onclick: () => tiers.append(tierRow({ above_m: 3000, add_fen: 200 })) },
          "添加阶梯 Add a tier",
        ),
      ),
      h(
        "fieldset",
        { class: "card" },
        h("legend", {}, "接单与出餐 Orders"),
        h(
          "div",
          { class: "row", "data-field": "fulfilment_modes" },
          h("span", {}, "履约方式 Modes"),
          MODES.map(([mode, label]) =>
            h(
              "label",
              { class: "check" },
              h("input", { type: "checkbox", name: "mode", value: mode, checked: s.fulfilment_modes.includes(mode) }),
              label,
            ),
          ),
        ),
        h(
          "div",
          { class: "row" },
          field("prep_minutes", "出餐时间 Prep time (min)", {
            type: "number",
            min: 0,
            max: 600,
            value: s.prep_minutes,
          }),
          checkbox("auto_accept", "自动接单 Accept automatically", s.auto_accept),
          field("accept_limit_minutes", "接单时限 Accept within (min)", {
            type: "number",
            min: 1,
            max: 1440,
            value: s.accept_limit_minutes,
          }),
        ),
      ),
      h(
        "fieldset",
        { class: "card", "data-field": "dispatch_strategy" },
        h("legend", {}, "配送调度 Dispatch"),
        h(
          "div",
          { class: "row" },
          choice("dispatch_trigger", "呼叫骑手 Call a rider", TRIGGERS, s.dispatch_trigger),
          choice("dispatch_strategy.kind", "策略 Strategy", STRATEGIES, strategy.kind),
          field("dispatch_strategy.carriers", "运力顺序 Carriers, in order", {
            value: strategy.carriers.join(", "),
            placeholder: "dada, sf",
          }),
        ),
        h(
          "div",
          { class: "row" },
          field("dispatch_strategy.broadcast_count", "同时呼叫数 Broadcast to", {
            type: "number",
            min: 2,
            max: 8,
            value: strategy.broadcast_count,
          }),
          field("dispatch_strategy.max_tip_fen", "最高小费 Max tip ¥", {
            name: "max_tip",
            inputmode: "decimal",
            value: yuanText(strategy.max_tip_fen),
          }),
          field("dispatch_strategy.escalate_after_minutes", "无人接单加价 Raise the tip after (min)", {
            type: "number",
            min: 1,
            max: 1440,
            value: strategy.escalate_after_minutes,
          }),
        ),
      ),
      h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "保存 Save"), formError()),
    );
    return onSubmit(form, async (data) => {
      const radius = String(data.get("range_radius_m")).trim();
      const freeAbove = String(data.get("free_delivery_above")).trim();
      const change = {
        opening_hours: [...hours.querySelectorAll(".period")].map(periodValue),
        min_order_fen: fen(data.get("min_order")),
        delivery_base_fen: fen(data.get("delivery_base")),
        delivery_tiers: [...tiers.querySelectorAll(".tier")].map(tierValue),
        free_delivery_above_fen: freeAbove === "" ? null : fen(freeAbove),
        prep_minutes: number(data.get("prep_minutes")),
        fulfilment_modes: data.getAll("mode"),
        auto_accept: data.get("auto_accept") !== null,
        accept_limit_minutes: number(data.get("accept_limit_minutes")),
        dispatch_trigger: data.get("dispatch_trigger"),
        dispatch_strategy: {
          kind: data.get("dispatch_strategy.kind"),
          carriers: String(data.get("dispatch_strategy.carriers"))
            .split(/[\s,，]+/)
            .filter(Boolean),
          broadcast_count: number(data.get("dispatch_strategy.broadcast_count")),
          max_tip_fen: fen(data.get("max_tip")),
          escalate_after_minutes: number(data.get("dispatch_strategy.escalate_after_minutes")),
        },
      };
      // A polygon store keeps its polygon; a radius store may not clear its only range.
      if (!s.range_polygon || radius !== "") change.range_radius_m = number(radius);
      show(await api.patch(url, change));
      toast("已保存 Store settings saved");
    });
  }

  api.get(url).then(show, (problem) => toast(problem.message, "error"));
  return () => {};
}

function yuanText(value) {
  return (value / 100).toFixed(2);
}

function periodRow(period) {
  return h(
    "div",
    { class: "row period" },
    WEEKDAYS.map((label, index) =>
      h(
        "label",
        { class: "check day" },
        h("input", { type: "checkbox", value: index + 1, checked: period.weekdays.includes(index + 1) }),
        label,
      ),
    ),
    h(
      "label",
      { class: "field" },
      "开门 Open",
      h("input", { type: "time", class: "open", value: period.open, required: true }),
    ),
    h(
      "label",
      { class: "field" },
      "打烊 Close",
      h("input", { type: "time", class: "close", value: period.close, required: true }),
    ),
    h(
      "button",
      { type: "button", class: "quiet", onclick: (event) => event.target.closest(".period").remove() },
      "移除 Remove",
    ),
  );
}

function periodValue(row) {
  return {
    weekdays: [...row.querySelectorAll(".day input:checked")].map((box) => Number(box.value)),
    open: row.querySelector("input.open").value,
    close: row.querySelector("input.close").value,
  };
}

function tierRow(tier) {
  return h(
    "div",
    { class: "row tier" },
    h(
      "label",
      { class: "field" },
      "超过 Beyond (m)",
      h("input", { type: "number", class: "above", min: 0, value: tier.above_m, required: true }),
    ),
    h(
      "label",
      { class: "field" },
      "加收 Add ¥",
      h("input", { class: "add", inputmode: "decimal", value: yuanText(tier.add_fen), required: true }),
    ),
    h(
      "button",
      { type: "button", class: "quiet", onclick: (event) => event.target.closest(".tier").remove() },
      "移除 Remove",
    ),
  );
}

function tierValue(row) {
  return {
    above_m: number(row.querySelector("input.above").value),
    add_fen: fen(row.querySelector("input.add").value),
  };
}
