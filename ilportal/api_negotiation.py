"""Content negotiation of the REST API.

A blank `Accept` header states no preference, like a missing one (RFC 9110 lets a server
disregard an Accept it cannot satisfy); DRF took it as "nothing is acceptable" and answered 406.
"""

from rest_framework.negotiation import DefaultContentNegotiation


class BlankAcceptIsAny(DefaultContentNegotiation):
    def get_accept_list(self, request):
        if not request.META.get("HTTP_ACCEPT", "").strip():
            return ["*/*"]
        return super().get_accept_list(request)
