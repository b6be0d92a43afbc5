"""The local stack gives the notify service its channels' settings under names NotifySettings knows (it refuses any
NOTIFY_* variable it does not), pointing at the two sandboxes, with the secrets each sandbox checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import table
from deploy.local.sandboxes import tencent_sms, wechat_api
from deploy.local.wiring import Wiring
from services.notify.settings import NotifySettings


def test_the_stack_wires_the_channels_to_the_sandboxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = table.wanted(("notify",))
    assert {wechat_api.NAME, tencent_sms.NAME} <= {entry.name for entry in entries}
    urls = {entry.name: f"http://127.0.0.1:{9000 + i}" for i, entry in enumerate(entries)}
    wiring = Wiring(tmp_path, True, urls, {"notify": "postgresql+asyncpg://x/notify"}, "127.0.0.1:9092", False)
    env = table.environments(entries, wiring)
    for name, value in env["notify"].items():
        monkeypatch.setenv(name, value)
    settings = NotifySettings()
    assert settings.wechat_api_url == urls[wechat_api.NAME]
    assert settings.wechat_secret == env[wechat_api.NAME]["WECHAT_API_SANDBOX_SECRET"] != ""
    assert settings.wechat_appid == env[wechat_api.NAME]["WECHAT_API_SANDBOX_APPID"]
    assert settings.sms_url == f"{urls[tencent_sms.NAME]}/"
    assert settings.sms_secret_key == env[tencent_sms.NAME]["TENCENT_SMS_SANDBOX_SECRET_KEY"] != ""
    sandbox = tencent_sms.SandboxSettings()
    assert (settings.sms_secret_id, settings.sms_sdk_app_id, settings.sms_sign_name) == (
        sandbox.secret_id,
        sandbox.sdk_app_id,
        sandbox.sign_name,
    )
    # Made once and kept with the stack's keys: a restart signs with the same secret.
    assert table.environments(entries, wiring)[tencent_sms.NAME] == env[tencent_sms.NAME]
