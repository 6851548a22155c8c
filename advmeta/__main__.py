"""``python -m advmeta`` runs the command-line interface."""

from advmeta.cli.app import main

if __name__ == "__main__":
    main()
