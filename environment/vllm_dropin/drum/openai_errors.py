"""Chat errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with vLLM's values.

DRUM answers every error a hook raises as `{"message": str(error)}` and logs str(error). So the
hook raises a CustomHTTPError whose text holds no request data (it is logged), and stashes the
error object for this request; DRUM's Flask app, extended through DRUM's `custom_flask.py`
(`init_app`), puts that object in the response body. openai clients then show vLLM's message
once, with its type and param.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import flask
from datarobot_drum.drum.exceptions import CustomHTTPError

_STASH = "dropin_openai_error"


def error_object(status: int, body: Any, fallback: str) -> dict[str, Any]:
    """vLLM's error fields (it sends them bare or under "error"), with OpenAI's keys always present."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    body = body if isinstance(body, dict) else {}
    return {
        "message": str(body.get("message") or fallback),
        "type": body.get("type") or ("invalid_request_error" if status < 500 else "server_error"),
        "param": body.get("param"),
        "code": body.get("code", status),
    }


def named_by_status(status: int, message: str) -> dict[str, Any]:
    """An error body whose type is its status's name, as vLLM names the errors of its web framework."""
    try:
        return {"message": message, "type": HTTPStatus(status).phrase}
    except ValueError:  # a status of no standard, such as nginx's 499
        return {"message": message, "type": "error"}


def route_error(status: int, body: Any, method: str, path: str) -> str | None:
    """The message for an error of vLLM's web framework rather than of vLLM (its body only
    `{"detail": ...}`): no route at `path`, or not for `method`; None for any other answer."""
    if status not in (404, 405) or not isinstance(body, dict) or set(body) != {"detail"}:
        return None
    if status == 405:
        return f"vLLM's route {path} does not take {method}"
    return f"vLLM serves no route {path} for this model (its GET /openapi.json lists the routes it serves)"


def openai_error(status: int, message: str, body: Any = None, logged: str | None = None) -> CustomHTTPError:
    """The error to raise (`from None`: a chained cause would be logged) so that this request is
    answered with vLLM's error (`body`, else `message`) in OpenAI's shape.

    The log gets `logged`, or only the status and type: vLLM's message may quote the request."""
    error = error_object(status, body, message)
    if flask.has_request_context():
        setattr(flask.g, _STASH, error)
    return CustomHTTPError(logged or f"request failed with HTTP {status} ({error['type']})", status_code=status)


def init_app(app: flask.Flask) -> None:
    @app.after_request
    def openai_error_body(response: flask.Response) -> flask.Response:
        error = flask.g.pop(_STASH, None)
        if error is not None:
            response.set_data(json.dumps({"error": error}))
            response.mimetype = "application/json"
        return response
