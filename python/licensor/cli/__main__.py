"""``python -m licensor.cli``: the ``licensor`` command."""

from licensor.cli import main

if __name__ == "__main__":  # not when a worker process of `serve --workers` imports this module as __mp_main__
    main()
