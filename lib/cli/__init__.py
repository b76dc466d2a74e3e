"""`python -m lib ...`: every subcommand's parser and handler, in one place (the top layer)."""
