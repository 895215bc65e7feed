"""``python -m tradebot.exchange.simulator [OPTIONS]`` is ``tradebot simulator [OPTIONS]``: one entry point.

``tradebot.cli.main`` reads ``sys.argv``, so the command's name is put in front of the given options.
"""

import sys


def _run() -> None:
    sys.argv = ["tradebot", "simulator", *sys.argv[1:]]
    from tradebot.cli import main

    main()


if __name__ == "__main__":
    _run()
