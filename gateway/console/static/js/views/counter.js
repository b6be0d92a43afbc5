// The counter (核销): one big field a USB scanner types a QR's text into (then Enter), or staff type a code into.
// Enter redeems it at the current store; the answer shows in large type and colour, the field is emptied and
// focused again for the next scan, and the last answers stay listed below.

import { Problem, requestId } from "../api.js";
import { clear, dateTime, h, stylesheet, time } from "../dom.js";

const HISTORY = 12;
const DEVICE_KEY = "songda.console.device";

export function mount(root, { api, claims, store, stores }) {
  stylesheet("css/counter.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const field = h("input", {
    id: "counter-input",
    class: "counter-input",
    autocomplete: "off",
    autocapitalize: "off",
    spellcheck: "false",
    enterkeyhint: "go",
    placeholder: "扫码或输入券码 Scan or type a code",
    "aria-label": "券码 Code",
  });
  const form = h(
    "form",
    { class: "counter-form", id: "counter-form" },
    field,
    h("button", { type: "submit", class: "primary counter-go" }, "核销 Redeem"),
  );
  const answer = h("section", { id: "counter-answer", class: "counter-answer idle", "aria-live": "assertive" });
  answer.append(h("p", { class: "counter-headline" }, "请扫码 Ready to scan"));
  const history = h("ol", { id: "counter-history", class: "counter-history" });
  root.append(
    h("h1", { class: "counter-title" }, `核销 Counter · ${store.name || store.id}`),
    form,
    answer,
    h("h2", { class: "counter-subtitle" }, "最近 Recent"),
    history,
  );

  const people = staffNames(api, claims);
  // Scans are redeemed one after another, in the order they were made, whatever the network does.
  let queue = Promise.resolve();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = field.value.trim();
    field.value = "";
    field.focus();
    if (!text) return;
    queue = queue.then(async () => {
      const shown = describe(await redeem(api, store.id, text), { stores, people: await people }, masked(text));
      show(answer, shown);
      history.prepend(historyItem(shown));
      while (history.children.length > HISTORY) history.lastChild.remove();
      field.focus();
    });
  });
  // A tap anywhere outside a control brings the scanner's keystrokes back to the field.
  const refocus = (event) => {
    if (!event.target.closest("input, select, textarea, button, a")) field.focus();
  };
  document.addEventListener("pointerup", refocus);
  field.focus();
  return () => document.removeEventListener("pointerup", refocus);
}

// A numeric code (grouped with spaces or dashes) goes as `code`, anything else (a QR's text) as `qr_token`. One
// request_no per scan: a retry after a dropped connection gets the first answer instead of redeeming twice.
async function redeem(api, storeId, text) {
  const body = { store_id: storeId, request_no: requestId(), device_id: deviceId() };
  if (/^[\d\s-]+$/.test(text)) body.code = text.replace(/[\s-]/g, "");
  else body.qr_token = text;
  for (let attempt = 0; ; attempt++) {
    try {
      return { redemption: await api.post("/v1/redemptions", body) };
    } catch (failure) {
      if (failure instanceof Problem) return { problem: failure };
      if (attempt >= 2) return { offline: failure };
    }
  }
}

// What the screen keeps of the code presented: its last digits, never the whole code or a QR's token.
function masked(text) {
  const digits = text.replace(/[\s-]/g, "");
  return /^\d+$/.test(digits) ? `•••• ${digits.slice(-4)}` : "二维码 QR";
}

