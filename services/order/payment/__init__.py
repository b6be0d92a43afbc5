"""Payment, the order service's one home for money: the WeChat Pay v3 client (`wechatpay.py`) as this deployment
configures it (`provider.py`), paying an order (`paying.py`), refund requests staged in the caller's transaction
(`refund_requests.py`) and refunding them at WeChat Pay (`refunding.py`), the notifications kept (`notifications.py`),
and the routes (`router.py`)."""
