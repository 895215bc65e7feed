"""The application layer: builds the real parts from settings (:mod:`~tradebot.app.parts`) and holds one
function per command (:mod:`~tradebot.app.trading`, :mod:`~tradebot.app.reports`, :mod:`~tradebot.app.backtest`,
:mod:`~tradebot.app.setup`). The CLI calls these functions and nothing deeper; nothing below imports this
package. Modules are imported by the command that needs them, so ``tradebot --help`` stays light."""
