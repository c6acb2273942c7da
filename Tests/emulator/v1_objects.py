"""Azure OpenAI's v1 stored objects for the emulator: files, batches, vector stores and stored responses.

State is kept per emulator instance (one V1Objects a process), so two instances act as two Azure resources:
an id made on one is unknown to the other. Paths are under /openai/v1 (no api-version); the api-key (or a
bearer token) is checked as on any path, a wrong one answering the same 401. Objects are Azure's wire format,
lists `{"object":"list","data":[...],"first_id","last_id","has_more"}` (first_id/last_id null when empty),
`limit`/`after`/`order` (asc|desc) paging them, newest first by default; an unknown `after` is a 400. An unknown
id is 404 {"error":{"code":"NotFound","message":"<Kind> with id '<id>' not found."}}; a bad argument is a 400
{"error":{"message","type":"invalid_request_error","param","code"}}. Expiry times are reported, never acted on.

Files
  - POST /files, multipart: `file`, `purpose` (assistants, batch, fine-tune, evals, user_data, vision), optional
    expiry as the OpenAI SDK sends it (`expires_after[anchor]`, `expires_after[seconds]`) or as Azure's curl
    examples do (`expires_after.anchor`, `expires_after.seconds`): anchor created_at, seconds 1209600-2592000
    for a batch file (Azure's range), 3600-2592000 otherwise. The body is read in chunks (Content-Length or
    chunked); a file's first 8 MB stay in memory, a bigger one goes to a temp file as it arrives. The recorded
    request shows the file as `file` ("<N bytes>") and `file_sha256`.
    -> {"status":"processed","bytes","purpose","filename","id":"file-<32 hex>","created_at","object":"file"},
    "expires_at" added when set (Azure sends no status_details).
  - GET /files (?purpose, limit 1-10000 default 10000, after, order), GET /files/{id},
    GET /files/{id}/content (application/octet-stream, written in 1 MB chunks),
    DELETE /files/{id} -> {"id","object":"file","deleted":true} (also takes it out of vector stores).
Batches
  - POST /batches {input_file_id, endpoint, completion_window, metadata, output_expires_after}: endpoint one of
    /chat/completions, /embeddings, /completions, /responses, with or without /v1. 400 when the input file is
    unknown or not of purpose batch, or the endpoint unsupported. Answers status "validating" with
    request_counts {total, completed, failed} all null, as Azure does; no batch-level `usage` and no `model`.
  - GET /batches (limit 1-100 default 20, after), GET /batches/{id}, POST /batches/{id}/cancel (validating or
    in_progress -> cancelling, then cancelled with no output; a finished batch is a 400).
  - The status moves when the batch is looked at: validating for the first quarter of its time, in_progress
    until its time is up, then completed (in_progress_at, finalizing_at, completed_at set). Its time is the
    emulator's --batch-seconds (default 2), or metadata {"emulator_seconds": "S"}.
  - Validation, as Azure's, ends in status failed (failed_at, request_counts.total, errors {"object":"list",
    "data":[{code, message, param, line}]}): empty_file; invalid_json_line; invalid_request (no custom_id,
    method other than POST, no url or body, no body.model); duplicate_custom_id; url_mismatch (a line's url is
    not the batch's endpoint); model_not_found (the deployment does not exist on this instance);
    model_mismatch (a line names another deployment than the first line: Azure runs a batch on ONE
    Global-Batch deployment); completion_window other than 24h (Azure fails the job rather than refusing it).
  - Completed: an output file and an error file (purpose batch_output, ids file-<uuid>; Azure makes the error
    file even when it is empty). A line answered 200 goes to the output file as
    {"custom_id","response":{"body":<the answer, with its usage>,"request_id","status_code":200},"error":null}
    (Azure's lines carry no "id"); a line refused by a control, e.g. `[status=400]` or `[content_filter=1]` in
    its user message, or by the chat schema, goes to the error file with that status and Azure error body.
    Answers and their tokens are those the emulator gives the same request on its own. request_counts count
    them. metadata {"emulator_usage": "1"} adds a batch-level `usage` {input_tokens, input_tokens_details:
    {cached_tokens}, output_tokens, output_tokens_details: {reasoning_tokens}, total_tokens}, the lines' sum;
    without it a client must sum the lines, as on Azure today.
Vector stores (statuses are completed at once)
  - POST /vector_stores {name, file_ids, metadata, expires_after {anchor last_active_at, days}, description,
    chunking_strategy}, GET /vector_stores (limit 1-100 default 20, after, before, order),
    GET|POST|DELETE /vector_stores/{id} (POST modifies name, metadata, expires_after;
    DELETE -> {"id","object":"vector_store.deleted","deleted":true}).
  - POST /vector_stores/{id}/files {file_id, attributes, chunking_strategy}, GET .../files (filter, limit,
    after, before, order), GET|POST|DELETE .../files/{file_id} (POST sets attributes),
    GET .../files/{file_id}/content -> {"object":"vector_store.file_content.page","data":[{"type":"text",
    "text"}],"has_more":false,"next_page":null}.
  - POST /vector_stores/{id}/file_batches {file_ids | files: [{file_id, attributes}], attributes},
    GET .../file_batches/{batch_id}, POST .../cancel (a completed batch is answered as it is),
    GET .../file_batches/{batch_id}/files.
  - POST /vector_stores/{id}/search {query (string or list), max_num_results 1-50 default 10, filters
    (comparison eq/ne/gt/gte/lt/lte on attributes, compound and/or)}: each line of the store's files that
    holds a query word (case-insensitive) is a result, scored by the share of the words it holds ->
    {"object":"vector_store.search_results.page","search_query":[...],"data":[{file_id, filename, score,
    attributes, content:[{"type":"text","text"}]}],"has_more":false,"next_page":null}.
  - An unknown file id is 404 {"error":{"message":"Files [file-...] were not found","type":
    "invalid_request_error","param":null,"code":null}}, as Azure answers it.
Stored responses (also on the classic /openai/responses/{id}?api-version=...)
  - GET|DELETE /responses/{id}; GET /responses/{id}/input_items (limit, after, before, order desc default):
    the request's input as items (a string input is one user message of input_text).
  - background: true (without stream) answers status "queued", in_progress after a quarter of the batch
    time, completed when it is up (--batch-seconds, or metadata {"emulator_seconds": "S"}).
    POST /responses/{id}/cancel: queued or in_progress -> cancelled; a finished one, or one not made in
    the background, is a 400.
Introspection (no key): GET /_emulator/objects lists this instance's files (with `on_disk`), batches (as
GET shows them, advancing them), vector stores with their files and file batches, and responses
({id, status, background}); DELETE /_emulator/objects forgets them all and removes the temp files.
"""
import copy
import hashlib
import json
import os
import re
import secrets
import shutil
import string
import tempfile
import threading
import time
import uuid
from urllib.parse import parse_qs

