"""The local stack's processes, in one table: each entry's app and the environments it gives itself and others.

The launcher starts the entries whose services run (sandboxes first, the gateway last), merges what every entry
gives, and refuses two entries setting the same variable of one process. Adding a sandbox is one entry here (and
its module in `deploy/local/sandboxes/`); a service's particular settings are its `_extra` function.
"""

from __future__ import annotations

from collections.abc import Callable

from deploy.local import keys
from deploy.local.sandboxes import tencent_sms, wechat_api, wechatpay
from deploy.local.sandboxes.carriers import simulator
from deploy.local.wiring import DEMO_WECHAT_APPID, GATEWAY, Entry, Environments, Wiring
from shared.events.topics import SERVICES


def _service(service: str, extra: Callable[[Wiring], Environments] | None = None) -> Entry:
    prefix = service.upper()

    def wire(wiring: Wiring) -> Environments:
        own = {
            f"{prefix}_DATABASE_URL": wiring.database_urls[service],
            f"{prefix}_KAFKA_BOOTSTRAP_SERVERS": wiring.bootstrap_servers,
            f"{prefix}_KAFKA_ENABLE_IDEMPOTENCE": str(wiring.kafka_enable_idempotence).lower(),
            f"{prefix}_JWT_PUBLIC_KEYS": keys.signing_public_key(wiring.state_dir),
            # The gateway runs on this host: its X-Forwarded-For is believed, anyone else's is not.
            f"{prefix}_TRUSTED_GATEWAYS": '["127.0.0.1/32"]',
        }
        environments: Environments = {service: own, GATEWAY: {f"GATEWAY_{prefix}_URL": wiring.urls[service]}}
        for name, env in (extra(wiring) if extra else {}).items():
            environments[name] = environments.get(name, {}) | env
        return environments

    return Entry(service, f"services.{service}.app:create_app", wire, serves=(service,))


def _dispatch(wiring: Wiring) -> Environments:
    """Its vault key, and the handover-voucher key pair whose public half the redemption service checks with."""
    private, public = keys.handover_key(wiring.state_dir)
    return {
        "dispatch": {
            "DISPATCH_VAULT_KEY": keys.vault_key(wiring.state_dir, "dispatch"),
            "DISPATCH_HANDOVER_SIGNING_KEY": private,
            "DISPATCH_REDEMPTION_URL": wiring.urls.get("redemption", "http://127.0.0.1:0"),
        },
        "redemption": {"REDEMPTION_HANDOVER_PUBLIC_KEYS": public},
    }


def _redemption(wiring: Wiring) -> Environments:
    # Its migrations seal kept codes' QR secrets with this key too (the launcher migrates with a service's env).
    return {"redemption": {"REDEMPTION_VAULT_KEY": keys.vault_key(wiring.state_dir, "redemption")}}


def _gateway(wiring: Wiring) -> Environments:
    env = {
        "GATEWAY_SIGNING_KEY_FILE": str(keys.signing_key_file(wiring.state_dir)),
        "GATEWAY_DATABASE_URL": wiring.database_urls[GATEWAY],
        "GATEWAY_DEV_MODE": str(wiring.dev_mode).lower(),
    }
    if wiring.dev_mode:
        # Local logins without a WeChat app, and the console's dev server.
        env |= {
            "GATEWAY_WECHAT_MODE": "sandbox",
            "GATEWAY_WECHAT_APPID": DEMO_WECHAT_APPID,
            "GATEWAY_CORS_ORIGINS": '["http://localhost:5173", "http://127.0.0.1:5173"]',
        }
    return {GATEWAY: env}


def _notify(wiring: Wiring) -> Environments:
    # Seals merchants' webhook signing secrets.
    return {"notify": {"NOTIFY_VAULT_KEY": keys.vault_key(wiring.state_dir, "notify")}}


EXTRA: dict[str, Callable[[Wiring], Environments]] = {
    "dispatch": _dispatch,
    "redemption": _redemption,
    "notify": _notify,
}

PROCESSES: tuple[Entry, ...] = (
    Entry(
        wechatpay.NAME,
        "deploy.local.sandboxes.wechatpay:create_app",
        wechatpay.wire,
        serves=("order",),
        title="wechatpay sandbox",
    ),
    Entry(
        simulator.NAME,
        "deploy.local.sandboxes.carriers.simulator:create_app",
        simulator.wire,
        serves=("dispatch",),
        title="carrier simulator",
    ),
    Entry(
        wechat_api.NAME,
        "deploy.local.sandboxes.wechat_api:create_app",
        wechat_api.wire,
        serves=("notify",),
        title="wechat api sandbox",
    ),
    Entry(
        tencent_sms.NAME,
        "deploy.local.sandboxes.tencent_sms:create_app",
        tencent_sms.wire,
        serves=("notify",),
        title="tencent sms sandbox",
    ),
    *(_service(service, EXTRA.get(service)) for service in SERVICES),
    Entry(GATEWAY, "gateway.app:create_app", _gateway, front=True),
)


def wanted(services: tuple[str, ...]) -> list[Entry]:
    """The entries that run when these services are asked for."""
    return [entry for entry in PROCESSES if not entry.serves or set(entry.serves) & set(services)]


def environments(entries: list[Entry], wiring: Wiring) -> Environments:
    """Every running process's environment, merged from what each entry gives; what is given to a process that does
    not run is dropped, and two entries setting one variable is an error."""
    merged: Environments = {entry.name: {} for entry in entries}
    given_by: dict[tuple[str, str], str] = {}
    for entry in entries:
        for name, env in entry.wire(wiring).items():
            if name not in merged:
                continue
            for key, value in env.items():
                if (name, key) in given_by:
                    raise ValueError(f"{key} of {name} is set by both {given_by[name, key]} and {entry.name}")
                given_by[name, key] = entry.name
                merged[name][key] = value
    return merged
