// 通知 Notifications (the merchant's admin, or ops): how each notice reaches customers (subscribe-message template,
// SMS fallback), the record of notices sent (numbers masked by the API), and the merchant's webhooks: endpoints,
// their signing secret (shown on demand, rotated), pause and resume, deliveries with every attempt, and replay.
// The notice kinds, the facts a template may name and the webhook event types are the API's own enums, read from
// its OpenAPI document, so this screen never lists one the API would refuse.

import { clear, dateTime, h, stylesheet } from "../dom.js";
import { checkbox, field, formError, onSubmit } from "../form.js";

const SECTIONS = [
  ["templates", "模板 Templates"],
  ["notices", "发送记录 Notices sent"],
  ["webhooks", "Webhooks"],
];
const NOTICE_LABELS = {
  paid: "已支付 Paid",
  accepted: "已接单 Accepted",
  rejected: "已拒单 Rejected",
  ready_for_pickup: "待取餐 Ready for pickup",
  refunded: "已退款 Refunded",
  rider_accepted: "骑手接单 Rider assigned",
  delivering: "配送中 Delivering",
  delivered: "已送达 Delivered",
  delivery_problem: "配送异常 Delivery problem",
  aftersales_decision: "售后结果 After-sales decision",
};

export function mount(root, ctx) {
  stylesheet("css/settings.css");
  const section = SECTIONS.some(([path]) => path === ctx.route[0]) ? ctx.route[0] : SECTIONS[0][0];
  const body = h("div", { class: "section", "data-section": section });
  root.append(
    h("h2", {}, "通知 Notifications"),
    h(
      "nav",
      { class: "subtabs" },
      SECTIONS.map(([path, title]) =>
        h("a", { href: `#/notifications/${path}`, class: path === section ? "active" : null }, title),
      ),
    ),
    body,
  );
  const show = { templates, notices, webhooks }[section];
  show(body, ctx).catch((problem) => ctx.toast(problem.message, "error"));
  return () => {};
}

// The API's enums, from the gateway's merged OpenAPI document.
async function enums(api) {
  const schemas = (await api.get("/openapi.json")).components.schemas;
  return {
    notices: schemas.NoticeKind.enum,
    facts: schemas.TemplateUpdate.properties.fields.additionalProperties.enum,
    eventTypes: schemas.WebhookCreate.properties.event_types.items.enum,
  };
}

// --- templates -------------------------------------------------------------------------------------------------

async function templates(root, { api, toast }) {
  const [known, saved] = await Promise.all([enums(api), api.get("/v1/notifications/templates")]);
  const byNotice = new Map(saved.map((t) => [t.notice, t]));
  root.append(
    h("p", { class: "muted" }, `字段 Facts a keyword may show: ${known.facts.join(", ")}`),
    ...known.notices.map((notice) => templateForm(notice, byNotice.get(notice))),
  );

  function templateForm(notice, template) {
    const t = template || {
      template_id: null,
      fields: {},
      page: null,
      sms_fallback: false,
      sms_template_id: null,
      sms_params: [],
    };
    const form = h(
      "form",
      { class: "card settings-form template", "data-notice": notice },
      h("h3", {}, NOTICE_LABELS[notice] || notice, h("small", { class: "muted" }, ` ${notice}`)),
      h(
        "div",
        { class: "row" },
        field("template_id", "订阅消息模板 Template id", { value: t.template_id || "", maxlength: 64 }),
        field("fields", "关键词 Keywords (thing2=store_name, …)", {
          value: Object.entries(t.fields)
            .map(([k, v]) => `${k}=${v}`)
            .join(", "),
          class: "wide",
        }),
        field("page", "跳转页面 Page", { value: t.page || "", placeholder: "pages/order/detail", maxlength: 200 }),
      ),
      h(
        "div",
        { class: "row" },
        checkbox("sms_fallback", "无订阅时发短信 SMS when no grant is left", t.sms_fallback),
        field("sms_template_id", "短信模板 SMS template id", { value: t.sms_template_id || "", maxlength: 32 }),
        field("sms_params", "短信参数 SMS params (status, order_no, …)", { value: t.sms_params.join(", ") }),
      ),
      h("button", { type: "submit", class: "primary" }, "保存 Save"),
      t.updated_at ? h("span", { class: "muted" }, ` ${dateTime(t.updated_at)} · ${t.updated_by}`) : null,
      formError(),
    );
    return onSubmit(form, async (data) => {
      const pairs = String(data.get("fields"))
        .split(/[,，\s]+/)
        .filter(Boolean);
      const body = {
        template_id: String(data.get("template_id")).trim() || null,
        fields: Object.fromEntries(pairs.map((pair) => pair.split("=").map((part) => part.trim()))),
        page: String(data.get("page")).trim() || null,
        sms_fallback: data.get("sms_fallback") !== null,
        sms_template_id: String(data.get("sms_template_id")).trim() || null,
        sms_params: String(data.get("sms_params"))
          .split(/[,，\s]+/)
          .filter(Boolean),
      };
      await api.put(`/v1/notifications/templates/${notice}`, body);
      toast(`已保存 Saved: ${NOTICE_LABELS[notice] || notice}`);
    });
  }
}

