//! The OpenAPI document of the routes (tested against the real router).

use serde_json::{json, Value};

/// Every route: (method, path as OpenAPI writes it, summary).
pub const ROUTES: &[(&str, &str, &str)] = &[
    (
        "get",
        "/healthz",
        "Liveness; with the token (or when the server has none) also the model and how many vectors it searches",
    ),
    ("get", "/metrics", "Prometheus metrics"),
    ("get", "/openapi.json", "This document"),
    (
        "get",
        "/v1/models",
        "The served models: id, family, dim, text_tower, image_tower, score_rule (null without a text tower), vectors in the index, and which is the default",
    ),
    (
        "post",
        "/v1/embed",
        "Embed texts and base64 images (JSON: texts, images, model); texts at most 1000 characters each; at most 256 texts and images together, and at most --queue (default 256): a request's items are queued all at once or not at all",
    ),
    (
        "post",
        "/v1/classify",
        "Zero-shot classify an uploaded image (multipart: image, labels, templates, model; the model needs a text tower). At most 1000 labels, each at most 1000 characters. The image and every label's prompts (labels × 1 with the default templates, labels × 7 with imagenet) are queued all at once or not at all when they fit the model's queue (--queue, default 256); more prompts go in parts of half the queue, the first with the image, the rest as room frees. The embeddings of each model's last 16,384 prompts are kept as each part is done: the same labels again embed only the image, and a retry of a classification that timed out (504) goes on from what it computed",
    ),
    (
        "post",
        "/v1/caption",
        "Caption an uploaded image or an indexed one (multipart: image or id, prompt to start the caption with); needs a server started with --caption-model",
    ),
    (
        "post",
        "/v1/ask",
        "Answer a question about an uploaded image or an indexed one (multipart: image or id, question); needs a server started with --vqa-model",
    ),
    (
        "post",
        "/v1/match",
        "How well each text describes an uploaded image or an indexed one (multipart: image or id, text once per text or texts one per line, at most 32): itm_probability (the image-text matching head, reads word order) and similarity (the contrastive cosine), as seer match gives them, in the order given; needs a server started with --match-model",
    ),
    (
        "post",
        "/v1/segment",
        "Masks for a prompt on an uploaded image or an indexed one (multipart: image or id; points as JSON [[x, y, label], …] with label 1 on the object and 0 not, at most 64; boxes as JSON [[x0, y0, x1, y1], …], at most 16, one object each; mask_id of an earlier mask to refine it; multimask, default true for a single point alone; normalized=true for coordinates as fractions of the width and height). Answers width, height, cached (the image embedding came from the server's cache: only the prompt encoder and mask decoder ran), timing (embed_ms, null when cached; decoder_ms; total_ms) and masks: object, iou (predicted), area (pixels), bbox [x0, y0, x1, y1] (null when empty), mask_id (send it back to refine), png (a data: URL of the mask, translucent on transparent, longest side at most 1024: draw it stretched over the image), png_width, png_height; needs a server started with --segment-model",
    ),
    (
        "post",
        "/v1/detect",
        "Boxes of things in an uploaded image or an indexed one (multipart: image or id; labels comma-separated and/or label once per label, at most 32, or query_id: an indexed photo of the thing to find; threshold, a score from 0 to 1, default 0.1 for labels, 0 for a query photo; nms, the per-label IoU above which overlapping boxes are suppressed, default 0.3, 1 turns it off). Answers width, height, detections (label, score, box [x0, y0, x1, y1] in the image's pixels, best first), cached_queries (the labels' embeddings came from the server's cache) and timing (prepare_ms, null when cached; detect_ms; total_ms); needs a server started with --detect-model",
    ),
    (
        "get",
        "/v1/search",
        "Search by text (q, needs a model with a text tower, or captions) or an indexed image (like, never among its own results) with a served model (model); pages with offset, filters by EXIF capture date (from, to); each result carries the file's size, modified, width, height, taken_at and, on an index with captions, its caption; a video's hit (a video is found by its best sampled frame) also carries time, the seconds of that frame, and its thumbnail is that frame (thumbnail?t=time); mode picks the ranking (auto: hybrid when the index has captions and q has words); rerank reorders the best rerank_depth hits by the matching model's itm_probability",
    ),
    (
        "post",
        "/v1/search",
        "Search by an uploaded image (multipart: image, q, like, model, k, offset, min_score, path, from, to, mode, rerank, rerank_depth; each as the GET form takes it, with the same limits)",
    ),
    (
        "get",
        "/v1/duplicates",
        "Groups of near-duplicate indexed files as seer dupes finds them, the largest first, a page of k groups at a time (offset; the answer's total, offset and more); each group its size and its first 200 files, each described as a search hit is, with score, its cosine similarity to the group's first. Without threshold the model's remembered one is used, or the first request (or one with calibrate) measures it with the served model on altered copies of up to 100 indexed photos and remembers it (the answer's calibration says how it was measured, and calibration.measured whether this request measured it: requests that come while another measures wait for its threshold)",
    ),
    (
        "get",
        "/v1/images/{id}",
        "The original bytes of an indexed image; a video streams with byte ranges (Range: bytes=a-b, a- or -n answers 206 with Content-Range; every answer says Accept-Ranges: bytes; a range outside the file, or malformed, is a 416 with Content-Range: bytes */size; several ranges get the whole file)",
    ),
    (
        "get",
        "/v1/images/{id}/thumbnail",
        "A PNG thumbnail (longest side at most 256 px); of a video, its frame at t seconds (default: its first sampled frame; past the end: the last frame), made by ffmpeg: a server without ffmpeg answers 501. On a photo a valid t is ignored",
    ),
    (
        "get",
        "/v1/images/{id}/info",
        "What search results say of an indexed file (id, path, url, thumbnail, size, modified, width, height, taken_at, caption), and of a video \"video\": {\"frames\": [seconds, ...]}, the times of the frames the index sampled",
    ),
    ("post", "/v1/index", "Start re-indexing the index's folders"),
    (
        "get",
        "/v1/index/status",
        "Progress of the index job, counts (files, vectors of the default model, and its videos and their sampled frames) and failures",
    ),
];

