"""Payment, the order service's one home for what passes through WeChat Pay: the v3 client (`wechatpay.py`) as this
deployment configures it (`provider.py`), paying an order (`paying.py`), refunding at WeChat Pay what the order
service asked for (`refunding.py`; the requests themselves are the order's records, staged in the deciding
transaction by services/order/refunds.py, below its use cases), the notifications kept (`notifications.py`), and
the routes (`router.py`). The package stands above the order's use cases and nothing below imports it."""
