"""`python -m sshkit` runs the command line."""

from sshkit.cli import main

main()
