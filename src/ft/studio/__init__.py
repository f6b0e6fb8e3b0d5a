"""ft studio: a web UI over the same recipes, started by `python -m ft studio`.

server.py    the command: host/port/token, the loopback-or-token rule, uvicorn
app.py       the FastAPI app: the page (static/) and the JSON API, routes only
forms.py     the schema as a form; a config checked as `ft train` checks it, its command line and recipe file
data_preview.py  `ft data preview` as data: segments with their trained flag, image thumbnails
launcher.py  the queue of `python -m ft train` processes: launch, stop (SIGTERM), resume, found after a restart
runs.py      the runs directory: status, metrics, curves, config diffs
chat.py      a finished run answering (streamed, base or adapter), a text-to-image run rendering
paths.py     user-given paths confined to the project and runs directories
"""
