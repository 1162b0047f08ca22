"""URL map of the /routing API. `<str:…>` never spans a `/`; colon verbs stay in the segment
and are split off by the view."""

from django.urls import path

from routing.api import views

urlpatterns = [path("openapi.json", views.OpenApiView.as_view())]
for collection, resource in views.ADMIN_RESOURCES.items():
    urlpatterns += [
        path(f"{collection}", views.AdminCollectionView.as_view(resource=resource)),
        path(f"{collection}/<str:resource_id>", views.AdminItemView.as_view(resource=resource)),
    ]
urlpatterns += [
    path("queues/<str:queue_id>/statistics", views.QueueStatisticsView.as_view()),
    path("jobs", views.JobCollectionView.as_view()),
    path("jobs/<str:job_id>", views.JobItemView.as_view()),
    path("jobs/<str:job_id>/position", views.JobPositionView.as_view()),
    path("jobs/<str:job_id>/assignments/<str:assignment>", views.AssignmentActionView.as_view()),
    path("eventSubscriptions", views.EventSubscriptionCollectionView.as_view()),
    path("eventSubscriptions/<str:subscription_id>", views.EventSubscriptionItemView.as_view()),
    path("workers", views.WorkerCollectionView.as_view()),
    path("workers/<str:worker_id>", views.WorkerItemView.as_view()),
    path("workers/<str:worker_id>/offers/<str:offer>", views.OfferActionView.as_view()),
]
