"""fasternet-space command line: parse, call the library, print. Bad input: one line, exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from fasternet_space.checkpoint import CheckpointError
from fasternet_space.spec import SpecError

ROOT = Path(__file__).resolve().parent
DEFAULT_SPACE = ROOT / "spaces" / "fasternet.yaml"

#: Errors that mean "the user asked for something that is not allowed": one line, exit 2.
USER_ERRORS: tuple[type[Exception], ...] = (SpecError, CheckpointError)


class UserError(click.ClickException):
    exit_code = 2


def fail(message: str) -> None:
    raise UserError(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Explore the FasterNet design space: exact counts, on-device speed, Optuna search."""


@cli.command()
@click.option("--spec", "spec_path", required=True, help="A spec YAML file (every field fixed), e.g. spaces/fasternet_l.yaml.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), help="Load an official- or timm-format checkpoint (strict).")
@click.option("--out", type=click.Path(dir_okay=False), help="Save the built model (spec + state dict) to a .pt file.")
def build(spec_path: str, fmt: str, weights: str | None, out: str | None) -> None:
    """Build one network from a spec and print its exact cost per stage."""
    from fasternet_space import build_model, count, load_spec
    from fasternet_space.checkpoint import load_checkpoint
    from fasternet_space.report import format_summary, spec_summary

    spec = load_spec(spec_path)
    if out is not None and not out.endswith(".pt"):
        fail(f"--out {out}: allowed: a path ending in .pt")
    summary = spec_summary(spec, count(spec))
    model = None
    if weights or out:
        model = build_model(spec)
    if weights:
        summary["weights"] = {"path": weights, "format": load_checkpoint(model, weights)}
    if out:
        import torch

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        torch.save({"spec": spec.to_dict(), "state_dict": model.state_dict()}, out)
        summary["saved"] = out
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(format_summary(summary))
    if weights:
        click.echo(f"loaded {summary['weights']['format']}-format weights from {weights} (strict)")
    if out:
        click.echo(f"saved model to {out}")


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="cli.py", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as exc:
        message = exc.format_message()
        if isinstance(exc, click.NoSuchOption) and exc.ctx is not None:
            allowed = [opt for param in exc.ctx.command.params for opt in param.opts if opt.startswith("--")]
            message += " Allowed: " + ", ".join(allowed + ["--help"])
        click.echo(f"error: {_one_line(message)}", err=True)
        return exc.exit_code if isinstance(exc, UserError) else 2
    except USER_ERRORS as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        return 2
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
