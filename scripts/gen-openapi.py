#!/usr/bin/env python3
"""Generates api/src/openapi/openapi.json, the OpenAPI document served at GET /openapi.json.

Every operation we share with epilot is copied verbatim from epilot's documents (path, method,
parameters, request body, responses), together with the components it references, so the
document cannot drift from epilot's contract by hand-editing. Our own extensions are described
below by hand and marked `x-erp-toolkit-extension: true`.

    scripts/gen-openapi.py           # writes api/src/openapi/openapi.json
    scripts/gen-openapi.py --check   # fails when api/src/openapi/openapi.json is not up to date

A unit test in ingest/src/openapi.rs fails when a route of ingest/src/lib.rs is missing from the
document or the document has an operation without a route.
"""

import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "epilot"
SOURCES = {
    "integration-toolkit": "integration-toolkit-client/openapi.json",
    "webhooks": "webhooks-client/openapi.json",
}
OUTPUT = ROOT / "api" / "src" / "openapi" / "openapi.json"

# The epilot operations we implement: (source, method, path as epilot spells it).
SHARED = [
    ("integration-toolkit", "post", "/v1/erp/tracking/acknowledgement"),
    ("integration-toolkit", "post", "/v1/erp/updates/events"),
    ("integration-toolkit", "post", "/v2/erp/updates/events"),
    ("integration-toolkit", "post", "/v3/erp/updates/events"),
    ("integration-toolkit", "post", "/v1/erp/updates/mapping_simulation"),
    ("integration-toolkit", "post", "/v2/erp/updates/mapping_simulation"),
    ("integration-toolkit", "get", "/v1/integrations"),
    ("integration-toolkit", "post", "/v1/integrations"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}"),
    ("integration-toolkit", "put", "/v1/integrations/{integrationId}"),
    ("integration-toolkit", "delete", "/v1/integrations/{integrationId}"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/events"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/events/replay"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/monitoring/inbound-events"),
    ("integration-toolkit", "post",
     "/v1/integrations/{integrationId}/monitoring/outbound-events"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/monitoring/stats"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/monitoring/timeseries"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/monitoring/access-logs"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}/outbound-status"),
    ("integration-toolkit", "post", "/v2/integrations/{integrationId}/monitoring/events"),
    ("integration-toolkit", "post", "/v2/integrations/{integrationId}/monitoring/stats"),
    ("integration-toolkit", "post", "/v2/integrations/{integrationId}/monitoring/time-series"),
    ("integration-toolkit", "post",
     "/v2/integrations/{integrationId}/monitoring/external-events"),
    ("integration-toolkit", "get", "/v2/integrations/{integrationId}/notifications/history"),
    ("integration-toolkit", "get", "/v2/integrations/{integrationId}/notifications/status"),
    ("integration-toolkit", "post", "/v2/integrations/{integrationId}/notifications/test"),
    ("integration-toolkit", "get",
     "/v2/integrations/{integrationId}/monitoring/events/{eventId}/associated"),
    ("integration-toolkit", "get",
     "/v2/integrations/{integrationId}/monitoring/traces/{correlationId}"),
    ("integration-toolkit", "put", "/v1/integrations/{integrationId}/app-mapping"),
    ("integration-toolkit", "delete", "/v1/integrations/{integrationId}/app-mapping"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}/documentation"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}/documentation/{docId}"),
    ("integration-toolkit", "put", "/v1/integrations/{integrationId}/documentation/{docId}"),
    ("integration-toolkit", "delete", "/v1/integrations/{integrationId}/documentation/{docId}"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}/use-cases"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/use-cases"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}/use-cases/{useCaseId}"),
    ("integration-toolkit", "put", "/v1/integrations/{integrationId}/use-cases/{useCaseId}"),
    ("integration-toolkit", "delete", "/v1/integrations/{integrationId}/use-cases/{useCaseId}"),
    ("integration-toolkit", "get",
     "/v1/integrations/{integrationId}/use-cases/{useCaseId}/history"),
    ("integration-toolkit", "get", "/v2/integrations"),
    ("integration-toolkit", "post", "/v2/integrations"),
    ("integration-toolkit", "get", "/v2/integrations/{integrationId}"),
    ("integration-toolkit", "put", "/v2/integrations/{integrationId}"),
    ("integration-toolkit", "delete", "/v2/integrations/{integrationId}"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/outbound/messages/poll"),
    ("integration-toolkit", "post", "/v1/integrations/{integrationId}/outbound/messages/ack"),
    ("integration-toolkit", "get", "/v1/integrations/{integrationId}/outbound/messages/dlq"),
    ("integration-toolkit", "post",
     "/v1/integrations/{integrationId}/outbound/messages/dlq/redrive"),
    ("integration-toolkit", "post",
     "/v1/integrations/{integrationId}/outbound/messages/unblock"),
    ("webhooks", "get", "/v1/webhooks/.well-known/public-key"),
    ("webhooks", "get", "/v1/webhooks/configs"),
    ("webhooks", "post", "/v1/webhooks/configs"),
    ("webhooks", "get", "/v1/webhooks/configs/{configId}"),
    ("webhooks", "put", "/v1/webhooks/configs/{configId}"),
    ("webhooks", "delete", "/v1/webhooks/configs/{configId}"),
    ("webhooks", "post", "/v2/webhooks/configs/{configId}/events"),
    ("webhooks", "get", "/v1/webhooks/configs/{configId}/events/{eventId}"),
    ("webhooks", "post", "/v1/webhooks/configs/{configId}/events/{eventId}/replay"),
    ("webhooks", "post", "/v1/webhooks/configs/{configId}/events/replay-batch"),
    ("webhooks", "get", "/v1/webhooks/configs/{configId}/events"),
    ("webhooks", "get", "/v1/webhooks/configured-events"),
    ("webhooks", "post", "/v1/webhooks/configs/{configId}/trigger"),
]

