"""An OpenAPI 3.1 document for the admin API, built from the route table and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "param": {"type": ["string", "null"]},
    "code": {"type": ["string", "null"]}}}}}


def document(table: list[tuple[str, str, Any, bool, str, type[BaseModel] | None]],
             queries: dict[str, type[BaseModel]] | None = None) -> dict[str, Any]:
    """`queries`: for a GET path, the model its query parameters are validated with."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for method, path, handler, admin, summary, body in table:
        op: dict[str, Any] = {
            "operationId": handler.__name__, "summary": summary,
            "security": [{"bearer": []}],
            "description": "Needs an admin token." if admin else "A read-only or admin token.",
            "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                           for p in _path_params(path)]
            + (_query_params(queries[path]) if queries and method == "GET" and path in queries else []),
            "responses": {"200": {"description": "OK", "content": {"application/json": {}}},
                          **{code: {"description": d, "content": {"application/json": {
                              "schema": {"$ref": "#/components/schemas/Error"}}}}
                             for code, d in (("400", "Bad input"), ("401", "Missing or wrong token"),
                                             ("403", "Read-only token"), ("404", "Unknown alias or version"),
                                             ("409", "Refused in the current state"), ("429", "Rate limited"),
                                             ("503", "Redis unreachable: nothing was changed"))}},
        }
        if body is not None:
            schemas[body.__name__] = body.model_json_schema(ref_template="#/components/schemas/{model}")
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
        paths.setdefault(path, {})[method.lower()] = op
    return {"openapi": "3.1.0",
            "info": {"title": "cliffguard admin API", "version": "1",
                     "description": "Rollouts, versions and the audit log. Used by the CLI and the console."},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    out = []
    for name, prop in schema["properties"].items():
        # `X | None = None` is an optional parameter of type X: a query string has no null
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        param = {k: v for k, v in (branches[0] if len(branches) == 1 else prop).items()
                 if k not in ("title", "description")}
        if prop.get("default") is not None:
            param["default"] = prop["default"]
        out.append({"name": name, "in": "query", "required": name in schema.get("required", []),
                    "description": prop.get("description", ""), "schema": param})
    return out


def _path_params(path: str) -> list[str]:
    return [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
