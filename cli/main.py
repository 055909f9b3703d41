"""`mmtok`: the Typer app. Each command lives in its own module; none imports torch at start-up."""
from __future__ import annotations

import typer
from typing_extensions import Annotated

from mmtok.cli.common import HELP_OPTIONS, Group, guarded, use_mmtok_classes

app = typer.Typer(
    name="mmtok",
    help="Train, evaluate and export discrete tokenizers for images, audio and motion.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=Group,
    context_settings=HELP_OPTIONS,
)

from mmtok.cli import data as _data  # noqa: E402
from mmtok.cli import train as _train  # noqa: E402
from mmtok.cli import image_ids as _image_ids  # noqa: E402
from mmtok.cli import doctor as _doctor  # noqa: E402
from mmtok.cli import eval as _eval  # noqa: E402
from mmtok.cli import export as _export  # noqa: E402
from mmtok.cli import importer as _importer  # noqa: E402
from mmtok.cli import runs as _runs  # noqa: E402
from mmtok.cli import lm as _lm  # noqa: E402
from mmtok.cli import tokenize as _tokenize  # noqa: E402


def version_text() -> str:
    """`mmtok X (torch Y, python Z)`, read from package metadata: nothing heavy is imported."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import mmtok

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return f"mmtok {mmtok.__version__} (torch {torch_version}, python {platform.python_version()})"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_print_version,
        help="Print mmtok's version (and torch's) and exit.")] = False,
) -> None:
    """Train, evaluate and export discrete tokenizers for images, audio and motion."""


app.command("train")(guarded(_train.train_command))
app.command("recipes")(guarded(_train.recipes_command))
app.add_typer(_data.data_app, name="data")
app.command("eval")(guarded(_eval.eval_command))
app.command("export")(guarded(_export.export_command))
app.command("import", help=_data._reflow(_importer.import_command.__doc__))(guarded(_importer.import_command))
app.command("encode")(guarded(_image_ids.encode_command))
app.command("decode")(guarded(_image_ids.decode_command))
app.command("doctor")(guarded(_doctor.doctor_command))
app.command("runs")(guarded(_runs.runs_command))
app.command("tokenize", help=_data._reflow(_tokenize.tokenize_command.__doc__))(guarded(_tokenize.tokenize_command))
app.add_typer(_lm.lm_app, name="lm")
use_mmtok_classes(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