SPILL_BYTES = 8 * 1024 * 1024  # a file bigger than this goes to disk
IO_CHUNK = 1024 * 1024
MAX_FIELD = 64 * 1024  # a multipart text field
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "evals", "user_data", "vision")
BATCH_ENDPOINTS = ("chat/completions", "embeddings", "completions", "responses")
TERMINAL = ("completed", "failed", "expired", "cancelled")
ID = r"([A-Za-z0-9_\-]+)"
OWNED = ("/openai/v1/files", "/openai/v1/batches", "/openai/v1/vector_stores", "/openai/v1/responses/",
         "/openai/responses/")
ALNUM = string.ascii_letters + string.digits


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status, self.body = status, body


def invalid(message, param=None, code=None):
    return ApiError(400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}})


def not_found(kind, ident):
    return ApiError(404, {"error": {"code": "NotFound", "message": f"{kind} with id '{ident}' not found."}})


def files_not_found(ids):
    return ApiError(404, {"error": {"message": f"Files [{', '.join(ids)}] were not found",
                                    "type": "invalid_request_error", "param": None, "code": None}})


def now():
    return int(time.time())


def random_id(prefix, length=24):
    return prefix + "".join(secrets.choice(ALNUM) for _ in range(length))


def check_metadata(metadata, param="metadata"):
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in metadata.items()):
        raise invalid("Invalid 'metadata': at most 16 string keys of 64 characters with string values of 512.", param)
    return dict(metadata)


def int_arg(query, name, default, low, high):
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"Invalid '{name}': expected an integer, got '{raw}'.", name) from None
    if not low <= value <= high:
        raise invalid(f"Invalid '{name}': {value} is not between {low} and {high}.", name)
    return value


def page(objects, query, default_limit, max_limit, default_order="desc"):
    """A cursor page of `objects` (oldest first) as Azure's v1 lists are."""
    limit = int_arg(query, "limit", default_limit, 1, max_limit)
    order = query.get("order", default_order)
    if order not in ("asc", "desc"):
        raise invalid(f"Invalid 'order': '{order}' is not one of asc, desc.", "order")
    items = list(objects) if order == "asc" else list(objects)[::-1]
    ids = [item["id"] for item in items]
    for name in ("after", "before"):
        cursor = query.get(name)
        if cursor is None:
            continue
        if cursor not in ids:
            raise invalid(f"Invalid '{name}': no object with id '{cursor}' in this list.", name)
        at = ids.index(cursor)
        items, ids = (items[at + 1:], ids[at + 1:]) if name == "after" else (items[:at], ids[:at])
    if query.get("before") is not None and query.get("after") is None:
        data, more = items[-limit:], len(items) > limit
    else:
        data, more = items[:limit], len(items) > limit
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": more}


# ---- bodies -----------------------------------------------------------------------------------------
def body_chunks(req, size=IO_CHUNK):
    """The request body in chunks, by Content-Length or chunked transfer coding. EOFError when cut short."""
    if "chunked" in (req.headers.get("Transfer-Encoding") or "").lower():
        while True:
            line = req.rfile.readline(65537)
            if not line:
                raise EOFError
            length = int(line.split(b";")[0].strip() or b"0", 16)
            if length == 0:
                while req.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return
            while length:
                data = req.rfile.read(min(length, size))
                if not data:
                    raise EOFError
                length -= len(data)
                yield data
            req.rfile.readline(3)
    remaining = int(req.headers.get("Content-Length") or 0)
    while remaining > 0:
        data = req.rfile.read(min(remaining, size))
        if not data:
            raise EOFError
        remaining -= len(data)
        yield data


class Spool:
    """Bytes kept in memory up to `limit`, then in a file of `directory()` as they come."""

    def __init__(self, directory, limit=SPILL_BYTES):
        self.directory, self.limit = directory, limit
        self.memory, self.file, self.size = bytearray(), None, 0
        self.sha256 = hashlib.sha256()  # what arrived, for a test to check byte for byte

    def write(self, data):
        self.size += len(data)
        self.sha256.update(data)
        if self.file is None and len(self.memory) + len(data) > self.limit:
            self.file = tempfile.NamedTemporaryFile(dir=self.directory(), delete=False, prefix="file-")
            self.file.write(self.memory)
            self.memory = None
        if self.file is not None:
            self.file.write(data)
        else:
            self.memory += data

    def finish(self):
        """(bytes, None) or (None, path)."""
        if self.file is None:
            return bytes(self.memory), None
        self.file.close()
        return None, self.file.name

    def discard(self):
        if self.file is not None:
            self.file.close()
            os.unlink(self.file.name)


