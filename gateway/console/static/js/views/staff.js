// 员工 Staff (a merchant's admin, or ops): the accounts, inviting someone (the one-time token to hand over is shown
// once), scoping an account to stores, disabling and enabling it, resetting its password (another one-time token).

import { clear, dateTime, h, stylesheet } from "../dom.js";
import { choice, field, formError, onSubmit } from "../form.js";

const ROLES = [
  ["merchant", "店员 Store staff"],
  ["rider", "骑手 Rider"],
];
const ROLE_LABELS = { ...Object.fromEntries(ROLES), ops: "运营 Ops" };

// Only a merchant's admin and ops manage staff: the tab shows when the API lets this account list them.
export function allowed({ api }) {
  return api.get("/v1/staff").then(
    () => true,
    () => false,
  );
}

export function mount(root, { api, claims, stores, toast }) {
  stylesheet("css/settings.css");
  const handover = h("div", { class: "handover-holder" });
  const table = h("tbody");
  root.append(
    h("h2", {}, "员工 Staff"),
    inviteForm(),
    handover,
    h(
      "table",
      { class: "list staff" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["账号 Login", "姓名 Name", "角色 Role", "门店 Stores", "状态 State", ""].map((t) => h("th", {}, t)),
        ),
      ),
      table,
    ),
  );

  async function load() {
    const accounts = await api.get("/v1/staff");
    clear(table).append(...accounts.map(accountRow));
  }

  function storeBoxes(name, chosen) {
    return h(
      "div",
      { class: "row stores", "data-field": "store_ids" },
      h("span", { class: "muted" }, "门店 Stores (none: all)"),
      stores.map((s) =>
        h(
          "label",
          { class: "check" },
          h("input", { type: "checkbox", name, value: s.id, checked: chosen.includes(s.id) }),
          s.name || s.id,
        ),
      ),
    );
  }

  function inviteForm() {
    const form = h(
      "form",
      { class: "card settings-form", id: "invite-staff" },
      h("h3", {}, "邀请员工 Invite"),
      h(
        "div",
        { class: "row" },
        field("login", "账号 Login", { required: true, autocomplete: "off", maxlength: 254 }),
        field("display_name", "姓名 Name", { required: true, maxlength: 100 }),
        choice("role", "角色 Role", ROLES, "merchant"),
        claims.role === "ops" ? field("merchant_id", "商户 Merchant id", { required: true, maxlength: 64 }) : null,
      ),
      storeBoxes("store_ids", []),
      h("button", { type: "submit", class: "primary" }, "邀请 Invite"),
      formError(),
    );
    return onSubmit(form, async (data) => {
      const body = {
        login: data.get("login"),
        display_name: data.get("display_name"),
        role: data.get("role"),
        store_ids: data.getAll("store_ids"),
      };
      if (data.get("merchant_id")) body.merchant_id = data.get("merchant_id");
      const invitation = await api.post("/v1/staff", body);
      form.reset();
      showToken("邀请 Invitation", invitation);
      await load();
    });
  }

  // The one-time token, shown here once: the API keeps only its hash.
  function showToken(title, invitation) {
    clear(handover).append(
      h(
        "div",
        { class: "card handover", role: "status" },
        h("strong", {}, `${title}: ${invitation.account.login}`),
        h(
          "p",
          {},
          "把此口令交给本人, 用于设置密码 (只显示一次) Hand this one-time token to the person to set a password (shown once):",
        ),
        h("code", { class: "token" }, invitation.token),
        h("p", { class: "muted" }, `有效期至 Valid until ${dateTime(invitation.expires_at)} · POST /v1/auth/password`),
        h("button", { type: "button", class: "quiet", onclick: () => clear(handover) }, "已交付 Done"),
      ),
    );
  }

  function accountRow(account) {
    const managed = !account.admin && account.role !== "ops";
    const scope = h(
      "form",
      { class: "scope" },
      storeBoxes(`scope-${account.id}`, account.store_ids),
      h("button", { type: "submit" }, "保存门店 Save stores"),
      formError(),
    );
    onSubmit(scope, async (data) => {
      await api.put(`/v1/staff/${account.id}/stores`, { store_ids: data.getAll(`scope-${account.id}`) });
      toast("已保存 Stores saved");
      await load();
    });
    return h(
      "tr",
      {
        class: "account",
        "data-account": account.id,
        "data-login": account.login,
        "data-disabled": String(account.disabled),
      },
      h("td", {}, account.login),
      h("td", {}, account.display_name),
      h("td", {}, account.admin ? "管理员 Admin" : ROLE_LABELS[account.role] || account.role),
      h("td", {}, managed ? scope : account.store_ids.join(", ") || "全部 All"),
      h(
        "td",
        { class: "state" },
        account.disabled ? "已停用 Disabled" : account.has_password ? "正常 Active" : "待设密码 Invited",
      ),
      h(
        "td",
        { class: "actions" },
        managed
          ? [
              account.disabled
                ? h("button", { type: "button", class: "enable", onclick: () => act(account, "enable") }, "启用 Enable")
                : h(
                    "button",
                    { type: "button", class: "danger disable", onclick: () => act(account, "disable") },
                    "停用 Disable",
                  ),
              h("button", { type: "button", class: "reset", onclick: () => reset(account) }, "重置密码 Reset password"),
            ]
          : null,
      ),
    );
  }

  async function act(account, verb) {
    try {
      await api.post(`/v1/staff/${account.id}/${verb}`);
      toast(verb === "disable" ? "已停用 Disabled: signed out everywhere" : "已启用 Enabled");
      await load();
    } catch (problem) {
      toast(problem.message, "error");
    }
  }

  async function reset(account) {
    if (!confirm(`重置 Reset the password of ${account.login}? Their sign-ins end now.`)) return;
    try {
      showToken("重置密码 Password reset", await api.post(`/v1/staff/${account.id}/password-reset`));
      await load();
    } catch (problem) {
      toast(problem.message, "error");
    }
  }

  load().catch((problem) => toast(problem.message, "error"));
  return () => {};
}
