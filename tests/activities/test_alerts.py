"""Alert providers against a local HTTP server that records what it receives, and their
resolution from the environment, a providers file and (via kmock) Kubernetes Secrets."""

import asyncio
import base64
import socket
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from activities.alerts import (
    AlertError,
    AlertProvider,
    AlertProviders,
    KubernetesSecretReader,
    ProviderType,
    admits,
    send_alerts,
)
from canary.contract import NotificationKind
from canary.spec import ProviderRef, Severity
from tests.support.alerting import (
    ADVANCED,
    HALTED,
    ROLLED_BACK,
    TIME,
    alert,
    env_provider,
    make_canary,
)
from tests.support.hostile_http import HostileServer
from tests.support.kube import NAMESPACE, ServedEmulator, kube_fixture  # noqa: F401
from tests.support.net import free_port
from tests.support.webhook_receiver import Receiver, receiver_fixture  # noqa: F401

SECRETS = "v1/secrets"
TARGET = "podinfo.test"


def secret(name: str, data: dict[str, str], namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def providers_file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    return {"COALMINE_ALERT_PROVIDERS": str(path)}


# --- payloads over HTTP -----------------------------------------------------------------------


async def test_slack_payload_has_text_and_an_attachment_with_the_fields(
    receiver: Receiver,
) -> None:
    provider = AlertProvider(
        "slack", ProviderType.SLACK, f"{receiver.url}/ok", channel="#deploys", username="coalmine"
    )

    outcome = await provider.send(TARGET, HALTED)

    assert outcome.ok, outcome.message
    assert receiver.content_types == ["application/json"]
    (body,) = receiver.bodies
    assert body["text"] == HALTED.message
    assert body["channel"] == "#deploys"
    assert body["username"] == "coalmine"
    (attachment,) = body["attachments"]
    assert attachment["color"] == "warning"
    assert attachment["author_name"] == TARGET
    assert attachment["fields"] == [
        {"title": "Target", "value": TARGET, "short": True},
        {"title": "Event", "value": "halted", "short": True},
        {"title": "Severity", "value": "warn", "short": True},
    ]
    assert attachment["ts"] == int(TIME.timestamp())


async def test_slack_payload_leaves_out_channel_and_username_when_unset(
    receiver: Receiver,
) -> None:
    provider = AlertProvider("slack", ProviderType.SLACK, f"{receiver.url}/ok")

    assert (await provider.send(TARGET, ROLLED_BACK)).ok

    (body,) = receiver.bodies
    assert "channel" not in body and "username" not in body
    assert body["attachments"][0]["color"] == "danger"


async def test_teams_payload_is_an_adaptive_card_in_a_message(receiver: Receiver) -> None:
    # Teams Workflows webhooks answer 202 Accepted.
    provider = AlertProvider("teams", ProviderType.MSTEAMS, f"{receiver.url}/accepted")

    outcome = await provider.send(TARGET, ROLLED_BACK)

    assert outcome.ok and outcome.message == "status 202"
    (body,) = receiver.bodies
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    title, facts = card["body"]
    assert title["type"] == "TextBlock"
    assert title["text"] == ROLLED_BACK.message
    assert title["color"] == "Attention"
    assert facts["type"] == "FactSet"
    assert facts["facts"] == [
        {"title": "Target", "value": TARGET},
        {"title": "Event", "value": "rolled-back"},
        {"title": "Severity", "value": "error"},
        {"title": "Time", "value": "2024-05-01T12:00:03Z"},
    ]


async def test_discord_payload_is_native_content_and_embed(receiver: Receiver) -> None:
    provider = AlertProvider(
        "discord", ProviderType.DISCORD, f"{receiver.url}/ok", username="coalmine"
    )

    assert (await provider.send(TARGET, ADVANCED)).ok

    (body,) = receiver.bodies
    assert body["content"] == ADVANCED.message
    assert body["username"] == "coalmine"
    assert body["allowed_mentions"] == {"parse": []}
    assert "attachments" not in body and "channel" not in body
    (embed,) = body["embeds"]
    assert embed["title"] == TARGET
    assert embed["color"] == 0x2EB886
    assert embed["timestamp"] == "2024-05-01T12:00:03Z"
    assert embed["fields"] == [
        {"name": "Event", "value": "advanced", "inline": True},
        {"name": "Severity", "value": "info", "inline": True},
    ]


async def test_discord_content_is_clipped_to_its_limit(receiver: Receiver) -> None:
    long = ADVANCED.model_copy(update={"message": "x" * 2500})
    provider = AlertProvider("discord", ProviderType.DISCORD, f"{receiver.url}/ok")

    assert (await provider.send(TARGET, long)).ok

    assert len(receiver.bodies[0]["content"]) == 2000


async def test_generic_payload_is_coalmines_own_json(receiver: Receiver) -> None:
    provider = AlertProvider("hook", ProviderType.GENERIC, f"{receiver.url}/ok")

    assert (await provider.send(TARGET, HALTED)).ok

    assert receiver.bodies == [
        {
            "target": TARGET,
            "kind": "halted",
            "severity": "warn",
            "message": HALTED.message,
            "time": "2024-05-01T12:00:03Z",
        }
    ]


async def test_a_naive_time_is_taken_as_utc(receiver: Receiver) -> None:
    naive = HALTED.model_copy(update={"time": datetime(2024, 5, 1, 12, 0, 3)})
    provider = AlertProvider("hook", ProviderType.GENERIC, f"{receiver.url}/ok")

    assert (await provider.send(TARGET, naive)).ok

    assert receiver.bodies[0]["time"] == "2024-05-01T12:00:03Z"


# --- failures ---------------------------------------------------------------------------------


async def test_a_5xx_is_reported_with_its_status(receiver: Receiver) -> None:
    provider = AlertProvider("hook", ProviderType.GENERIC, f"{receiver.url}/fail")

    outcome = await provider.send(TARGET, HALTED)

    assert not outcome.ok
    assert outcome.reachable
    assert outcome.message.startswith("status 500: load test failed")


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A URL whose server accepts connections (the kernel does) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"


async def test_a_timeout_is_reported_and_skips_the_rest_of_the_batch(silent_url: str) -> None:
    canary = make_canary([alert("ops", "slow")])
    providers = AlertProviders(env_provider("SLOW", "generic", silent_url))

    deliveries = await send_alerts(providers, canary, [ADVANCED, HALTED], timeout_seconds=0.3)

    assert [(d.kind, d.ok) for d in deliveries] == [
        (NotificationKind.ADVANCED, False),
        (NotificationKind.HALTED, False),
    ]
    assert deliveries[0].detail == "timed out after 0.3s"
    assert deliveries[1].detail.startswith("skipped: the provider did not answer earlier")


async def test_a_refused_connection_is_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    provider = AlertProvider("hook", ProviderType.GENERIC, url)

    outcome = await provider.send(TARGET, HALTED)

    assert not outcome.ok and not outcome.reachable
    assert outcome.message == "request failed: connection refused"


async def test_failures_are_delivery_lines_never_exceptions_and_never_show_the_url(
    receiver: Receiver,
) -> None:
    canary = make_canary(
        [
            alert("unknown", "nobody"),
            alert("bad-type", "pager"),
            alert("broken", "broken"),
            alert("fine", "fine"),
        ]
    )
    secret_url = receiver.url.replace("http://", "http://token:s3cr3t@") + "/fail"
    environ = {
        **env_provider("PAGER", "pagerduty", f"{receiver.url}/ok"),
        **env_provider("BROKEN", "generic", secret_url),
        **env_provider("FINE", "generic", f"{receiver.url}/ok"),
    }

    deliveries = await send_alerts(AlertProviders(environ), canary, [HALTED])

    lines = {d.alert: d.describe() for d in deliveries}
    assert lines["unknown"] == (
        "alert unknown (provider nobody): not sent: unknown alert provider 'nobody': "
        "set COALMINE_ALERT_NOBODY_TYPE and COALMINE_ALERT_NOBODY_URL, "
        "or add it to the file named by COALMINE_ALERT_PROVIDERS"
    )
    assert lines["bad-type"] == (
        "alert bad-type (provider pager): not sent: alert provider 'pager': "
        "unknown type 'pagerduty' (known: slack, msteams, discord, generic)"
    )
    assert lines["broken"].startswith(
        "alert broken (provider broken): halted not sent: status 500: load test failed"
    )
    assert lines["fine"] == "alert fine (provider fine): halted sent: status 200"
    assert all("s3cr3t" not in line for line in lines.values())


async def test_a_1_gib_answer_is_not_sent_at_the_cap_and_is_not_held_in_memory() -> None:
    with HostileServer() as server:
        provider = AlertProvider("hook", ProviderType.GENERIC, f"{server.url}/huge")
        tracemalloc.start()
        try:
            outcome = await asyncio.wait_for(provider.send(TARGET, HALTED, 60), timeout=120)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert (outcome.ok, outcome.message) == (False, "response body larger than 1 MiB")
    assert peak < 16 * 1024 * 1024


async def test_a_provider_dripping_its_answer_fails_at_the_overall_deadline() -> None:
    with HostileServer() as server:
        provider = AlertProvider("hook", ProviderType.GENERIC, f"{server.url}/drip")
        outcome = await asyncio.wait_for(provider.send(TARGET, HALTED, 1), timeout=30)

    assert (outcome.ok, outcome.message) == (False, "timed out after 1s")


async def test_an_error_page_quoting_the_url_is_reported_without_its_secrets() -> None:
    canary = make_canary([alert("ops", "team-hook")])
    with HostileServer() as server:
        secret_url = server.url.replace("http://", "http://bot:pa55w0rd@")
        secret_url += "/echo/T0KEN-in-path/x?token=T0KEN-in-query&v=1"
        providers = AlertProviders(env_provider("TEAM_HOOK", "generic", secret_url))

        [delivery] = await send_alerts(providers, canary, [HALTED])

    line = delivery.describe()
    assert line.startswith(
        "alert ops (provider team-hook): halted not sent: status 403: no webhook"
    )
    for secret in ("T0KEN", "pa55w0rd", "bot:", "echo", "token="):
        assert secret not in line


def test_a_provider_repr_hides_the_url() -> None:
    provider = AlertProvider("slack", ProviderType.SLACK, "https://hooks.slack.com/services/T/B/X")

    assert "hooks.slack.com" not in repr(provider)


# --- severity filter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert_severity", "notification_severity", "sent"),
    [
        (Severity.INFO, Severity.INFO, True),
        (Severity.INFO, Severity.WARN, True),
        (Severity.INFO, Severity.ERROR, True),
        (Severity.WARN, Severity.INFO, False),
        (Severity.WARN, Severity.WARN, True),
        (Severity.WARN, Severity.ERROR, True),
        (Severity.ERROR, Severity.INFO, False),
        (Severity.ERROR, Severity.WARN, False),
        (Severity.ERROR, Severity.ERROR, True),
    ],
)
def test_severity_filter(
    alert_severity: Severity, notification_severity: Severity, sent: bool
) -> None:
    assert admits(alert_severity, notification_severity) is sent


