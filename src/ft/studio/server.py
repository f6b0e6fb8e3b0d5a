"""`python -m ft studio [--host 127.0.0.1] [--port 7860] [--token T] [runs_dir=runs]`: the web UI's server.

It binds the loopback interface unless told otherwise; any other address needs a token (--token, or the
FT_STUDIO_TOKEN environment variable), which every API request must then carry. The project directory is
where it starts (recipe files are read and saved there), runs go to runs_dir."""

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError
from ft.options import option

TOKEN_ENV = "FT_STUDIO_TOKEN"


@dataclass(kw_only=True)
class StudioOptions:
    runs_dir: str = option("runs", help="the runs directory: runs are launched into it and listed from it")


def check_bind(host: str, token: str | None) -> None:
    """A page served beyond this machine must be locked: refuse a non-loopback host without a token."""
    from ft.studio.app import is_loopback

    if not is_loopback(host) and not token:
        raise FtError(
            f"studio: --host {host} serves the page beyond this machine: give --token TOKEN (or set {TOKEN_ENV}), "
            "or bind 127.0.0.1"
        )


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise FtError(f"studio: cannot listen on {host}:{port} ({e.strerror}): choose another --port") from None


def add_command(parser, commands, add_key_value_command):
    """Register `ft studio` among the CLI's `commands` (ft.cli's add_key_value_command: its key=value options
    from StudioOptions), with its --host, --port and --token; returns `parser`."""
    command = add_key_value_command(
        commands,
        "studio",
        StudioOptions,
        run,
        before="[--host 127.0.0.1] [--port 7860] [--token TOKEN] ",
        help="a web UI: compose and check a recipe, preview its data, launch and watch runs, compare, chat",
        description="Serve ft studio, a web page over the same recipes and runs as the command line (needs the "
        "studio extra: fastapi, uvicorn). It binds 127.0.0.1; another --host needs --token (or FT_STUDIO_TOKEN), "
        "which every request must then carry. Runs it launches are `python -m ft train` processes of their own: "
        "stopping the server leaves them training.",
    )
    command.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    command.add_argument("--port", type=int, default=7860, help="the port to listen on (default: 7860)")
    command.add_argument("--token", default=None, help="required of every request; needed for a non-loopback --host")
    return parser


def run(args) -> int:
    """`ft studio`'s entry from the CLI."""
    from ft.options import parse_pairs

    serve(args.host, args.port, args.token, parse_pairs(StudioOptions, args.pairs, "studio"))
    return 0


def serve(host: str, port: int, token: str | None, options: StudioOptions) -> None:
    token = token or os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    check_port(host, port)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise FtError(f"studio needs the studio extra ({e.name} is missing): pip install -e '.[studio]'") from None

    from ft.studio.app import create_app

    project_dir = Path.cwd()
    runs_dir = Path(options.runs_dir).expanduser()
    runs_dir = (runs_dir if runs_dir.is_absolute() else project_dir / runs_dir).resolve()
    app = create_app(runs_dir, project_dir, token)
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"ft: studio on {address}  (runs in {runs_dir}; Ctrl-C stops the server, not the runs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