// --- the notices sent ------------------------------------------------------------------------------------------

async function notices(root, { api }) {
  const rows = h("tbody");
  const filter = h(
    "form",
    { class: "row filter" },
    field("order_id", "订单 Order id", { maxlength: 64 }),
    field("status", "状态 Status", { maxlength: 16, placeholder: "sent, failed, …" }),
    h("button", { type: "submit" }, "查询 Search"),
    formError(),
  );
  root.append(
    filter,
    h(
      "table",
      { class: "list notices" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["时间 Created", "订单 Order", "通知 Notice", "状态 Status", "渠道 Channel", "尝试 Attempts"].map((t) =>
            h("th", {}, t),
          ),
        ),
      ),
      rows,
    ),
  );
  const load = async (query = {}) => {
    const found = await api.get("/v1/notifications/notices", { ...query, limit: 100 });
    clear(rows).append(
      ...found.map((n) =>
        h(
          "tr",
          { class: "notice", "data-notice": n.id },
          h("td", {}, dateTime(n.created_at)),
          h("td", {}, n.order_id),
          h("td", {}, NOTICE_LABELS[n.kind] || n.kind),
          h("td", {}, n.status, n.detail ? h("div", { class: "muted" }, n.detail) : null),
          h("td", {}, n.channel || ""),
          h(
            "td",
            {},
            n.attempts.map((a) =>
              h(
                "div",
                { class: "attempt" },
                `${dateTime(a.at)} ${a.channel} ${a.result}`,
                a.recipient ? ` → ${a.recipient}` : "",
                a.error ? h("span", { class: "error" }, ` ${a.error_code || ""} ${a.error}`) : null,
              ),
            ),
          ),
        ),
      ),
    );
    if (!found.length) rows.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "暂无 None")));
  };
  onSubmit(filter, (data) => load({ order_id: data.get("order_id"), status: data.get("status") }));
  await load();
}

// --- webhooks --------------------------------------------------------------------------------------------------

