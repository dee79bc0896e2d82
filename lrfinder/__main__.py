"""``python -m lrfinder``: the same as the ``lrfinder`` command."""

from lrfinder.cli import main

if __name__ == "__main__":
    main(prog_name="lrfinder")
