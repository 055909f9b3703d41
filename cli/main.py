"""`mmtok`: the Typer app. Each command lives in its own module; none imports torch at start-up."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="mmtok",
    help="Train, evaluate and export discrete tokenizers for images, audio and motion.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

from mmtok.cli.common import guarded  # noqa: E402
from mmtok.cli import data as _data  # noqa: E402
from mmtok.cli import train as _train  # noqa: E402
from mmtok.cli import codec as _codec  # noqa: E402
from mmtok.cli import doctor as _doctor  # noqa: E402
from mmtok.cli import eval as _eval  # noqa: E402
from mmtok.cli import export as _export  # noqa: E402
from mmtok.cli import runs as _runs  # noqa: E402

app.command("train")(guarded(_train.train_command))
app.command("recipes")(guarded(_train.recipes_command))
app.add_typer(_data.data_app, name="data")
app.command("eval")(guarded(_eval.eval_command))
app.command("export")(guarded(_export.export_command))
app.command("encode")(guarded(_codec.encode_command))
app.command("decode")(guarded(_codec.decode_command))
app.command("doctor")(guarded(_doctor.doctor_command))
app.command("runs")(guarded(_runs.runs_command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
