"""Exchange adapters: the Upbit REST API (live), a paper broker, and a local Upbit-compatible simulator."""
