from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("routing/", include("routing.api.urls")),
]

handler404 = "routing.api.errors.not_found_json"
