"""The web playground: ``/`` and its static files under ``/ui`` (ES modules, styles, icon), shipped in the
package (no CDN, no build step). Everything is revalidated on each load (ETag), so a browser never mixes
modules of two versions after an upgrade."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
NO_CACHE = {"cache-control": "no-cache"}

router = APIRouter(include_in_schema=False)


class _Revalidated(StaticFiles):
    async def get_response(self, path: str, scope: Scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.update(NO_CACHE)
        return response


@router.get("/")
async def playground() -> FileResponse:
    return FileResponse(WEB_ROOT / "index.html", media_type="text/html", headers=NO_CACHE)


def mount_static(app: FastAPI) -> None:
    app.mount("/ui", _Revalidated(directory=WEB_ROOT), name="ui")
