"""``python -m sparring.arena build [...]`` / ``python -m sparring.arena check [...]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("build", "check"):
        print("usage: python -m sparring.arena {build,check} [options]  (--help for each)")
        return 2
    if args[0] == "build":
        from sparring.arena.build import main as run
    else:
        from sparring.arena.check import main as run
    return run(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