async def test_each_alert_gets_the_notifications_its_severity_admits(receiver: Receiver) -> None:
    canary = make_canary(
        [
            alert("all", "hook", "info"),
            alert("warnings", "hook", "warn"),
            alert("errors", "hook", "error"),
        ]
    )
    providers = AlertProviders(env_provider("HOOK", "generic", f"{receiver.url}/ok"))

    deliveries = await send_alerts(providers, canary, [ADVANCED, HALTED, ROLLED_BACK])

    assert all(d.ok for d in deliveries)
    by_alert = {
        name: [d.kind for d in deliveries if d.alert == name]
        for name in ("all", "warnings", "errors")
    }
    assert by_alert == {
        "all": [NotificationKind.ADVANCED, NotificationKind.HALTED, NotificationKind.ROLLED_BACK],
        "warnings": [NotificationKind.HALTED, NotificationKind.ROLLED_BACK],
        "errors": [NotificationKind.ROLLED_BACK],
    }
    received = sorted(body["severity"] for body in receiver.bodies)
    assert received == ["error", "error", "error", "info", "warn", "warn"]


async def test_an_alert_that_admits_nothing_is_not_even_resolved() -> None:
    canary = make_canary([alert("errors", "nobody", "error")])

    assert await send_alerts(AlertProviders(), canary, [ADVANCED]) == []


