"""Helpers for using the plugin with lmms-eval directly.

python -m lmms_eval --model vispruner ... --include_path "$(python -m eval.plugin tasks-path)"
"""

from __future__ import annotations

import argparse

from . import TASKS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.plugin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("tasks-path", help="print the folder of our lmms-eval tasks (for --include_path)")
    parser.parse_args(argv)
    print(TASKS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
