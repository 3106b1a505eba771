"""`sshkit config show`: every setting, its value (secrets masked) and where it came from."""

from __future__ import annotations

from typing import Annotated

import typer

from sshkit.cli._app import app

config_app = typer.Typer(
    help="Show sshkit's resolved settings.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")


def _mask(value: str) -> str:
    return "******** (set)" if value else ""


@config_app.command("show")
def show(
    profile: Annotated[str | None, typer.Option("--profile", help="Profile to show.")] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object: each setting's value and source."),
    ] = False,
) -> None:
    """Print each setting with its source: flag, env, config file, stored login or default.

    Example: sshkit config show --profile work
    """
    from sshkit.settings import KEYS, SECRET_KEYS, resolve_settings

    settings = resolve_settings(profile)
    rows = [("profile", settings.profile.value or "", settings.profile.source)]
    for key in KEYS:
        item = settings.values[key]
        value = item.value or ""
        rows.append((key, _mask(value) if key in SECRET_KEYS else value, item.source))
    if as_json:
        import json

        doc = {
            "settings": {key: {"value": value or None, "source": src} for key, value, src in rows},
            "config_file": str(settings.config_path),
            "stored_login": str(settings.login_path),
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    width = max(len(r[1]) for r in rows)
    for key, value, source in rows:
        typer.echo(f"{key:<14} {value or '-':<{width}}  ({source})")
    typer.echo(f"{'config file':<14} {settings.config_path}")
    typer.echo(f"{'stored login':<14} {settings.login_path}")
