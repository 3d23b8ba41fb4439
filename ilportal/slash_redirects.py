"""Adding a missing trailing slash with a redirect that keeps the method and the body.

Django's CommonMiddleware answers 301, which clients follow by resending a POST as a GET: an
API write without the slash (a device's predict, say) was then lost and answered with a
misleading 403. 308 makes them resend the same request to the slashed URL.
"""

from django.http import HttpResponsePermanentRedirect
from django.middleware.common import CommonMiddleware
from django.utils.http import escape_leading_slashes


class PermanentRedirectKeepingMethod(HttpResponsePermanentRedirect):
    status_code = 308


class SlashAppendingMiddleware(CommonMiddleware):
    response_redirect_class = PermanentRedirectKeepingMethod

    def get_full_path_with_slash(self, request):
        # Django refuses writes here when DEBUG is on, as a 301 would lose their body; 308 keeps it.
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))
