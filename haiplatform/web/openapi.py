"""The OpenAPI 3.1 document of the status page's JSON API (served at ``/api/openapi.json``)."""

from __future__ import annotations

from typing import Any

import ffcommon
from haiplatform.web.views import JOB_STATES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR = _json(_ref("Error"), "")


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad parameter; the message names it",
        401: "Missing or unknown token",
        403: "Not your job (and you are not an admin)",
        404: "No such job",
        409: "The job's state does not allow this",
        503: "The node holding the log did not answer",
    }
    return {str(c): {**_ERR, "description": text[c]} for c in codes}


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_READ_AUTH = [{}, {"bearer": []}]  # anonymous allowed unless the operator turned it off
_READ_ERRORS = (401,)  # 401 only when anonymous reads are disabled


def openapi_document() -> dict[str, Any]:
    """The API description; every path listed here is exercised by tests/web/test_api.py."""
    num = {"type": "number"}
    integer = {"type": "integer"}
    string = {"type": "string"}
    action = {
        "security": [{"bearer": []}],
        "parameters": [_JOB_ID],
        "responses": {
            "200": _json(_ref("JobEnvelope"), "The job after the action"),
            **_errors(401, 403, 404, 409),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "HAI-Platform scheduler status API",
            "version": ffcommon.__version__,
            "description": (
                "Read-only views of nodes, jobs and utilization (anonymous when the operator allows), "
                "and job actions that need `Authorization: Bearer <token>` and follow the same "
                "permission rules as the gRPC API: users act on their own jobs, admins on all. "
                "Times are unix seconds; durations end in `_s`."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": string}},
                "Node": {
                    "type": "object",
                    "properties": {
                        "name": string,
                        "state": {"enum": ["idle", "busy", "draining", "drained", "unhealthy", "down"]},
                        "slots": {**integer, "description": "GPU slots"},
                        "slots_used": {**integer, "description": "GPU slots held by running jobs' ranks"},
                        "reason": {**string, "description": "why down/unhealthy/drained"},
                        "last_heartbeat": num,
                        "jobs": {
                            "type": "array",
                            "items": {"type": "object", "properties": {"id": integer, "name": string}},
                        },
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": integer,
                        "name": {
                            **string,
                            "description": "as submitted; the page escapes control/bidi characters",
                        },
                        "user": string,
                        "group": string,
                        "command": string,
                        "workdir": string,
                        "state": {"enum": list(JOB_STATES)},
                        "reason": string,
                        "pending_reason": {
                            **string,
                            "description": "why a queued job waits: Resources, Priority, QuotaGroup, Dependency, "
                            "Held, BeginTime or ArrayTaskLimit; empty otherwise",
                        },
                        "priority": string,
                        "base_priority": string,
                        "nodes": integer,
                        "ranks_per_node": integer,
                        "world_size": integer,
                        "assigned_nodes": {"type": "array", "items": string},
                        "submitted_at": num,
                        "started_at": num,
                        "finished_at": num,
                        "age_s": {**num, "description": "since submission"},
                        "running_s": {**num, "description": "of the current (or last) run"},
                        "run_seq": integer,
                        "exit_code": integer,
                        "suspend_count": integer,
                        "time_limit_s": num,
                    },
                },  # fmt: skip
                "Transition": {
                    "type": "object",
                    "properties": {"at": num, "from_state": string, "to_state": string, "reason": string},
                },
                "JobDetail": {
                    "allOf": [
                        _ref("Job"),
                        {
                            "type": "object",
                            "properties": {"history": {"type": "array", "items": _ref("Transition")}},
                        },
                    ]
                },
                "JobEnvelope": {"type": "object", "properties": {"now": num, "job": _ref("Job")}},
                "Sample": {
                    "type": "object",
                    "properties": {
                        "t": num,
                        "nodes_total": integer,
                        "nodes_up": integer,
                        "nodes_busy": integer,
                        "nodes_down": integer,
                        "queue_length": integer,
                        "jobs_running": integer,
                        "slots_total": integer,
                        "slots_used": integer,
                    },
                },  # fmt: skip
            },
        },
        "paths": {
            "/api/config": {
                "get": {
                    "summary": "Page settings: refresh interval, whether anonymous reads are allowed",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "anonymous_read": {"type": "boolean"},
                                    "poll_ms": integer,
                                    "log_tail_bytes": integer,
                                    "page_size": integer,
                                    "fs3": {
                                        "type": "boolean",
                                        "description": "whether /api/fs3 has a cluster",
                                    },
                                },
                            },
                            "Settings",
                        )
                    },
                }
            },
            "/api/whoami": {
                "get": {
                    "summary": "The user holding the token",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"user": string, "group": string, "admin": {"type": "boolean"}},
                            },
                            "The user",
                        ),
                        **_errors(401),
                    },
                }
            },
            "/api/nodes": {
                "get": {
                    "summary": "Every node with its state and the jobs on it",
                    "security": _READ_AUTH,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "now": num,
                                    "nodes": {"type": "array", "items": _ref("Node")},
                                    "counts": {"type": "object", "additionalProperties": integer},
                                    "slots": {
                                        "type": "object",
                                        "properties": {"total": integer, "used": integer},
                                        "description": "GPU slots of the nodes that are up, and in use",
                                    },
                                },
                            },
                            "Nodes sorted by name",
                        ),
                        **_errors(*_READ_ERRORS),
                    },
                }
            },
            "/api/jobs": {
                "get": {
                    "summary": "One page of jobs, newest first, with the true totals of all that match",
                    "security": _READ_AUTH,
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": string,
                            "description": "comma-separated states to keep, e.g. queued,running",
                        },
                        {"name": "user", "in": "query", "schema": {**string, "maxLength": 256}},
                        {
                            "name": "name",
                            "in": "query",
                            "schema": {**string, "maxLength": 256},
                            "description": "substring of the job name (ASCII case-insensitive)",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                            "description": "jobs to skip (offset / limit is the page number)",
                        },
                    ],  # fmt: skip
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "now": num,
                                    "jobs": {"type": "array", "items": _ref("Job")},
                                    "offset": integer,
                                    "limit": integer,
                                    "total": {**integer, "description": "jobs matching every filter"},
                                    "counts": {
                                        "type": "object",
                                        "additionalProperties": integer,
                                        "description": "jobs per state matching the user and name filters",
                                    },
                                },
                            },
                            "Jobs",
                        ),
                        **_errors(400, *_READ_ERRORS),
                    },
                }
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "summary": "One job with its state history",
                    "security": _READ_AUTH,
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _json(
                            {"type": "object", "properties": {"now": num, "job": _ref("JobDetail")}},
                            "The job",
                        ),
                        **_errors(404, *_READ_ERRORS),
                    },
                }
            },
            "/api/jobs/{job_id}/logs": {
                "get": {
                    "summary": "Tail of one rank's log (owner or admin only, like `haictl logs`)",
                    "security": [{"bearer": []}],
                    "parameters": [
                        _JOB_ID,
                        {
                            "name": "rank",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "default": 0},
                        },
                        {
                            "name": "offset",
                            "in": "query",
                            "schema": {"type": "integer", "default": -8192},
                            "description": "byte offset; negative counts from the end",
                        },
                        {
                            "name": "max_bytes",
                            "in": "query",
                            "schema": {"type": "integer", "maximum": 1048576},
                        },
                    ],  # fmt: skip
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "job_id": integer,
                                    "rank": integer,
                                    "node": string,
                                    "start_offset": integer,
                                    "next_offset": integer,
                                    "job_done": {"type": "boolean"},
                                    "text": {**string, "description": "UTF-8, invalid bytes replaced"},
                                },
                            },
                            "Log bytes",
                        ),  # fmt: skip
                        **_errors(400, 401, 403, 404, 409, 503),
                    },
                }
            },
            "/api/utilization": {
                "get": {
                    "summary": "Cluster utilization and queue length over time (sampled in memory)",
                    "security": _READ_AUTH,
                    "parameters": [
                        {"name": "window_s", "in": "query", "schema": {"type": "integer", "default": 900}}
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "now": num,
                                    "interval_s": num,
                                    "samples": {"type": "array", "items": _ref("Sample")},
                                },
                            },
                            "Samples, oldest first",
                        ),
                        **_errors(400, *_READ_ERRORS),
                    },
                }
            },
            "/api/fs3": {
                "get": {
                    "summary": "The fs3 panel: targets, chain states, capacity, resyncs (as `haictl fs df`)",
                    "security": _READ_AUTH,
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "configured": {"type": "boolean", "description": "false: no --fs3-mgmtd"},
                                    "ok": {"type": "boolean", "description": "false: the last poll failed"},
                                    "error": string,
                                    "mgmtd": string,
                                    "checked_at": num,
                                    "last_ok_at": num,
                                    "capacity": {"type": "object", "additionalProperties": True},
                                    "states": {"type": "object", "additionalProperties": integer},
                                    "targets": {"type": "array", "items": {"type": "object"}},
                                    "nodes": {"type": "array", "items": {"type": "object"}},
                                    "repairs": {
                                        "type": "array",
                                        "items": {"type": "object"},
                                        "description": "SYNCING targets (being refilled by their chain)",
                                    },
                                },
                            },
                            "The latest poll",
                        ),
                        **_errors(*_READ_ERRORS),
                    },
                }
            },
            "/api/jobs/{job_id}/cancel": {"post": {"summary": "Cancel a job", **action}},
            "/api/jobs/{job_id}/suspend": {"post": {"summary": "Suspend a job until resumed", **action}},
            "/api/jobs/{job_id}/resume": {
                "post": {"summary": "Put a suspended job back in the queue", **action}
            },
            "/api/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "responses": {"200": {"description": "hai_* and grpc_server_* families"}},
                }
            },
        },
    }
