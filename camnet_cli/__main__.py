"""``python -m camnet_cli`` runs the command line."""

from camnet_cli.cli import app

app(prog_name="camnet")