def read_form(chunks, boundary, spool):
    """Streams a multipart/form-data body: ({name: str} of the text fields, {"filename", "spool"} of the part
    named `file` or None). The file part's bytes go to `spool()`, a new Spool; other parts are text."""
    delimiter = b"--" + boundary
    separator = b"\r\n" + delimiter
    fields, upload = {}, None
    buffer, state, sink, name = b"", "preamble", None, None
    for chunk in chunks:
        buffer += chunk
        while True:
            if state == "preamble":
                at = buffer.find(delimiter)
                if at < 0:
                    buffer = buffer[-len(delimiter):]
                    break
                buffer, state = buffer[at + len(delimiter):], "delimited"
            elif state == "delimited":
                if len(buffer) < 2:
                    break
                if buffer[:2] == b"--":
                    buffer, state = b"", "done"
                    break
                if buffer[:2] != b"\r\n":
                    raise ValueError("no line break after a boundary")
                buffer, state = buffer[2:], "headers"
            elif state == "headers":
                at = buffer.find(b"\r\n\r\n")
                if at < 0:
                    if len(buffer) > MAX_FIELD:
                        raise ValueError("part headers too long")
                    break
                head = buffer[:at].decode("utf-8", "replace")
                buffer, state = buffer[at + 4:], "body"
                named = re.search(r'\bname="([^"]*)"', head)
                filename = re.search(r'\bfilename="([^"]*)"', head)
                name = named.group(1) if named else ""
                if name == "file" and filename is not None:
                    sink = spool()
                    upload = {"filename": filename.group(1), "spool": sink}
                else:
                    sink = bytearray()
            elif state == "body":
                at = buffer.find(separator)
                if at < 0:
                    keep = len(separator) - 1
                    if len(buffer) > keep:
                        write(sink, buffer[:-keep])
                        buffer = buffer[-keep:]
                    break
                write(sink, buffer[:at])
                if isinstance(sink, bytearray):
                    fields[name] = sink.decode("utf-8", "replace")
                buffer, state = buffer[at + len(separator):], "delimited"
            else:  # done: the epilogue is ignored
                buffer = b""
                break
    if state != "done":
        raise ValueError("the body ends before the closing boundary")
    return fields, upload


def write(sink, data):
    if isinstance(sink, bytearray):
        if len(sink) + len(data) > MAX_FIELD:
            raise ValueError("a form field is too long")
        sink += data
    else:
        sink.write(data)


