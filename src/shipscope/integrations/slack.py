"""Slack deploy notices: a Block Kit message posted to an incoming webhook.

https://api.slack.com/messaging/webhooks and https://api.slack.com/reference/block-kit/blocks

The message names the service, version, commit, image digest, environment and deployer, with buttons to the
dashboard, the pipeline and the rollback runbook; a failure (or a rollback) says so in its header and colour of
emoji, and carries the reason. ``text`` is the notification fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shipscope.deploy.context import DeployInfo
from shipscope.integrations.http import OutboundRequest

NAME = "slack"
_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _header(info: DeployInfo, status: str) -> str:
    version = info.version or info.sha[:12]
    if info.kind == "rollback":
        mark = ":leftwards_arrow_with_hook:" if status == "success" else ":x:"
        verb = "Rolled back" if status == "success" else "Rollback failed:"
        return f"{mark} {verb} {info.service} in {info.environment} to {version}"
    if status == "success":
        return f":white_check_mark: Deployed {info.service} {version} to {info.environment}"
    if status == "in_progress":
        return f":hourglass_flowing_sand: Deploying {info.service} {version} to {info.environment}"
    return f":x: Deploy of {info.service} {version} to {info.environment} failed"


def deploy_message(
    info: DeployInfo,
    status: str,
    *,
    dashboard_url: str | None = None,
    runbook_url: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    header = _header(info, status)
    fields = [
        ("Service", info.service),
        ("Environment", info.environment),
        ("Version", info.version or "—"),
        ("Commit", f"`{info.sha[:12]}`"),
        ("Image digest", f"`{info.image_digest}`" if info.image_digest else "—"),
        ("Deployed by", info.actor or "—"),
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{_escape(value)}"} for name, value in fields],
        },
    ]
    if reason:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{_escape(reason)[:2900]}"}})
    links = [("Dashboard", dashboard_url), ("Pipeline", info.url), ("Rollback runbook", runbook_url)]
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url} for label, url in links if url
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"deployment `{_escape(info.id)}` · shipscope"}]}
    )
    fallback = header.split(" ", 1)[1] + (f": {reason}" if reason else "")
    return {"text": fallback, "blocks": blocks}


def notice_requests(urls: list[str], message: Mapping[str, Any]) -> list[OutboundRequest]:
    return [
        OutboundRequest(NAME, "POST", url, _HEADERS, dict(message), secrets=(url,), what="post the notice")
        for url in urls
    ]
