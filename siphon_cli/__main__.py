"""``python -m siphon_cli`` runs the same CLI as the ``siphon`` script."""

from siphon_cli.main import cli

cli()
