"""Journal kind → the parser that turns a journaled payload back into events (used by reprocess).

A new source registers its kinds here, next to its module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from shipscope.errors import InputError
from shipscope.events import Event
from shipscope.ingest import generic, github_api, gitlab_api, reports, webhooks

Parser = Callable[[bytes, Mapping[str, str]], Sequence[Event]]

PARSERS: dict[str, Parser] = {
    generic.KIND: lambda body, headers: generic.decode(body),
    "github": webhooks.decode_github,
    "gitlab": webhooks.decode_gitlab,
    "alertmanager": lambda body, headers: webhooks.alertmanager_delivery(body, headers).delivery.events,
    "pagerduty": lambda body, headers: webhooks.pagerduty_delivery(body, headers).delivery.events,
    "opsgenie": lambda body, headers: webhooks.opsgenie_delivery(body, headers).delivery.events,
    "flags": lambda body, headers: webhooks.flag_delivery(body, headers).delivery.events,
    "kubernetes": lambda body, headers: webhooks.kubernetes_delivery(body, headers).delivery.events,
    **reports.PARSERS,
}


def _api_object(decode_kind: Callable[[str, bytes], Sequence[Event]], kind: str) -> Parser:
    return lambda body, headers: decode_kind(kind, body)


PARSERS.update({kind: _api_object(github_api.decode, kind) for kind in github_api.KINDS})
PARSERS.update({kind: _api_object(gitlab_api.decode, kind) for kind in gitlab_api.KINDS})


def decode(kind: str, body: bytes, headers: Mapping[str, str]) -> Sequence[Event]:
    """Raises ValueError when no parser accepts the entry any more (reprocess reports it and goes on)."""
    parser = PARSERS.get(kind)
    if parser is None:
        raise ValueError(f"no parser for journal entries of kind {kind!r}")
    try:
        return parser(body, headers)
    except InputError as error:
        raise ValueError(error.message) from error
