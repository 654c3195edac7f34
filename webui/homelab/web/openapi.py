"""The OpenAPI document of /api/v1, and the request schemas the API enforces with it.

The document is a contract, not a sketch: every status an operation can answer is declared on it,
and the request bodies are checked against the very schemas published here (after the catalog's own
checks, which give the friendlier messages), so what the document calls invalid is refused and what
it calls valid is what the catalog and the inventory accept. tests/webui/test_webui_schemathesis.py
holds the server to it.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator

from homelab import __version__, catalog
from homelab.catalog import SECRET_MIN_LENGTH, Entry, Parameter, ValidationError
from homelab.history import RANGES
from homelab.states import SOURCES as JOB_SOURCES
from homelab.states import STATES
from homelab.status import STATUSES
from homelab.web.inputs import MAX_ID
from homelab.web.services import HISTORY_PATTERN

NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
SOURCES = list(JOB_SOURCES)


def groups_of(inventory: Any) -> dict[str, list[str]] | None:
    """The inventory's groups for the limit schemas; None when it cannot be read right now."""
    try:
        return inventory.groups()
    except Exception:  # a broken inventory refuses jobs by itself; the document only loses detail
        return None


def not_data() -> str:
    """What Parameter.coerce refuses in any text (catalog.JINJA_RE, catalog.CONTROL_RE) as one JSON
    Schema pattern, read from the catalog each time so the two never disagree. JSON Schema regexes
    have no flags: an ignore-case pattern gets its letters spelt [aA] (it has no character classes)."""
    jinja = catalog.JINJA_RE.pattern
    if catalog.JINJA_RE.flags & re.IGNORECASE and "[" not in jinja:
        jinja = re.sub(
            r"\\.|[A-Za-z]", lambda m: m[0] if m[0].startswith("\\") else f"[{m[0].lower()}{m[0].upper()}]", jinja
        )
    return f"{jinja}|{catalog.CONTROL_RE.pattern}"


def parameter_schema(p: Parameter) -> dict[str, Any]:
    """The catalog's schema of a parameter plus what coerce() also refuses, in JSON types: the API
    takes integers and booleans as JSON numbers and booleans (the CLI converts its NAME=VALUE text)."""
    s = p.as_schema()
    if p.pattern:
        s["pattern"] = f"^(?:{p.pattern})$"  # the catalog matches the whole value; JSON Schema searches
    if p.type == "string":
        s["maxLength"] = p.max_length
        s["not"] = {"pattern": not_data()}
        if p.required and p.default is None:
            s["minLength"] = 1  # "" counts as not given
        if p.secret:  # coerce() refuses shorter secrets ("" is: not given)
            if s.get("minLength"):
                s["minLength"] = SECRET_MIN_LENGTH
            else:
                s["anyOf"] = [{"maxLength": 0}, {"minLength": SECRET_MIN_LENGTH}]
    return s


def json_numbers(entry: Entry | None, params: Any) -> Any:
    """Integer parameters as ints: in JSON 2.0 and 2 are the same number (JSON Schema's "integer"
    says so too), while Python's json reads 2.0 as a float, which the catalog refuses."""
    if entry is None or not isinstance(params, dict):
        return params
    ints = {p.name for p in entry.parameters if p.type == "integer"}
    return {
        k: int(v) if k in ints and isinstance(v, float) and v.is_integer() and abs(v) < 2**63 else v
        for k, v in params.items()
    }


def limit_schema(entry: Entry, groups: dict[str, list[str]] | None) -> dict[str, Any]:
    """The names a limit may hold for this entry: its hosts and every group with one of them."""
    base: dict[str, Any] = {
        "type": "string",
        "description": f"host or group names within {', '.join(entry.targets)}, "
        "separated by commas; empty: all of them",
    }
    if groups is None:  # the inventory cannot be read now: only the shape
        return {**base, "pattern": rf"^$|^{NAME_RE}(,{NAME_RE})*$"}
    allowed = {h for t in entry.targets for h in groups.get(t, [])}
    names = sorted(allowed | {g for g, members in groups.items() if allowed & set(members)})
    if not names:
        return {**base, "pattern": rf"^$|^{NAME_RE}(,{NAME_RE})*$"}
    one = "(?:" + "|".join(n.replace(".", r"\.") for n in names) + ")"
    return {**base, "pattern": rf"^$|^{one}(,{one})*$"}


