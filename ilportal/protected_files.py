"""The answer of a view that has checked the permission for a stored file (image, thumbnail,
model archive). There is no public /media/ route: files reach browsers only through such views.

FILE_SERVING says who sends the bytes (docs/deployment.md):
- "django" (default): the web process streams the file from storage;
- "x-accel-redirect": nginx does, from an `internal` location that maps FILE_SERVING_ACCEL_PREFIX
  to MEDIA_ROOT (local storage);
- "s3-presigned": the browser is redirected to a presigned S3 URL that expires after
  FILE_SERVING_URL_EXPIRY_S seconds (S3 storage).
"""

from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.utils.http import content_disposition_header

DJANGO = "django"
X_ACCEL_REDIRECT = "x-accel-redirect"
S3_PRESIGNED = "s3-presigned"
MODES = (DJANGO, X_ACCEL_REDIRECT, S3_PRESIGNED)


def stored_file_response(
    name: str,
    *,
    content_type: str | None = None,
    filename: str | None = None,
    as_attachment: bool = False,
    immutable: bool = False,
) -> HttpResponse:
    mode = settings.FILE_SERVING
    if mode == S3_PRESIGNED:
        response = _presigned_redirect(name, content_type, filename, as_attachment)
    elif mode == X_ACCEL_REDIRECT:
        response = HttpResponse()
        del response["Content-Type"]  # nginx sets it from the file name unless the view knows it
        if content_type:
            response["Content-Type"] = content_type
        response["X-Accel-Redirect"] = settings.FILE_SERVING_ACCEL_PREFIX + quote(name)
        if filename or as_attachment:
            response["Content-Disposition"] = content_disposition_header(
                as_attachment, filename or name.rsplit("/", 1)[-1]
            )
    elif mode == DJANGO:
        response = FileResponse(
            default_storage.open(name, "rb"),
            content_type=content_type,
            as_attachment=as_attachment,
            filename=filename or "",
        )
    else:
        raise ImproperlyConfigured(f"FILE_SERVING must be one of {', '.join(MODES)}, not {mode!r}.")
    if mode != S3_PRESIGNED:
        # Private: a shared cache must never hand a file to someone the view did not check.
        response["Cache-Control"] = "private, max-age=86400" if immutable else "private, no-cache"
    return response


def _presigned_redirect(name, content_type, filename, as_attachment) -> HttpResponse:
    parameters = {}
    if content_type:
        parameters["ResponseContentType"] = content_type
    if filename or as_attachment:
        parameters["ResponseContentDisposition"] = content_disposition_header(
            as_attachment, filename or name.rsplit("/", 1)[-1]
        )
    try:
        url = default_storage.url(
            name, parameters=parameters or None, expire=settings.FILE_SERVING_URL_EXPIRY_S
        )
    except TypeError as exc:  # FileSystemStorage.url() takes no expiry: not S3
        raise ImproperlyConfigured("FILE_SERVING=s3-presigned needs S3 storage.") from exc
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = "no-store"  # the URL expires; never reuse the redirect
    return response