ERROR = {
    "type": "object",
    "description": "erp-toolkit's error shape.",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}


def error(description):
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErpToolkitError"}}}}


def json_body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(description, schema):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


AUTH_ERRORS = {
    "400": error("Invalid request"),
    "401": error("No, an unknown or a revoked token"),
    "403": error("The token lacks the permission"),
    "429": error("The organisation's rate limit is spent (see Retry-After)"),
}

TOKEN = {
    "type": "object",
    "required": ["id", "org_id", "name", "roles", "created_at"],
    "properties": {
        "id": {"type": "string"},
        "org_id": {"type": "string"},
        "name": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "created_at": {"type": "string", "format": "date-time"},
        "created_by": {"type": "string", "nullable": True},
        "token": {"type": "string", "description": "The token value; only in the answer to its creation."},
    },
}

ORG_QUERY = {"name": "org_id", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "Another organisation (deployment admin token only)."}

# Our own operations, described by hand.
EXTENSIONS = {
    "/openapi.json": {"get": {
        "operationId": "getOpenApiDocument",
        "summary": "This document",
        "description": "The OpenAPI document of the operations erp-toolkit implements. No token needed.",
        "tags": ["erp-toolkit"],
        "security": [],
        "responses": {"200": ok("The OpenAPI document", {"type": "object"})},
    }},
    "/v1/events": {"post": {
        "operationId": "postPlatformEvents",
        "summary": "Send core events from the customer platform",
        "description": "Core events (epilot spec §6.1 envelope) for outbound use cases, written to "
                       "`erp.platform.events`. Needs the `erp:events` permission.",
        "tags": ["erp-toolkit"],
        "requestBody": json_body({"oneOf": [
            {"type": "object", "required": ["events"],
             "properties": {"events": {"type": "array", "maxItems": 100,
                                       "items": {"$ref": "#/components/schemas/PlatformEvent"}}}},
            {"type": "array", "maxItems": 100, "items": {"$ref": "#/components/schemas/PlatformEvent"}},
        ]}),
        "responses": {
            "200": ok("Events queued", {"$ref": "#/components/schemas/QueuedResults"}),
            **AUTH_ERRORS,
            "503": error("The log did not accept the events (per-event results)"),
        },
    }},
    "/v1/access-tokens": {
        "get": {
            "operationId": "listAccessTokens",
            "summary": "List the organisation's access tokens (without values)",
            "tags": ["erp-toolkit"],
            "parameters": [ORG_QUERY],
            "responses": {
                "200": ok("Tokens", {"type": "object", "required": ["access_tokens"], "properties": {
                    "access_tokens": {"type": "array", "items": {"$ref": "#/components/schemas/AccessToken"}}}}),
                **AUTH_ERRORS,
            },
        },
        "post": {
            "operationId": "createAccessToken",
            "summary": "Create an access token (its value is answered once)",
            "tags": ["erp-toolkit"],
            "requestBody": json_body({"type": "object", "required": ["name", "roles"],
                                      "additionalProperties": False, "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 128},
                "roles": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": [
                    "integration:view", "integration:manage", "integration:consume", "integration:*",
                    "erp:read", "erp:write", "erp:events", "erp:monitoring", "erp:*", "owner"]}},
                "org_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            }}),
            "responses": {"201": ok("The token, with its value", {"$ref": "#/components/schemas/AccessToken"}),
                          **AUTH_ERRORS},
        },
    },
    "/v1/access-tokens/{id}": {"delete": {
        "operationId": "revokeAccessToken",
        "summary": "Revoke an access token",
        "tags": ["erp-toolkit"],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": ok("Revoked", {"type": "object", "required": ["id", "revoked"], "properties": {
                "id": {"type": "string"}, "revoked": {"type": "boolean"}}}),
            **AUTH_ERRORS,
            "404": error("No such token in the caller's organisation"),
        },
    }},
    "/v1/webhooks/configs/{configId}/rotate-secret": {"post": {
        "operationId": "rotateWebhookSecret",
        "summary": "Replace the endpoint's signing secret",
        "description": "Answers the new `whsec_` secret once; the previous one keeps signing for the "
                       "grace period (default 24 h, 0 ends it at once).",
        "tags": ["erp-toolkit"],
        "parameters": [{"name": "configId", "in": "path", "required": True, "schema": {"type": "string"}}],
        "requestBody": json_body({"type": "object", "properties": {
            "grace_period_hours": {"type": "integer", "minimum": 0, "maximum": 168}}}, required=False),
        "responses": {
            "200": ok("The new secret", {"type": "object", "required": ["signingSecret"], "properties": {
                "signingSecret": {"type": "string"},
                "previousSecretValidUntil": {"type": "string", "format": "date-time", "nullable": True}}}),
            **AUTH_ERRORS,
            "404": error("No such endpoint in the caller's organisation"),
        },
    }},
}

