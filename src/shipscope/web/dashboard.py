"""The dashboard: server-rendered pages (Jinja2) over the metric functions, charts drawn by Plotly in the browser.

Every asset a page loads comes from this server: the stylesheet and the small script under ``/static/``, and
Plotly's bundle from the installed ``plotly`` package. Filters live in the URL (a GET form), so a link shows a
colleague the same view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from shipscope import __version__, postmortems
from shipscope.alerts import STATE_KEY
from shipscope.errors import AuthError, Forbidden, NotFound, ShipscopeError
from shipscope.metrics.common import MetricsConfig
from shipscope.metrics.incidents import find_incident, incident_timeline
from shipscope.metrics.listings import FilterOptions, filter_options
from shipscope.metrics.thresholds import Threshold
from shipscope.store import Store
from shipscope.web import pages
from shipscope.web.format import FILTERS, path_segment

STATIC = Path(str(files("shipscope.web") / "static"))
PLOTLY_BUNDLE = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
ASSET_MAX_AGE = 3600

NAVIGATION = (
    ("/", "Overview"),
    ("/pipelines", "Pipelines"),
    ("/tests", "Tests"),
    ("/security", "Security"),
    ("/deployments", "Deployments"),
    ("/incidents", "Incidents"),
    ("/devex", "Developer experience"),
)

_templates = Environment(
    loader=PackageLoader("shipscope.web", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(FILTERS)
_templates.globals.update(navigation=NAVIGATION, version=__version__)


CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Pages load only this server's assets (Plotly sets inline styles on the charts it draws)."""


def render(template: str, context: Mapping[str, Any], status: int = 200) -> HTMLResponse:
    response = HTMLResponse(_templates.get_template(template).render(context), status_code=status)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def same_origin(request: Request) -> None:
    """A form post must come from a page of this server (CSRF): the browser's Origin, or failing that its Referer,
    names this host. The cookie is SameSite=strict as well; this holds for browsers and proxies that drop it."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None or sent == "null":
        return  # not a browser (curl, a script with a token): nothing cross-site to forge
    expected = f"{request.url.scheme}://{request.url.netloc}"
    if sent != expected and not sent.startswith(expected + "/"):
        raise Forbidden(f"a form post from {sent.split('?')[0]} is not from this dashboard ({expected})")


TOKEN_COOKIE = "shipscope_token"
OPTIONS_SECONDS = 60.0
"""How long the filter bar's values (repositories, services, environments) are reused before being read again."""


