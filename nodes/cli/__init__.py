"""The `zqnode` command. Thin: click parses options into config structs and hands
them to a node's `run`; nodes never import click. One module per command group."""
import click

from zqnode.nodes.observe import logs


class Zqnode(click.Group):
    """Ctrl-C ends any command with one line and the shell's status for it (130), not
    click's "Aborted!" or a traceback through Trio's exception groups."""

    def invoke(self, ctx: click.Context):
        from zqnode.nodes.cli.common import interrupted
        try:
            return super().invoke(ctx)
        except BaseException as e:
            if not interrupted(e):
                raise
        click.echo(f"zqnode {ctx.invoked_subcommand or ''}: stopped (Ctrl-C)".replace(" :", ":"),
                   err=True)
        ctx.exit(130)


def _log_levels(ctx, param, value: str) -> str:
    try:
        logs.parse_levels(value)
    except logs.LogSpecError as e:
        raise click.BadParameter(str(e)) from None
    return value


@click.group(cls=Zqnode, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zqnode")
@click.option("--log-level", default="info", show_default=True, callback=_log_levels,
              help="A level (debug, info, warning, error), and levels per module: "
                   "'zqnode.bus=debug,zqnode.worker=warning,info'.")
@click.option("--log-format", default="kv", show_default=True, type=click.Choice(logs.FORMATS),
              help="kv: key=value lines; json: one JSON object a line.")
def main(log_level: str, log_format: str) -> None:
    """zqnode: a Filecoin storage provider's sealing and proving cluster."""
    logs.setup(log_level, log_format)


from zqnode.nodes.cli import (bus, chain, config, keys, node, proofs, proving, sealing,  # noqa: E402
                              sectors, status, worker)  # (each module's COMMANDS register on `main`)

for group in (node, bus, keys, chain, proofs, proving, sealing, sectors, worker, status, config):
    for command in group.COMMANDS:
        main.add_command(command)