CONFIG_ID = {"name": "configId", "in": "path", "required": True, "schema": {"type": "string"}}
ENV_KEY = {"name": "key", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.\\-]{0,127}$"}}
RECOVER_TASK = {"type": "object", "required": ["task_id", "status", "total", "sent", "failed"],
                "properties": {"task_id": {"type": "string"},
                               "status": {"type": "string", "enum": ["running", "done"]},
                               "total": {"type": "integer"}, "sent": {"type": "integer"},
                               "failed": {"type": "integer"}}}
ENV_VALUE = {"type": "object", "required": ["key", "type"], "properties": {
    "key": {"type": "string"}, "type": {"type": "string", "enum": ["String", "SecretString"]},
    "value": {"type": "string", "description": "`********` for SecretString"},
    "updated_at": {"type": "string", "format": "date-time"}}}

REPLAY_INTEGRATION = {"name": "integrationId", "in": "path", "required": True,
                      "schema": {"type": "string"}}
REPLAY_TASK_ID = {"name": "taskId", "in": "path", "required": True, "schema": {"type": "string"}}
REPLAY_TASK = {"type": "object", "required": ["task_id", "plan_id", "status", "total", "read",
                                              "done", "failed", "rate_per_second"],
               "properties": {
                   "task_id": {"type": "string"}, "plan_id": {"type": "string"},
                   "status": {"type": "string", "enum": ["running", "done", "cancelled", "failed"]},
                   "total": {"type": "integer"}, "read": {"type": "integer"},
                   "done": {"type": "integer"}, "failed": {"type": "integer"},
                   "rate_per_second": {"type": "number"},
                   "error": {"type": "string", "nullable": True}}}
REPLAY_PLAN = {"type": "object", "required": ["plan_id", "topic", "partitions", "records",
                                              "selected", "selected_counted"],
               "properties": {
                   "plan_id": {"type": "string"}, "topic": {"type": "string"},
                   "source": {"type": "string", "enum": ["inbound", "dlq"]},
                   "partitions": {"type": "array", "items": {"type": "object", "properties": {
                       "partition": {"type": "integer"}, "start_offset": {"type": "integer"},
                       "end_offset": {"type": "integer"}, "records": {"type": "integer"}}}},
                   "records": {"type": "integer"}, "selected": {"type": "integer"},
                   "selected_counted": {"type": "boolean"},
                   "expires_in_seconds": {"type": "integer"}}}

EXTENSIONS.update({
    "/v1/integrations/{integrationId}/replays/plan": {"post": {
        "operationId": "planReplay",
        "summary": "Dry run of a replay: the offsets and records a time window or offset ranges cover",
        "description": "Every replay starts from a plan; a plan can be run for 15 minutes.",
        "tags": ["erp-toolkit"],
        "parameters": [REPLAY_INTEGRATION],
        "requestBody": json_body({"type": "object", "properties": {
            "from_date": {"type": "string", "format": "date-time"},
            "to_date": {"type": "string", "format": "date-time"},
            "use_case_id": {"type": "string"},
            "source": {"type": "string", "enum": ["inbound", "dlq"], "default": "inbound",
                       "description": "dlq: the inbound events of the integration's dead letters"},
            "codes": {"type": "array", "items": {"type": "string"},
                      "description": "with source dlq: only dead letters with these codes"},
            "offsets": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "start": {"type": "integer"}, "end": {"type": "integer"}}}}}}),
        "responses": {"200": ok("The plan", REPLAY_PLAN), **AUTH_ERRORS,
                      "404": error("No such integration or use case in the caller's organisation"),
                      "503": error("Kafka is unreachable")},
    }},
    "/v1/integrations/{integrationId}/replays": {"post": {
        "operationId": "runReplay",
        "summary": "Re-publish a plan's inbound events into the pipeline, in the background",
        "tags": ["erp-toolkit"],
        "parameters": [REPLAY_INTEGRATION],
        "requestBody": json_body({"type": "object", "required": ["plan_id"], "properties": {
            "plan_id": {"type": "string"}}}),
        "responses": {"202": ok("Replay started", REPLAY_TASK), **AUTH_ERRORS,
                      "404": error("No such integration or plan")},
    }},
    "/v1/integrations/{integrationId}/replays/{taskId}": {
        "get": {
            "operationId": "getReplay",
            "summary": "Progress of a replay",
            "tags": ["erp-toolkit"],
            "parameters": [REPLAY_INTEGRATION, REPLAY_TASK_ID],
            "responses": {"200": ok("Progress", REPLAY_TASK), **AUTH_ERRORS,
                          "404": error("No such replay")},
        },
        "delete": {
            "operationId": "cancelReplay",
            "summary": "Stop a running replay (what was re-published stays)",
            "tags": ["erp-toolkit"],
            "parameters": [REPLAY_INTEGRATION, REPLAY_TASK_ID],
            "responses": {"202": ok("Cancelling", REPLAY_TASK), **AUTH_ERRORS,
                          "404": error("No such replay")},
        },
    },
})