# --- resolution: environment ------------------------------------------------------------------


def test_environment_names_are_upper_cased_with_dashes_and_dots_as_underscores() -> None:
    environ = {
        "COALMINE_ALERT_ON_CALL_SLACK_TYPE": "Slack",
        "COALMINE_ALERT_ON_CALL_SLACK_URL": "https://hooks.slack.com/services/T/B/X\n",
        "COALMINE_ALERT_ON_CALL_SLACK_CHANNEL": "#on-call",
        "COALMINE_ALERT_ON_CALL_SLACK_USERNAME": "coalmine",
        "UNRELATED": "x",
    }
    providers = AlertProviders.from_environment(environ)

    provider = providers.resolve(ProviderRef(name="on-call.slack"), NAMESPACE)

    assert provider == AlertProvider(
        "on-call.slack",
        ProviderType.SLACK,
        "https://hooks.slack.com/services/T/B/X",
        channel="#on-call",
        username="coalmine",
    )


def test_environment_with_only_one_of_type_and_url_names_the_missing_variable() -> None:
    providers = AlertProviders.from_environment({"COALMINE_ALERT_TEAMS_URL": "https://x.test/"})

    with pytest.raises(AlertError, match="COALMINE_ALERT_TEAMS_TYPE is not set"):
        providers.resolve(ProviderRef(name="teams"), NAMESPACE)


