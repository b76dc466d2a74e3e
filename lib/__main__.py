"""`python -m lib ...`: the command line (lib/cli)."""

from lib.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
