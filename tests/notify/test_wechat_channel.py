"""The WeChat channel (`services/notify/channels/wechat.py`) against the WeChat API sandbox served on a real port:
the access token is fetched once and kept, fetched again before it expires and when WeChat refuses it, and each
answer of subscribeMessage.send comes back as its own result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from deploy.local.ports import free_port
from deploy.local.sandboxes.wechat_api import SandboxSettings, create_app
from services.notify.channels.fields import fit_all
from services.notify.channels.wechat import (
    BadField,
    NoGrant,
    Sent,
    SubscribeMessage,
    Unreachable,
    WeChatApi,
    WeChatError,
)
from tests.support import serve

APPID, SECRET = "wx-notify-test", "notify-test-secret"
OPENID, TEMPLATE = "o-customer-1", "tmpl-delivered"
DELIVERED = SubscribeMessage(
    touser=OPENID,
    template_id=TEMPLATE,
    data={"character_string1": "SD20261122-0001", "thing2": "老王家的生煎包", "phrase3": "已送达"},
    page="pages/track/index?order=SD20261122-0001",
    miniprogram_state="developer",
)


class Monotonic:
    """The client's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class WeChat:
    api: WeChatApi
    sandbox: httpx.AsyncClient
    clock: Monotonic

    async def grant(self, openid: str = OPENID, template_id: str = TEMPLATE, count: int = 1) -> None:
        response = await self.sandbox.post(
            "/sandbox/grants", json={"openid": openid, "template_id": template_id, "count": count}
        )
        response.raise_for_status()

    async def token_requests(self) -> int:
        return int((await self.sandbox.get("/sandbox/tokens")).json()["requests"])

    async def messages(self) -> list[dict[str, object]]:
        return list((await self.sandbox.get("/sandbox/messages")).json())


@pytest.fixture
async def wechat() -> AsyncIterator[WeChat]:
    app = create_app(SandboxSettings(appid=APPID, secret=SECRET))
    clock = Monotonic()
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as sandbox, httpx.AsyncClient() as http:
        yield WeChat(WeChatApi(http, APPID, SECRET, url=url, monotonic=clock), sandbox, clock)


async def test_a_granted_message_is_sent_as_wechat_takes_it_and_spends_the_grant(wechat: WeChat) -> None:
    await wechat.grant()
    assert await wechat.api.send(DELIVERED) == Sent()
    [message] = await wechat.messages()
    assert message == {
        "touser": OPENID,
        "template_id": TEMPLATE,
        "page": "pages/track/index?order=SD20261122-0001",
        "data": {
            "character_string1": {"value": "SD20261122-0001"},
            "thing2": {"value": "老王家的生煎包"},
            "phrase3": {"value": "已送达"},
        },
        "miniprogram_state": "developer",
        "lang": "zh_CN",
    }
    result = await wechat.api.send(DELIVERED)  # the one grant is spent
    assert isinstance(result, NoGrant)
    assert len(await wechat.messages()) == 1


async def test_without_a_grant_wechat_answers_43101(wechat: WeChat) -> None:
    await wechat.grant(template_id="tmpl-other")
    assert isinstance(await wechat.api.send(DELIVERED), NoGrant)
    assert await wechat.messages() == []


async def test_a_value_that_breaks_its_keyword_type_is_47003_naming_the_field(wechat: WeChat) -> None:
    await wechat.grant()
    unfitted = SubscribeMessage(OPENID, TEMPLATE, {"phrase3": "Delivered", "thing2": "老王家"})
    result = await wechat.api.send(unfitted)
    assert isinstance(result, BadField)
    assert "data.phrase3.value invalid" in result.errmsg
    empty = await wechat.api.send(SubscribeMessage(OPENID, TEMPLATE, {"thing2": ""}))
    assert isinstance(empty, BadField)
    assert "data.thing2.value is emtpy" in empty.errmsg
    # Fitted first, the same text is sent; the grant was never spent on the refusals.
    fitted = fit_all({"thing2": "老王家的生煎包人民广场店总店分店旗舰一号店"})
    assert await wechat.api.send(SubscribeMessage(OPENID, TEMPLATE, fitted)) == Sent()


async def test_the_token_is_kept_and_fetched_again_before_it_expires(wechat: WeChat) -> None:
    await wechat.grant(count=4)
    assert await wechat.api.send(DELIVERED) == Sent()
    assert await wechat.api.send(DELIVERED) == Sent()
    assert await wechat.token_requests() == 1
    wechat.clock.now += 7200 - 300 - 10  # not yet within the margin
    assert await wechat.api.send(DELIVERED) == Sent()
    assert await wechat.token_requests() == 1
    wechat.clock.now += 20  # within 300 s of the token's end: fetched again before sending
    assert await wechat.api.send(DELIVERED) == Sent()
    assert await wechat.token_requests() == 2


async def test_an_expired_token_is_replaced_and_the_send_tried_once_more(wechat: WeChat) -> None:
    await wechat.grant(count=2)
    assert await wechat.api.send(DELIVERED) == Sent()
    first = await wechat.api.access_token()
    await wechat.sandbox.post("/sandbox/tokens/expire")  # WeChat ended it early: the send gets 42001
    assert await wechat.api.send(DELIVERED) == Sent()
    assert await wechat.api.access_token() != first
    assert await wechat.token_requests() == 2
    assert len(await wechat.messages()) == 2


async def test_a_stale_token_stable_token_still_hands_out_is_replaced_by_a_forced_refresh(wechat: WeChat) -> None:
    await wechat.grant()
    stale = await wechat.api.access_token()
    await wechat.sandbox.post("/sandbox/tokens/revoke")  # sends get 40001; an unforced fetch returns it again
    assert await wechat.api.send(DELIVERED) == Sent()
    assert await wechat.api.access_token() != stale
    assert await wechat.token_requests() == 3  # the first, the unforced one that came back stale, the forced one


async def test_a_token_taken_by_another_callers_forced_refresh_is_replaced(wechat: WeChat) -> None:
    await wechat.grant()
    ours = await wechat.api.access_token()
    forced = await wechat.sandbox.post(
        "/cgi-bin/stable_token",
        json={"grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": True},
    )
    assert await wechat.api.send(DELIVERED) == Sent()  # 40001, then the other caller's token
    assert await wechat.api.access_token() == forced.json()["access_token"] != ours


async def test_a_wrong_secret_and_an_unreachable_wechat_are_results_not_exceptions(wechat: WeChat) -> None:
    await wechat.grant()
    wrong = await WeChatApi(wechat.api.http, APPID, "not-the-secret", url=wechat.api.url).send(DELIVERED)
    assert isinstance(wrong, WeChatError)
    assert wrong.errcode == 40125
    nowhere = await WeChatApi(wechat.api.http, APPID, SECRET, url=f"http://127.0.0.1:{free_port()}").send(DELIVERED)
    assert isinstance(nowhere, Unreachable)
    assert await wechat.messages() == []
