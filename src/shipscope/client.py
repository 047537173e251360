"""A client for a running shipscope server's API, used by CLI commands when the server owns the database."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from shipscope.errors import RemoteError
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

    def get_json(self, path: str, params: dict[str, str]) -> dict[str, object]:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as error:
            raise RemoteError(f"cannot reach the shipscope server at {self.base_url}: {error}", status=0) from error
        if response.status_code != 200:
            raise RemoteError(_error_message(response), status=response.status_code)
        answer = response.json()
        assert isinstance(answer, dict)
        return answer


def _error_message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("error")
    except ValueError:
        detail = None
    return f"the shipscope server answered {response.status_code}: {detail or response.text[:200]}"
