"""The OpenAPI schema documents the error answers of every operation, not only its success.

Every API error is a JSON object: `{"detail": "..."}`, or for invalid input the fields with their
messages (`{"class_names": ["This field is required."]}`). `ApiAutoSchema` adds to each operation
the errors that the portal's shared machinery can give it, so that no view has to list them:

- 400: the operation reads a body or query parameters (everything but DELETE);
- 401 / 403: every API operation needs a session or device token, and a role that may do it;
- 404: the path names an object (it has a parameter);
- 413: the operation reads a body (apps.accounts.body_gate limits its size).

A view documents more (e.g. 409) with `@extend_schema(responses={409: ApiErrorSerializer})`.
"""

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ApiErrorSerializer(serializers.Serializer):
    """An error: a message in `detail`, or, for invalid input, each field with its messages."""

    detail = serializers.CharField(
        required=False,
        help_text="What went wrong. Invalid input names each field instead, with a list of "
        "messages (`non_field_errors` for the body as a whole).",
    )


def error_codes(method: str, path: str) -> dict[str, str]:
    codes = {
        "401": "Not authenticated: log in, or send `Authorization: Bearer <device token>`.",
        "403": "Your role (or device token) may not do this.",
    }
    if method != "DELETE":
        codes["400"] = "Invalid input."
    if "{" in path:
        codes["404"] = "No such object."
    if method in BODY_METHODS:
        codes["413"] = "The request body is larger than this operation accepts."
    return codes


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        if direction != "response":
            return bodies
        for code, description in error_codes(self.method, self.path).items():
            if code not in bodies:
                body = self._get_response_for_code(ApiErrorSerializer, code, direction=direction)
                bodies[code] = {**body, "description": description}
        return dict(sorted(bodies.items()))
