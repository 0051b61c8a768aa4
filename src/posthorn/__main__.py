"""``python -m posthorn`` is the `posthorn` command."""

from posthorn.cli import main

if __name__ == "__main__":
    main()