GROUP_ID = {"name": "groupId", "in": "path", "required": True, "schema": {"type": "string"}}
GROUP_PARTITION = {"type": "object", "properties": {
    "topic": {"type": "string"}, "partition": {"type": "integer"},
    "committed_offset": {"type": "integer", "nullable": True},
    "log_start_offset": {"type": "integer"}, "log_end_offset": {"type": "integer"},
    "lag_records": {"type": "integer"},
    "lag_seconds": {"type": "number", "nullable": True,
                    "description": "null when the oldest unconsumed record could not be read"}}}
GROUP = {"type": "object", "required": ["group_id", "role", "topics"], "properties": {
    "group_id": {"type": "string"}, "role": {"type": "string"},
    "topics": {"type": "array", "items": {"type": "string"}},
    "positions": {"description": "`group_commit`, or `{changelog: topic}` for the processor"},
    "state": {"type": "string", "nullable": True,
              "description": "null when the broker cannot describe groups"},
    "members": {"type": "integer", "nullable": True},
    "lag_records": {"type": "integer", "nullable": True},
    "lag_seconds": {"type": "number", "nullable": True},
    "partitions": {"type": "array", "items": GROUP_PARTITION},
    "error": {"type": "string"}}}
GROUP_PLAN = {"type": "object", "required": ["plan_id", "group_id", "to", "partitions"], "properties": {
    "plan_id": {"type": "string"}, "group_id": {"type": "string"}, "role": {"type": "string"},
    "to": {"type": "string", "enum": ["earliest", "latest", "timestamp", "offset"]},
    "partitions": {"type": "array", "items": {"type": "object", "properties": {
        "topic": {"type": "string"}, "partition": {"type": "integer"},
        "current_offset": {"type": "integer", "nullable": True},
        "target_offset": {"type": "integer"},
        "log_start_offset": {"type": "integer"}, "log_end_offset": {"type": "integer"},
        "records_to_reread": {"type": "integer"}, "records_to_skip": {"type": "integer"}}}},
    "records_to_reread": {"type": "integer"}, "records_to_skip": {"type": "integer"},
    "expires_in_seconds": {"type": "integer"}}}

EXTENSIONS.update({
    "/v1/ops/consumer-groups": {"get": {
        "operationId": "listConsumerGroups",
        "summary": "Every consumer group of the deployment with its lag (deployment admin)",
        "tags": ["erp-toolkit"],
        "responses": {"200": ok("The groups", {"type": "object", "required": ["groups"], "properties": {
            "groups": {"type": "array", "items": GROUP}}}), **AUTH_ERRORS},
    }},
    "/v1/ops/consumer-groups/{groupId}": {"get": {
        "operationId": "getConsumerGroup",
        "summary": "A consumer group's lag per partition: committed, log start and end, records and seconds",
        "tags": ["erp-toolkit"],
        "parameters": [GROUP_ID, {"name": "topics", "in": "query", "required": False,
                                  "schema": {"type": "string"}, "description": "comma-separated"}],
        "responses": {"200": ok("The group", GROUP), **AUTH_ERRORS,
                      "404": error("No such consumer group"), "503": error("Kafka is unreachable")},
    }},
    "/v1/ops/consumer-groups/{groupId}/reset/plan": {"post": {
        "operationId": "planConsumerGroupReset",
        "summary": "Dry run of a group reset: per partition the current and target offsets",
        "description": "A plan can be applied once, within 15 minutes.",
        "tags": ["erp-toolkit"],
        "parameters": [GROUP_ID],
        "requestBody": json_body({"type": "object", "required": ["to"], "properties": {
            "to": {"type": "string", "enum": ["earliest", "latest", "timestamp", "offset"]},
            "timestamp": {"type": "string", "format": "date-time"},
            "offset": {"type": "integer", "minimum": 0},
            "topics": {"type": "array", "items": {"type": "string"}},
            "partitions": {"type": "array", "items": {"type": "integer"}}}}),
        "responses": {"200": ok("The plan", GROUP_PLAN), **AUTH_ERRORS,
                      "404": error("No such consumer group"), "503": error("Kafka is unreachable")},
    }},
    "/v1/ops/consumer-groups/{groupId}/reset": {"post": {
        "operationId": "resetConsumerGroup",
        "summary": "Apply a reset plan; refused while the group has active members",
        "tags": ["erp-toolkit"],
        "parameters": [GROUP_ID],
        "requestBody": json_body({"type": "object", "required": ["plan_id"], "properties": {
            "plan_id": {"type": "string"},
            "assume_stopped": {"type": "boolean",
                               "description": "the broker cannot describe groups: the operator "
                                              "confirms the group's role is stopped"}}}),
        "responses": {"200": ok("Applied", {"type": "object", "properties": {
            "plan_id": {"type": "string"}, "group_id": {"type": "string"},
            "applied": {"type": "boolean"},
            "partitions": {"type": "array", "items": {"type": "object"}}}}),
            **AUTH_ERRORS,
            "404": error("No such group or plan"),
            "409": error("GROUP_ACTIVE, GROUP_STATE_UNKNOWN or GROUP_MOVED"),
            "503": error("Kafka is unreachable")},
    }},
})

