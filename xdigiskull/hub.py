"""`xdigiskull push`: publish a built X-DigiSkull folder as a Hugging Face Hub dataset repository."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer

T = TypeVar("T")


def check_dataset_folder(folder: Path) -> list[str]:
    """The files a push uploads (POSIX, relative), after checking `folder` is a built dataset.

    Raises:
        ValueError: not a folder, no README.md card, or no parquet shard under data/.
    """
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    if not (folder / "README.md").is_file():
        raise ValueError(f"{folder} has no README.md dataset card; build it with `xdigiskull build`")
    if not any((folder / "data").glob("*.parquet")):
        raise ValueError(f"{folder} has no data/*.parquet shards; build it with `xdigiskull build`")
    # hidden files (temporary files of an interrupted build) never go up
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


RETRY_ATTEMPTS = 5
RETRY_BASE_SECONDS = 1.0


def resolve_token(token: str | None) -> str:
    """The Hub token to write with: `token`, else ``HF_TOKEN`` or the logged-in token; read locally, no request.

    Raises:
        ValueError: there is none (said before anything goes over the network).
    """
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login` (a push needs write access)")
    return token


def is_transient(error: Exception) -> bool:
    """Whether a Hub error is worth retrying: 429 (rate limited) or a 5xx."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status is not None and (status == 429 or status >= 500)


def with_retries(call: Callable[[], T], attempts: int = RETRY_ATTEMPTS, base_seconds: float = RETRY_BASE_SECONDS) -> T:
    """Run `call`, retrying a transient Hub error (`is_transient`) with exponential backoff (1, 2, 4... s, or the
    server's Retry-After); other errors, and the last attempt's, propagate."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as error:
            if attempt == attempts - 1 or not is_transient(error):
                raise
            retry_after = error.response.headers.get("Retry-After")  # type: ignore[attr-defined]
            time.sleep(float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else base_seconds * 2**attempt)
    raise AssertionError("unreachable")


def upload_folder_in_one_commit(
    folder: str | Path,
    files: list[str],
    repo_id: str,
    *,
    repo_type: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str,
    create_pr: bool = False,
) -> Any:
    """Create the repository if needed and commit `files` of `folder` to it in one commit, retrying transient errors.

    `HfApi.upload_folder` may split a folder over several commits; an explicit `create_commit` lands the whole
    dataset or model at once (a reader never sees half of it). Files already uploaded are not sent again on retry.

    Args:
        folder: local folder.
        files: POSIX paths relative to `folder`, uploaded to the same paths.
        repo_id: ``ORG/NAME``.
        repo_type: "dataset" or "model".
        token: Hub token (see `resolve_token`).
        private: create the repository as private (only when it does not exist yet).
        commit_message: message of the commit.
        create_pr: open a pull request instead of committing to main.

    Returns:
        The `huggingface_hub.CommitInfo`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi  # the CLI starts faster without it

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    api = HfApi(token=resolve_token(token))
    with_retries(lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True))
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(folder) / name)) for name in files]
    return with_retries(
        lambda: api.create_commit(repo_id, operations, repo_type=repo_type, commit_message=commit_message, create_pr=create_pr)
    )


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str = "Upload X-DigiSkull",
) -> str:
    """Create the dataset repository if needed and upload the folder in a single commit.

    Args:
        folder: a dataset folder written by `xdigiskull build` (or `medshift translate --dataset`).
        repo_id: ``ORG/NAME`` on the Hub.
        private: create the repository as private (only applies when it does not exist yet).
        token: Hub token; None uses ``HF_TOKEN`` or the logged-in token.
        commit_message: message of the upload commit.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: the folder is not a built dataset, `repo_id` is not ``ORG/NAME``, or there is no token.
    """
    folder = Path(folder)
    files = check_dataset_folder(folder)
    commit = upload_folder_in_one_commit(
        folder, files, repo_id, repo_type="dataset", token=token, private=private, commit_message=commit_message
    )
    return str(getattr(commit, "commit_url", commit))


def push(
    folder: Path = typer.Argument(Path("x-digiskull"), help="Dataset folder written by `xdigiskull build`."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub dataset repository, ORG/NAME (created if missing)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    token: str = typer.Option(
        None, "--token", envvar="HF_TOKEN", show_default=False, show_envvar=False, help="Hub token [default: logged-in token]."
    ),
) -> None:
    """Publish a built X-DigiSkull folder to the Hugging Face Hub in one commit."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    try:
        url = push_to_hub(folder, repo_id, private=private, token=token)
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    except Exception as error:  # Hub errors: say what failed without a traceback full of locals (the token)
        message = str(error)
        if token:
            message = message.replace(token, "***")
        console.print(f"[red]push failed:[/red] {type(error).__name__}: {message}")
        raise typer.Exit(1) from None
    console.print(f"Pushed {folder} to the dataset {repo_id} in one commit: {url}")
