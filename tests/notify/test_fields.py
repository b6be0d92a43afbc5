"""Fitting template values to WeChat's keyword types (pure functions, so plain unit tests), checked against the WeChat
API sandbox's own statement of the rules: whatever `fit` returns, the sandbox accepts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from deploy.local.sandboxes.wechat_api import field_error
from services.notify.channels.fields import (
    UnfitValue,
    fit,
    fit_all,
    keyword_type,
    wechat_amount,
    wechat_date,
    wechat_time,
)

BEIJING = timezone(timedelta(hours=8))


def test_the_keyword_type_is_the_key_without_its_number() -> None:
    assert keyword_type("thing3") == "thing"
    assert keyword_type("character_string12") == "character_string"
    assert keyword_type("phone_number1") == "phone_number"
    for key in ("thing", "weather1", "Thing1", "3thing"):
        with pytest.raises(UnfitValue):
            keyword_type(key)


@pytest.mark.parametrize(
    ("key", "value", "fitted"),
    [
        ("thing1", "老王家的生煎包人民广场店总店分店旗舰一号", "老王家的生煎包人民广场店总店分店旗舰一号"),
        ("thing1", "老王家的生煎包人民广场店总店分店旗舰一号店", "老王家的生煎包人民广场店总店分店旗舰一…"),
        ("thing2", "Rider  could not\nreach the door, left at the lobby", "Rider could not rea…"),
        ("phrase3", "骑手已接单", "骑手已接单"),
        ("phrase3", "配送异常请联系", "配送异常请"),
        ("name4", "张师傅", "张师傅"),
        ("name4", "欧阳娜娜娜娜娜娜娜娜娜", "欧阳娜娜娜娜娜娜娜娜"),
        ("name4", "Alexander Hamilton-Burr Jr", "Alexander Hamilton-B"),
        ("character_string5", "SD20261122-0001", "SD20261122-0001"),
        ("character_string5", "A" * 40, "A" * 32),
        ("letter6", "ABC", "ABC"),
        ("number7", "3", "3"),
        ("number7", "12.5", "12.5"),
        ("amount8", "¥12.50", "¥12.50"),
        ("amount8", "¥12.50元", "¥12.50元"),
        ("date9", "2026年11月22日", "2026年11月22日"),
        ("date9", "2026年11月22日 15:01", "2026年11月22日 15:01"),
        ("time10", "15:01", "15:01"),
        ("time10", "2026年11月22日 15:01", "2026年11月22日 15:01"),
        ("phone_number11", "+86-0766-66888866", "+86-0766-66888866"),
        ("phone_number11", "13800000001", "13800000001"),
        ("car_number12", "粤A8Z888挂", "粤A8Z888挂"),
        ("symbol13", "+-", "+-"),
    ],
)
def test_values_are_fitted_and_the_sandbox_accepts_them(key: str, value: str, fitted: str) -> None:
    assert fit(key, value) == fitted
    assert field_error({key: {"value": fitted}}) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("thing1", "   "),
        ("phrase3", "OK"),
        ("phrase3", "已送达!"),
        ("name4", "张3"),
        ("character_string5", "订单SD1"),
        ("letter6", "AB1"),
        ("number7", "1" * 33),
        ("number7", "three"),
        ("amount8", "12.50"),
        ("amount8", "¥12345678901"),
        ("date9", "2026-11-22"),
        ("time10", "3pm"),
        ("phone_number11", "1" * 18),
        ("phone_number11", "call me"),
        ("car_number12", "粤A8Z888挂车"),
    ],
)
def test_values_a_cut_cannot_save_are_refused_and_the_sandbox_refuses_them_too(key: str, value: str) -> None:
    with pytest.raises(UnfitValue) as refused:
        fit(key, value)
    assert refused.value.key == key
    assert field_error({key: {"value": value}}) == f"data.{key}.value {'is emtpy' if not value.strip() else 'invalid'}"


def test_a_templates_values_are_fitted_together() -> None:
    assert fit_all({"phrase1": "配送中", "thing2": "老王家"}) == {"phrase1": "配送中", "thing2": "老王家"}
    with pytest.raises(UnfitValue) as refused:
        fit_all({"phrase1": "配送中", "time2": "soon"})
    assert refused.value.key == "time2"


def test_times_dates_and_amounts_are_formatted_as_wechat_takes_them() -> None:
    moment = datetime(2026, 11, 2, 9, 5, tzinfo=BEIJING)
    assert wechat_date(moment) == "2026年11月2日"
    assert wechat_time(moment) == "09:05"
    assert wechat_time(moment, with_date=True) == "2026年11月2日 09:05"
    assert wechat_amount(1250) == "¥12.50"
    assert wechat_amount(7) == "¥0.07"
    for key, value in (("date1", wechat_date(moment)), ("time2", wechat_time(moment, with_date=True))):
        assert field_error({key: {"value": fit(key, value)}}) is None
    assert field_error({"amount3": {"value": fit("amount3", wechat_amount(123456))}}) is None
