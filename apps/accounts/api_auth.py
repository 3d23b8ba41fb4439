"""REST API authentication and permissions: browsers by session, edge clients by device token.

An edge client sends `Authorization: Bearer <device token>`. It acts as a device, not as the
person who created the token: it may do what roles.DEVICE_PERMISSIONS lists, nothing more.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from apps.accounts.models import DeviceToken
from apps.accounts.roles import DEVICE_PERMISSIONS
from apps.accounts.services import authenticate_device_token


class DevicePrincipal:
    """request.user for a request made with a device token."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token: DeviceToken):
        self.token = token
        self.username = f"device:{token.name}"

    def get_username(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj=None) -> bool:
        return perm in DEVICE_PERMISSIONS

    def __str__(self):
        return self.username


def is_device(user) -> bool:
    return isinstance(user, DevicePrincipal)


def check_device_may_use_dataset(user, dataset_id: int) -> None:
    """403 for a device token whose loops do not use this dataset; users pass (roles apply)."""
    if is_device(user) and not user.token.may_use_dataset(dataset_id):
        raise exceptions.PermissionDenied(
            "This device token is not scoped to a loop that uses this dataset; an admin can "
            "scope it on the Devices page."
        )


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send 'Authorization: Bearer <device token>'.")
        token = authenticate_device_token(header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked device token.")
        return DevicePrincipal(token), token

    def authenticate_header(self, request):
        return self.keyword  # so an anonymous request gets 401 with WWW-Authenticate


class ModelPermissions(permissions.BasePermission):
    """Each API view names the permission each HTTP method needs in `required_permissions`."""

    message = "Your role may not do this."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False  # DRF answers 401 when no authenticator succeeded
        # HEAD is GET without the body (Django answers it with the view's get): same permission.
        method = "GET" if request.method == "HEAD" else request.method
        needed = getattr(view, "required_permissions", {}).get(method)
        if needed is None:
            # A method the view does not have gets DRF's 405, not a 403 blaming the role; one it
            # has but names no permission for stays refused.
            return request.method == "OPTIONS" or not hasattr(view, request.method.lower())
        return request.user.has_perm(needed)


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    """Tells the OpenAPI schema how device tokens are sent."""

    target_class = DeviceTokenAuthentication
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A device token from the portal's Devices page (edge clients).",
        }
