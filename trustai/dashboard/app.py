"""``trustai serve``'s web app (Starlette): read-only pages over one or more governed runs.

Pages: the runs (gate, integrity, pack, dataset, policy type, reports); a run (checkpoints with their
gates, each check's metrics over training steps, thresholds, the first blocked checkpoint); a checkpoint
(its findings and card); a finding (its evidence and artifacts inline); two checkpoints' cards side by
side. ``/api/runs`` and ``/api/runs/{n}`` are small JSON documents the pages poll every few seconds,
reloading when the ledger or the integrity state moved on.

Only GET routes exist. Runs are addressed by their place on the command line, never by a path the
browser sends; files are served only from inside their run folder (``trustai.dashboard.data.contained``)
and only of the kinds in ``MEDIA_TYPES``. Every value reaches the page through Jinja2 with autoescape
(JSON for charts through ``tojson``); pages allow scripts from this server only, and an HTML artifact is
sandboxed away from the dashboard's origin. The plotly.js the charts use is read from the installed
``plotly`` package: nothing is fetched from anywhere else.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from trustai.dashboard.charts import STATUS_COLOURS, check_figure
from trustai.dashboard.data import (
    MEDIA_TYPES,
    Runs,
    RunView,
    artifacts,
    card_diff,
    card_of,
    check_series,
    contained,
)
from trustai.dashboard.integrity import IntegrityState, IntegrityWatch

HERE = Path(__file__).parent
POLL_MS = 3000
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-src 'self'; connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
# An artifact (an Evidently HTML report, say) runs in a sandbox: no access to the dashboard's origin,
# nothing fetched.
FILE_POLICY = "sandbox allow-scripts; default-src 'self' 'unsafe-inline' data:; connect-src 'none'"
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@cache
def plotly_js() -> bytes:
    """plotly.js as shipped inside the installed ``plotly`` package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


def _badge(status: Any) -> str:
    """The CSS class of a status, verdict or integrity state (a fixed set: never text from a run)."""
    known = {*STATUS_COLOURS, "blocked", "verified", "in progress", "failed", "not checked", "checking"}
    return "b-" + str(status).replace(" ", "-") if str(status) in known else "b-other"


def _environment() -> Environment:
    loader = FileSystemLoader(HERE / "templates")
    env = Environment(loader=loader, autoescape=True, undefined=ChainableUndefined)
    env.filters["badge"] = _badge
    return env