# ---- objects ----------------------------------------------------------------------------------------
class StoredFile:
    def __init__(self, ident, filename, purpose, data=None, path=None, size=0, expires_at=None):
        self.id, self.filename, self.purpose = ident, filename, purpose
        self.data, self.path = data, path
        self.bytes = len(data) if data is not None else size
        self.created_at, self.expires_at = now(), expires_at

    def object(self):
        obj = {"status": "processed", "bytes": self.bytes, "purpose": self.purpose, "filename": self.filename}
        if self.expires_at is not None:
            obj["expires_at"] = self.expires_at
        obj.update(id=self.id, created_at=self.created_at, object="file")
        return obj

    def chunks(self, size=IO_CHUNK):
        if self.data is not None:
            view = memoryview(self.data)
            for offset in range(0, len(view), size):
                yield view[offset:offset + size]
            return
        with open(self.path, "rb") as handle:
            while True:
                data = handle.read(size)
                if not data:
                    return
                yield data

    def text(self, limit=SPILL_BYTES):
        data = self.data if self.data is not None else next(self.chunks(limit), b"")
        return bytes(data[:limit]).decode("utf-8", "replace")

    def remove(self):
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def normalize_endpoint(url):
    path = (url or "").split("?", 1)[0]
    for prefix in ("/openai/v1/", "/v1/", "/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path


def input_items(body):
    """The items of a Responses request's input, as input_items lists them."""
    given = body.get("input")
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    items = []
    for item in given if isinstance(given, list) else []:
        if not isinstance(item, dict):
            continue
        item = dict(item)
        if "role" in item and item.get("type", "message") == "message":
            content = item.get("content")
            kind = "output_text" if item["role"] == "assistant" else "input_text"
            if isinstance(content, str):
                item["content"] = [{"type": kind, "text": content}]
            item = {"id": item.get("id") or "msg_" + uuid.uuid4().hex, "type": "message", "role": item["role"],
                    "content": item.get("content") or [], "status": "completed"}
        else:
            item.setdefault("id", "item_" + uuid.uuid4().hex)
        items.append(item)
    return items


def matches(attributes, condition):
    """Whether a vector store file's attributes satisfy a search filter."""
    if not isinstance(condition, dict):
        return True
    kind = condition.get("type")
    if kind in ("and", "or"):
        results = [matches(attributes, sub) for sub in condition.get("filters") or []]
        return all(results) if kind == "and" else any(results)
    key, value = condition.get("key"), condition.get("value")
    have = (attributes or {}).get(key)
    try:
        return {"eq": have == value, "ne": have != value,
                "gt": have is not None and have > value, "gte": have is not None and have >= value,
                "lt": have is not None and have < value, "lte": have is not None and have <= value}.get(kind, True)
    except TypeError:
        return False


class V1Objects:
    """The stored objects of one emulator instance and the handlers of their paths."""

    def __init__(self, name="azure", deployment_exists=lambda name: True, answer=None, batch_seconds=2.0,
                 spill_bytes=SPILL_BYTES):
        self.name = name
        self.deployment_exists = deployment_exists
        self.answer = answer or (lambda operation, body: (404, {"error": {"code": "404", "message": "Resource not found"}}))
        self.batch_seconds = batch_seconds
        self.spill_bytes = spill_bytes
        self.lock = threading.RLock()
        self.tempdir = None
        self.files, self.batches, self.stores, self.responses = {}, {}, {}, {}
        self.routes = [(method, re.compile(pattern), handler) for method, pattern, handler in (
            ("POST", r"/openai/v1/files", self.serve_upload),
            ("GET", r"/openai/v1/files", self.list_files),
            ("GET", rf"/openai/v1/files/{ID}", self.get_file),
            ("DELETE", rf"/openai/v1/files/{ID}", self.delete_file),
            ("GET", rf"/openai/v1/files/{ID}/content", self.file_content),
            ("POST", r"/openai/v1/batches", self.create_batch),
            ("GET", r"/openai/v1/batches", self.list_batches),
            ("GET", rf"/openai/v1/batches/{ID}", self.get_batch),
            ("POST", rf"/openai/v1/batches/{ID}/cancel", self.cancel_batch),
            ("POST", r"/openai/v1/vector_stores", self.create_store),
            ("GET", r"/openai/v1/vector_stores", self.list_stores),
            ("GET", rf"/openai/v1/vector_stores/{ID}", self.get_store),
            ("POST", rf"/openai/v1/vector_stores/{ID}", self.modify_store),
            ("DELETE", rf"/openai/v1/vector_stores/{ID}", self.delete_store),
            ("POST", rf"/openai/v1/vector_stores/{ID}/search", self.search_store),
            ("POST", rf"/openai/v1/vector_stores/{ID}/files", self.add_store_file),
            ("GET", rf"/openai/v1/vector_stores/{ID}/files", self.list_store_files),
            ("GET", rf"/openai/v1/vector_stores/{ID}/files/{ID}", self.get_store_file),
            ("POST", rf"/openai/v1/vector_stores/{ID}/files/{ID}", self.update_store_file),
            ("DELETE", rf"/openai/v1/vector_stores/{ID}/files/{ID}", self.delete_store_file),
            ("GET", rf"/openai/v1/vector_stores/{ID}/files/{ID}/content", self.store_file_content),
            ("POST", rf"/openai/v1/vector_stores/{ID}/file_batches", self.create_file_batch),
            ("GET", rf"/openai/v1/vector_stores/{ID}/file_batches/{ID}", self.get_file_batch),
            ("POST", rf"/openai/v1/vector_stores/{ID}/file_batches/{ID}/cancel", self.cancel_file_batch),
            ("GET", rf"/openai/v1/vector_stores/{ID}/file_batches/{ID}/files", self.list_file_batch_files),
            ("GET", rf"/openai(?:/v1)?/responses/{ID}", self.get_response),
            ("DELETE", rf"/openai(?:/v1)?/responses/{ID}", self.delete_response),
            ("POST", rf"/openai(?:/v1)?/responses/{ID}/cancel", self.cancel_response),
            ("GET", rf"/openai(?:/v1)?/responses/{ID}/input_items", self.list_input_items),
        )]

    # ---- plumbing ---------------------------------------------------------------------------------
    def route(self, method, path):
        if not path.startswith(OWNED):
            return None  # chat and the other operations: one test, not a regex each
        for verb, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match and verb == method:
                return handler, match.groups()
        return None

    def dispatch(self, req, url):
        """Serves `req` (an emulator request handler) when its method and path are one of these objects';
        False when they are not."""
        found = self.route(req.command, url.path)
        if found is None:
            return False
        handler, args = found
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if handler == self.serve_upload:
            return self.serve_upload(req, url)
        body = None
        if req.command == "POST":
            try:
                raw = b"".join(body_chunks(req))
            except (EOFError, ValueError):
                req.close_connection = True
                return True
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                body = None
        req.record(body)
        if not req.authorized(url):
            return True
        if req.command == "POST" and not isinstance(body, dict):
            req.send_json(400, invalid("We could not parse the JSON body of your request.").body)
            return True
        try:
            result = handler(*args, query=query, body=body or {}, req=req)
        except ApiError as error:
            req.send_json(error.status, error.body)
            return True
        if result is not None:
            req.send_json(200, result)
        return True

    def directory(self):
        with self.lock:
            if self.tempdir is None:
                self.tempdir = tempfile.mkdtemp(prefix=f"azure-emulator-{self.name}-")
            return self.tempdir

    def spool(self):
        return Spool(self.directory, self.spill_bytes)

    def close(self):
        """Removes the temp files (at exit)."""
        with self.lock:
            if self.tempdir:
                shutil.rmtree(self.tempdir, ignore_errors=True)
                self.tempdir = None

    def reset(self):
        with self.lock:
            counts = {"files": len(self.files), "batches": len(self.batches),
                      "vector_stores": len(self.stores), "responses": len(self.responses)}
            for stored in self.files.values():
                stored.remove()
            self.files.clear()
            self.batches.clear()
            self.stores.clear()
            self.responses.clear()
        return dict(counts, cleared=True)

    def snapshot(self):
        with self.lock:
            for batch in self.batches.values():
                self.advance(batch)
            for record in self.responses.values():
                self.advance_response(record)
            return copy.deepcopy({
                "name": self.name,
                "files": [dict(f.object(), on_disk=f.path is not None) for f in self.files.values()],
                "batches": [self.batch_object(b) for b in self.batches.values()],
                "vector_stores": [dict(self.store_object(s), files=list(s["files"].values()),
                                       file_batches=list(s["batches"].values())) for s in self.stores.values()],
                "responses": [{"id": ident, "status": r["response"]["status"], "background": r["background"]}
                              for ident, r in self.responses.items()],
            })  # the caller serializes it after the lock is released

    # ---- files ------------------------------------------------------------------------------------
    def serve_upload(self, req, url):
        """POST /files: the form is read as it arrives, the file part into a Spool."""
        if not req.authorized(url):
            req.record(None)
            try:
                for _ in body_chunks(req):
                    pass
            except (EOFError, ValueError):
                req.close_connection = True
            return True
        content_type = req.headers.get("Content-Type") or ""
        boundary = re.search(r'boundary="?([^";]+)"?', content_type)
        spools, kept = [], None

        def spool():
            spools.append(self.spool())
            return spools[-1]

        try:
            if not content_type.startswith("multipart/form-data") or not boundary:
                for _ in body_chunks(req):
                    pass
                req.record(None)
                raise invalid("Expected a multipart/form-data body with a boundary.")
            try:
                fields, upload = read_form(body_chunks(req), boundary.group(1).encode(), spool)
            except ValueError as error:
                req.close_connection = True
                req.record(None)
                raise invalid(f"Invalid multipart body: {error}.") from None
            summary = dict(fields)
            if upload:
                summary["file"] = f"<{upload['spool'].size} bytes>"
                summary["file_sha256"] = upload["spool"].sha256.hexdigest()
            req.record(summary)
            result = self.create_file(fields, upload)
            kept = upload["spool"]
            req.send_json(200, result)
        except EOFError:
            req.close_connection = True  # the client went away mid-upload: nothing to answer
        except ApiError as error:
            req.send_json(error.status, error.body)
        finally:
            for unused in spools:
                if unused is not kept:
                    unused.discard()
        return True

    def create_file(self, fields, upload):
        if upload is None:
            raise invalid("'file' is a required property", "file")
        purpose = fields.get("purpose")
        if not purpose:
            raise invalid("'purpose' is a required property", "purpose")
        if purpose not in FILE_PURPOSES:
            raise invalid(f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", "purpose")
        expires_at = None
        expiry = {}
        if fields.get("expires_after"):
            try:
                expiry = dict(json.loads(fields["expires_after"]))
            except (ValueError, TypeError):
                raise invalid("Invalid 'expires_after': expected an object.", "expires_after") from None
        for key in ("anchor", "seconds"):
            for form in (f"expires_after[{key}]", f"expires_after.{key}"):
                if form in fields:
                    expiry[key] = fields[form]
        if expiry:
            if expiry.get("anchor") != "created_at":
                raise invalid("Invalid 'expires_after.anchor': only 'created_at' is supported.", "expires_after.anchor")
            low = 1209600 if purpose == "batch" else 3600
            try:
                seconds = int(expiry.get("seconds"))
            except (TypeError, ValueError):
                raise invalid("Invalid 'expires_after.seconds': expected an integer.", "expires_after.seconds") from None
            if not low <= seconds <= 2592000:
                raise invalid(f"Invalid 'expires_after.seconds': {seconds} is not between {low} and 2592000.",
                              "expires_after.seconds")
            expires_at = now() + seconds
        data, path = upload["spool"].finish()
        stored = StoredFile("file-" + uuid.uuid4().hex, upload["filename"] or "upload", purpose, data=data, path=path,
                            size=upload["spool"].size, expires_at=expires_at)
        with self.lock:
            self.files[stored.id] = stored
        return stored.object()

    def new_file(self, filename, purpose, lines, expires_after=None):
        """A file the service writes (a batch's output), from an iterable of bytes."""
        spool = self.spool()
        for line in lines:
            spool.write(line)
        data, path = spool.finish()
        expires_at = None
        if isinstance(expires_after, dict) and isinstance(expires_after.get("seconds"), int):
            expires_at = now() + expires_after["seconds"]
        stored = StoredFile("file-" + str(uuid.uuid4()), filename, purpose, data=data, path=path, size=spool.size,
                            expires_at=expires_at)
        self.files[stored.id] = stored
        return stored

    def stored_file(self, file_id):
        with self.lock:
            stored = self.files.get(file_id)
        if stored is None:
            raise not_found("File", file_id)
        return stored

    def list_files(self, query, body, req):
        with self.lock:
            files = [f.object() for f in self.files.values()
                     if query.get("purpose") is None or f.purpose == query["purpose"]]
        return page(files, query, 10000, 10000)

    def get_file(self, file_id, query, body, req):
        return self.stored_file(file_id).object()

    def delete_file(self, file_id, query, body, req):
        with self.lock:
            stored = self.files.pop(file_id, None)
            if stored is None:
                raise not_found("File", file_id)
            for store in self.stores.values():
                store["files"].pop(file_id, None)
        stored.remove()
        return {"id": file_id, "object": "file", "deleted": True}

    def file_content(self, file_id, query, body, req):
        stored = self.stored_file(file_id)
        try:
            chunks = stored.chunks()
            first = next(chunks, b"")
        except OSError:
            raise not_found("File", file_id) from None
        req.send_head(200, "application/octet-stream", stored.bytes)
        try:
            req.wfile.write(first)
            for data in chunks:
                req.wfile.write(data)
            req.wfile.flush()
        except OSError:
            req.close_connection = True
        return None

    # ---- batches ----------------------------------------------------------------------------------
    def create_batch(self, query, body, req):
        input_file_id = body.get("input_file_id")
        if not isinstance(input_file_id, str) or not input_file_id:
            raise invalid("'input_file_id' is a required property", "input_file_id")
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or normalize_endpoint(endpoint) not in BATCH_ENDPOINTS:
            raise invalid(f"Invalid 'endpoint': {json.dumps(endpoint)} is not a supported batch endpoint "
                          f"({', '.join('/' + e for e in BATCH_ENDPOINTS)}).", "endpoint")
        window = body.get("completion_window")
        if not isinstance(window, str):
            raise invalid("'completion_window' is a required property", "completion_window")
        metadata = check_metadata(body.get("metadata"))
        with self.lock:
            stored = self.files.get(input_file_id)
        if stored is None:
            raise invalid(f"Invalid 'input_file_id': file '{input_file_id}' was not found.", "input_file_id")
        if stored.purpose != "batch":
            raise invalid(f"Invalid 'input_file_id': file '{input_file_id}' has purpose '{stored.purpose}', "
                          "not 'batch'.", "input_file_id")
        try:
            seconds = float((metadata or {}).get("emulator_seconds", self.batch_seconds))
        except ValueError:
            seconds = self.batch_seconds
        lines, errors = self.validate_lines(stored, normalize_endpoint(endpoint))
        if window != "24h":
            errors.insert(0, {"code": "invalid_request", "message": f"Invalid completion window '{window}': "
                              "only '24h' is supported.", "param": "completion_window", "line": None})
        created = now()
        batch = {
            "id": "batch_" + str(uuid.uuid4()), "completion_window": window, "created_at": created,
            "endpoint": endpoint, "input_file_id": input_file_id, "object": "batch", "status": "validating",
            "cancelled_at": None, "cancelling_at": None, "completed_at": None, "error_file_id": None, "errors": None,
            "expired_at": None, "expires_at": created + 86400, "failed_at": None, "finalizing_at": None,
            "in_progress_at": None, "metadata": metadata, "output_file_id": None,
            "request_counts": {"total": None, "completed": None, "failed": None},
            "_started": time.monotonic(), "_seconds": max(0.0, seconds), "_lines": lines, "_errors": errors,
            "_usage": (metadata or {}).get("emulator_usage") == "1", "_usage_sum": None,
            "_output_expires_after": body.get("output_expires_after"),
            "_operation": normalize_endpoint(endpoint),
        }
        with self.lock:
            self.batches[batch["id"]] = batch
            return self.batch_object(batch)

    def validate_lines(self, stored, operation):
        """(requests, errors) of a batch input file, checked as Azure validates it."""
        content = b"".join(bytes(c) for c in stored.chunks())
        lines, errors, seen, model = [], [], set(), None

        def fail(code, message, number, param=None):
            if len(errors) < 100:
                errors.append({"code": code, "message": message, "param": param, "line": number})

        if content.startswith(b"\xef\xbb\xbf"):
            fail("invalid_request", "Validation failed: A valid model deployment name couldn't be extracted from the "
                 "input file. Please ensure that each row in the input file has a valid deployment name specified in "
                 "the 'model' field, and that the deployment name is consistent across all rows.", 1)
            return [], errors
        for number, raw in enumerate(content.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                fail("invalid_json_line", f"Line {number} of the input file is not valid JSON.", number)
                continue
            if not isinstance(line, dict):
                fail("invalid_json_line", f"Line {number} of the input file is not a JSON object.", number)
                continue
            custom_id, body = line.get("custom_id"), line.get("body")
            if not isinstance(custom_id, str) or not custom_id:
                fail("invalid_request", f"Line {number}: 'custom_id' is a required property.", number, "custom_id")
                continue
            if line.get("method") != "POST":
                fail("invalid_request", f"Line {number}: 'method' must be 'POST'.", number, "method")
                continue
            if not isinstance(line.get("url"), str):
                fail("invalid_request", f"Line {number}: 'url' is a required property.", number, "url")
                continue
            if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
                fail("invalid_request", f"Line {number}: 'body.model' is a required property.", number, "body.model")
                continue
            if custom_id in seen:
                fail("duplicate_custom_id", f"The custom ID '{custom_id}' of line {number} is a duplicate of the "
                     "custom ID in another request.", number, "custom_id")
                continue
            seen.add(custom_id)
            if normalize_endpoint(line["url"]) != operation:
                fail("url_mismatch", f"The url '{line['url']}' of line {number} does not match the batch's endpoint "
                     f"'/{operation}'.", number, "url")
                continue
            if not self.deployment_exists(body["model"]):
                fail("model_not_found", f"The model deployment '{body['model']}' of line {number} was not found.",
                     number, "body.model")
                continue
            if model is None:
                model = body["model"]
            elif body["model"] != model:
                fail("model_mismatch", f"The model deployment '{body['model']}' of line {number} doesn't match the "
                     f"rest of the file ('{model}'): a batch runs on one Global-Batch deployment.", number,
                     "body.model")
                continue
            lines.append((custom_id, body))
        if not lines and not errors:
            fail("empty_file", "The input file is empty. Please ensure that the batch contains at least one request.",
                 None)
        return lines, errors

    def advance(self, batch):
        """Moves a batch on by the time since it was made; lock held."""
        status = batch["status"]
        if status in TERMINAL:
            return
        stamp = now()
        if status == "cancelling":
            batch.update(status="cancelled", cancelled_at=stamp,
                         request_counts={"total": len(batch["_lines"]), "completed": 0, "failed": 0})
            return
        elapsed, seconds = time.monotonic() - batch["_started"], batch["_seconds"]
        if status == "validating" and elapsed >= seconds / 4:
            if batch["_errors"]:
                batch.update(status="failed", failed_at=stamp, errors={"object": "list", "data": batch["_errors"]},
                             request_counts={"total": len(batch["_lines"]) + len(batch["_errors"]),
                                             "completed": None, "failed": None})
                return
            batch.update(status="in_progress", in_progress_at=stamp,
                         request_counts={"total": len(batch["_lines"]), "completed": 0, "failed": 0})
        if batch["status"] == "in_progress" and elapsed >= seconds:
            self.finish(batch, stamp)

    def finish(self, batch, stamp):
        output, failures, completed, failed = [], [], 0, 0
        usage = {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 0,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0}
        for custom_id, body in batch["_lines"]:
            status, answer = self.answer(batch["_operation"], body)
            line = {"custom_id": custom_id, "response": {"body": answer, "request_id": str(uuid.uuid4()),
                                                         "status_code": status}, "error": None}
            encoded = (json.dumps(line, separators=(",", ":")) + "\n").encode()
            if status == 200:
                completed += 1
                output.append(encoded)
                spent = answer.get("usage") or {}
                took_in = spent.get("prompt_tokens", spent.get("input_tokens", 0))
                took_out = spent.get("completion_tokens", spent.get("output_tokens", 0))
                usage["input_tokens"] += took_in
                usage["output_tokens"] += took_out
                usage["total_tokens"] += spent.get("total_tokens", took_in + took_out)
                cached = (spent.get("prompt_tokens_details") or spent.get("input_tokens_details") or {})
                usage["input_tokens_details"]["cached_tokens"] += cached.get("cached_tokens", 0)
            else:
                failed += 1
                failures.append(encoded)
        expiry = batch["_output_expires_after"]
        out = self.new_file(f"{batch['id']}_output.jsonl", "batch_output", output, expiry)
        err = self.new_file(f"{batch['id']}_error.jsonl", "batch_output", failures, expiry)
        batch.update(status="completed", in_progress_at=batch["in_progress_at"] or stamp, finalizing_at=stamp,
                     completed_at=stamp, output_file_id=out.id, error_file_id=err.id,
                     request_counts={"total": completed + failed, "completed": completed, "failed": failed},
                     _usage_sum=usage)

    def batch_object(self, batch):
        obj = {k: v for k, v in batch.items() if not k.startswith("_")}
        obj["request_counts"] = dict(batch["request_counts"])
        if batch["_usage"] and batch["_usage_sum"] is not None:
            obj["usage"] = batch["_usage_sum"]
        return obj

    def get_batch(self, batch_id, query, body, req):
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise not_found("Batch", batch_id)
            self.advance(batch)
            return self.batch_object(batch)

    def list_batches(self, query, body, req):
        with self.lock:
            for batch in self.batches.values():
                self.advance(batch)
            return page([self.batch_object(b) for b in self.batches.values()], query, 20, 100)

    def cancel_batch(self, batch_id, query, body, req):
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                raise not_found("Batch", batch_id)
            self.advance(batch)
            if batch["status"] in TERMINAL:
                raise invalid(f"Cannot cancel a batch with status '{batch['status']}'.")
            if batch["status"] != "cancelling":
                batch.update(status="cancelling", cancelling_at=now())
            return self.batch_object(batch)

    # ---- vector stores ----------------------------------------------------------------------------
    def store(self, store_id):
        found = self.stores.get(store_id)
        if found is None:
            raise not_found("Vector store", store_id)
        return found

    def known_files(self, ids):
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise invalid("Invalid 'file_ids': expected an array of strings.", "file_ids")
        missing = [i for i in ids if i not in self.files]
        if missing:
            raise files_not_found(missing)

    def store_object(self, store):
        files = store["files"].values()
        counts = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": len(store["files"])}
        for entry in files:
            counts[entry["status"]] += 1
        obj = {k: v for k, v in store.items() if k not in ("files", "batches")}
        obj["usage_bytes"] = sum(entry["usage_bytes"] for entry in files)
        obj["file_counts"] = counts
        if obj.get("expires_after"):
            obj["expires_at"] = obj["last_active_at"] + 86400 * obj["expires_after"]["days"]
        return obj

    @staticmethod
    def check_expiry(expires_after):
        if expires_after is None:
            return None
        if not isinstance(expires_after, dict) or expires_after.get("anchor") != "last_active_at" or \
                not isinstance(expires_after.get("days"), int) or not 1 <= expires_after["days"] <= 365:
            raise invalid("Invalid 'expires_after': expected {\"anchor\": \"last_active_at\", \"days\": 1-365}.",
                          "expires_after")
        return {"anchor": "last_active_at", "days": expires_after["days"]}

    def attach(self, store, file_id, attributes=None, chunking=None):
        """Adds a file to a store (or returns it when there); lock held."""
        entry = store["files"].get(file_id)
        if entry is None:
            if chunking is None or chunking.get("type") != "static":
                chunking = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
            entry = {"id": file_id, "object": "vector_store.file", "usage_bytes": self.files[file_id].bytes,
                     "created_at": now(), "vector_store_id": store["id"], "status": "completed", "last_error": None,
                     "chunking_strategy": chunking, "attributes": attributes or {}}
            store["files"][file_id] = entry
        return entry

    def create_store(self, query, body, req):
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise invalid("Invalid 'name': expected a string.", "name")
        metadata = check_metadata(body.get("metadata"))
        expiry = self.check_expiry(body.get("expires_after"))
        file_ids = body.get("file_ids") or []
        with self.lock:
            self.known_files(file_ids)
            stamp = now()
            store = {"id": random_id("vs_"), "object": "vector_store", "created_at": stamp, "name": name or "",
                     "status": "completed", "expires_after": expiry, "expires_at": None,
                     "last_active_at": stamp, "metadata": metadata or {}, "files": {}, "batches": {}}
            if isinstance(body.get("description"), str):
                store["description"] = body["description"]
            self.stores[store["id"]] = store
            for file_id in file_ids:
                self.attach(store, file_id, chunking=body.get("chunking_strategy"))
            return self.store_object(store)

    def list_stores(self, query, body, req):
        with self.lock:
            return page([self.store_object(s) for s in self.stores.values()], query, 20, 100)

    def get_store(self, store_id, query, body, req):
        with self.lock:
            return self.store_object(self.store(store_id))

    def modify_store(self, store_id, query, body, req):
        with self.lock:
            store = self.store(store_id)
            if "name" in body:
                if body["name"] is not None and not isinstance(body["name"], str):
                    raise invalid("Invalid 'name': expected a string.", "name")
                store["name"] = body["name"] or ""
            if "metadata" in body:
                store["metadata"] = check_metadata(body["metadata"]) or {}
            if "expires_after" in body:
                store["expires_after"] = self.check_expiry(body["expires_after"])
            store["last_active_at"] = now()
            return self.store_object(store)

    def delete_store(self, store_id, query, body, req):
        with self.lock:
            self.store(store_id)
            del self.stores[store_id]
        return {"id": store_id, "object": "vector_store.deleted", "deleted": True}

    def add_store_file(self, store_id, query, body, req):
        file_id = body.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise invalid("'file_id' is a required property", "file_id")
        with self.lock:
            store = self.store(store_id)
            self.known_files([file_id])
            return dict(self.attach(store, file_id, body.get("attributes"), body.get("chunking_strategy")))

    def list_store_files(self, store_id, query, body, req, only=None):
        with self.lock:
            store = self.store(store_id)
            wanted = query.get("filter")
            if wanted is not None and wanted not in ("in_progress", "completed", "failed", "cancelled"):
                raise invalid(f"Invalid 'filter': '{wanted}'.", "filter")
            entries = [dict(e) for e in store["files"].values()
                       if (wanted is None or e["status"] == wanted) and (only is None or e["id"] in only)]
            return page(entries, query, 20, 100)

    def store_file(self, store, file_id):
        entry = store["files"].get(file_id)
        if entry is None:
            raise not_found("Vector store file", file_id)
        return entry

    def get_store_file(self, store_id, file_id, query, body, req):
        with self.lock:
            return dict(self.store_file(self.store(store_id), file_id))

    def update_store_file(self, store_id, file_id, query, body, req):
        attributes = body.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            raise invalid("Invalid 'attributes': expected an object.", "attributes")
        with self.lock:
            entry = self.store_file(self.store(store_id), file_id)
            entry["attributes"] = attributes or {}
            return dict(entry)

    def delete_store_file(self, store_id, file_id, query, body, req):
        with self.lock:
            store = self.store(store_id)
            self.store_file(store, file_id)
            del store["files"][file_id]
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    def store_file_content(self, store_id, file_id, query, body, req):
        with self.lock:
            self.store_file(self.store(store_id), file_id)
            stored = self.files.get(file_id)
        text = stored.text() if stored else ""
        return {"object": "vector_store.file_content.page", "data": [{"type": "text", "text": text}],
                "has_more": False, "next_page": None}

    def create_file_batch(self, store_id, query, body, req):
        given = body.get("files")
        if given is not None:
            if not isinstance(given, list) or not all(isinstance(f, dict) and isinstance(f.get("file_id"), str)
                                                      for f in given):
                raise invalid("Invalid 'files': expected an array of {file_id, attributes}.", "files")
            wanted = [(f["file_id"], f.get("attributes", body.get("attributes")), f.get("chunking_strategy"))
                      for f in given]
        else:
            ids = body.get("file_ids")
            if not isinstance(ids, list) or not ids:
                raise invalid("'file_ids' is a required property", "file_ids")
            wanted = [(i, body.get("attributes"), body.get("chunking_strategy")) for i in ids]
        with self.lock:
            store = self.store(store_id)
            self.known_files([w[0] for w in wanted])
            for file_id, attributes, chunking in wanted:
                self.attach(store, file_id, attributes, chunking or body.get("chunking_strategy"))
            batch = {"id": random_id("vsfb_"), "object": "vector_store.files_batch", "created_at": now(),
                     "vector_store_id": store_id, "status": "completed",
                     "file_counts": {"in_progress": 0, "completed": len(wanted), "failed": 0, "cancelled": 0,
                                     "total": len(wanted)}, "_files": [w[0] for w in wanted]}
            store["batches"][batch["id"]] = batch
            return {k: v for k, v in batch.items() if not k.startswith("_")}

    def file_batch(self, store_id, batch_id):
        batch = self.store(store_id)["batches"].get(batch_id)
        if batch is None:
            raise not_found("Vector store file batch", batch_id)
        return batch

    def get_file_batch(self, store_id, batch_id, query, body, req):
        with self.lock:
            return {k: v for k, v in self.file_batch(store_id, batch_id).items() if not k.startswith("_")}

    def cancel_file_batch(self, store_id, batch_id, query, body, req):
        with self.lock:
            batch = self.file_batch(store_id, batch_id)
            if batch["status"] == "in_progress":
                batch["status"] = "cancelled"
            return {k: v for k, v in batch.items() if not k.startswith("_")}

    def list_file_batch_files(self, store_id, batch_id, query, body, req):
        with self.lock:
            batch = self.file_batch(store_id, batch_id)
        return self.list_store_files(store_id, query, body, req, only=set(batch["_files"]))

    def search_store(self, store_id, query, body, req):
        asked = body.get("query")
        queries = [asked] if isinstance(asked, str) else asked
        if not isinstance(queries, list) or not queries or not all(isinstance(q, str) for q in queries):
            raise invalid("'query' is a required property (a string or an array of strings)", "query")
        limit = body.get("max_num_results", 10)
        if not isinstance(limit, int) or not 1 <= limit <= 50:
            raise invalid("Invalid 'max_num_results': expected an integer from 1 to 50.", "max_num_results")
        words = sorted({w for q in queries for w in re.findall(r"\w+", q.lower())})
        with self.lock:
            store = self.store(store_id)
            store["last_active_at"] = now()
            entries = [(e, self.files.get(e["id"])) for e in store["files"].values()
                       if matches(e.get("attributes"), body.get("filters"))]
        results = []
        for entry, stored in entries:
            if stored is None:
                continue
            for line in stored.text().splitlines():
                lowered = line.lower()
                hits = sum(1 for w in words if w in lowered)
                if hits and line.strip():
                    results.append({"file_id": stored.id, "filename": stored.filename,
                                    "score": round(hits / len(words), 4), "attributes": entry.get("attributes") or {},
                                    "content": [{"type": "text", "text": line.strip()}]})
        results.sort(key=lambda r: -r["score"])
        return {"object": "vector_store.search_results.page", "search_query": queries, "data": results[:limit],
                "has_more": False, "next_page": None}

    # ---- responses --------------------------------------------------------------------------------
    def store_response(self, done, body):
        """Keeps a Responses answer; with background: true (not streamed) it starts queued. Returns what the
        create call answers."""
        background = bool(body.get("background")) and not body.get("stream")
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        final = dict(done, metadata=metadata)
        seconds = self.batch_seconds
        try:
            seconds = float(metadata.get("emulator_seconds", seconds))
        except (TypeError, ValueError):
            pass
        if background:
            final["background"] = True
        shown = dict(final, status="queued", output=[], usage=None) if background else final
        record = {"response": shown, "final": final, "background": background, "items": input_items(body),
                  "started": time.monotonic(), "seconds": max(0.0, seconds)}
        with self.lock:
            self.responses[done["id"]] = record
        return dict(shown)

    def advance_response(self, record):
        """Moves a background response on; lock held."""
        shown = record["response"]
        if shown["status"] not in ("queued", "in_progress"):
            return
        elapsed = time.monotonic() - record["started"]
        if elapsed >= record["seconds"]:
            record["response"] = dict(record["final"])
        elif elapsed >= record["seconds"] / 4:
            shown["status"] = "in_progress"

    def stored_response(self, response_id):
        record = self.responses.get(response_id)
        if record is None:
            raise not_found("Response", response_id)
        self.advance_response(record)
        return record

    def get_response(self, response_id, query, body, req):
        with self.lock:
            return dict(self.stored_response(response_id)["response"])

    def delete_response(self, response_id, query, body, req):
        with self.lock:
            self.stored_response(response_id)
            del self.responses[response_id]
        return {"id": response_id, "object": "response", "deleted": True}

    def cancel_response(self, response_id, query, body, req):
        with self.lock:
            record = self.stored_response(response_id)
            if not record["background"]:
                raise invalid("Only responses created with background=true can be cancelled.")
            status = record["response"]["status"]
            if status not in ("queued", "in_progress"):
                raise invalid(f"Cannot cancel a response with status '{status}'.")
            record["response"] = dict(record["response"], status="cancelled")
            return dict(record["response"])

    def list_input_items(self, response_id, query, body, req):
        with self.lock:
            items = list(self.stored_response(response_id)["items"])
        return page(items, query, 20, 100)
