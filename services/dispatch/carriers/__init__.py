"""Carrier wire formats, by the name used in URLs, accounts and events."""

from __future__ import annotations

from services.dispatch.carriers.base import Wire
from services.dispatch.carriers.dada import Dada
from services.dispatch.carriers.meituan import Meituan
from services.dispatch.carriers.sf import SF
from services.dispatch.carriers.shansong import Shansong
from services.dispatch.carriers.uu import UU
from services.dispatch.carriers.uu_v3 import UUv3
from services.dispatch.carriers.wechat import WechatIntracity, WechatLegacy

OWN_FLEET = "own_fleet"
WIRES: dict[str, Wire] = {
    wire.name: wire for wire in (Dada(), Shansong(), SF(), Meituan(), UU(), UUv3(), WechatLegacy(), WechatIntracity())
}
