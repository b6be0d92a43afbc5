"""A delivery's or a handover's news heard before the order's own events (another topic, which a restarted consumer
may read behind): it is kept at once on a view started from the event's tenant facts, not held until dead-lettered,
and the order's events then fill the view in without losing it."""

from __future__ import annotations

from tests.aftersales.conftest import AftersalesHarness


async def test_a_delivery_heard_before_its_order_is_kept_and_the_order_fills_the_view_in(
    aftersales: AftersalesHarness,
) -> None:
    h = aftersales
    await h.deliver("delivery.picked_up.v1", "o-20", order_id="o-20", delivery_id="d-20", status="picked_up",
                    carrier="dada")  # fmt: skip
    await h.deliver("delivery.delivered.v1", "o-20", order_id="o-20", delivery_id="d-20", status="delivered",
                    carrier="dada")  # fmt: skip
    await h.deliver("code.redeemed.v1", "o-21", order_id="o-21", code_id="c-21", kind="finish", redemption_id="r-21",
                    redeemed_by="rider:r-1")  # fmt: skip
    assert await h.sql("SELECT count(*) FROM parked_event") == [(0,)]
    early = await h.sql("SELECT order_id, merchant_id, store_id, customer_id, status, total_fen, carrier, "
                        "received_at IS NOT NULL, picked_up_at IS NOT NULL, jsonb_array_length(proofs) "
                        "FROM order_view ORDER BY order_id")  # fmt: skip
    assert early == [
        ("o-20", "m-1", "s-1", "openid-alice", "", 0, "dada", True, True, 1),
        ("o-21", "m-1", "s-1", "openid-alice", "", 0, None, True, False, 1),
    ]

    # Until the order's events come, an application is answered as for an order not known here yet (which a client
    # asks again), not refused as for an order not paid.
    early_application = await h.apply("o-20", expect=404)
    assert early_application.json()["type"] == "/problems/order-not-found"

    await h.order("o-20")
    await h.order("o-21")
    late = await h.sql("SELECT order_id, status, total_fen > 0, paid_at IS NOT NULL, received_at IS NOT NULL, "
                       "jsonb_array_length(proofs), "
                       "(SELECT count(*) FROM order_view_line l WHERE l.order_id = v.order_id) "
                       "FROM order_view v ORDER BY order_id")  # fmt: skip
    assert late == [("o-20", "completed", True, True, True, 1, 2), ("o-21", "completed", True, True, True, 1, 2)]
    await h.apply("o-20")
