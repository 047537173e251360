"""PagerDuty REST API: a note on an incident (``POST /incidents/{id}/notes``).

https://developer.pagerduty.com/api-reference/3c0ad6ec5b0ef-create-a-note-on-an-incident — headers
``Authorization: Token token=<API key>``, ``From: <email of a PagerDuty user>`` and
``Accept: application/vnd.pagerduty+json;version=2``; body ``{"note": {"content": …}}``.

Configured by ``PAGERDUTY_API_TOKEN`` and ``PAGERDUTY_FROM``; ``PAGERDUTY_API_URL`` replaces
https://api.pagerduty.com.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from shipscope.errors import InputError
from shipscope.integrations.http import OutboundRequest

NAME = "pagerduty"


def note_request(incident_id: str, content: str, environ: Mapping[str, str]) -> OutboundRequest:
    token = environ.get("PAGERDUTY_API_TOKEN", "").strip()
    sender = environ.get("PAGERDUTY_FROM", "").strip()
    if not token or not sender:
        raise InputError("a note on a PagerDuty incident needs PAGERDUTY_API_TOKEN and PAGERDUTY_FROM")
    base = (environ.get("PAGERDUTY_API_URL", "").strip() or "https://api.pagerduty.com").rstrip("/")
    return OutboundRequest(
        NAME,
        "POST",
        f"{base}/incidents/{quote(incident_id, safe='')}/notes",
        {
            "Authorization": f"Token token={token}",
            "From": sender,
            "Accept": "application/vnd.pagerduty+json;version=2",
            "Content-Type": "application/json",
        },
        {"note": {"content": content[:25000]}},
        secrets=(token,),
        what=f"add a note to incident {incident_id}",
    )
