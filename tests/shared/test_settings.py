"""Settings refuse a variable under their prefix that names none of them, naming the closest known one."""

from __future__ import annotations

import pytest

from gateway.settings import GatewaySettings
from services.order.settings import OrderSettings
from shared.settings import UnknownSettingError


def test_a_misspelt_setting_is_refused_with_the_closest_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_UNPAID_CANCEL_MINUTE", "5")
    with pytest.raises(
        UnknownSettingError, match="ORDER_UNPAID_CANCEL_MINUTE; did you mean ORDER_UNPAID_CANCEL_MINUTES"
    ):
        OrderSettings()


def test_known_settings_and_other_prefixes_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_UNPAID_CANCEL_MINUTES", "5")
    monkeypatch.setenv("order_auto_complete_hours", "2")  # names are case-insensitive, as pydantic reads them
    monkeypatch.setenv("DISPATCH_NO_SUCH_THING", "1")  # another service's prefix is that service's business
    settings = OrderSettings()
    assert (settings.unpaid_cancel_minutes, settings.auto_complete_hours) == (5, 2.0)


def test_the_gateway_refuses_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ORDER_ULR", "http://127.0.0.1:1")
    with pytest.raises(UnknownSettingError, match="did you mean GATEWAY_ORDER_URL"):
        GatewaySettings()
