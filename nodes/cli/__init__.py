"""The `zqnode` command. Thin: click parses options into config structs and hands
them to a node's `run`; nodes never import click. One module per command group."""
import logging

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zqnode")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def main(log_level: str) -> None:
    """zqnode: a Filecoin storage provider's sealing and proving cluster."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")


from nodes.cli import (bus, chain, keys, node, proofs, proving, sealing,  # noqa: E402
                       sectors, worker)  # (each module's COMMANDS register on `main`)

for group in (node, bus, keys, chain, proofs, proving, sealing, sectors, worker):
    for command in group.COMMANDS:
        main.add_command(command)
