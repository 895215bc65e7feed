"""Output of ``tradebot telegram``: one line per update handled (never its text)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tradebot.app.telegram import PollReport


def poll_lines(report: PollReport) -> list[str]:
    lines = []
    for h in report.handled:
        what = h.command or h.kind
        who = f"chat {h.chat_id} user {h.user_id}"
        tail = f": {h.reason}" if h.reason else ""
        lines.append(f"update {h.update_id}: {what} from {who} → {h.outcome}{tail}")
    for text in report.exits:
        lines.append("exit: " + " ".join(strip_tags(text).split()))
    lines.append(f"{report.bot or 'telegram'}: {len(report.handled)} update(s) handled, {report.sent} repl(ies) sent")
    return lines


def strip_tags(text: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", text))
