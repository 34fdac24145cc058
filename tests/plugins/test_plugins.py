"""Plugins: loading, hook validation, the backend registry, and the verdict every backend starts from."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import pluggy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from licensor import PUBLIC, Call, Operation, Param, Reply, hookspecs
from licensor.backend import Backend, CheckRequest, license_terms_verdict
from licensor.errors import ValidationError
from licensor.mail import Mail, MailSender
from licensor.model import canonical_json
from licensor.orders import OrderEvent, OrderSource
from licensor.plugins import BackendRegistry, collect_backends, collect_order_sources, plugin_manager
from licensor.testing import Gateway
from licensor.verdict import Code, Verdict

HOOKS = [name for name, value in vars(hookspecs).items() if name.startswith("licensor_") and callable(value)]


class EchoBackend(Backend):
    name = "echo"
    options_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"seats_per_user": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    }

    async def check(self, request: CheckRequest) -> Verdict:
        return license_terms_verdict(request)


class EchoPlugin:
    @hookspecs.hookimpl
    def licensor_register_backends(self, register: Any) -> None:
        register(EchoBackend())


def test_every_hook_is_named_for_the_project_and_documented() -> None:
    assert HOOKS, "licensor offers hooks"
    for name in HOOKS:
        hook = getattr(hookspecs, name)
        doc = inspect.getdoc(hook) or ""
        assert doc.splitlines()[0].endswith("."), f"{name} has a one-line summary"
        for parameter in inspect.signature(hook).parameters:
            assert f":param {parameter}:" in doc, f"{name} documents {parameter}"
        assert ":returns:" in doc, f"{name} documents what it returns"


def test_every_hook_has_a_test_of_its_own() -> None:
    tested = {name.removeprefix("test_hook_") for name in globals() if name.startswith("test_hook_")}
    assert set(HOOKS) <= tested


def test_hook_licensor_register_backends() -> None:
    registry = collect_backends(plugin_manager([EchoPlugin()], load_entry_points=False))
    assert "echo" in registry and isinstance(registry.get("echo"), EchoBackend)
    assert list(registry) == ["echo"]


def test_hook_licensor_event() -> None:
    seen: list[dict[str, Any]] = []

    class Observer:
        @hookspecs.hookimpl
        def licensor_event(self, event: dict[str, Any]) -> None:
            seen.append(event)

    manager = plugin_manager([Observer()], load_entry_points=False)
    manager.hook.licensor_event(event={"type": "license.created"})
    assert seen == [{"type": "license.created"}]


def test_hook_licensor_register_order_sources() -> None:
    class Plain(OrderSource):
        kind = "plain"

        def verify(self, headers: Any, body: bytes, secrets: Any, now: float) -> None: ...

        def events(self, headers: Any, body: bytes) -> list[OrderEvent]:
            return []

    class PlainPlugin:
        @hookspecs.hookimpl
        def licensor_register_order_sources(self, register: Any) -> None:
            register(Plain())

    sources = collect_order_sources(plugin_manager([PlainPlugin()], load_entry_points=False))
    assert sorted(sources) == ["fastspring", "paddle", "plain", "shopify", "standard-webhooks", "stripe"]
    assert isinstance(sources["plain"], Plain)

    class Twice:
        @hookspecs.hookimpl
        def licensor_register_order_sources(self, register: Any) -> None:
            register(Plain())

    with pytest.raises(ValueError, match="two order sources are of kind 'plain'"):
        collect_order_sources(plugin_manager([PlainPlugin(), Twice()], load_entry_points=False))
    Plain.kind = "Not A Kind"
    with pytest.raises(ValueError, match="order source kind"):
        collect_order_sources(plugin_manager([Twice()], load_entry_points=False))


async def test_hook_licensor_mail_sender(tmp_path: Any) -> None:
    sent: list[Mail] = []

    class Recorder(MailSender):
        async def send(self, mail: Mail) -> None:
            sent.append(mail)

    class MailPlugin:
        @hookspecs.hookimpl
        def licensor_mail_sender(self) -> MailSender:
            return Recorder()

    sender = plugin_manager([MailPlugin()], load_entry_points=False).hook.licensor_mail_sender()
    await sender.send(Mail("ada@example.com", "Hello", "text"))
    assert sent == [Mail("ada@example.com", "Hello", "text")]
    assert plugin_manager([], load_entry_points=False).hook.licensor_mail_sender() is None  # the default then


def test_a_misspelt_hook_implementation_fails_at_start_up() -> None:
    class Misspelt:
        @hookspecs.hookimpl
        def licensor_register_backend(self, register: Any) -> None:  # one letter short
            register(EchoBackend())

    with pytest.raises(pluggy.PluginValidationError):
        plugin_manager([Misspelt()], load_entry_points=False)


def test_autoloading_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(
        pluggy.PluginManager, "load_setuptools_entrypoints", lambda self, group, name=None: loaded.append(group) or 0
    )
    plugin_manager()
    assert loaded == ["licensor.backends"]
    monkeypatch.setenv("LICENSOR_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugin_manager()
    assert loaded == ["licensor.backends"]


def test_registering_a_plugin_twice_is_harmless() -> None:
    plugin = EchoPlugin()
    registry = collect_backends(plugin_manager([plugin, plugin], load_entry_points=False))
    assert list(registry) == ["echo"]


def test_two_backends_with_one_name_are_refused() -> None:
    registry = BackendRegistry()
    registry.register(EchoBackend())
    with pytest.raises(ValueError, match="two backends are named 'echo'"):
        registry.register(EchoBackend())


@pytest.mark.parametrize("name", ["", "Echo", "1echo", "echo_1", "e" * 33, None])
def test_a_backend_with_a_malformed_name_is_refused(name: object) -> None:
    backend = EchoBackend()
    backend.name = name  # type: ignore[misc]
    with pytest.raises(ValueError, match="backend name"):
        BackendRegistry().register(backend)


def test_policy_options_are_validated_by_the_backend() -> None:
    backend = EchoBackend()
    assert backend.validate_options({"seats_per_user": 2}) == {"seats_per_user": 2}
    for bad in ({"seats_per_user": 0}, {"unknown": 1}, {"seats_per_user": "2"}):
        with pytest.raises(ValidationError) as refused:
            backend.validate_options(bad)
        assert refused.value.code == "INVALID_POLICY_OPTIONS"


# --- the verdict every backend starts from ------------------------------------------------------------------
DAY = 86_400 * 1_000_000


def _request(
    state: str = "active",
    starts: int = 0,
    expires: int | None = 10 * DAY,
    now: int = DAY,
    features: tuple[str, ...] = (),
    granted: tuple[str, ...] = ("export",),
    overrides: dict[str, Any] | None = None,
) -> CheckRequest:
    license = {
        "id": "lic_1",
        "state": state,
        "starts_at": starts,
        "expires_at": expires,
        "maintenance_until": None,
        "overrides": canonical_json(overrides or {}),
    }
    policy = {"features": canonical_json([{"code": code, "quantity": None} for code in granted]), "seats": 1}
    return CheckRequest("ten_1", license, policy, features=features, now_us=now)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (_request(), Code.VALID),
        (_request(state="revoked", expires=0), Code.REVOKED),
        (_request(state="suspended"), Code.SUSPENDED),
        (_request(starts=2 * DAY), Code.NOT_YET_VALID),
        (_request(now=10 * DAY), Code.EXPIRED),
        (_request(expires=None, now=10_000 * DAY), Code.VALID),
        (_request(features=("export", "print")), Code.FEATURE_NOT_ENTITLED),
        (_request(features=("print",), overrides={"features": {"print": 5}}), Code.VALID),
    ],
)
def test_license_terms_give_the_expected_verdict(request_: CheckRequest, code: Code) -> None:
    assert license_terms_verdict(request_).code is code


@given(asked=st.sets(st.sampled_from(["a", "b", "c", "d"])), granted=st.sets(st.sampled_from(["a", "b", "c", "d"])))
def test_a_verdict_is_valid_exactly_when_every_asked_feature_is_granted(asked: set[str], granted: set[str]) -> None:
    verdict = license_terms_verdict(_request(features=tuple(sorted(asked)), granted=tuple(sorted(granted))))
    assert verdict.valid == (asked <= granted)
    if verdict.valid:
        assert {e.feature for e in verdict.entitlements} == granted


# --- hooks through the real gateway ---------------------------------------------------------------------
class RoutesAndEvents:
    """Adds an operation of its own and records the events it observes."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    @hookspecs.hookimpl
    def licensor_register_routes(self, register: Callable[[Operation], None]) -> None:
        async def ping(call: Call) -> Reply:
            return Reply(200, {"pong": call.query.get("word", "")})

        register(
            Operation(
                method="GET",
                path="/v1/echo/ping",
                operation_id="echo_ping",
                summary="Answer pong",
                handler=ping,
                tag="echo",
                auth=PUBLIC,
                response_schema={"type": "object", "properties": {"pong": {"type": "string"}}, "required": ["pong"]},
                query=(Param("word", {"type": "string", "maxLength": 10}),),
            )
        )

    @hookspecs.hookimpl
    def licensor_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        raise RuntimeError("an observer's failure is only logged")