async function webhooks(root, { api, toast }) {
  const known = await enums(api);
  const list = h("div", { class: "webhooks" });
  root.append(addForm(), list);

  async function load() {
    const endpoints = await api.get("/v1/webhooks");
    clear(list).append(...endpoints.map(endpointCard));
    if (!endpoints.length) list.append(h("p", { class: "muted" }, "暂无 Webhook No endpoint yet"));
  }

  function eventBoxes(name, chosen) {
    return h(
      "div",
      { class: "row events", "data-field": "event_types" },
      h("span", { class: "muted" }, "事件 Events (none: all)"),
      known.eventTypes.map((type) =>
        h(
          "label",
          { class: "check" },
          h("input", { type: "checkbox", name, value: type, checked: chosen.includes(type) }),
          type,
        ),
      ),
    );
  }

  function addForm() {
    const form = h(
      "form",
      { class: "card settings-form", id: "new-webhook" },
      h("h3", {}, "添加 Webhook Add an endpoint"),
      h(
        "div",
        { class: "row" },
        field("url", "地址 URL (https, public)", {
          type: "url",
          required: true,
          class: "wide",
          placeholder: "https://pos.example.com/songda",
        }),
        field("description", "说明 Description", { maxlength: 200 }),
      ),
      eventBoxes("event_types", []),
      h("button", { type: "submit", class: "primary" }, "添加 Add"),
      formError(),
    );
    return onSubmit(form, async (data) => {
      const created = await api.post("/v1/webhooks", {
        url: String(data.get("url")).trim(),
        description: data.get("description"),
        event_types: data.getAll("event_types"),
      });
      form.reset();
      toast("已添加 Endpoint added");
      await load();
      const card = list.querySelector(`[data-webhook="${created.id}"]`);
      if (card) card.querySelector(".secret").textContent = created.secret;
    });
  }

  function endpointCard(endpoint) {
    const secret = h("code", { class: "secret" }, "••••••••");
    const deliveries = h("div", { class: "deliveries" });
    const since = h("input", { type: "datetime-local", name: "since", "aria-label": "自 Since" });
    return h(
      "article",
      { class: "card webhook", "data-webhook": endpoint.id, "data-enabled": String(endpoint.enabled) },
      h(
        "header",
        { class: "row" },
        h("strong", { class: "url" }, endpoint.url),
        h(
          "span",
          { class: endpoint.enabled ? "badge on" : "badge off" },
          endpoint.enabled ? "启用 Active" : "暂停 Paused",
        ),
        endpoint.disabled_reason ? h("span", { class: "muted" }, endpoint.disabled_reason) : null,
        endpoint.failing_since
          ? h("span", { class: "error" }, `失败自 Failing since ${dateTime(endpoint.failing_since)}`)
          : null,
      ),
      endpoint.description ? h("p", { class: "muted" }, endpoint.description) : null,
      h("p", { class: "muted" }, endpoint.event_types.length ? endpoint.event_types.join(", ") : "全部事件 All events"),
      h(
        "div",
        { class: "row" },
        h("span", {}, "密钥 Secret"),
        secret,
        h(
          "button",
          {
            type: "button",
            class: "show-secret",
            onclick: () =>
              act(async () => (secret.textContent = (await api.get(`/v1/webhooks/${endpoint.id}/secret`)).secret)),
          },
          "显示 Show",
        ),
        h(
          "button",
          {
            type: "button",
            class: "rotate",
            onclick: () =>
              confirm("轮换密钥 Rotate the secret? The old one keeps signing beside it for the overlap.") &&
              act(async () => {
                const rotated = await api.post(`/v1/webhooks/${endpoint.id}/secret/rotate`);
                secret.textContent = rotated.secret;
                toast(`已轮换 Rotated; the old secret signs until ${dateTime(rotated.previous_valid_until)}`);
              }),
          },
          "轮换 Rotate",
        ),
      ),
      h(
        "div",
        { class: "row" },
        h(
          "button",
          {
            type: "button",
            class: endpoint.enabled ? "pause" : "resume primary",
            onclick: () =>
              act(async () => (await api.patch(`/v1/webhooks/${endpoint.id}`, { enabled: !endpoint.enabled }), load())),
          },
          endpoint.enabled ? "暂停 Pause" : "恢复 Resume",
        ),
        h(
          "button",
          { type: "button", class: "show-deliveries", onclick: () => act(() => showDeliveries(endpoint, deliveries)) },
          "投递记录 Deliveries",
        ),
        since,
        h(
          "button",
          {
            type: "button",
            class: "replay",
            onclick: () =>
              act(async () => {
                if (!since.value) throw new Error("选择时间 Choose a time to replay from");
                const answer = await api.post(
                  `/v1/webhooks/${endpoint.id}/replay?since=${encodeURIComponent(new Date(since.value).toISOString())}`,
                );
                toast(`已重发 Replayed ${answer.replayed}`);
                await showDeliveries(endpoint, deliveries);
              }),
          },
          "重发 Replay since",
        ),
        h(
          "button",
          {
            type: "button",
            class: "danger delete",
            onclick: () =>
              confirm(`删除 Delete ${endpoint.url} and its history?`) &&
              act(async () => (await api.delete(`/v1/webhooks/${endpoint.id}`), load())),
          },
          "删除 Delete",
        ),
      ),
      deliveries,
    );
  }

  async function showDeliveries(endpoint, holder) {
    const page = await api.get(`/v1/webhooks/${endpoint.id}/deliveries`, { limit: 50 });
    clear(holder).append(
      h(
        "table",
        { class: "list" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["时间 Created", "事件 Event", "状态 Status", "尝试 Attempts", ""].map((t) => h("th", {}, t)),
          ),
        ),
        h(
          "tbody",
          {},
          page.items.map((d) =>
            h(
              "tr",
              { class: "delivery", "data-delivery": d.id },
              h("td", {}, dateTime(d.created_at)),
              h("td", {}, d.event_type, h("div", { class: "muted" }, d.message_id)),
              h(
                "td",
                {},
                d.status,
                d.last_status_code ? ` (${d.last_status_code})` : "",
                d.last_error ? h("div", { class: "error" }, d.last_error) : null,
              ),
              h(
                "td",
                {},
                d.history.map((a) =>
                  h("div", {}, `#${a.attempt} ${dateTime(a.at)} ${a.status_code ?? a.error ?? ""} ${a.duration_ms} ms`),
                ),
              ),
              h(
                "td",
                {},
                h(
                  "button",
                  {
                    type: "button",
                    onclick: () =>
                      act(async () => {
                        await api.post(`/v1/webhooks/${endpoint.id}/deliveries/${d.id}/retry`);
                        toast("已重发 Sent again");
                        await showDeliveries(endpoint, holder);
                      }),
                  },
                  "重发 Retry",
                ),
              ),
            ),
          ),
        ),
      ),
    );
    if (!page.items.length) holder.append(h("p", { class: "muted" }, "暂无投递 No delivery yet"));
  }

  async function act(call) {
    try {
      await call();
    } catch (problem) {
      toast(problem.message, "error");
    }
  }

  await load();
}
