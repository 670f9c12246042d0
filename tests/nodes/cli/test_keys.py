from click.testing import CliRunner

from zqnode.bus import keys
from zqnode.nodes.cli import main as cli

A_KEY = "-Fgi(BOw2g+*Rs.q7YFC0mpg?ObRQ01e6{rk@FrN"      # Z85: 1 key in 85 begins with "-"


def test_a_key_that_begins_with_a_dash_is_allowed_and_revoked_as_written(tmp_path):
    run = CliRunner().invoke
    out = run(cli, ["keys", "allow", A_KEY, "--role", "worker", "--name", "w1", "--repo", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert keys.AllowList.load(tmp_path / keys.ALLOW_FILE).entries[A_KEY].name == "w1"
    out = run(cli, ["keys", "revoke", A_KEY, "--repo", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert A_KEY not in keys.AllowList.load(tmp_path / keys.ALLOW_FILE).entries
