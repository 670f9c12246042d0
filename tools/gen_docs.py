"""Regenerate the reference pages made from the code: docs/config.md (the config structs
and their comments), docs/metrics.md (the metrics catalog) and docs/messages.md (every
message kind's fields).

    python tools/gen_docs.py            write them
    python tools/gen_docs.py --check    exit 1 if any is out of date
"""
import pathlib
import sys

from zqnode.nodes.configdoc import reference_markdown as config_reference
from zqnode.nodes.messagedoc import reference_markdown as messages_reference
from zqnode.nodes.observe.catalog import reference_markdown as metrics_reference

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = {"docs/config.md": config_reference, "docs/metrics.md": metrics_reference,
         "docs/messages.md": messages_reference}


def main(check: bool) -> int:
    stale = []
    for name, render in PAGES.items():
        path, text = ROOT / name, render()
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for name in stale:
        print(f"{name}: {'out of date (python tools/gen_docs.py)' if check else 'written'}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv[1:]))