EXTENSIONS.update({
    "/v1/webhooks/configs/{configId}/recover": {"post": {
        "operationId": "recoverWebhookDeliveries",
        "summary": "Re-send every failed delivery of the endpoint in a time window",
        "description": "Runs in the background, rate-limited; answers the task id.",
        "tags": ["erp-toolkit"],
        "parameters": [CONFIG_ID],
        "requestBody": json_body({"type": "object", "required": ["since"], "properties": {
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"}}}),
        "responses": {
            "202": ok("Recovery started", {"type": "object", "required": ["task_id"],
                                           "properties": {"task_id": {"type": "string"}}}),
            **AUTH_ERRORS,
            "404": error("No such endpoint in the caller's organisation"),
        },
    }},
    "/v1/webhooks/configs/{configId}/recover/{taskId}": {"get": {
        "operationId": "getWebhookRecovery",
        "summary": "Progress of a recovery",
        "tags": ["erp-toolkit"],
        "parameters": [CONFIG_ID, {"name": "taskId", "in": "path", "required": True,
                                   "schema": {"type": "string"}}],
        "responses": {"200": ok("Progress", RECOVER_TASK), **AUTH_ERRORS,
                      "404": error("No such recovery")},
    }},
    "/v1/environments": {"get": {
        "operationId": "listEnvironmentValues",
        "summary": "The organisation's environment values (secrets masked)",
        "tags": ["erp-toolkit"],
        "responses": {"200": ok("Values", {"type": "object", "properties": {
            "values": {"type": "array", "items": ENV_VALUE},
            "missing_required": {"type": "array", "items": {"type": "object"}}}}),
            **AUTH_ERRORS},
    }},
    "/v1/environments/{key}": {
        "put": {
            "operationId": "putEnvironmentValue",
            "summary": "Set an environment value (SecretString values are encrypted at rest)",
            "tags": ["erp-toolkit"],
            "parameters": [ENV_KEY],
            "requestBody": json_body({"type": "object", "required": ["value"], "properties": {
                "value": {"type": "string"},
                "type": {"type": "string", "enum": ["String", "SecretString"]}}}),
            "responses": {"200": ok("Stored", ENV_VALUE), **AUTH_ERRORS},
        },
        "delete": {
            "operationId": "deleteEnvironmentValue",
            "summary": "Remove an environment value",
            "tags": ["erp-toolkit"],
            "parameters": [ENV_KEY],
            "responses": {"200": ok("Removed", {"type": "object"}), **AUTH_ERRORS,
                          "404": error("No such value")},
        },
    },
})

TEMPLATE_SLUG = {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}
BLUEPRINT = {"type": "object", "required": ["blueprint_version", "integration"],
             "description": "An integration as a portable document (docs/blueprints.md): no ids, "
                            "no secrets, environment keys declared without values.",
             "properties": {
                 "blueprint_version": {"type": "integer", "enum": [1]},
                 "kind": {"type": "string", "enum": ["erp-toolkit/integration"]},
                 "exported_at": {"type": "string", "format": "date-time"},
                 "integration": {"type": "object", "required": ["name"], "properties": {
                     "name": {"type": "string"}, "description": {"type": "string"}},
                     "additionalProperties": True},
                 "use_cases": {"type": "array", "items": {"type": "object",
                     "required": ["slug", "name", "type", "enabled"], "properties": {
                         "slug": {"type": "string"}, "name": {"type": "string"},
                         "type": {"type": "string"}, "enabled": {"type": "boolean"},
                         "configuration": {"type": "object"}}}},
                 "webhooks": {"type": "array", "items": {"type": "object",
                     "required": ["key", "name", "eventName"], "properties": {
                         "key": {"type": "string"}, "name": {"type": "string"},
                         "eventName": {"type": "string"}, "url": {"type": "string"},
                         "httpMethod": {"type": "string"}, "enabled": {"type": "boolean"},
                         "retryPolicy": {"type": "object"}, "config": {"type": "object"},
                         "credentials": {"type": "array", "items": {"type": "string"}}}}},
                 "app_mappings": {"type": "array", "items": {"type": "object", "properties": {
                     "app_id": {"type": "string"}, "component_id": {"type": "string"}}}},
                 "documentation": {"type": "array", "items": {"type": "object", "properties": {
                     "page": {"type": "string"}, "title": {"type": "string"},
                     "content": {"type": "string"}}}},
                 "environment": {"type": "array", "items": {"type": "object", "properties": {
                     "name": {"type": "string"},
                     "type": {"type": "string", "enum": ["String", "SecretString"]},
                     "required": {"type": "boolean"}}}}}}
BLUEPRINT_PLAN = {"type": "object",
                  "required": ["objects", "missing_environment", "credentials_required",
                               "disabled_endpoints", "summary", "fingerprint"],
                  "properties": {
                      "objects": {"type": "array", "items": {"type": "object",
                          "required": ["kind", "ref", "action"], "properties": {
                              "kind": {"type": "string", "enum": ["integration", "webhook", "use_case",
                                                                  "documentation", "app_mapping"]},
                              "ref": {"type": "string"},
                              "action": {"type": "string",
                                         "enum": ["create", "update", "unchanged", "conflict"]},
                              "changes": {"type": "array", "items": {"type": "string"}},
                              "reason": {"type": "string"}, "id": {"type": "string"},
                              "installed_disabled": {"type": "boolean"}}}},
                      "missing_environment": {"type": "array", "items": {"type": "object"}},
                      "credentials_required": {"type": "array", "items": {"type": "object"}},
                      "disabled_endpoints": {"type": "array", "items": {"type": "object"}},
                      "summary": {"type": "object", "additionalProperties": {"type": "integer"}},
                      "fingerprint": {"type": "string"},
                      "applied": {"type": "boolean", "description": "apply only: whether anything was written"}}}

EXTENSIONS.update({
    "/v1/use-case-templates": {"get": {
        "operationId": "listUseCaseTemplates",
        "summary": "The standard use cases as templates (docs/templates.md), without configurations and samples",
        "tags": ["erp-toolkit"],
        "parameters": [{"name": "type", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["inbound", "outbound"]}}],
        "responses": {"200": ok("The templates", {"type": "object", "properties": {
            "templates": {"type": "array", "items": {"type": "object"}}}}), **AUTH_ERRORS},
    }},
    "/v1/use-case-templates/{slug}": {"get": {
        "operationId": "getUseCaseTemplate",
        "summary": "One template with its configuration, placeholders, sample and expected output",
        "tags": ["erp-toolkit"],
        "parameters": [TEMPLATE_SLUG],
        "responses": {"200": ok("The template", {"type": "object"}), **AUTH_ERRORS,
                      "404": error("TEMPLATE_NOT_FOUND")},
    }},
    "/v1/integrations/{integrationId}/use-cases/from-template": {"post": {
        "operationId": "createUseCaseFromTemplate",
        "summary": "Create a use case from a template, its placeholders filled",
        "description": "The same create as POST …/use-cases (validation, SLUG_TAKEN, history). "
                       "Placeholder errors: TEMPLATE_PLACEHOLDER_MISSING, _TYPE, _NOT_ALLOWED, _UNKNOWN.",
        "tags": ["erp-toolkit"],
        "parameters": [REPLAY_INTEGRATION],
        "requestBody": json_body({"type": "object", "required": ["template"], "properties": {
            "template": {"type": "string"}, "slug": {"type": "string"}, "name": {"type": "string"},
            "enabled": {"type": "boolean"}, "change_description": {"type": "string"},
            "values": {"type": "object", "additionalProperties": True}}}),
        "responses": {"201": ok("The use case", {"$ref": "#/components/schemas/UseCase"}),
                      **AUTH_ERRORS,
                      "404": error("No such integration (INTEGRATION_NOT_FOUND) or template (TEMPLATE_NOT_FOUND)"),
                      "409": error("SLUG_TAKEN")},
    }},
    "/v1/integrations/{integrationId}/blueprint": {"get": {
        "operationId": "exportBlueprint",
        "summary": "The integration as a blueprint: portable, without ids or secrets",
        "tags": ["erp-toolkit"],
        "parameters": [REPLAY_INTEGRATION],
        "responses": {"200": ok("The blueprint", BLUEPRINT), **AUTH_ERRORS,
                      "404": error("No such integration in the caller's organisation"),
                      "422": error("BLUEPRINT_UNRESOLVED_REFERENCE: a use case delivers to no endpoint")},
    }},
    "/v1/blueprints/plan": {"post": {
        "operationId": "planBlueprint",
        "summary": "What installing a blueprint into the caller's organisation would do",
        "tags": ["erp-toolkit"],
        "requestBody": json_body({"type": "object", "required": ["blueprint"], "properties": {
            "blueprint": BLUEPRINT}}),
        "responses": {"200": ok("The plan", BLUEPRINT_PLAN), **AUTH_ERRORS},
    }},
    "/v1/blueprints/apply": {"post": {
        "operationId": "applyBlueprint",
        "summary": "Install a blueprint into the caller's organisation as one configuration event",
        "description": "Nothing is written when nothing changes. BLUEPRINT_INVALID and "
                       "BLUEPRINT_VERSION_UNSUPPORTED are 400, BLUEPRINT_CONFLICT and "
                       "BLUEPRINT_PLAN_STALE 409 (with the plan).",
        "tags": ["erp-toolkit"],
        "requestBody": json_body({"type": "object", "required": ["blueprint"], "properties": {
            "blueprint": BLUEPRINT, "fingerprint": {"type": "string"}}}),
        "responses": {"200": ok("The applied plan", BLUEPRINT_PLAN), **AUTH_ERRORS,
                      "409": error("BLUEPRINT_CONFLICT or BLUEPRINT_PLAN_STALE")},
    }},
})

# The schema catalog, read-only (docs/schemas.md).
VERSION = {"type": "string", "pattern": "^[0-9]+\\.[0-9]+$", "description": "MAJOR.MINOR"}
EXTENSIONS.update({
    "/v1/schemas/events": {"get": {
        "operationId": "listCoreEventSchemas",
        "summary": "The core event catalog: every event with its versions, and the envelope",
        "description": "The events `POST /v1/events` and `erp.platform.events` are checked "
                       "against. Needs `view`; the same for every organisation.",
        "tags": ["erp-toolkit"],
        "responses": {"200": ok("The catalog", {"type": "object", "required": ["events", "envelope"], "properties": {
            "events": {"type": "array", "items": {"type": "object",
                "required": ["name", "title", "description", "latest_version", "versions"], "properties": {
                "name": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                "latest_version": VERSION, "versions": {"type": "array", "items": VERSION}}}},
            "envelope": {"type": "object", "description": "JSON Schema (draft 2020-12) of the envelope"}}}),
            **AUTH_ERRORS},
    }},
    "/v1/schemas/events/{name}": {"get": {
        "operationId": "getCoreEventSchema",
        "summary": "One core event's versions, each with its JSON Schema",
        "tags": ["erp-toolkit"],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "The catalog name, e.g. MeterReadingAdded"}],
        "responses": {"200": ok("The event", {"type": "object", "required": ["name", "latest_version", "versions"],
            "properties": {"name": {"type": "string"}, "latest_version": VERSION,
                "versions": {"type": "array", "items": {"type": "object", "required": ["version", "schema"], "properties": {
                    "version": VERSION, "title": {"type": "string"}, "description": {"type": "string"},
                    "schema": {"type": "object", "description": "JSON Schema (draft 2020-12), bundled"}}}}}}),
            **AUTH_ERRORS, "404": error("Not a catalog event (`SCHEMA_NOT_FOUND`)")},
    }},
    "/v1/schemas/entities": {"get": {
        "operationId": "listCoreEntitySchemas",
        "summary": "The core entity schemas and the meter reading schema",
        "description": "The schemas mapping output is checked against (use case `validation`).",
        "tags": ["erp-toolkit"],
        "responses": {"200": ok("The schemas", {"type": "object", "required": ["entities"], "properties": {
            "entities": {"type": "array", "items": {"type": "object", "required": ["slug", "kind", "attributes"], "properties": {
                "slug": {"type": "string"}, "kind": {"type": "string", "enum": ["core_entity", "meter_reading"]},
                "title": {"type": "string", "nullable": True},
                "attributes": {"type": "array", "items": {"type": "string"}}}}}}}),
            **AUTH_ERRORS},
    }},
    "/v1/schemas/entities/{slug}": {"get": {
        "operationId": "getCoreEntitySchema",
        "summary": "One core entity schema (or meter_reading)",
        "tags": ["erp-toolkit"],
        "parameters": [{"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": ok("The schema", {"type": "object", "required": ["slug", "kind", "schema"], "properties": {
            "slug": {"type": "string"}, "kind": {"type": "string", "enum": ["core_entity", "meter_reading"]},
            "schema": {"type": "object", "description": "JSON Schema (draft 2020-12), bundled"}}}),
            **AUTH_ERRORS, "404": error("Not a core entity schema (`SCHEMA_NOT_FOUND`)")},
    }},
})

EXTENSION_SCHEMAS = {
    "ErpToolkitError": ERROR,
    "AccessToken": TOKEN,
    "PlatformEvent": {
        "type": "object",
        "required": ["_event_id", "_event_name", "_event_time"],
        "additionalProperties": True,
        "properties": {
            "_event_id": {"type": "string", "minLength": 1},
            "_event_name": {"type": "string", "minLength": 1},
            "_event_time": {"type": "string", "format": "date-time"},
            "_org_id": {"type": "string"},
            "_ack_id": {"type": "string", "format": "uuid"},
            "trigger_entity": {"type": "string"},
        },
    },
    "QueuedResults": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"type": "array", "items": {"type": "object", "properties": {
            "event_id": {"type": "string"}, "status": {"type": "string"}, "message": {"type": "string"}}}}},
    },
}

