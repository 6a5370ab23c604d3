//! The OpenAPI document of the routes (tested against the real router).

use serde_json::{json, Value};

/// Every route: (method, path as OpenAPI writes it, summary).
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "get",
        "/healthz",
        "Liveness, the model and how many vectors it searches",
    ),
    ("get", "/metrics", "Prometheus metrics"),
    ("get", "/openapi.json", "This document"),
    ("post", "/v1/embed", "Embed texts and base64 images"),
    (
        "post",
        "/v1/classify",
        "Zero-shot classify an uploaded image (multipart: image, labels, templates)",
    ),
    (
        "get",
        "/v1/search",
        "Search by text (q) or an indexed image (like)",
    ),
    (
        "post",
        "/v1/search",
        "Search by an uploaded image (multipart: image, q, k, min_score, path)",
    ),
    (
        "get",
        "/v1/images/{id}",
        "The original bytes of an indexed image",
    ),
    (
        "get",
        "/v1/images/{id}/thumbnail",
        "A PNG thumbnail (longest side at most 256 px)",
    ),
    ("post", "/v1/index", "Start re-indexing the index's folders"),
    (
        "get",
        "/v1/index/status",
        "Progress of the index job, counts and failures",
    ),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": { "description": "Success" },
                "400": { "description": "Bad request", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "401": { "description": "Missing or wrong bearer token" },
                "503": { "description": "Queue full; retry after the Retry-After header" }
            }
        });
        if path.contains("{id}") {
            op["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
        }
        if *path == "/v1/search" && *method == "get" {
            op["parameters"] = json!([
                { "name": "q", "in": "query", "schema": { "type": "string" } },
                { "name": "k", "in": "query", "schema": { "type": "integer", "default": 20 } },
                { "name": "min_score", "in": "query", "schema": { "type": "number" } },
                { "name": "path", "in": "query", "schema": { "type": "string" }, "description": "glob on the file path" },
                { "name": "like", "in": "query", "schema": { "type": "integer" }, "description": "an image id" }
            ]);
        }
        if *path == "/v1/index" {
            op["responses"]["202"] = json!({ "description": "Started" });
            op["responses"]["409"] = json!({ "description": "A job is already running" });
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "seer", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "schemas": { "Error": { "type": "object", "properties": { "error": { "type": "string" } } } },
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [{ "bearer": [] }]
    })
}
