"""Write docs/cli.md from the CLI's --help (``--check``: fail if it is stale).

Usage: ``python scripts/gen_cli_docs.py [--check]``
"""

from __future__ import annotations

import sys
from pathlib import Path

from keepstone.cli.docs import render_markdown

TARGET = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def main(argv: list[str]) -> int:
    text = render_markdown()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