/// An error response: every error the server answers is `{"error": "..."}`.
fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

/// The error statuses a route can answer (a test checks the real answers against them).
pub fn error_statuses(method: &str, path: &str) -> Vec<(&'static str, &'static str)> {
    let mut out = vec![
        (
            "400",
            "Bad request (also: a model this server does not serve, text for a model without a text tower, or more items than the model's queue holds at all: --queue)",
        ),
        (
            "403",
            "Without --token: a request addressed to a name that is not loopback, or made by another site's page (Origin, Sec-Fetch-Site)",
        ),
        ("404", "No such route, or no such indexed image"),
        (
            "405",
            "Method not allowed (the Allow header and the message list the route's methods)",
        ),
        ("500", "Internal error"),
        (
            "503",
            "The model's queue (or, for a video's thumbnail, the queue of frame decodes) has no room for the request now; retry after the Retry-After header",
        ),
        ("504", "The request took longer than --timeout"),
    ];
    if path != "/healthz" {
        out.push(("401", "Missing or wrong bearer token"));
    }
    if method == "post" {
        out.push(("413", "The body is larger than --max-body"));
        out.push((
            "415",
            "Wrong content type: application/json for /v1/embed, multipart/form-data for the others",
        ));
        out.push(("422", "A body or image that cannot be used"));
    }
    if path.ends_with("/thumbnail") {
        out.push(("422", "The indexed file cannot be decoded"));
        out.push((
            "501",
            "A video, and the server has no ffmpeg to show its frames (install ffmpeg, or seer serve --ffmpeg PATH)",
        ));
    }
    if path == "/v1/images/{id}" {
        out.push((
            "416",
            "A video asked for in a range that is not one range of bytes inside it (Content-Range: bytes */size)",
        ));
    }
    if path == "/v1/index" {
        out.push(("409", "A job is already running"));
    }
    if matches!(path, "/v1/search" | "/v1/duplicates") {
        out.push((
            "409",
            "No index yet (run seer index first), or the index has no vectors of the served model",
        ));
    }
    if matches!(
        path,
        "/v1/caption" | "/v1/ask" | "/v1/match" | "/v1/segment" | "/v1/detect"
    ) {
        out[0] = (
            "400",
            "Bad request (also: the server has no model for this route, no image or id, or a missing or overlong text)",
        );
        out.push(("404", "No such indexed image, or it changed since indexing"));
    }
    out
}

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        let mut responses = json!({ "200": { "description": "Success" } });
        for (status, description) in error_statuses(method, path) {
            responses[status] = error(description);
        }
        let mut op = json!({ "summary": summary, "responses": responses });
        if *path == "/healthz" {
            // Open to all; the details need the token when the server has one.
            op["security"] = json!([{}, { "bearer": [] }]);
        }
        if path.contains("{id}") {
            op["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
        }
        if *path == "/v1/search" && *method == "get" {
            op["parameters"] = json!([
                { "name": "q", "in": "query", "schema": { "type": "string", "maxLength": 1000 }, "description": "text to search for, at most 1000 characters (the model needs a text tower)" },
                { "name": "model", "in": "query", "schema": { "type": "string" }, "description": "a served model (see /v1/models) by its id, an alias of it or its folder's name; default: the server's default model" },
                { "name": "k", "in": "query", "schema": { "type": "integer", "default": 20, "minimum": 1, "maximum": 1000 }, "description": "results per page, 1 to 1000 (anything else is a 400, never clamped)" },
                { "name": "min_score", "in": "query", "schema": { "type": "number" }, "description": "only results with at least this cosine similarity (-1 to 1); a finite number (NaN or infinity is a 400); not with mode=words" },
                { "name": "path", "in": "query", "schema": { "type": "string" }, "description": "glob on the file path" },
                { "name": "like", "in": "query", "schema": { "type": "integer" }, "description": "an image id: more like this one (it is left out of the results)" },
                { "name": "offset", "in": "query", "schema": { "type": "integer", "default": 0, "minimum": 0, "maximum": 9999 }, "description": "skip this many of the best results (next page; offset + k at most 10000, as given: more is a 400); the answer's \"more\" says whether another page follows" },
                { "name": "from", "in": "query", "schema": { "type": "string" }, "description": "only photos whose EXIF capture time is at or after this (YYYY-MM-DD[ HH:MM[:SS]], a real calendar date: 2023-02-29 is a 400, 2024-02-29 is not); photos without a capture time are left out when from or to is given" },
                { "name": "to", "in": "query", "schema": { "type": "string" }, "description": "only photos whose EXIF capture time is at or before this (a calendar date as for from; a bare date includes that whole day)" },
                { "name": "mode", "in": "query", "schema": { "type": "string", "enum": ["auto", "vector", "hybrid", "words"], "default": "auto" }, "description": "how to rank: vector (cosine similarity), words (the captions' BM25; score is the BM25), hybrid (reciprocal rank fusion of both: results carry fused, matched and bm25 when the words matched; score stays the cosine similarity), auto (hybrid when the index has captions and q has words, words for a model without a text tower, else vector); the answer's mode says which ran unless it was vector" },
                { "name": "rerank", "in": "query", "schema": { "type": "boolean", "default": false }, "description": "reorder the best rerank_depth hits by the image-text matching model's itm_probability for q (needs q and a server started with --match-model); reranked hits carry itm_probability and itc_similarity" },
                { "name": "rerank_depth", "in": "query", "schema": { "type": "integer", "default": 20, "minimum": 1, "maximum": 100 }, "description": "how many of the best hits rerank reorders; the rest keep their order" }
            ]);
        }
        if *path == "/v1/duplicates" {
            op["parameters"] = json!([
                { "name": "model", "in": "query", "schema": { "type": "string" }, "description": "a served model (see /v1/models) whose vectors to group; default: the server's default model" },
                { "name": "threshold", "in": "query", "schema": { "type": "number", "minimum": -1, "maximum": 1 }, "description": "cosine similarity at or above which two files are duplicates (-1 to 1); default: the model's remembered threshold, measured by the first request that needs it" },
                { "name": "calibrate", "in": "query", "schema": { "type": "boolean", "default": false }, "description": "measure the threshold again (and remember it) instead of using the remembered one" },
                { "name": "neighbours", "in": "query", "schema": { "type": "integer", "default": 10, "minimum": 1, "maximum": 100 }, "description": "the nearest files each file's duplicates are looked for among" },
                { "name": "exact", "in": "query", "schema": { "type": "boolean", "default": false }, "description": "compare every file with every other even where the index has its approximate (HNSW) graph (models with at least 50,000 vectors), which finds the neighbours far faster and rarely misses one; the answer's approximate says which ran" },
                { "name": "k", "in": "query", "schema": { "type": "integer", "default": 20, "minimum": 1, "maximum": 1000 }, "description": "groups per page, 1 to 1000" },
                { "name": "offset", "in": "query", "schema": { "type": "integer", "default": 0, "minimum": 0, "maximum": 9999 }, "description": "skip this many groups (next page; offset + k at most 10000)" }
            ]);
        }
        if *path == "/v1/images/{id}/thumbnail" {
            op["parameters"]
                .as_array_mut()
                .expect("the id parameter")
                .push(json!({ "name": "t", "in": "query", "schema": { "type": "number", "minimum": 0 }, "description": "of a video: the time in seconds of the frame to show, a finite number of at least 0 (anything else is a 400); default the video's first sampled frame. On a photo a valid t is ignored" }));
        }
        if *path == "/v1/images/{id}" {
            op["responses"]["206"] = json!({ "description": "The range of a video asked for" });
        }
        if *path == "/v1/index" {
            op["responses"]["202"] = json!({ "description": "Started" });
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