def start_job_schema(entry: Entry, groups: dict[str, list[str]] | None) -> dict[str, Any]:
    required = [p.name for p in entry.parameters if p.required and p.default is None]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["playbook", *(["params"] if required else []), *(["confirm"] if entry.needs_confirm else [])],
        "properties": {
            "playbook": {"const": entry.id},
            "params": {
                "type": "object",
                "additionalProperties": False,
                "properties": {p.name: parameter_schema(p) for p in entry.parameters},
                "required": required,
            },
            "limit": limit_schema(entry, groups),
            "check": {"type": "boolean"},
            "diff": {"type": "boolean"},
            # a disruptive entry starts only with "confirm": true (homelab.catalog.require_confirm)
            "confirm": {"const": True, "description": entry.interrupts} if entry.needs_confirm else {"type": "boolean"},
        },
    }


def checkable(entry: Entry) -> bool:
    """A drift check runs an entry without parameters: only entries needing none can be checked."""
    return not any(p.required and p.default is None for p in entry.parameters)


CHECK_BY_SCHEDULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schedule"],
    "properties": {"schedule": {"type": "string", "minLength": 1}},
}


def check_by_playbook(entry: Entry, groups: dict[str, list[str]] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["playbook"],
        "properties": {"playbook": {"const": entry.id}, "limit": limit_schema(entry, groups)},
    }


def drift_check_schema(entries: list[Entry], groups: dict[str, list[str]] | None) -> dict[str, Any]:
    return {"oneOf": [CHECK_BY_SCHEDULE, *(check_by_playbook(e, groups) for e in entries if checkable(e))]}


def enforce_drift_check(body: dict[str, Any], entries: dict[str, Entry], groups: dict[str, list[str]] | None) -> None:
    """The body of a drift check against the shape it claims; an unknown or uncheckable playbook is
    left to the drift service, which says why (404, 400)."""
    if "schedule" in body:
        return enforce(CHECK_BY_SCHEDULE, body)
    playbook = body.get("playbook")
    entry = entries.get(playbook) if isinstance(playbook, str) else None
    if entry is not None and checkable(entry):  # a former id (a catalog alias) as the id it stands for
        enforce(check_by_playbook(entry, groups), {**body, "playbook": entry.id})


DRIFT_FIX_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"playbook": {"type": "string"}, "hosts": {"type": "array", "items": {"type": "string"}}},
}


def enforce(schema: dict[str, Any], body: Any, secret_names: frozenset[str] = frozenset()) -> None:
    """Refuse (400) a body the published schema does not allow, without quoting secret values."""
    error = next(iter(sorted(Draft202012Validator(schema).iter_errors(body), key=lambda e: e.path)), None)
    if error is None:
        return
    path = [str(x) for x in error.absolute_path]
    where = ".".join(path) or "the body"
    if len(path) >= 2 and path[0] == "params":
        name = path[1]
        if name in secret_names:
            raise ValidationError(f"parameter '{name}' is not valid for its schema", field=name)
        raise ValidationError(f"parameter '{name}': {error.message[:200]}", field=name)
    if error.validator == "oneOf" and not path:
        raise ValidationError("the body matches none of the shapes in the OpenAPI document (/api/v1/openapi.json)")
    raise ValidationError(f"{where}: {error.message[:200]}", field=path[0] if path else None)


