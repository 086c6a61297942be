"""``python -m interfed`` runs the interfed command line."""

from interfed.cli import main

main()
