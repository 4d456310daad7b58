from django.urls import path

from calls import views

urlpatterns = [
    path("<str:secret>/", views.cloudagent_call_summary, name="cloudagent-call-summary"),
]
