from django.urls import path

from uploads import views

urlpatterns = [
    path("callback/<str:secret>/", views.cloudagent_callback, name="cloudagent-callback"),
]