def test_a_url_that_is_not_http_is_refused_without_being_shown() -> None:
    providers = AlertProviders(env_provider("HOOK", "generic", "ftp://secret-host/x"))

    with pytest.raises(AlertError, match="not an http\\(s\\) URL") as caught:
        providers.resolve(ProviderRef(name="hook"), NAMESPACE)
    assert "secret-host" not in str(caught.value)


def test_environment_comes_before_the_file(tmp_path: Path) -> None:
    file = providers_file(
        tmp_path, "- name: slack\n  type: slack\n  address: https://file.test/hook\n"
    )
    environ = {**file, **env_provider("SLACK", "discord", "https://env.test/hook")}

    provider = AlertProviders.from_environment(environ).resolve(
        ProviderRef(name="slack"), NAMESPACE
    )

    assert (provider.type, provider.url) == (ProviderType.DISCORD, "https://env.test/hook")


# --- resolution: providers file ---------------------------------------------------------------


def test_file_entries_resolve_with_their_channel_and_username(tmp_path: Path) -> None:
    environ = providers_file(
        tmp_path,
        """
- name: slack
  type: slack
  address: https://hooks.slack.com/services/T/B/X
  channel: "#deploys"
  username: coalmine
- name: teams
  type: msteams
  address: https://example.webhook.office.com/webhookb2/x
""",
    )
    providers = AlertProviders.from_environment(environ)

    slack = providers.resolve(ProviderRef(name="slack"), NAMESPACE)
    teams = providers.resolve(ProviderRef(name="teams"), NAMESPACE)

    assert slack == AlertProvider(
        "slack",
        ProviderType.SLACK,
        "https://hooks.slack.com/services/T/B/X",
        channel="#deploys",
        username="coalmine",
    )
    assert (teams.type, teams.channel, teams.username) == (ProviderType.MSTEAMS, None, None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: slack\n", "expected a list of providers"),
        ("- [not, a, mapping]\n", "entry 1: entry: Input should be"),
        ("- name: slack\n  type: slack\n", "entry 1 (slack): entry: Value error, set exactly one"),
        (
            "- name: slack\n  type: slack\n  address: https://a.test\n  secretRef: {name: s}\n",
            "set exactly one of address and secretRef",
        ),
        (
            "- name: slack\n  type: pagerduty\n  address: https://a.test\n",
            "alert provider 'slack': unknown type 'pagerduty'",
        ),
        (
            "- name: slack\n  type: slack\n  address: https://a.test\n  color: red\n",
            "entry 1 (slack): color: Extra inputs are not permitted",
        ),
        (
            "- {name: a, type: slack, address: 'https://a.test'}\n"
            "- {name: a, type: slack, address: 'https://b.test'}\n",
            "entry 2 (a): provider 'a' is defined twice",
        ),
        ("- name: [unclosed\n", "is not valid YAML"),
    ],
)
def test_a_broken_providers_file_fails_at_worker_start(
    tmp_path: Path, text: str, problem: str
) -> None:
    environ = providers_file(tmp_path, text)

    with pytest.raises(AlertError) as caught:
        AlertProviders.from_environment(environ)

    assert problem in str(caught.value)
    assert "providers.yaml" in str(caught.value)


def test_a_missing_providers_file_fails_at_worker_start(tmp_path: Path) -> None:
    environ = {"COALMINE_ALERT_PROVIDERS": str(tmp_path / "absent.yaml")}

    with pytest.raises(AlertError, match=r"cannot read alert providers file .*absent\.yaml"):
        AlertProviders.from_environment(environ)