# Fields we add to epilot's schemas: (schema, field) -> schema, marked as extensions.
EXTENSION_FIELDS = {
    ("InboundIntegrationEventConfiguration", "validation"): {
        "type": "string",
        "enum": ["off", "warn", "strict"],
        "default": "warn",
        "description": "What a mapping output that breaks the core entity schemas does: `warn` "
                       "maps the event with a warning span and a `warnings[]` entry, `strict` "
                       "makes it an error span and a dead letter, `off` checks nothing. See "
                       "docs/mapping.md and docs/schemas.md.",
    },
    ("IntegrationEntity", "custom_schema"): {
        "type": "boolean",
        "default": False,
        "description": "`true`: `entity_schema` is one of the organisation's own schemas, not a "
                       "core entity; its output is not checked. Without it a configuration "
                       "targeting a schema outside the core catalog is refused on save "
                       "(400 `UNKNOWN_ENTITY_SCHEMA`).",
    },
    ("WebhookConfig", "ordering"): {
        "type": "string",
        "enum": ["none", "per_key"],
        "default": "none",
        "description": "`per_key`: events with one Kafka record key (integration, or "
                       "integration/group) are delivered one after another in topic order; a "
                       "failing event holds back only its key. See docs/dispatcher.md.",
    },
    ("WebhookConfig", "rateLimit"): {
        "type": "object",
        "additionalProperties": False,
        "required": ["requestsPerSecond"],
        "properties": {
            "requestsPerSecond": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                                  "maximum": 100000},
            "burst": {"type": "integer", "minimum": 1, "maximum": 100000},
        },
        "description": "Most requests per second to this endpoint (token bucket per dispatcher "
                       "process); excess deliveries are deferred, never dropped. See "
                       "docs/dispatcher.md.",
    },
    ("WebhookConfig", "batch"): {
        "type": "object",
        "additionalProperties": False,
        "required": ["maxEvents"],
        "properties": {"maxEvents": {"type": "integer", "minimum": 1, "maximum": 100}},
        "description": "Up to maxEvents events per request, the body a JSON array; not with "
                       "ordering per_key. See docs/dispatcher.md.",
    },
}


