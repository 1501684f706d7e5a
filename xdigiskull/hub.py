"""`xdigiskull push`: publish a built X-DigiSkull folder as a Hugging Face Hub dataset repository."""

from __future__ import annotations

from pathlib import Path

import typer


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
        folder: a dataset folder written by `xdigiskull build`.
        repo_id: ``ORG/NAME`` on the Hub.
        private: create the repository as private (only applies when it does not exist yet).
        token: Hub token; None uses the logged-in token or ``HF_TOKEN``.
        commit_message: message of the upload commit.

    Returns:
        The URL of the commit.

    Raises:
        ValueError: the folder is not a built dataset, or `repo_id` is not ``ORG/NAME``.
    """
    from huggingface_hub import CommitOperationAdd, HfApi  # the CLI starts faster without it

    folder = Path(folder)
    files = check_dataset_folder(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--repo-id must look like ORG/NAME, got {repo_id!r}")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    # one explicit commit (upload_folder may split large folders into several): the dataset changes at once
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    commit = api.create_commit(repo_id, operations, repo_type="dataset", commit_message=commit_message)
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
    console.print(f"Pushed {folder} to https://huggingface.co/datasets/{repo_id} ({url})")
