"""Websocket URL map."""

from django.urls import path

from agents import consumers

websocket_urlpatterns = [
    path("ws/desk/", consumers.DeskConsumer.as_asgi()),
    path("ws/wait/<str:token>/", consumers.WaitingRoomConsumer.as_asgi()),
    path("ws/supervisor/", consumers.SupervisorConsumer.as_asgi()),
]