def refs(value):
    """Every local $ref in value, as (section, name)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith("#/components/"):
                _, _, section, name = item.split("/", 3)
                yield section, name
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def mark(operations):
    for methods in operations.values():
        for operation in methods.values():
            operation["x-erp-toolkit-extension"] = True
    return operations


def generate():
    sources = {name: json.loads((REFERENCE / path).read_text()) for name, path in SOURCES.items()}
    paths = {}
    components = {}
    origin = {}  # (section, name) -> source, to refuse a name both sources define differently

    def need(source, section, name):
        key = (section, name)
        if key in origin:
            if origin[key] != source and components[section][name] != sources[source]["components"][section][name]:
                sys.exit(f"component {section}/{name} differs between {origin[key]} and {source}")
            return
        component = copy.deepcopy(sources[source]["components"][section][name])
        origin[key] = source
        components.setdefault(section, {})[name] = component
        for inner in refs(component):
            need(source, *inner)

    for source, method, path in SHARED:
        item = sources[source]["paths"][path]
        operation = copy.deepcopy(item[method])
        # Path-level parameters apply to every method of the path; keep them with the operation.
        if "parameters" in item:
            operation["parameters"] = copy.deepcopy(item["parameters"]) + operation.get("parameters", [])
        paths.setdefault(path, {})[method] = operation
        for inner in refs(operation):
            need(source, *inner)

    for path, methods in mark(copy.deepcopy(EXTENSIONS)).items():
        for method, operation in methods.items():
            if method in paths.get(path, {}):
                sys.exit(f"extension {method.upper()} {path} is also an epilot operation")
            paths.setdefault(path, {})[method] = operation
    for (name, field), schema in EXTENSION_FIELDS.items():
        properties = components["schemas"][name]["properties"]
        if field in properties:
            sys.exit(f"extension field {name}.{field} is also an epilot field")
        properties[field] = {**schema, "x-erp-toolkit-extension": True}
    for name, schema in EXTENSION_SCHEMAS.items():
        if name in components.get("schemas", {}):
            sys.exit(f"extension schema {name} collides with an epilot schema")
        components.setdefault("schemas", {})[name] = schema

    components["securitySchemes"] = {"EpilotAuth": {
        "type": "http", "scheme": "bearer",
        "description": "An erp-toolkit access token (`erpt_…`) or the deployment admin token; the "
                       "scheme keeps epilot's name so operations copied from epilot refer to it.",
    }}
    for section in components:
        components[section] = dict(sorted(components[section].items()))

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "erp-toolkit API",
            "version": "1",
            "description": "The operations erp-toolkit implements. Those shared with epilot are copied "
                           "from epilot's OpenAPI documents (Integration Toolkit API "
                           f"{sources['integration-toolkit']['info']['version']}, Webhooks "
                           f"{sources['webhooks']['info']['version']}) by scripts/gen-openapi.py; "
                           "erp-toolkit's own operations are marked `x-erp-toolkit-extension: true`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"EpilotAuth": []}],
        "paths": paths,
        "components": components,
    }


def main():
    text = json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"
    if sys.argv[1:] == ["--check"]:
        if OUTPUT.read_text() != text:
            sys.exit(f"{OUTPUT.relative_to(ROOT)} is out of date: run scripts/gen-openapi.py")
        return
    OUTPUT.write_text(text)


if __name__ == "__main__":
    main()
