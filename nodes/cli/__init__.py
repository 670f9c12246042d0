"""The `zqnode` command. Thin: click parses options into config structs and hands
them to a node's `run`; nodes never import click."""
import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zqnode")
def main() -> None:
    """zqnode: a Filecoin storage provider's sealing and proving cluster."""
