import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ilportal.settings")
django_asgi_app = get_asgi_application()

from ilportal import webserver  # noqa: E402  (reads settings)

webserver.install()  # request bodies stay on disk, and past the limit get 413 (see the module)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.accounts.body_gate import BodyGate  # noqa: E402
from apps.edge.predict_route import PredictRoute  # noqa: E402
from ilportal.websocket_origin import SameOriginValidator  # noqa: E402
from ilportal.websocket_urls import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # A device's raw-image predict is answered before Django's request cycle (see module).
        "http": PredictRoute(BodyGate(django_asgi_app)),
        # Origin: the portal's own scheme, host and port, or CSRF_TRUSTED_ORIGINS (see module).
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
