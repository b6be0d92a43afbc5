"""The service's view of an order, kept from every order event: each event carries the order's lines again, and a line
is written only when it is new or different."""

from __future__ import annotations

from tests.aftersales.conftest import AftersalesHarness

LINES = "SELECT sku_id, name, price_fen, quantity, xmin::text FROM order_view_line WHERE order_id = 'o-30' ORDER BY 1"


async def test_an_orders_lines_are_written_once_not_again_with_every_event(aftersales: AftersalesHarness) -> None:
    h = aftersales
    await h.order("o-30", "order.paid.v1", status="paid")
    first = await h.sql(LINES)
    assert [row[:4] for row in first] == [("sku-bowl", "牛肉面", 1500, 2), ("sku-egg", "卤蛋", 300, 1)]
    await h.order("o-30", "order.accepted.v1", status="accepted")
    await h.order("o-30")
    assert await h.sql(LINES) == first  # the same row versions: neither deleted and inserted again, nor updated

    # Were a line ever to change, the view would follow it.
    await h.order("o-30", "order.refunded.v1", status="refunded",
                  items=[{"sku_id": "sku-bowl", "product_id": "p-1", "name": "牛肉面(大)", "price_fen": 1800,
                          "quantity": 2},
                         {"sku_id": "sku-egg", "product_id": "p-2", "name": "卤蛋", "price_fen": 300, "quantity": 1}],
                  refund={"out_refund_no": "rf-1", "amount_fen": 100, "cause": "order"})  # fmt: skip
    changed = await h.sql(LINES)
    assert [row[:4] for row in changed] == [("sku-bowl", "牛肉面(大)", 1800, 2), ("sku-egg", "卤蛋", 300, 1)]
    assert changed[1] == first[1]
