"""The review app: FastAPI over one ReviewSession, guarded by a token, served by uvicorn on loopback.

As Jupyter does, the server prints a URL carrying a random token; every request without it (query parameter,
header, or the cookie the first page sets) is refused with 403, the page itself included.
"""

from __future__ import annotations

import secrets
from html import escape
from importlib import resources
from typing import Any

from sclcoder.errors import SclError
from sclcoder.review.session import Decision, ReviewSession

TOKEN_HEADER = "x-sclcoder-token"
COOKIE = "sclcoder_review"


def _asset(name: str) -> str:
    return resources.files("sclcoder").joinpath("assets", name).read_text(encoding="utf-8")


def page(title: str) -> str:
    html = _asset("review.html")
    return (
        html.replace("{{title}}", escape(title))
        .replace("{{css}}", _asset("audit.css") + _asset("review.css"))
        .replace("{{js}}", _asset("review.js"))
    )


def create_app(session: ReviewSession, token: str) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    from sclcoder.review.search import search_codes

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        given = (
            request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        )
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"error": "missing or wrong token: open the URL sclcoder review printed"}, 403)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(SclError)
    async def user_error(request: Request, exc: SclError) -> Any:
        return JSONResponse({"error": str(exc)}, 400)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page(f"sclcoder review: {session.corrections.name}")

    @app.get("/api/queue")
    def queue() -> dict[str, Any]:
        return {"notes": session.queue(), "coder": session.coder, "corrections": str(session.corrections)}

    @app.get("/api/notes/{note_id}")
    def note(note_id: str) -> dict[str, Any]:
        return session.note(note_id)

    @app.post("/api/notes/{note_id}")
    def decide(note_id: str, decision: Decision) -> dict[str, Any]:
        return session.decide(note_id, decision)

    @app.get("/api/codes")
    def codes(q: str = "") -> list[dict[str, str]]:
        return search_codes(q, session.system)

    return app


def serve(session: ReviewSession, *, host: str, port: int, token: str | None = None, say: Any = print) -> None:
    """Run the app until interrupted; prints the URL to open."""
    import threading

    import uvicorn

    from sclcoder.review.search import search_codes

    token = token or secrets.token_urlsafe(24)
    # the code index takes seconds to build: built while the coder reads the first note, not at the first search
    threading.Thread(target=search_codes, args=("warm", session.system), daemon=True).start()
    config = uvicorn.Config(create_app(session, token), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    say(f"review {len(session.order)} notes at http://{shown}:{port}/?token={token}")
    say(f"decisions go to {session.corrections} (Ctrl-C stops; reopening resumes)")
    try:
        server.run()
    finally:
        session.close()