// This tablet's id for the redemption service's per-device lockouts and audit log.
function deviceId() {
  let id = localStorage.getItem(DEVICE_KEY);
  if (!id) {
    id = `console-${requestId().slice(0, 12)}`;
    localStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

// Who redeemed, as the ledger names them (`<role>:<account id>`) -> "display name (login)": the accounts a merchant's
// admin manages. Other staff can't list accounts; they see the ledger's name, or "you" for their own.
async function staffNames(api, claims) {
  const names = new Map();
  try {
    for (const account of await api.get("/v1/staff")) {
      names.set(`${account.role}:${account.id}`, `${account.display_name || account.login} (${account.login})`);
    }
  } catch {
    // not an admin: the ledger's names stand
  }
  names.set(`${claims.role}:${claims.sub}`, "本账号 you");
  return names;
}

function storeName(stores, id) {
  const known = stores.find((s) => s.id === id);
  return known && known.name ? `${known.name} (${id})` : id;
}

// The answer as the screen says it: an outcome (its colour), a headline and the facts under it.
function describe({ redemption, problem, offline }, { stores, people }, presented) {
  if (redemption) {
    const facts = [what(redemption)];
    if (redemption.order_id) facts.push(`订单 Order ${redemption.order_id}`);
    facts.push(`剩余 ${redemption.uses_left} 次 · ${redemption.uses_left} use(s) left`);
    facts.push(`${time(redemption.redeemed_at)} · ${people.get(redemption.redeemed_by) || redemption.redeemed_by}`);
    return { outcome: "redeemed", code: "redeemed", headline: "已核销 Redeemed", facts, presented };
  }
  if (offline) {
    return {
      outcome: "refused",
      code: "offline",
      headline: "网络错误 No connection",
      facts: ["请重扫 Scan again when the network is back"],
      presented,
    };
  }
  const body = problem.body;
  const said = {
    "already-redeemed": () => ({
      outcome: "used",
      headline: "已使用 Already used",
      facts: body.redeemed_at
        ? [
            `时间 When: ${dateTime(body.redeemed_at)}`,
            `门店 Where: ${storeName(stores, body.redeemed_at_store)}`,
            `核销人 By: ${[people.get(body.redeemed_by) || body.redeemed_by, body.device_id].filter(Boolean).join(" · ")}`,
          ]
        : [problem.message],
    }),
    "not-enough-uses": () => ({
      outcome: "used",
      headline: "次数不足 Not enough uses",
      facts: [`剩余 ${body.uses_left} 次 · ${body.uses_left} use(s) left`],
    }),
    "code-expired": () => ({
      outcome: "refused",
      headline: "已过期 Expired",
      facts: [`有效期至 Valid until ${dateTime(body.valid_until)}`],
    }),
    "code-not-yet-valid": () => ({
      outcome: "refused",
      headline: "未到使用时间 Not valid yet",
      facts: [`生效时间 Valid from ${dateTime(body.valid_from)}`],
    }),
    "wrong-store": () => ({
      outcome: "refused",
      headline: "非本店券码 Wrong store",
      facts: [`此码属于 This code is for ${storeName(stores, body.code_store_id)}`],
    }),
    "code-frozen": () => ({
      outcome: "refused",
      headline: "已冻结 Frozen",
      facts: ["顾客已挂失，可重新发码 Reported stolen; the customer can reissue it"],
    }),
    "code-revoked": () => ({
      outcome: "refused",
      headline: "已作废 Revoked",
      facts: [body.replaced ? "已换新码 Replaced by a reissued code" : problem.message],
    }),
    "code-not-found": () => ({ outcome: "refused", headline: "无此券码 Not found", facts: [] }),
    "check-digit-failed": () => ({
      outcome: "refused",
      headline: "输入有误 Mistyped",
      facts: ["请核对数字 Check the digits"],
    }),
    "token-not-valid": () => ({
      outcome: "refused",
      headline: "二维码已失效 QR expired",
      facts: ["请顾客刷新二维码或报数字码 Ask for a fresh QR or the digits"],
    }),
    "locked-out": () => ({
      outcome: "locked",
      headline: "已锁定 Locked out",
      facts: [`失败次数过多，${body.retry_after_minutes ?? ""} 分钟后再试 Too many failed tries; ask ops or wait`],
    }),
    "handover-required": () => ({
      outcome: "refused",
      headline: "收货码 Finish code",
      facts: ["由骑手送达时核销 Redeemed at the door by the rider"],
    }),
  }[problem.code];
  const shown = said ? said() : { outcome: "refused", headline: problem.title || "失败 Refused", facts: [] };
  if (!said) shown.facts.push(problem.message);
  return { ...shown, code: problem.code || String(problem.status), presented };
}

// What was redeemed: the order's items, or the voucher's title.
function what(redemption) {
  const summary = redemption.summary || {};
  if (Array.isArray(summary.items) && summary.items.length) {
    return summary.items.map((item) => `${item.name} × ${item.quantity}`).join("、");
  }
  return summary.title || redemption.kind;
}

function show(answer, shown) {
  clear(answer);
  answer.className = `counter-answer ${shown.outcome}`;
  answer.dataset.outcome = shown.outcome;
  answer.dataset.code = shown.code;
  answer.append(
    h("p", { class: "counter-headline" }, shown.headline),
    h(
      "ul",
      { class: "counter-facts" },
      shown.facts.map((fact) => h("li", {}, fact)),
    ),
    h("p", { class: "counter-presented muted" }, shown.presented),
  );
}

function historyItem(shown) {
  return h(
    "li",
    { class: `counter-past ${shown.outcome}`, "data-code": shown.code },
    h("span", { class: "counter-past-time" }, time(new Date().toISOString())),
    h("strong", {}, shown.headline),
    h("span", { class: "counter-past-facts" }, shown.facts[0] || ""),
    h("span", { class: "muted counter-past-presented" }, shown.presented),
  );
}
