"""The baseline of the start-up benchmark: the smallest useful Typer app (two commands, one option each).

`tradebot --help` is compared with `python bench/minimal_typer_app.py --help`: whatever tradebot costs
beyond this is its own import work. Configured like tradebot's app (no completion, no rich markup).
"""

import typer

app = typer.Typer(help="A minimal two-command Typer app.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
def hello(name: str = typer.Option("world", help="Who to greet.")) -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


@app.command()
def bye(name: str = typer.Option("world", help="Who to see off.")) -> None:
    """Say goodbye."""
    typer.echo(f"bye {name}")


if __name__ == "__main__":
    app(prog_name="minimal")