OBSERVER = RoutesAndEvents()


@pytest.fixture
def licensor_plugins() -> tuple[object, ...]:
    OBSERVER.events.clear()
    return (OBSERVER, EchoPlugin())


async def test_hook_licensor_register_routes(licensor_gateway: Gateway) -> None:
    answer = await licensor_gateway.call("GET", "/v1/echo/ping", params={"word": "hello"})
    assert (answer.status, answer.body) == (200, {"pong": "hello"})
    refused = await licensor_gateway.call("GET", "/v1/echo/ping", params={"word": "x" * 11})
    assert (refused.status, refused.code) == (400, "INVALID_PARAMETER")  # licensor's validation and error format
    document = (await licensor_gateway.call("GET", "/openapi.json")).body
    assert document["paths"]["/v1/echo/ping"]["get"]["operationId"] == "echo_ping"


async def test_hook_licensor_event_sees_committed_events(licensor_gateway: Gateway) -> None:
    tenant = await licensor_gateway.tenant("Observed")
    product = await tenant.product(code="app")  # the observer raises: the change is made all the same
    failed = await tenant.call("POST", "/v1/admin/products", json={"code": "app", "name": "Twice"})
    assert failed.status == 409
    await tenant.ok("GET", "/v1/admin/events/verify")  # reading the log links what is queued, and shows it
    created = [event for event in OBSERVER.events if event["type"] == "product.created"]
    assert [event["subject_id"] for event in created] == [product["id"]]  # the rolled-back one is not shown
    assert created[0]["data"]["code"] == "app" and created[0]["seq"] >= 1