def test_an_empty_providers_file_defines_nothing(tmp_path: Path) -> None:
    providers = AlertProviders.from_environment(providers_file(tmp_path, ""))

    with pytest.raises(AlertError, match="unknown alert provider 'slack'"):
        providers.resolve(ProviderRef(name="slack"), NAMESPACE)


# --- resolution: secretRef through the Kubernetes API (kmock) ---------------------------------


async def test_a_secret_ref_is_read_decoded_and_used(
    tmp_path: Path, kube: ServedEmulator, receiver: Receiver
) -> None:
    kube.put(SECRETS, secret("slack-webhook", {"address": f"{receiver.url}/accepted\n"}))
    environ = providers_file(
        tmp_path, "- name: slack\n  type: slack\n  secretRef:\n    name: slack-webhook\n"
    )
    providers = AlertProviders.from_environment(
        environ, secret_reader=KubernetesSecretReader(lambda: kube.api)
    )
    canary = make_canary([alert("deploys", "slack")])

    provider = providers.resolve(ProviderRef(name="slack"), NAMESPACE)
    deliveries = await send_alerts(providers, canary, [ADVANCED])

    assert provider.url == f"{receiver.url}/accepted"
    assert [d.describe() for d in deliveries] == [
        "alert deploys (provider slack): advanced sent: status 202"
    ]
    assert receiver.bodies[0]["text"] == ADVANCED.message


def test_a_secret_ref_namespace_and_key_take_precedence(
    tmp_path: Path, kube: ServedEmulator
) -> None:
    kube.put(SECRETS, secret("hooks", {"teams": "https://in-ref.test/"}, namespace="ops"))
    kube.put(SECRETS, secret("hooks", {"teams": "https://in-file.test/"}, namespace="alerts"))
    environ = providers_file(
        tmp_path,
        """
- name: from-ref
  type: msteams
  secretRef: {name: hooks, key: teams}
- name: from-file
  type: msteams
  secretRef: {name: hooks, namespace: alerts, key: teams}
""",
    )
    providers = AlertProviders.from_environment(
        environ, secret_reader=KubernetesSecretReader(lambda: kube.api)
    )

    from_ref = providers.resolve(ProviderRef(name="from-ref", namespace="ops"), NAMESPACE)
    from_file = providers.resolve(ProviderRef(name="from-file", namespace="ops"), NAMESPACE)

    assert from_ref.url == "https://in-ref.test/"
    assert from_file.url == "https://in-file.test/"


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (None, "cannot read Secret test/slack-webhook: secret test/slack-webhook not found"),
        ({"token": "x"}, "Secret test/slack-webhook has no key 'address'"),
    ],
)
def test_an_unreadable_secret_ref_is_an_alert_error(
    tmp_path: Path, kube: ServedEmulator, stored: dict[str, str] | None, problem: str
) -> None:
    if stored is not None:
        kube.put(SECRETS, secret("slack-webhook", stored))
    environ = providers_file(
        tmp_path, "- name: slack\n  type: slack\n  secretRef: {name: slack-webhook}\n"
    )
    providers = AlertProviders.from_environment(
        environ, secret_reader=KubernetesSecretReader(lambda: kube.api)
    )

    with pytest.raises(AlertError) as caught:
        providers.resolve(ProviderRef(name="slack"), NAMESPACE)

    assert str(caught.value) == problem


def test_a_secret_ref_refused_by_rbac_names_the_permission(
    tmp_path: Path, kube: ServedEmulator
) -> None:
    kube.put(SECRETS, secret("slack-webhook", {"address": "https://x.test/"}))
    kube.refuse("get", SECRETS)
    environ = providers_file(
        tmp_path, "- name: slack\n  type: slack\n  secretRef: {name: slack-webhook}\n"
    )
    providers = AlertProviders.from_environment(
        environ, secret_reader=KubernetesSecretReader(lambda: kube.api)
    )

    with pytest.raises(AlertError, match="RBAC refusal: not allowed to get secrets"):
        providers.resolve(ProviderRef(name="slack"), NAMESPACE)


def test_a_secret_ref_without_a_kubernetes_client_is_an_alert_error(tmp_path: Path) -> None:
    environ = providers_file(
        tmp_path, "- name: slack\n  type: slack\n  secretRef: {name: slack-webhook}\n"
    )
    providers = AlertProviders.from_environment(environ)

    with pytest.raises(AlertError, match="Secret test/slack-webhook but this worker has no"):
        providers.resolve(ProviderRef(name="slack"), NAMESPACE)