class Dashboard:
    """The runs served, their integrity watch, and the pages."""

    def __init__(self, runs: Runs, public_key: Path | None):
        self.runs = runs
        self.integrity = IntegrityWatch(public_key)
        self.env = _environment()

    # -- helpers -------------------------------------------------------------------------------------
    def _view(self, request: Request) -> RunView:
        key = request.path_params["run"]
        if not 0 <= key < len(self.runs):
            raise LookupError(f"no run {key}")
        return self.runs.view(key)

    def _page(self, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(poll_ms=POLL_MS, **values)
        return HTMLResponse(html, status_code=status_code)

    def _missing(self, what: str) -> HTMLResponse:
        return self._page("error.html", 404, title="not found", message=what)

    def _summary(self, view: RunView, integrity: IntegrityState) -> dict[str, Any]:
        """What the pages poll: the ledger's head, the checkpoints, the gate and the integrity state."""
        checkpoints = [c.name for c in view.status.checkpoints]
        return {
            "run": view.key,
            "name": view.name,
            "head": view.head,
            "checkpoints": checkpoints,
            "gate": view.status.gate.verdict.value,
            "integrity": integrity.state,
            "version": f"{view.key}:{view.head}:{len(checkpoints)}:{integrity.state}",
        }

    # -- pages ---------------------------------------------------------------------------------------
    def runs_page(self, request: Request) -> Response:
        """Every run: gate, integrity, pack, dataset, policy type, training, reports."""
        rows = []
        for key in range(len(self.runs)):
            view = self.runs.view(key)
            integrity = self.integrity.state(view.root)
            rows.append((view, integrity, self._summary(view, integrity)))
        version = "|".join(summary["version"] for _, _, summary in rows)
        return self._page("runs.html", title="runs", rows=rows, poll="/api/runs", version=version)

    def run_page(self, request: Request) -> Response:
        """One run: checkpoints and gates, each check's metrics over steps, run findings, reports."""
        try:
            view = self._view(request)
        except LookupError as exc:
            return self._missing(str(exc))
        first = view.first_blocked
        figures = [check_figure(s, first.step if first else None) for s in check_series(view)]
        gating = [c for c in view.status.checks if c.severity in ("block", "warn")]
        integrity = self.integrity.state(view.root)
        summary = self._summary(view, integrity)
        return self._page(
            "run.html",
            title=view.name,
            view=view,
            integrity=integrity,
            figures=figures,
            gating=gating,
            first=first,
            poll=f"/api/runs/{view.key}",
            version=summary["version"],
        )

    def checkpoint_page(self, request: Request) -> Response:
        """One checkpoint: its gate, findings and card."""
        try:
            view = self._view(request)
        except LookupError as exc:
            return self._missing(str(exc))
        checkpoint = view.checkpoint(request.path_params["name"])
        if checkpoint is None:
            return self._missing("no such checkpoint in this run")
        return self._page(
            "checkpoint.html",
            title=f"{view.name} {checkpoint.name}",
            view=view,
            checkpoint=checkpoint,
            findings=[*view.status.run_findings, *checkpoint.findings],
            card=card_of(view, checkpoint),
        )

    def finding_page(self, request: Request) -> Response:
        """One finding: its verdict, thresholds, the evidence it was judged from and its artifacts."""
        try:
            view = self._view(request)
        except LookupError as exc:
            return self._missing(str(exc))
        item = view.evidence(request.path_params["seq"])
        if item is None or item.finding is None:
            return self._missing("no such finding in this run")
        checkpoint = next((c for c in view.status.checkpoints if c.step == item.step), None)
        return self._page(
            "finding.html",
            title=item.label,
            view=view,
            item=item,
            finding=item.finding.payload,
            checkpoint=checkpoint,
            artifacts=artifacts(view, item),
        )

    def diff_page(self, request: Request) -> Response:
        """Two checkpoints' cards side by side: gate, each finding's status, each metric."""
        try:
            view = self._view(request)
        except LookupError as exc:
            return self._missing(str(exc))
        names = [c.name for c in view.status.checkpoints]
        a = view.checkpoint(request.query_params.get("a", names[0] if names else ""))
        b = view.checkpoint(request.query_params.get("b", names[-1] if names else ""))
        if a is None or b is None:
            return self._missing("pick two checkpoints of this run")
        card_a, card_b = card_of(view, a), card_of(view, b)
        return self._page(
            "diff.html",
            title=f"{view.name}: {a.name} vs {b.name}",
            view=view,
            a=a,
            b=b,
            problems=[p for p in (card_a.problem, card_b.problem) if p],
            diff=card_diff(card_a.card, card_b.card),
        )

    def file(self, request: Request) -> Response:
        """A file of the run (an artifact, a card, a report), only from inside the run folder."""
        try:
            view = self._view(request)
        except LookupError as exc:
            return self._missing(str(exc))
        rel = request.path_params["path"]
        path = contained(view.root, rel)
        if path is None or path.suffix.lower() not in MEDIA_TYPES:
            return self._missing("no such file in this run (or not one the dashboard shows)")
        headers = {"Content-Security-Policy": FILE_POLICY, "X-Content-Type-Options": "nosniff"}
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix.lower()], headers=headers)

    # -- polled JSON ---------------------------------------------------------------------------------
    def api_runs(self, request: Request) -> Response:
        """Every run's head, checkpoints, gate and integrity state, and one version string."""
        views = [self.runs.view(key) for key in range(len(self.runs))]
        summaries = [self._summary(view, self.integrity.state(view.root)) for view in views]
        return JSONResponse({"version": "|".join(s["version"] for s in summaries), "runs": summaries})

    def api_run(self, request: Request) -> Response:
        """One run's head, checkpoints, gate and integrity state (with its problems)."""
        try:
            view = self._view(request)
        except LookupError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        state = self.integrity.state(view.root)
        return JSONResponse(self._summary(view, state) | {"integrity_problems": list(state.problems)})

    # -- static --------------------------------------------------------------------------------------
    def static(self, request: Request) -> Response:
        """plotly.js from the plotly package, and the dashboard's own script and style sheet."""
        name = request.path_params["name"]
        if name == "plotly.min.js":
            cached = {"Cache-Control": "max-age=86400"}
            return Response(plotly_js(), media_type="text/javascript", headers=cached)
        if name not in STATIC:
            return self._missing("no such file")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name])


class _SecurityHeaders:
    """Adds the pages' content policy and no-sniff/no-referrer headers to every response without one."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"content-security-policy": PAGE_POLICY.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"referrer-policy": b"no-referrer",
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(run_dirs: list[Path], *, public_key: Path | None, host: str = "127.0.0.1") -> Starlette:
    """The dashboard over ``run_dirs`` (TrustaiUserError when one is not a governed run); integrity is
    checked against ``public_key`` (None: signatures not checked). Requests must name this machine
    (or ``host``) as their Host, which keeps other web pages from reading it through DNS rebinding."""
    board = Dashboard(Runs(run_dirs), public_key)
    routes = [
        Route("/", board.runs_page),
        Route("/runs/{run:int}", board.run_page),
        Route("/runs/{run:int}/checkpoints/{name}", board.checkpoint_page),
        Route("/runs/{run:int}/findings/{seq:int}", board.finding_page),
        Route("/runs/{run:int}/diff", board.diff_page),
        Route("/runs/{run:int}/files/{path:path}", board.file),
        Route("/api/runs", board.api_runs),
        Route("/api/runs/{run:int}", board.api_run),
        Route("/static/{name}", board.static),
    ]
    hosts = ["*"] if host in ("0.0.0.0", "::") else [*LOCAL_HOSTS, host]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts), Middleware(_SecurityHeaders)]

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        board.integrity.close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.dashboard = board
    return app
