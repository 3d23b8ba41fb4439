from django.urls import path

from apps.labeling import views

app_name = "labeling"
urlpatterns = [
    path("", views.home, name="home"),
    path("datasets/<int:dataset_id>/", views.queue, name="queue"),
    path("datasets/<int:dataset_id>/work/", views.editor, name="editor"),
    path("datasets/<int:dataset_id>/claim/", views.claim, name="claim"),
    path("datasets/<int:dataset_id>/claims/release/", views.release_claims, name="release_claims"),
    path("datasets/<int:dataset_id>/review/", views.review_list, name="review"),
    path("loops/<int:loop_id>/", views.loop_queue, name="loop"),
    path("loops/<int:loop_id>/review/", views.loop_review_setting, name="loop_review"),
    path("reviews/<int:review_id>/", views.review_decide, name="review_decide"),
    path("samples/<int:sample_id>/", views.sample_page, name="sample"),
    path("samples/<int:sample_id>/queue/", views.queue_this, name="queue_this"),
    path("samples/<int:sample_id>/skip/", views.skip, name="skip"),
    path("leave/", views.leave, name="leave"),
]
