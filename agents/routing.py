"""Websocket URL map (the agent desk arrives with its own issue)."""

websocket_urlpatterns: list = []
