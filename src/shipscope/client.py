"""A client for a running shipscope server's API, used by CLI commands when the server owns the database."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import httpx
import orjson

from shipscope.errors import RemoteError
from shipscope.ingest import Delivery
from shipscope.ingest.generic import Record


class ServerClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str = "",
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def post_records(self, records: Sequence[Record]) -> dict[str, object]:
        """Sends records as one NDJSON body; the answer's line numbers count records from 1."""
        body = b"\n".join(data for _, data in records)
        try:
            response = self._http.post("/api/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"})
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server at {self.base_url}: {error}", status=0) from error
        if response.status_code not in (200, 207, 400):
            raise RemoteError(_error_message(response), status=response.status_code)
        answer = response.json()
        if response.status_code == 400 and "stored" not in answer:
            raise RemoteError(_error_message(response), status=400)
        assert isinstance(answer, dict)
        return answer

    def post_report(self, fmt: str, body: bytes, params: dict[str, str]) -> dict[str, object]:
        """Uploads one report (junit, sarif, cache-log) for the server to parse and journal."""
        try:
            response = self._http.post(f"/api/v1/reports/{fmt}", content=body, params=params)
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server at {self.base_url}: {error}", status=0) from error
        if response.status_code != 200:
            raise RemoteError(_error_message(response), status=response.status_code)
        answer = response.json()
        assert isinstance(answer, dict)
        return answer

    def post_journal(self, deliveries: Sequence[Delivery]) -> list[bool]:
        """Raw payloads for the server to journal and decode; per delivery, whether it was new."""
        lines = [
            orjson.dumps(
                {
                    "source": delivery.source,
                    "delivery_id": delivery.delivery_id,
                    "kind": delivery.kind,
                    "headers": delivery.headers,
                    "body": base64.b64encode(delivery.body).decode(),
                }
            )
            for delivery in deliveries
        ]
        try:
            response = self._http.post("/api/v1/journal", content=b"\n".join(lines))
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server at {self.base_url}: {error}", status=0) from error
        if response.status_code != 200:
            raise RemoteError(_error_message(response), status=response.status_code)
        new = response.json()["new"]
        assert isinstance(new, list)
        return [bool(flag) for flag in new]

    @property
    def cursors(self) -> RemoteCursors:
        return RemoteCursors(self)

    def post_json(self, path: str, body: dict[str, object], params: dict[str, str] | None = None) -> dict[str, object]:
        """A JSON request to the API; a refusal (4xx) is a RemoteError with the server's message and status."""
        try:
            response = self._http.post(path, json=body, params=params or {})
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server at {self.base_url}: {error}", status=0) from error
        if not response.is_success:
            raise RemoteError(_error_message(response), status=response.status_code)
        answer = response.json()
        assert isinstance(answer, dict)
        return answer

    def get_text(self, path: str, params: dict[str, str]) -> str:
        return self._get(path, params).text

    def get_json(self, path: str, params: dict[str, str]) -> dict[str, object]:
        answer = self._get(path, params).json()
        assert isinstance(answer, dict)
        return answer

    def _get(self, path: str, params: dict[str, str]) -> httpx.Response:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server at {self.base_url}: {error}", status=0) from error
        if response.status_code != 200:
            raise RemoteError(_error_message(response), status=response.status_code)
        return response


class RemoteCursors:
    """The server's cursor table, for a backfill run while the server owns the database."""

    def __init__(self, client: ServerClient) -> None:
        self._client = client

    def get(self, key: str) -> str | None:
        value = self._client.get_json(f"/api/v1/cursors/{key}", {}).get("value")
        return value if isinstance(value, str) else None

    def set(self, key: str, value: str) -> None:
        try:
            response = self._client._http.put(f"/api/v1/cursors/{key}", content=orjson.dumps({"value": value}))
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server: {error}", status=0) from error
        if response.status_code != 200:
            raise RemoteError(_error_message(response), status=response.status_code)


def _error_message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("error")
    except ValueError:
        detail = None
    return f"the shipscope server answered {response.status_code}: {detail or response.text[:200]}"
