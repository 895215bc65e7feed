"""``tradebot telegram``: take commands from the owner's Telegram chat. Registered in :mod:`tradebot.cli`."""

from typing import Annotated

import typer

from tradebot.cli.common import errors_to_exit, settings_from


@errors_to_exit
def telegram(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Handle the pending updates and exit (for a cron line every "
                                                      "minute, under flock).")] = False,
    timeout: Annotated[int, typer.Option(min=1, max=50, help="Long-polling wait of each getUpdates, seconds.")] = 50,
) -> None:
    """Take commands from the owner's Telegram chat: /status, /pnl, /trades, /decisions, /budget, /pause,
    /resume, /exit (asks Confirm / Cancel first) and /help.

    Only TELEGRAM_CHAT_ID may command (in a group, only TELEGRAM_ALLOWED_USER_IDS); anything else gets no
    reply and is counted in the metrics. Each update is handled exactly once (stored in PostgreSQL with its
    effect). Without --once it long-polls until stopped (a systemd service); with --once it handles what is
    pending — waiting up to a minute while an /exit it asked waits for its Confirm — and exits.
    Exit codes: 0 done, 1 Telegram or the database failed, 2 configuration, 75 another poller runs.
    """
    from tradebot.app.telegram import poll
    from tradebot.cli.render.telegram import poll_lines

    report = poll(settings_from(ctx), once=once, timeout_s=timeout)
    for line in poll_lines(report):
        typer.echo(line)
    if report.send_errors:
        for err in report.send_errors[:3]:
            typer.echo(f"Warning: a reply was not delivered yet ({err}); it is retried on the next poll", err=True)
