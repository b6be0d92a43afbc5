"""Subscribe-message field values fitted to WeChat's keyword types, so a send never fails with 47003.

A template field's key names its keyword type and number (`thing3` is a `thing`). Free text is shortened to fit
(`thing`, `name`, `phrase`, `character_string`, `letter`); a value whose meaning a cut would change (a number, an
amount, a date, a phone or plate number) is refused instead, with `UnfitValue`. The limits are WeChat's
(subscribeMessage.send, "模板参数值的限制"):

| type | what WeChat accepts |
| --- | --- |
| thing | ≤ 20 characters of any kind |
| number | ≤ 32 digits, a decimal point allowed |
| letter | ≤ 32 letters |
| symbol | ≤ 5 symbols |
| character_string | ≤ 32 digits, letters or symbols |
| time | `15:01`, or with a date: `2026年11月22日 15:01` |
| date | `2026年11月22日`, or with a time: `2026年11月22日 15:01` |
| amount | one currency symbol and ≤ 10 digits, a decimal point allowed, `元` allowed at the end |
| phone_number | ≤ 17 digits and symbols |
| car_number | ≤ 8: letters and digits, the first and last may be a Chinese character |
| name | ≤ 10 Chinese characters (mixed with letters counts as Chinese), or ≤ 20 letters and symbols |
| phrase | ≤ 5 Chinese characters only |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

ELLIPSIS = "…"
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
_SYMBOLS = r"!-/:-@\[-`{-~"  # printable ASCII that is neither a letter nor a digit
_TIME = r"\d{1,2}:\d{2}"
_DATE = r"\d{4}年\d{1,2}月\d{1,2}日"

# The types whose values must already fit, as full-match patterns.
_EXACT = {
    "number": re.compile(r"(?=[\d.]{1,32}$)\d+(\.\d+)?"),
    "symbol": re.compile(rf"[{_SYMBOLS}]{{1,5}}"),
    "time": re.compile(rf"({_DATE} )?{_TIME}"),
    "date": re.compile(rf"{_DATE}( {_TIME})?"),
    "amount": re.compile(r"[¥$€£￥](?=[\d.]{1,11}元?$)\d{1,10}(\.\d+)?元?"),
    "phone_number": re.compile(rf"(?=.{{1,17}}$)[\d{_SYMBOLS}]*\d[\d{_SYMBOLS}]*"),
    "car_number": re.compile(rf"[{_HAN}A-Za-z0-9][A-Za-z0-9]{{0,6}}[{_HAN}A-Za-z0-9]?"),
}
_TEXT_TYPES = ("thing", "name", "phrase", "character_string", "letter")
_KEY = re.compile(r"([a-z_]+?)(\d+)")


class UnfitValue(ValueError):
    """A value no cut can make acceptable for its field's keyword type."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


def keyword_type(key: str) -> str:
    """`thing3` -> `thing`; a key that names no keyword type is refused."""
    match = _KEY.fullmatch(key)
    if match is None or (match[1] not in _EXACT and match[1] not in _TEXT_TYPES):
        raise UnfitValue(key, "not a keyword type followed by its number")
    return match[1]


def fit(key: str, value: str) -> str:
    """The value as WeChat accepts it for this field, shortened where a cut keeps its meaning."""
    kind = keyword_type(key)
    value = " ".join(value.split())  # no newlines or runs of spaces in a card
    if not value:
        raise UnfitValue(key, "empty")
    if kind in _EXACT:
        if not _EXACT[kind].fullmatch(value):
            raise UnfitValue(key, f"not a valid {kind}")
        return value
    if kind == "thing":
        return _cut(value, 20)
    if kind == "phrase":
        if not re.fullmatch(f"[{_HAN}]+", value):
            raise UnfitValue(key, "a phrase is Chinese characters only")
        return value[:5]
    if kind == "name":
        chinese = re.search(f"[{_HAN}]", value) is not None
        if chinese and not re.fullmatch(f"[{_HAN}A-Za-z·]+", value):
            raise UnfitValue(key, "a Chinese name is Chinese characters and letters only")
        if not chinese and not re.fullmatch(rf"[A-Za-z{_SYMBOLS} ]+", value):
            raise UnfitValue(key, "a name is letters and symbols only")
        return value[: 10 if chinese else 20]
    allowed = r"A-Za-z" if kind == "letter" else rf"0-9A-Za-z{_SYMBOLS}"
    if not re.fullmatch(f"[{allowed}]+", value):
        raise UnfitValue(key, f"a {kind} is {'letters' if kind == 'letter' else 'digits, letters and symbols'} only")
    return value[:32]


def fit_all(values: Mapping[str, str]) -> dict[str, str]:
    """Each of a template's values fitted (`UnfitValue` names the first that cannot be)."""
    return {key: fit(key, value) for key, value in values.items()}


def wechat_date(moment: datetime) -> str:
    """`2026年11月22日` (in the moment's own zone: give it the customer's)."""
    return f"{moment.year}年{moment.month}月{moment.day}日"


def wechat_time(moment: datetime, *, with_date: bool = False) -> str:
    """`15:01`, or `2026年11月22日 15:01`."""
    clock = moment.strftime("%H:%M")
    return f"{wechat_date(moment)} {clock}" if with_date else clock


def wechat_amount(fen: int) -> str:
    """`¥12.50` for 1250 fen."""
    return f"¥{fen // 100}.{fen % 100:02d}"


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + ELLIPSIS
