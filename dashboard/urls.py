from django.urls import path

from . import backtests_views, billing_views, decisions_views, models_views, usage_views, views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("area/<slug:key>/", views.area, name="area"),
    path("api-keys/", views.api_keys, name="api-keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api-key-revoke"),
    path("members/", views.members, name="members"),
    path("members/invite/", views.member_invite, name="member-invite"),
    path("members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path("members/<int:membership_id>/remove/", views.member_remove, name="member-remove"),
    path("invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation-revoke"),
    path("tenants/switch/", views.tenant_switch, name="tenant-switch"),
    path("tenants/new/", views.tenant_new, name="tenant-new"),
    path("token/", views.token, name="token"),
    path("data/", views.data, name="data"),
    path("features/", views.features, name="features"),
    path("features/preview/", views.features_preview, name="features-preview"),
    path("decisions/", decisions_views.decisions, name="decisions"),
    path("decisions/ticket/", decisions_views.decisions_ticket, name="decisions-ticket"),
    path("decisions/<int:decision_id>/", decisions_views.decision_detail, name="decision"),
    path("decisions/weights/", decisions_views.decision_weights, name="decision-weights"),
    path("positions/", decisions_views.positions, name="positions"),
    path("flows/", decisions_views.flows, name="flows"),
    path("flows/<slug:name>/v/<int:version>/", decisions_views.flow_detail, name="flow"),
    path("flows/<slug:name>/v/<int:version>/activate/", decisions_views.flow_activate, name="flow-activate"),
    path("backtests/", backtests_views.backtests, name="backtests"),
    path("backtests/compare/", backtests_views.backtests_compare, name="backtests_compare"),
    path("backtests/<uuid:run_id>/", backtests_views.backtest_detail, name="backtest"),
    path("usage/", usage_views.usage, name="usage"),
    path("billing/", billing_views.billing, name="billing"),
    path("billing/plan/", billing_views.billing_plan, name="billing-plan"),
    path("billing/invoices/<uuid:invoice_id>/pay/", billing_views.billing_pay, name="billing-pay"),
    path("staff/revenue/", billing_views.staff_revenue, name="staff-revenue"),
    path("performance/", usage_views.performance, name="performance"),
    path("models/", models_views.models_home, name="models"),
    path("models/jobs/<uuid:job_id>/", models_views.training_job, name="training-job"),
    path("models/<slug:name>/", models_views.model_detail, name="model"),
    path("models/<slug:name>/v/<int:version>/", models_views.model_version, name="model-version"),
]
