"""``python -m histotile``: the command line (what ``torchrun -m histotile`` starts)."""

from histotile.workflows.cli.main import main

if __name__ == "__main__":
    main()
