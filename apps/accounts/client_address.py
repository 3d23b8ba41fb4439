"""The address a request came from, as far as it can be trusted.

Behind a reverse proxy every request comes from the proxy's address; the client's is the last
entry of X-Forwarded-For that the proxy added. The header is believed only when the request came
from one of TRUSTED_PROXIES, and read from the right, skipping those proxies: a client may put
anything at the left of the header, never at its right."""

from django.conf import settings


def client_address(meta) -> str:
    remote = meta.get("REMOTE_ADDR", "")
    trusted = settings.TRUSTED_PROXIES
    if remote not in trusted:
        return remote
    forwarded = [a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if address not in trusted:
            return address
    return forwarded[0] if forwarded else remote
