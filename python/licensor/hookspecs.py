"""The hooks licensor offers to plugins (pluggy project ``licensor``), grouped by lifecycle.

Plugins implement them with ``@licensor.hookimpl``. Registration hooks take a ``register``
callback, so a plugin adds what it has without returning anything; the gateway dispatches checks through the
registry this fills (a dict), never by calling every plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from licensor.backend import Backend
    from licensor.mail import MailSender
    from licensor.operations import Operation
    from licensor.orders import OrderSource

PROJECT = "licensor"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- start-up: what a plugin brings --------------------------------------------------------------------
@hookspec
def licensor_register_backends(register: Callable[[Backend], None]) -> None:
    """Register license backends.

    :param register: call it once per :class:`licensor.backend.Backend` instance the plugin provides; a
        second backend with a name already registered raises ValueError at start-up.
    :returns: nothing; results are ignored.
    """


@hookspec
def licensor_register_routes(register: Callable[[Operation], None]) -> None:
    """Add HTTP operations to the gateway.

    A backend's own routes are simpler as :meth:`licensor.Backend.operations`.

    :param register: call it once per :class:`licensor.Operation`: the route gets licensor's authentication,
        validation, error format, idempotency, a place in the OpenAPI document and, for an admin operation, a
        ``licensor admin`` command; a second operation with a method and path, or an operation id, already
        registered raises ValueError at start-up.
    :returns: nothing; results are ignored.
    """


@hookspec
def licensor_register_order_sources(register: Callable[[OrderSource], None]) -> None:
    """Add shops' webhook formats for the order intake (``POST /v1/orders/{source}``).

    :param register: call it once per :class:`licensor.orders.OrderSource` instance; a second source with a
        kind already registered (the built-in ``stripe``, ``paddle``, ``shopify``, ``fastspring`` and
        ``standard-webhooks`` included) raises ValueError at start-up.
    :returns: nothing; results are ignored.
    """


@hookspec(firstresult=True)
def licensor_mail_sender() -> MailSender | None:
    """How the gateway sends mail to end users (a license key bought in a shop, a portal sign-in link).

    firstresult: the first plugin returning a sender decides.

    :returns: a :class:`licensor.mail.MailSender`, or None to leave the default: messages written as files to
        ``{data_dir}/mail`` (or only logged, ``LICENSOR_MAIL=log``).
    """


# --- while serving: what happened ----------------------------------------------------------------------
@hookspec
def licensor_event(event: dict[str, Any]) -> None:
    """Observe an event once it is linked into its tenant's hash chain (audit export, metrics, webhooks).

    That is at its transaction's commit, or milliseconds after it. Each event is shown once, by the gateway
    process that linked it: on PostgreSQL with several processes, usually the one that wrote it.

    :param event: the event as the admin API shows it (``id``, ``seq``, ``type``, ``subject_type``,
        ``subject_id``, ``actor``, ``data``, ``created_at``). Never holds a secret or a license key.
    :returns: nothing; an exception is logged and does not affect the request.
    """