def dashboard_router(
    store: Store,
    config: MetricsConfig,
    thresholds: Mapping[str, Threshold],
    authorize_read: Callable[[str | None], None],
    alert_window: str = "7d",
    authorize_write: Callable[[str | None], None] | None = None,
) -> APIRouter:
    """The pages. ``authorize_read`` checks an ``Authorization`` header value for the read scope, as the read API
    does; a browser signs in once at ``/login`` and sends the token in an HttpOnly cookie instead."""
    router = APIRouter(include_in_schema=False)

    cached_options: list[tuple[float, FilterOptions]] = []

    def options() -> FilterOptions:
        """The filter bar's values, read again at most every OPTIONS_SECONDS (they scan whole tables)."""
        now = time.monotonic()
        if not cached_options or now - cached_options[0][0] > OPTIONS_SECONDS:
            cached_options[:] = [(now, filter_options(store, config))]
        return cached_options[0][1]

    def presented(request: Request) -> str | None:
        """The Authorization header, or the sign-in cookie's token in its form."""
        header = request.headers.get("authorization")
        cookie = request.cookies.get(TOKEN_COOKIE)
        return header if header is not None or cookie is None else f"Bearer {cookie}"

    def check_read(request: Request) -> None:
        authorize_read(presented(request))

    def page(template: str, path: str, build: Callable[[pages.View], pages.Context], request: Request) -> HTMLResponse:
        started = time.perf_counter()
        try:
            check_read(request)
            view = pages.View.from_query(request.query_params)
        except ShipscopeError as error:
            return _error_page(path, error, request)
        context: dict[str, Any] = {
            "path": path,
            "signed_in": TOKEN_COOKIE in request.cookies,
            **pages.common(view, options()),
        }
        try:
            context.update(build(view))
        except ShipscopeError as error:
            return _error_page(path, error, request, view)
        response = render(template, context)
        response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    def _error_page(path: str, error: ShipscopeError, request: Request, view: pages.View | None = None) -> HTMLResponse:
        context = {
            "path": path,
            "error": error.message,
            "hint": error.hint,
            "view": view,
            "sign_in": isinstance(error, AuthError),
            "next": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        }
        return render("error.html", context, status=error.status)

    def alert_state() -> Mapping[str, Any] | None:
        stored = store.cursor(STATE_KEY)
        return orjson.loads(stored) if stored else None

    @router.get("/", response_class=HTMLResponse)
    async def overview(request: Request) -> HTMLResponse:
        return await run_in_threadpool(
            page,
            "overview.html",
            "/",
            lambda view: pages.overview(store, view, config, thresholds, alert_state(), alert_window),
            request,
        )

    def simple(name: str) -> Callable[[Request], Any]:
        build = pages.PAGES[name]

        async def handler(request: Request) -> HTMLResponse:
            return await run_in_threadpool(
                page, f"{name}.html", f"/{name}", lambda view: build(store, view, config), request
            )

        handler.__name__ = f"{name}_page"
        return handler

    for name in pages.PAGES:
        router.add_api_route(f"/{name}", simple(name), methods=["GET"], response_class=HTMLResponse)

    @router.get("/deployments/{deployment_id:path}", response_class=HTMLResponse)
    async def deployment(request: Request, deployment_id: str) -> HTMLResponse:
        source = request.query_params.get("source") or None

        def build(view: pages.View) -> pages.Context:
            context = pages.deployment(store, view, config, deployment_id, source)
            if context["detail"] is None:
                raise NotFound(f"no deployment with id {deployment_id!r}" + (f" from {source!r}" if source else ""))
            return context

        return await run_in_threadpool(page, "deployment.html", "/deployments", build, request)

    @router.get("/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident(request: Request, incident_id: str) -> HTMLResponse:
        source = request.query_params.get("source") or None

        def build(view: pages.View) -> pages.Context:
            return pages.incident(store, view, config, incident_id, source)

        return await run_in_threadpool(page, "incident.html", "/incidents", build, request)

    def check_write(request: Request) -> None:
        if authorize_write is not None:
            authorize_write(presented(request))

    async def incident_action(
        request: Request, incident_id: str, act: Callable[[Any, Mapping[str, str]], object]
    ) -> Response:
        """A form on the incident page: done, back to the page (303); refused, the page again saying why (422)."""
        source = request.query_params.get("source") or None
        form = {key: values[0] for key, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()}

        def run() -> Response:
            try:
                same_origin(request)
                check_write(request)
                found = find_incident(store, incident_id, source, config)
                if found is None:
                    raise NotFound(f"no incident with id {incident_id!r}")
                act(found, form)
            except ShipscopeError as error:
                if isinstance(error, AuthError) or error.status == 404:
                    return _error_page("/incidents", error, request)
                view = pages.View.from_query(request.query_params)
                context: dict[str, Any] = {"path": "/incidents", "signed_in": TOKEN_COOKIE in request.cookies}
                context.update(pages.common(view, options()))
                context.update(pages.incident(store, view, config, incident_id, source, refused=error.message))
                return render("incident.html", context, status=error.status)
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"/incidents/{path_segment(incident_id)}{query}", status_code=303)

        return await run_in_threadpool(run)

    @router.post("/incidents/{incident_id}/runbook/{step}")
    async def tick_step(request: Request, incident_id: str, step: str) -> Response:
        return await incident_action(
            request,
            incident_id,
            lambda found, form: postmortems.tick(store, found, step, form.get("by") or None, datetime.now(UTC)),
        )

    @router.post("/incidents/{incident_id}/postmortem")
    async def open_postmortem(request: Request, incident_id: str) -> Response:
        def opened(found: Any, form: Mapping[str, str]) -> None:
            timeline = incident_timeline(store, found.id, found.source, config)
            assert timeline is not None
            postmortems.open_postmortem(store, timeline, form.get("summary") or None, datetime.now(UTC))

        return await incident_action(request, incident_id, opened)

    @router.post("/incidents/{incident_id}/postmortem/items")
    async def add_item(request: Request, incident_id: str) -> Response:
        return await incident_action(
            request,
            incident_id,
            lambda found, form: postmortems.add_item(store, found.source, found.id, form, datetime.now(UTC)),
        )

    @router.post("/incidents/{incident_id}/postmortem/items/{item_id}")
    async def update_item(request: Request, incident_id: str, item_id: str) -> Response:
        return await incident_action(
            request,
            incident_id,
            lambda found, form: postmortems.update_item(store, item_id, dict(form), datetime.now(UTC)),
        )

    @router.post("/incidents/{incident_id}/postmortem/close")
    async def close_postmortem(request: Request, incident_id: str) -> Response:
        return await incident_action(
            request,
            incident_id,
            lambda found, form: postmortems.close_postmortem(store, found.source, found.id, datetime.now(UTC)),
        )

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        return render("login.html", {"path": "/login", "next": _local(request.query_params.get("next"))})

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _local((form.get("next") or ["/"])[0])
        try:
            same_origin(request)
            authorize_read(f"Bearer {token}")
        except ShipscopeError as error:
            context = {"path": "/login", "next": target, "error": error.message}
            return render("login.html", context, status=error.status)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @router.get("/logout")
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(TOKEN_COOKIE, httponly=True, samesite="strict")
        return response

    return router


def _local(target: str | None) -> str:
    """A path on this server to go to after signing in; anything else goes home."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def asset_routes() -> APIRouter:
    """The stylesheet, the page script and Plotly's bundle; open to everyone (they hold no data)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/static/plotly.min.js")
    def plotly_bundle() -> Response:
        return FileResponse(
            PLOTLY_BUNDLE,
            media_type="text/javascript",
            headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE}"},
        )

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return Response("not found", status_code=404, media_type="text/plain")
        media = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}.get(path.suffix.lstrip("."))
        return FileResponse(
            path,
            media_type=media or "application/octet-stream",
            headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE}"},
        )

    return router
