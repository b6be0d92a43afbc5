// 商品 Catalogue: the store's products (off-shelf ones too) with their SKUs; add a product or a SKU, change a SKU's
// price and stock, put products and SKUs on or off the shelf, delist a product for good.

import { clear, h, stylesheet, yuan } from "../dom.js";
import { fen, field, formError, number, onSubmit } from "../form.js";

export function mount(root, { api, store, toast }) {
  stylesheet("css/settings.css");
  if (!store) {
    root.append(h("p", { class: "muted" }, "No store in this account's scope."));
    return () => {};
  }
  const list = h("div", { class: "products" });
  const summary = h("p", { class: "muted" });
  root.append(h("h2", {}, "商品 Catalogue"), newProductForm(), summary, list);

  async function load() {
    const page = await api.get(`/v1/stores/${encodeURIComponent(store.id)}/products`, {
      include_off_shelf: true,
      limit: 100,
    });
    summary.textContent = `${page.total} 件商品 products`;
    clear(list).append(...page.items.map(productCard));
  }

  function newProductForm() {
    const form = h(
      "form",
      { class: "card settings-form", id: "new-product" },
      h("h3", {}, "新增商品 Add a product"),
      h(
        "div",
        { class: "row" },
        field("name", "名称 Name", { required: true, maxlength: 64 }),
        field("description", "描述 Description", { maxlength: 1000 }),
      ),
      h(
        "div",
        { class: "row", "data-field": "skus" },
        field("sku_name", "规格 SKU", { required: true, maxlength: 64, value: "标准 Regular" }),
        field("price", "价格 Price ¥", { required: true, inputmode: "decimal" }),
        field("stock", "库存 Stock", { required: true, type: "number", min: 0, value: 100 }),
      ),
      h("button", { type: "submit", class: "primary" }, "添加 Add"),
      formError(),
    );
    return onSubmit(form, async (data) => {
      await api.post(`/v1/stores/${encodeURIComponent(store.id)}/products`, {
        name: data.get("name"),
        description: data.get("description"),
        skus: [{ name: data.get("sku_name"), price_fen: fen(data.get("price")), stock: number(data.get("stock")) }],
      });
      form.reset();
      toast("已添加 Product added");
      await load();
    });
  }

  function productCard(product) {
    return h(
      "article",
      { class: "card product", "data-product": product.id, "data-on-shelf": String(product.on_shelf) },
      h(
        "header",
        { class: "row" },
        h("strong", { class: "product-name" }, product.name),
        h(
          "span",
          { class: product.on_shelf ? "badge on" : "badge off" },
          product.on_shelf ? "在售 On shelf" : "已下架 Off shelf",
        ),
        product.sold_out ? h("span", { class: "badge off" }, "售罄 Sold out") : null,
        h("span", { class: "spacer" }),
        h(
          "button",
          {
            type: "button",
            class: "shelf",
            onclick: () => act(() => api.patch(`/v1/products/${product.id}`, { on_shelf: !product.on_shelf })),
          },
          product.on_shelf ? "下架 Take off shelf" : "上架 Put on shelf",
        ),
        h(
          "button",
          {
            type: "button",
            class: "danger delist",
            onclick: () => {
              if (confirm(`下架并删除 Delist “${product.name}” for good?`)) {
                act(() => api.delete(`/v1/products/${product.id}`), "已删除 Delisted");
              }
            },
          },
          "删除 Delist",
        ),
      ),
      product.description ? h("p", { class: "muted" }, product.description) : null,
      product.skus.map((sku) => skuRow(product, sku)),
      newSkuForm(product),
    );
  }

  function skuRow(product, sku) {
    const form = h(
      "form",
      { class: "row sku", "data-sku": sku.id, "data-on-shelf": String(sku.on_shelf) },
      h("span", { class: "sku-name" }, sku.name, h("small", { class: "muted" }, ` v${sku.version}`)),
      field("price_fen", "价格 Price ¥", {
        name: "price",
        inputmode: "decimal",
        value: (sku.price_fen / 100).toFixed(2),
      }),
      field("stock", "库存 Stock", { type: "number", min: 0, value: sku.stock }),
      h("button", { type: "submit", class: "primary" }, "保存 Save"),
      h(
        "button",
        {
          type: "button",
          class: "shelf",
          onclick: () => act(() => api.patch(`/v1/products/${product.id}/skus/${sku.id}`, { on_shelf: !sku.on_shelf })),
        },
        sku.on_shelf ? "下架 Off shelf" : "上架 On shelf",
      ),
      sku.sold_out ? h("span", { class: "badge off" }, "售罄 Sold out") : null,
      formError(),
    );
    return onSubmit(form, async (data) => {
      const change = {};
      const price = fen(data.get("price"));
      const stock = number(data.get("stock"));
      if (price !== sku.price_fen) change.price_fen = price;
      if (stock !== sku.stock) change.stock = stock;
      if (!Object.keys(change).length) return;
      await api.patch(`/v1/products/${product.id}/skus/${sku.id}`, change);
      toast(`已保存 Saved ${product.name} · ${sku.name}: ${yuan(price)}, ${stock}`);
      await load();
    });
  }

  function newSkuForm(product) {
    const form = h(
      "form",
      { class: "row new-sku" },
      field("name", "新规格 New SKU", { required: true, maxlength: 64 }),
      field("price_fen", "价格 Price ¥", { name: "price", required: true, inputmode: "decimal" }),
      field("stock", "库存 Stock", { type: "number", min: 0, required: true, value: 100 }),
      h("button", { type: "submit" }, "添加规格 Add SKU"),
      formError(),
    );
    return onSubmit(form, async (data) => {
      await api.post(`/v1/products/${product.id}/skus`, {
        name: data.get("name"),
        price_fen: fen(data.get("price")),
        stock: number(data.get("stock")),
      });
      toast("已添加规格 SKU added");
      await load();
    });
  }

  async function act(call, done = "已更新 Updated") {
    try {
      await call();
      toast(done);
      await load();
    } catch (problem) {
      toast(problem.message, "error");
    }
  }

  load().catch((problem) => toast(problem.message, "error"));
  return () => {};
}
