"""Domain operations: the only code that changes router state.

REST views, admin actions, websocket consumers and background tasks all call these functions.
Each takes keyword-only arguments and an optional `now` (read once per operation; tests pass a
fixed value), runs in one transaction that locks what it changes, and defers follow-up work
(matching, pushes) until after commit.
"""
