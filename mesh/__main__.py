"""``python -m mesh`` runs the interfed command line."""

from mesh.cli import main

main()
