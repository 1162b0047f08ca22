from django.urls import path

from agents import views

urlpatterns = [
    path("desk/", views.desk, name="desk"),
    path("wait/<str:token>/", views.waiting_room, name="waiting-room"),
    path("queue/", views.join_queue, name="join-queue"),
]
