"""The studio's web app: the page, and a JSON API over ft's own code (routes only; the work is in forms, launcher,
runs, chat). Every /api request carries the server's token when it has one (header X-FT-Token, or ?token=);
a bad input is HTTP 400 {"error": one line}, a refused token or path 403."""

import hmac
import ipaddress
from pathlib import Path

from ft.errors import FtError
from ft.studio import paths

STATIC = Path(__file__).parent / "static"
TOKEN_HEADER = "X-FT-Token"


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine's own."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(runs_dir: Path, project_dir: Path, token: str | None = None):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles

    from ft.studio import forms, jobs, launcher, runs

    project_dir, runs_dir = Path(project_dir).resolve(), Path(runs_dir).resolve()
    roots = [project_dir, runs_dir]
    queue = launcher.Launcher(runs_dir, project_dir)
    app = FastAPI(title="ft studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.launcher = queue
    finishing = jobs.Jobs(queue.state_dir, project_dir)

    @app.middleware("http")
    async def check_token(request: Request, call_next):
        if not token and not is_loopback(request.url.hostname or ""):
            # no token: only this machine's own names, so that a site whose name an attacker points at 127.0.0.1
            # (DNS rebinding) cannot drive the API from the user's browser
            return JSONResponse({"error": "without a token the studio answers only 127.0.0.1 / localhost"}, 403)
        if token and request.url.path.startswith("/api"):
            given = request.headers.get(TOKEN_HEADER) or request.query_params.get("token") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": f"a token is required: send header {TOKEN_HEADER}"}, status_code=403)
        return await call_next(request)

    @app.exception_handler(FtError)
    async def ft_error(request, error):
        return JSONResponse({"error": str(error)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, error):
        return JSONResponse({"error": "the request body must be a JSON object (Content-Type: application/json)"}, 400)

    @app.exception_handler(paths.Refused)
    async def refused(request, error):
        return JSONResponse({"error": str(error)}, status_code=403)

    @app.exception_handler(runs.NotFound)
    async def not_found(request, error):
        return JSONResponse({"error": str(error)}, status_code=404)

    def recipe_of(value) -> str:
        """A shipped recipe's name, or a recipe file inside the allowed roots (as its resolved path)."""
        from ft.config import recipe_file

        if not isinstance(value, str) or not value:
            raise FtError("recipe: name a shipped recipe (see /api/tasks) or a recipe file in the project")
        return str(paths.confine(value, roots, project_dir)) if recipe_file.is_path(value) else value

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/tasks")
    def tasks():
        from ft.config import registry

        listed = [{"name": name, "summary": task.summary} for name, task in registry.tasks().items()]
        return {"tasks": listed, "recipes": forms.recipes()}

    @app.get("/api/form")
    def form(recipe: str = "default"):
        return forms.form(recipe_of(recipe))

    @app.post("/api/check")
    def check(body: dict):
        return forms.check(recipe_of(body.get("recipe")), body.get("overrides") or {}, queue.output_dir)

    @app.post("/api/recipe/save")
    def save(body: dict):
        target = paths.confine(str(body.get("path") or ""), roots, project_dir)
        written = forms.save(
            recipe_of(body.get("recipe")), body.get("overrides") or {}, target, bool(body.get("overwrite"))
        )
        return {"path": str(written)}

    @app.post("/api/preview")
    def preview(body: dict):
        from ft.studio import data_preview

        arguments = forms.arguments(recipe_of(body.get("recipe")), body.get("overrides") or {})
        return data_preview.preview(arguments, int(body.get("n") or 3))

    @app.post("/api/launch")
    def launch(body: dict):
        return queue.launch(recipe_of(body.get("recipe")), body.get("overrides") or {})

    @app.get("/api/runs")
    def list_runs():
        return {"runs": runs.table(runs_dir, queue)}

    def finished(name: str) -> Path:
        """The run dir of a finished run `name`: export and push take nothing else."""
        run_dir = runs.existing(paths.run_dir(name, runs_dir), queue)
        status = runs.summary(run_dir, queue)["status"]
        if status != "finished":
            raise FtError(f"{name} is {status}: export and push take a finished run")
        return run_dir

    @app.get("/api/runs/{name}")
    def run(name: str):
        details = runs.details(paths.run_dir(name, runs_dir), queue)
        done = details["status"] == "finished" and details["task"]
        return {**details, "exports": jobs.export_formats(details["task"]) if done else []}

    @app.get("/api/runs/{name}/log")
    def log(name: str, offset: int = 0):
        return runs.log(paths.run_dir(name, runs_dir), queue, offset)

    @app.get("/api/runs/{name}/metrics")
    def metrics(name: str):
        return {"points": runs.points(paths.run_dir(name, runs_dir))}

    @app.get("/api/runs/{name}/file/{file:path}")
    def run_file(name: str, file: str):
        run_dir = paths.run_dir(name, runs_dir)
        path = paths.confine(file, [run_dir], run_dir)
        if not path.is_file():
            raise runs.NotFound(f"{name} has no file {file}")
        return FileResponse(path)

    @app.post("/api/runs/{name}/stop")
    def stop(name: str):
        return {"status": queue.stop(runs.existing(paths.run_dir(name, runs_dir), queue))}

    @app.post("/api/runs/{name}/resume")
    def resume(name: str):
        return {"status": queue.resume(runs.existing(paths.run_dir(name, runs_dir), queue))}

    @app.post("/api/runs/{name}/export")
    def export(name: str, body: dict):
        run_dir = finished(name)
        return finishing.start(name, jobs.export_arguments(run_dir, body))

    @app.post("/api/runs/{name}/push")
    def push(name: str, body: dict):
        run_dir = finished(name)
        return finishing.start(name, jobs.push_arguments(run_dir, body))

    @app.get("/api/runs/{name}/jobs")
    def run_jobs(name: str):
        return {"jobs": finishing.listed(runs.existing(paths.run_dir(name, runs_dir), queue).name)}

    @app.get("/api/compare")
    def compare(request: Request):
        names = [n for n in request.query_params.get("runs", "").split(",") if n]
        return runs.compare([paths.run_dir(n, runs_dir) for n in names], queue)

    @app.post("/api/chat")
    def chat(body: dict):
        from ft.studio import chat as chatting

        run_dir = paths.run_dir(str(body.get("run") or ""), runs_dir)
        stream = chatting.reply(
            run_dir, body.get("messages") or [], bool(body.get("adapter", True)), int(body.get("max_new_tokens") or 64)
        )
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")

    @app.post("/api/generate-image")
    def generate_image(body: dict):
        from ft.studio import chat as chatting

        run_dir = paths.run_dir(str(body.get("run") or ""), runs_dir)
        return {"image": chatting.image(run_dir, str(body.get("prompt") or ""))}

    @app.get("/api/health", response_class=PlainTextResponse)
    def health():
        return "ok"

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    return app
