"""Push a finished run to the Hugging Face Hub: an allow-list of files, in one commit.

Only what a user of the model needs goes up: the adapter (or full weights) and its config, the
tokenizer with its chat template (and a vision-language run's processor and example image), the model
card, the loss plot and the resolved config. Never
checkpoints, optimizer states, training_args.bin, logs, env files — anything not on the list stays
local. The token comes from the standard login (`hf auth login`) or HF_TOKEN and is only ever
handed to huggingface_hub; a file that contains it is refused.
"""

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from ft.errors import FtError, FtRemoteError
from ft.options import option
from ft.run import rundir

ALLOWED = (
    rundir.ADAPTER_CONFIG,
    rundir.ADAPTER_WEIGHTS,  # PEFT adapter
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",  # full fine-tune / merged weights
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",  # tokenizer
    "processor_config.json",
    "preprocessor_config.json",  # task=vlm: the processor (its image processor) beside the tokenizer
    rundir.CARD,
    rundir.LOSS_PLOT,
    rundir.CONFIG,  # model card, loss curve, resolved recipe
    rundir.LORA_WEIGHTS,
    "samples.png",  # task=text_to_image: diffusers LoRA, the card's sample grid
    "pytorch_lora_weights_ema.safetensors",
    "lora_kohya.safetensors",  # task=text_to_image: the EMA LoRA, the LoRA in kohya's format
    rundir.EXAMPLE_IMAGE,  # task=vlm: the card's example image
)


@dataclass(kw_only=True)
class PushOptions:
    """`ft push`'s arguments; `--dry-run` is a flag of the command, not an option of the upload."""

    run_dir: str = option(help="the run directory `ft train` printed", metavar="DIR")
    repo_id: str | None = option(
        None, help="the Hub repo to push to; unset: the run's hub.repo_id", metavar="owner/name"
    )
    private: bool = option(False, help="create the repo private; an existing repo keeps its visibility")
    revision: str | None = option(None, help="the branch to push to, created if missing; unset: main", metavar="BRANCH")


def files_to_upload(run_dir: Path) -> list[Path]:
    """The run dir's top-level regular files on the allow-list (no sub-directories, no links)."""
    return sorted(
        p
        for p in Path(run_dir).iterdir()
        if p.is_file() and not p.is_symlink() and any(fnmatch.fnmatch(p.name, pattern) for pattern in ALLOWED)
    )


def _check_no_token_inside(files: list[Path], token: str) -> None:
    for path in files:
        if path.suffix != ".safetensors" and token.encode() in path.read_bytes():
            raise FtError(f"{path.name} contains your Hub token: remove it from the file before pushing")


def _token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise FtError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    return token


def push(run_dir, repo_id: str, private: bool = False, revision: str | None = None, dry_run: bool = False) -> list[str]:
    """Upload the allow-listed files of `run_dir` to `repo_id`; returns their names. With dry_run,
    only list them. The model card's usage snippet is pointed at `repo_id` once the repo exists."""
    from ft.finish import card, loading
    from ft.rules import combinations

    run_dir = loading.check_run_dir(run_dir)
    combinations.check_repo_id(repo_id)
    files = files_to_upload(run_dir)
    if dry_run:
        return [p.name for p in files]

    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub import constants as hub_constants

    if hub_constants.HF_HUB_OFFLINE:
        raise FtError("HF_HUB_OFFLINE=1 is set: unset it (or set HF_HUB_OFFLINE=0) to push")
    token = _token()
    _check_no_token_inside(files, token)
    api = HfApi(token=token)
    with _hub_errors(repo_id):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        contents = {p.name: str(p) for p in files}  # weights are streamed from disk
        if "README.md" in contents:  # the card's usage snippet loads from the repo once pushed
            contents["README.md"] = card.point_at_repo((run_dir / "README.md").read_text(), repo_id).encode()
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in contents.items()]
        api.create_commit(repo_id, operations, commit_message=f"ft: upload run {run_dir.name}", revision=revision)
    if "README.md" in contents:  # only after the commit landed: a failed push leaves the run dir as it was
        (run_dir / "README.md").write_bytes(contents["README.md"])
    return [p.name for p in files]


def push_command(options: PushOptions, dry_run: bool) -> None:
    """`ft push`: push (or with dry_run, list) the run's files and say what happened."""
    from ft.finish import loading

    run_dir = loading.check_run_dir(options.run_dir)
    repo_id = options.repo_id or loading.load_config(run_dir).hub.repo_id
    if not repo_id:
        raise FtError("push: repo_id=owner/name is required (or hub.repo_id in the run's config)")
    files = push(run_dir, repo_id, private=options.private, revision=options.revision, dry_run=dry_run)
    if dry_run:
        left_out = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir() if p.name not in files)
        print(f"ft: would upload {len(files)} files from {run_dir} to {repo_id}:")
        for name in files:
            print(f"  {name}  ({(run_dir / name).stat().st_size:,} bytes)")
        print(f"ft: left out: {', '.join(left_out) or 'nothing'}")
    else:
        print(
            f"ft: pushed {len(files)} files from {run_dir} to {repo_id} ({options.revision or 'main'}): "
            f"{', '.join(files)}"
        )


class _hub_errors:
    """Turn huggingface_hub's failures into one line: FtError for what the user can fix (token,
    permission, repo id, metadata), FtRemoteError for the network and the server."""

    def __init__(self, repo_id: str):
        self.repo_id = repo_id

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if error is None or not isinstance(error, Exception) or isinstance(error, (FtError, FtRemoteError)):
            return False
        from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

        if isinstance(error, LocalTokenNotFoundError):
            raise FtError("no Hugging Face token: run `hf auth login` or set HF_TOKEN") from None
        if isinstance(error, OfflineModeIsEnabled):
            raise FtError("HF_HUB_OFFLINE=1 is set: unset it to push") from None
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            status = error.response.status_code
            if status == 401:
                raise FtError(
                    "the Hub rejected the token (401): run `hf auth login` again or set a valid HF_TOKEN"
                ) from None
            if status == 403:
                raise FtError(
                    f"no permission to write to {self.repo_id} (403): use a token with write access, or a repo in your "
                    "namespace"
                ) from None
            raise FtRemoteError(
                f"the Hub answered {status} while pushing to {self.repo_id}: {_first_line(error)}"
            ) from None
        if isinstance(error, ValueError) and "metadata" in str(error):
            raise FtError(
                f"the Hub rejected README.md's metadata: {_first_line(error, skip=1)} (edit the run's README.md "
                "front-matter)"
            ) from None
        if isinstance(error, OSError) or type(error).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore"):
            raise FtRemoteError(
                f"cannot reach the Hub ({type(error).__name__}: {_first_line(error)}); the run is intact locally, "
                "retry with `python -m ft push`"
            ) from None
        return False


def _first_line(error: BaseException, skip: int = 0) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines[skip : skip + 2]) if lines else type(error).__name__
