// 配送 Carriers: the store's bound carrier accounts (secrets are sealed by dispatch and never come back: only a masked
// app key), binding a new one and unbinding.

import { clear, dateTime, h, stylesheet } from "../dom.js";
import { choice, field, formError, onSubmit } from "../form.js";

export function mount(root, { api, store, toast }) {
  stylesheet("css/settings.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const table = h("tbody");
  const formHolder = h("div");
  root.append(
    h("h2", {}, "配送运力 Carrier accounts"),
    h(
      "table",
      { class: "list accounts" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["运力 Carrier", "App key", "门店编号 Shop id", "商户号 Merchant no", "绑定时间 Bound", ""].map((t) =>
            h("th", {}, t),
          ),
        ),
      ),
      table,
    ),
    formHolder,
  );

  async function load() {
    const accounts = await api.get("/v1/carriers/accounts", { store_id: store.id });
    clear(table).append(
      ...accounts.map((a) =>
        h(
          "tr",
          { class: "account", "data-account": a.id, "data-carrier": a.carrier },
          h("td", {}, a.carrier, a.brand ? h("small", { class: "muted" }, ` ${a.brand}`) : null),
          h("td", {}, a.app_key),
          h("td", {}, a.shop_id),
          h("td", {}, a.merchant_no),
          h("td", {}, dateTime(a.bound_at)),
          h("td", {}, h("button", { type: "button", class: "danger", onclick: () => unbind(a) }, "解绑 Unbind")),
        ),
      ),
    );
    if (!accounts.length)
      table.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "未绑定运力 No carrier bound")));
  }

  async function unbind(account) {
    if (!confirm(`解绑 Unbind ${account.carrier} (${account.app_key})?`)) return;
    try {
      await api.delete(`/v1/carriers/accounts/${account.id}`);
      toast("已解绑 Unbound");
      await load();
    } catch (problem) {
      toast(problem.message, "error");
    }
  }

  function bindForm(carriers) {
    const form = h(
      "form",
      { class: "card settings-form", id: "bind-carrier" },
      h("h3", {}, "绑定运力 Bind a carrier account"),
      h(
        "div",
        { class: "row" },
        choice(
          "carrier",
          "运力 Carrier",
          carriers.map((c) => [c.name, `${c.title} ${c.name}`]),
          carriers[0] && carriers[0].name,
        ),
        field("app_key", "App key / dev_id / appid", { required: true, maxlength: 128 }),
        field("app_secret", "App secret", { type: "password", required: true, maxlength: 256, autocomplete: "off" }),
      ),
      h(
        "div",
        { class: "row" },
        field("shop_id", "门店编号 Shop id at the carrier", { maxlength: 128 }),
        field("merchant_no", "商户号 Merchant no (Dada source_id, UU openid)", { maxlength: 128 }),
        field("token", "推送 Token (WeChat)", { type: "password", maxlength: 256, autocomplete: "off" }),
        field("brand", "运力品牌 Fleet (WeChat: DADA, SFTC, SS, MTPS)", { maxlength: 16 }),
        field("encoding_aes_key", "EncodingAESKey (WeChat safe mode)", {
          type: "password",
          maxlength: 43,
          autocomplete: "off",
        }),
      ),
      h("button", { type: "submit", class: "primary" }, "绑定 Bind"),
      formError(),
    );
    return onSubmit(form, async (data) => {
      const body = { store_id: store.id };
      for (const name of ["carrier", "app_key", "app_secret", "shop_id", "merchant_no", "token", "encoding_aes_key"]) {
        body[name] = String(data.get(name) || "");
      }
      if (String(data.get("brand") || "").trim()) body.brand = String(data.get("brand")).trim();
      await api.post("/v1/carriers/accounts", body);
      form.reset();
      toast("已绑定 Bound");
      await load();
    });
  }

  Promise.all([load(), api.get("/v1/carriers")]).then(
    ([, carriers]) => formHolder.append(bindForm(carriers)),
    (problem) => toast(problem.message, "error"),
  );
  return () => {};
}
