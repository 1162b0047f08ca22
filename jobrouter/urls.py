from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from agents import views as agent_views
from routing.api import views as api_views

urlpatterns = [
    # The supervisor's live view sits inside the admin (staff only).
    path("admin/live/", agent_views.supervisor, name="supervisor-live"),
    path("admin/", admin.site.urls),
    path("routing/", include("routing.api.urls")),
    # Event Grid handshake's validationUrl (the code is the credential, no HMAC).
    path("eventgrid/validate/<str:subscription_id>", api_views.event_subscription_validation),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("agents.urls")),
    path("", RedirectView.as_view(url="/desk/", permanent=False)),
]

handler404 = "routing.api.errors.not_found_json"
# API paths answer the ACS error body for failures outside the views too (Django pages elsewhere).
handler400 = "routing.api.errors.bad_request"
handler500 = "routing.api.errors.server_error"
