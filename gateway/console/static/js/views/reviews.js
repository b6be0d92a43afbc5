// 评价 Reviews: the store's reviews, newest first, each with the merchant's one reply or a form to write it.

import { clear, dateTime, h, stylesheet } from "../dom.js";
import { formError, onSubmit } from "../form.js";

const PAGE = 20;

export function mount(root, { api, store, toast }) {
  stylesheet("css/settings.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const summary = h("p", { class: "muted" });
  const list = h("div", { class: "reviews" });
  const pager = h("div", { class: "row pager" });
  root.append(h("h2", {}, "评价 Reviews"), summary, list, pager);

  async function load(offset = 0) {
    const page = await api.get(`/v1/stores/${encodeURIComponent(store.id)}/reviews`, { offset, limit: PAGE });
    summary.textContent = `${page.total} 条评价 reviews`;
    clear(list).append(...page.items.map(reviewCard));
    const newer = h("button", { type: "button", onclick: () => load(Math.max(0, offset - PAGE)) }, "上一页 Newer");
    const older = h("button", { type: "button", onclick: () => load(offset + PAGE) }, "下一页 Older");
    newer.hidden = offset === 0;
    older.hidden = offset + PAGE >= page.total;
    clear(pager).append(newer, older);
  }

  function reviewCard(review) {
    return h(
      "article",
      { class: "card review", "data-order": review.order_id },
      h(
        "header",
        { class: "row" },
        h(
          "span",
          { class: "stars", "aria-label": `${review.store_rating} / 5` },
          "★".repeat(review.store_rating) + "☆".repeat(5 - review.store_rating),
        ),
        review.rider_rating ? h("span", { class: "muted" }, `骑手 Rider ${review.rider_rating}/5`) : null,
        h("span", { class: "muted" }, `${dateTime(review.created_at)} · ${review.order_id}`),
      ),
      review.text ? h("p", { class: "review-text" }, review.text) : h("p", { class: "muted" }, "(无文字 No text)"),
      review.reply
        ? h(
            "p",
            { class: "reply" },
            h("strong", {}, "商家回复 Reply: "),
            review.reply,
            h("span", { class: "muted" }, ` ${dateTime(review.replied_at)}`),
          )
        : replyForm(review),
    );
  }

  function replyForm(review) {
    const form = h(
      "form",
      { class: "reply-form" },
      h(
        "label",
        { class: "field", "data-field": "reply" },
        "回复 Reply",
        h("textarea", { name: "reply", maxlength: 500, rows: 2, required: true }),
      ),
      h("button", { type: "submit", class: "primary" }, "回复 Reply"),
      formError(),
    );
    return onSubmit(form, async (data) => {
      await api.post(`/v1/reviews/${encodeURIComponent(review.order_id)}/reply`, { reply: data.get("reply") });
      toast("已回复 Replied");
      await load();
    });
  }

  load().catch((problem) => toast(problem.message, "error"));
  return () => {};
}