def document(catalog_entries: list[Entry], groups: dict[str, list[str]] | None) -> dict[str, Any]:
    def err(why: str) -> dict[str, Any]:
        return {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    def ok(why: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": why, "content": {"application/json": {"schema": schema}}}

    r400, r401 = err("the request is malformed or the catalog refuses it"), err("no valid API token or session")
    r403 = err("a browser session sent no CSRF token (X-CSRF-Token); tokens need none")
    r404, r409 = err("no such job, playbook, drift check, service or host"), err("the current state does not allow it")
    r413 = err("the body is larger than the server accepts")
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}
    job = ok("the job", ref("Job"))
    jid = [
        {
            "name": "job_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
        }
    ]

    def op(summary: str, responses: dict[str, Any], **kw: Any) -> dict[str, Any]:
        return {"summary": summary, "responses": {**responses, "401": r401}, **kw}

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    nullable = lambda t: {"type": [t, "null"]}
    job_schema = {
        "type": "object",
        "required": ["id", "playbook", "status", "source"],
        "properties": {
            "id": {"type": "integer"},
            "playbook": {"type": "string"},
            "title": {"type": "string"},
            "params": {"type": "object"},
            "limit": {"type": "string"},
            "hosts": {"type": "array", "items": {"type": "string"}},
            "check": {"type": "boolean"},
            "diff": {"type": "boolean"},
            "status": {"type": "string", "enum": list(STATES)},
            "reason": {"type": "string"},
            "rc": nullable("integer"),
            "created_by": {"type": "string"},
            "source": {"type": "string", "enum": SOURCES},
            "rerun_of": nullable("integer"),
            "created_at": nullable("string"),
            "started_at": nullable("string"),
            "finished_at": nullable("string"),
            "event_count": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "started": {"type": "boolean", "description": "drift checks: false when one was already running"},
        },
    }
    event = {
        "type": "object",
        "properties": {
            "seq": {"type": "integer"},
            "event": {"type": "string"},
            "host": {"type": "string"},
            "task": {"type": "string"},
            "stdout": {"type": "string"},
            "created": {"type": "string"},
        },
    }
    array = lambda items: {"type": "array", "items": items}
    obj = {"type": "object"}
    number = {"type": ["number", "null"]}
    status_fields = {
        "status": {"type": "string", "enum": list(STATUSES)},
        "observed_at": {**nullable("string"), "description": "when it was probed (ISO 8601, UTC)"},
        "response_ms": {**number, "description": "time to the HTTP answer; null: no answer"},
        "http_status": nullable("integer"),
        "tls_days_left": {**number, "description": "days until the certificate expires"},
        "error": {"type": "string", "description": "why it is not up"},
    }
    service_status = {
        "type": "object",
        "required": [
            "name",
            "url",
            "status",
            "observed_at",
            "age_seconds",
            "response_ms",
            "http_status",
            "tls_days_left",
            "error",
            "probed",
            "probe_status",
            "containers",
            "containers_observed_at",
        ],
        "properties": {
            "name": {"type": "string"},
            "title": {"type": "string"},
            "url": {"type": "string", "description": "its front page; empty: no domain"},
            "probe_url": {"type": "string"},
            "age_seconds": {**nullable("integer"), "description": "how old the observation is; null: never probed"},
            **status_fields,
            "status": {
                "type": "string",
                "enum": list(STATUSES),
                "description": "the worst of its newest probe and its containers in the fresh facts",
            },
            "observed_at": {
                **nullable("string"),
                "description": "when it was probed (ISO 8601, UTC); without a domain, when its containers were seen",
            },
            "error": {
                "type": "string",
                "description": "why it is not up (its containers first), e.g. container n8n exited",
            },
            "probed": {
                "type": "boolean",
                "description": "it has a domain and is probed; false: judged from its containers",
            },
            "probe_status": {
                "type": ["string", "null"],
                "enum": [*STATUSES, None],
                "description": "its newest probe's own status; null: no probe (yet)",
            },
            "containers": array(
                {
                    "type": "object",
                    "required": ["host", "name", "state", "health", "restart_count"],
                    "properties": {
                        "host": {"type": "string"},
                        "name": {"type": "string"},
                        "state": {"type": "string", "description": "running, restarting, exited, dead, ..."},
                        "health": {"type": "string", "description": "healthy, unhealthy, starting; empty: no check"},
                        "restart_count": {"type": "integer"},
                    },
                }
            ),
            "containers_observed_at": {
                **nullable("string"),
                "description": "when the facts judged were read; null: none fresh (at most 2 facts intervals old)",
            },
        },
    }
    sample = {
        "type": "object",
        "required": ["service", "observed_at", "status"],
        "properties": {
            "service": {"type": "string"},
            "url": {"type": "string"},
            **status_fields,
            "samples": {"type": "integer", "description": "how many probes it stands for (past 24 h: 5 minutes')"},
        },
    }
    bucket_head = {
        "start": {"type": "string", "description": "the bucket's start (ISO 8601, UTC; 5 min or 1 h long)"},
        "samples": {"type": "integer", "description": "samples in the bucket"},
    }
    series_head = {
        "range": {"type": "string", "enum": list(RANGES)},
        "bucket_seconds": {"type": "integer", "enum": sorted({r.step for r in RANGES.values()})},
        "from": {"type": "string"},
        "to": {"type": "string"},
    }
    percent = {"type": ["number", "null"], "minimum": 0}
    service_history = {
        "type": "object",
        "required": ["service", "range", "bucket_seconds", "from", "to", "buckets", "containers"],
        "properties": {
            "service": {"type": "string"},
            **series_head,
            "buckets": array(
                {
                    "type": "object",
                    "required": ["start", "samples", "up_fraction", "status", "response_ms_mean", "response_ms_max"],
                    "properties": {
                        **bucket_head,
                        "up_fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                        "status": {"type": "string", "enum": list(STATUSES), "description": "the worst of the bucket"},
                        "response_ms_mean": {**number, "description": "of the probes that had an answer"},
                        "response_ms_max": {**number, "description": "the slowest probe"},
                    },
                }
            ),
            "containers": array(
                {
                    "type": "object",
                    "required": ["host", "name", "buckets"],
                    "properties": {
                        "host": {"type": "string"},
                        "name": {"type": "string"},
                        "buckets": array(
                            {
                                "type": "object",
                                "required": ["start", "restart_count"],
                                "properties": {
                                    "start": {"type": "string"},
                                    "restart_count": {"type": "integer", "description": "the most Docker counted"},
                                },
                            }
                        ),
                    },
                }
            ),
        },
    }
    host_history = {
        "type": "object",
        "required": ["host", "range", "bucket_seconds", "from", "to", "buckets"],
        "properties": {
            "host": {"type": "string"},
            **series_head,
            "buckets": array(
                {
                    "type": "object",
                    "required": ["start", "samples", "cpu_percent", "mem_percent", "disk_percent"],
                    "properties": {
                        **bucket_head,
                        "cpu_percent": {**percent, "description": "mean"},
                        "mem_percent": {**percent, "description": "mean"},
                        "disk_percent": {**percent, "description": "mean"},
                    },
                }
            ),
        },
    }
    range_param = {
        "name": "range",
        "in": "query",
        "schema": {"type": "string", "enum": list(RANGES), "default": "24h"},
        "description": "24h: 5-minute buckets; 7d: 1-hour buckets",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "homelab job API",
            "version": __version__,
            "description": "Every run goes through one job engine. "
            "Authenticate with `Authorization: Bearer <token>` (tokens: /tokens).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Job": job_schema,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
                },
                "StartJob": {"oneOf": [start_job_schema(e, groups) for e in catalog_entries]},
                "ServiceStatus": service_status,
                "ServiceSample": sample,
                "ServiceHistory": service_history,
                "HostHistory": host_history,
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/catalog": {
                "get": op("Runnable playbooks and their parameter schemas", {"200": ok("catalog", array(obj))})
            },
            "/api/v1/catalog/{entry_id}": {
                "get": op(
                    "One catalog entry",
                    {"200": ok("entry", obj), "404": r404},
                    parameters=[{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                )
            },
            "/api/v1/jobs": {
                "get": op(
                    "Job history, newest first",
                    {"200": ok("jobs", array(ref("Job"))), "400": r400},
                    parameters=[
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATES)}},
                        {"name": "playbook", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                        },
                    ],
                ),
                "post": op(
                    "Start a catalog playbook (validated before anything runs); a check of an entry without"
                    " parameters is a drift check (its result reaches the Drift page; 200: one already runs there)",
                    {"200": job, "201": job, "400": r400, "403": r403, "404": r404, "409": r409, "413": r413},
                    requestBody=body(ref("StartJob")),
                ),
            },
            "/api/v1/jobs/{job_id}": {
                "get": op("Status, per-host recap and task results", {"200": job, "404": r404}, parameters=jid)
            },
            "/api/v1/jobs/{job_id}/events": {
                "get": op(
                    "Output events after a sequence number",
                    {"200": ok("events", array(event)), "400": r400, "404": r404},
                    parameters=jid
                    + [
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                        }
                    ],
                )
            },
            "/api/v1/jobs/{job_id}/stream": {
                "get": op(
                    "Live output as Server-Sent Events (output, status, end)",
                    {
                        "200": {
                            "description": "the event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": r400,
                        "404": r404,
                    },
                    parameters=jid
                    + [
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 10**18 - 1},
                        },
                        {"name": "html", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}},
                    ],
                )
            },
            "/api/v1/jobs/{job_id}/cancel": {
                "post": op(
                    "Cancel a queued or running job",
                    {
                        "202": ok(
                            "cancel requested",
                            {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "integer"},
                                    "was": {"type": "string"},
                                    "status": {"type": "string", "enum": list(STATES)},
                                },
                            },
                        ),
                        "403": r403,
                        "404": r404,
                    },
                    parameters=jid,
                )
            },
            "/api/v1/jobs/{job_id}/rerun": {
                "post": op(
                    "Run again with the same parameters",
                    {"201": job, "400": r400, "403": r403, "404": r404, "409": r409},
                    parameters=jid,
                )
            },
            "/api/v1/services": {
                "get": op(
                    "Each enabled service with a domain or containers: its status (up, degraded, down, unknown) "
                    "from its last probe and its containers, problems first",
                    {"200": ok("services", array(ref("ServiceStatus"))), "409": r409},
                )
            },
            "/api/v1/services/{name}": {
                "get": op(
                    "One service's status; with ?history=24h also its samples of that span, oldest first",
                    {
                        "200": ok(
                            "the service",
                            {
                                "allOf": [
                                    ref("ServiceStatus"),
                                    {"properties": {"history": array(ref("ServiceSample"))}},
                                ]
                            },
                        ),
                        "400": r400,
                        "404": r404,
                        "409": r409,
                    },
                    parameters=[
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "history",
                            "in": "query",
                            "schema": {"type": "string", "pattern": HISTORY_PATTERN},
                            "description": "a span: a number and s, m, h or d (90m, 24h, 7d)",
                        },
                    ],
                )
            },
            "/api/v1/services/{name}/history": {
                "get": op(
                    "A service's history for its charts: its probes of the range in buckets (mean and slowest "
                    "response, fraction up, worst status), its containers' restarts",
                    {
                        "200": ok("the buckets, oldest first", ref("ServiceHistory")),
                        "400": r400,
                        "404": r404,
                        "409": r409,
                    },
                    parameters=[
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        range_param,
                    ],
                )
            },
            "/api/v1/hosts/{host}/history": {
                "get": op(
                    "A host's history for its charts: CPU, memory and disk use of the range in buckets (means)",
                    {"200": ok("the buckets, oldest first", ref("HostHistory")), "400": r400, "404": r404, "409": r409},
                    parameters=[
                        {"name": "host", "in": "path", "required": True, "schema": {"type": "string"}},
                        range_param,
                    ],
                )
            },
            "/api/v1/drift": {
                "get": op(
                    "Drift state per host and playbook (drifted, clean, unknown) with the drifted tasks",
                    {
                        "200": ok(
                            "summary and states",
                            {"type": "object", "properties": {"summary": obj, "states": array(obj)}},
                        )
                    },
                )
            },
            "/api/v1/drift/history": {
                "get": op(
                    "Drift episodes: when each started and was resolved",
                    {"200": ok("episodes, newest first", array(obj))},
                    parameters=[{"name": "host", "in": "query", "schema": {"type": "string"}}],
                )
            },
            "/api/v1/drift/checks/{job_id}": {
                "get": op(
                    "Per-host result of one drift check",
                    {"200": ok("results", array(obj)), "404": r404},
                    parameters=jid,
                )
            },
            "/api/v1/drift/schedules": {
                "get": op(
                    "Drift schedules and their next run",
                    {
                        "200": ok(
                            "schedules",
                            {"type": "object", "properties": {"error": {"type": "string"}, "schedules": array(obj)}},
                        )
                    },
                )
            },
            "/api/v1/drift/check": {
                "post": op(
                    "Run a drift check now: {schedule} or {playbook, limit}",
                    {
                        "201": job,
                        "200": ok("the check already running on those hosts", ref("Job")),
                        "400": r400,
                        "403": r403,
                        "404": r404,
                        "409": r409,
                        "413": r413,
                    },
                    requestBody=body(drift_check_schema(catalog_entries, groups)),
                )
            },
            "/api/v1/drift/fix": {
                "post": op(
                    "Converge exactly the drifted hosts (tags of the drifted roles when known)",
                    {"201": job, "400": r400, "403": r403, "404": r404, "409": r409, "413": r413},
                    requestBody=body(DRIFT_FIX_SCHEMA),
                )
            },
        },
    }
