"""The API's JSON parser: a body nested too deeply for Python's JSON decoder is a 400 like any
other malformed JSON (DRF lets the decoder's RecursionError through as a 500)."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JSONBodyParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the body is nested too deeply") from exc
