"""The payment provider as this deployment configures it: the WeChat Pay v3 client (the local stack points it at the
sandbox in `deploy/local/sandboxes`), or none when WeChat Pay is not set up."""

from __future__ import annotations

import httpx

from services.order.payment.wechatpay import WechatPayClient, WechatPayConfig
from services.order.settings import OrderSettings

# The actor the order's status history names for what WeChat Pay reports (a payment, a refund).
PAYMENT_ACTOR = "payment:wechatpay"


def wechatpay_client(settings: OrderSettings, http: httpx.AsyncClient) -> WechatPayClient | None:
    """The configured client, or None when WeChat Pay is not set up (paying then answers 503)."""
    if not settings.wechatpay_mchid:
        return None
    return WechatPayClient(
        WechatPayConfig(
            base_url=settings.wechatpay_base_url,
            mchid=settings.wechatpay_mchid,
            appid=settings.wechatpay_appid,
            merchant_serial_no=settings.wechatpay_merchant_serial_no,
            merchant_private_key_pem=settings.merchant_private_key_pem(),
            platform_public_key_id=settings.wechatpay_platform_public_key_id,
            platform_public_key_pem=settings.wechatpay_platform_public_key,
            apiv3_key=settings.wechatpay_apiv3_key,
            notify_url=settings.wechatpay_notify_url,
        ),
        http,
    )
