from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Job router"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the runner of owed work (`routing.services.common.owe`) with the domain.
        import routing.services.timers  # noqa: F401
