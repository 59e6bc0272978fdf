"""The web page and its JSON API (`python main.py serve`): write, revise and check poems in a browser.

Starlette on uvicorn: the smallest well-kept ASGI stack that has what this needs (streamed responses, static
files, an in-process test client) without a validation layer of its own — the requests are checked by the
same code as the command line's flags (config.check_config, constraints.spec_from, prosody.normalise), so a
bad value gets the same one-line message in both.

One worker thread owns the models and keeps one batch of poems running through them (continuous
batching): a write request that arrives joins it between two steps (every request keeps its own constraints,
random streams and candidates: a decoding.Row each), leaves it when its own candidates are done, and so twenty
clients cost little more than one. A client that goes away has its rows dropped at the next step. Revise and
check run in the same thread, between two steps.

    GET  /                  the page (static/)
    POST /api/write         {"start": "日", "form": 7, "lines": 4, "rhyme": true, ...} -> {poem, candidates}
    POST /api/write/stream  the same, as lines of JSON: {"event": "text", "text": ...} as it is written, then
                            {"event": "done", ...} (or {"event": "error", "error": ...})
    POST /api/revise        {"poem": ..., "line": 3, "num": 5} -> [{poem, new, score, nll}, ...]
    POST /api/check         {"poem": ...} -> the check report
    GET  /api/cipai         the 词牌 table
    POST /api/inspect       {"poem": ..., "layer": 2, "cells": [12, 87], "state": "c"} -> each chosen cell's
                            state and gates at every character (lstm_inspect.page_answer)
"""
import asyncio
import collections
import dataclasses
import json
import math
import os
import queue
import threading
import time

import dataUtil
from writing import decoding
from writing import requests
from writing import constraints
from verse import prosody
from writing import workshop
from config import Config, GenConfig, UserError, check_config
from verse.text import convert_chars
from verse.tables import format_cipai, load_tables

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
MAX_BODY = 16_384                 # bytes of a request body, however it is sent (Content-Length or chunked)
BODY_SECONDS = 10.0               # a body must arrive within this (a client holding a partial body open: 408)
MAX_DEPTH = 8                     # nesting of a request's JSON (a list in an object is 2)
REVISE_BUDGET = 4000              # candidate rows x characters a revision writes (from line 1 of a 384-character
                                  # poem: 10 rows, about 3 s of the worker here under load; one line: any num)
MAX_LEAD = 500                    # characters of start and prefix together a write may give: what one request's
                                  # lead costs the worker (read once for all its candidates: ~1 ms a character on
                                  # this CPU under load) stays under a second, so no other request waits longer
MAX_ROWS = 256                    # candidate rows generated together at most
STREAM_EVERY = 0.04               # seconds between two text updates of a streamed poem (25 a second) at most,
STREAM_BUDGET = 100               # and text updates a second for all streams together (20 streams: 5 each)
WRITE_KEYS = {"start", "keywords", "acrostic", "form", "lines", "rhyme", "tones", "cipai", "temperature", "seed",
              "candidates", "rhyme_system", "rhyme_tone", "tone_system", "top_k", "top_p", "prefix", "free",
              "repetition_penalty"}


class BadRequest(Exception):
    """A request the user can fix: 400 (or the status given) with a one-line message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def api_message(message):
    """A UserError's line in the API's words: the command line's flags become the request's keys (--form 6 ->
    form 6, --free -> "free": true), and the 词牌 list is GET /api/cipai."""
    import re
    message = message.replace("python main.py generate --list-cipai", "GET /api/cipai")
    bools = {f.name for f in dataclasses.fields(GenConfig) if f.type in (bool, "bool")} | {"from"}

    def key(m):
        name = m.group(1).replace("-", "_")
        return f'"{name}": true' if name in bools and not m.group(2) else name + m.group(2)
    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)((?: [0-9][^ ,;:)]*)?)", key, message)


def parse_json(raw):
    """The JSON value of a request body (UTF-8, a BOM allowed): NaN, Infinity and numbers too large to be
    finite are refused, and so is nesting deeper than MAX_DEPTH (BadRequest)."""
    import re
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not JSON")
    depth = deepest = 0
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', "", text):        # brackets outside strings
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        raise BadRequest(f"the request body is nested deeper than {MAX_DEPTH} levels")

    def constant(name):
        raise BadRequest(f"{name} is not a JSON number; give a finite number")

    def finite(literal):
        value = float(literal)
        if not math.isfinite(value):
            raise BadRequest(f"{literal[:20]} is too large a number")
        return value
    try:
        return json.loads(text or "{}", parse_constant=constant, parse_float=finite)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not JSON")


# ----------------------------------------------------------------------------------------------------------
# the engine: one thread, batched writes

@dataclasses.dataclass
class Job:
    """One write request (or, with genre "call", a function to run in the worker)."""
    genre: str
    request: object             # requests.Request (or the function)
    rows: list = None           # its candidates' decoding.Row, once it is in a batch
    left: int = 0               # of them still being written
    on_text: object = None      # called from the worker with the first candidate's text so far, None at the end
    told: float = -math.inf     # when on_text was last called
    cancelled: bool = False
    result: object = None
    error: object = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    def finish(self, result=None, error=None):
        """Called once, from the worker: the answer is ready (or the job is over)."""
        self.result, self.error = result, error
        self.done.set()
        self.tell(None)

    def tell(self, text):
        if self.on_text is not None:
            try:
                self.on_text(text)
            except RuntimeError:        # the request's event loop is closed (the server is stopping)
                self.cancelled = True


class Engine:
    """The models, the tables, and the worker thread that runs every model call.

    The worker keeps one decoding.Batch running per (genre, sampling settings): between two of its steps new
    requests join it (up to max_rows rows in all; the rest wait their turn, first come first served), finished
    poems and gone clients' rows leave it, and revise/check calls run. A request is answered as soon as its own
    candidates are done, not when the batch it joined is."""

    def __init__(self, models, device, max_rows=MAX_ROWS, stream_every=STREAM_EVERY, stream_budget=STREAM_BUDGET):
        self.models, self.device, self.max_rows = models, device, max_rows   # models: genre -> (model, itos)
        self.stream_every, self.stream_budget = stream_every, stream_budget
        self.tables = load_tables(strict=False)
        self.tables_cache = {}
        self.queue = queue.Queue()
        self.waiting = collections.deque()         # write jobs not yet in a batch
        self.batches = {}                          # (genre, sampling_key) -> decoding.Batch
        self.members = {}                          # the same key -> the jobs with rows in that batch
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    # called from request handlers --------------------------------------------------------------------

    def write_job(self, body, on_text=None):
        gcfg = write_config(body)
        genre = "ci" if gcfg.cipai and "ci" in self.models else "tang"
        model, itos = self.models[genre]
        gcfg.free = gcfg.free or (genre == "ci" and not gcfg.cipai)
        return Job(genre, requests.make_request(itos, gcfg, self.tables_cache, constraints.reads_formats(model)),
                   on_text=on_text)

    def submit(self, job):
        self.queue.put(job)
        return job

    def call(self, fn):
        """Run fn() in the worker thread (it owns the models) and return its result or raise its error."""
        job = Job("call", fn)
        self.queue.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    # the worker --------------------------------------------------------------------------------------

    def loop(self):
        while True:
            self.take(block=not self.batches and not self.waiting)
            self.admit()
            for key in list(self.batches):
                self.advance(key)

    def take(self, block):
        """Move what arrived to the waiting line (calls run at once); block until something does if idle."""
        jobs = [self.queue.get()] if block else []
        while not self.queue.empty():
            jobs.append(self.queue.get_nowait())
        for job in jobs:
            if job.genre != "call":
                self.waiting.append(job)
                continue
            try:
                job.finish(job.request())
            except Exception as e:           # noqa: BLE001 - handed to the request's thread, which reports it
                job.finish(error=e)

    def admit(self):
        """Start waiting jobs, oldest first, while their rows fit (a job always starts on an idle engine)."""
        while self.waiting:
            job = self.waiting[0]
            busy = sum(len(b.rows) for b in self.batches.values())
            if not job.cancelled and busy and busy + job.request.gcfg.candidates > self.max_rows:
                return
            self.waiting.popleft()
            if job.cancelled:
                job.finish()
            else:
                self.start(job)

    def start(self, job):
        """Add a job's candidates to the batch of its genre and sampling settings."""
        model, itos = self.models[job.genre]
        key = (job.genre, sampling_key(job.request.gcfg))
        try:
            r = requests.rows_of(model, itos, job.request, [0], self.device)
            batch = self.batches.get(key) or decoding.Batch(model, job.request.gcfg, self.device,
                                                            answers=job.request.answers)
            job.rows = batch.add(r.starts, r.specs, r.tables, r.primes, r.streams, tags=[job] * len(r.specs))
            job.left = len(job.rows)
            self.batches[key] = batch
            self.members.setdefault(key, []).append(job)
        except Exception as e:               # noqa: BLE001
            job.finish(error=e)

    def advance(self, key):
        """One step of a batch: gone clients' rows leave, every other row gets its next token."""
        batch, jobs = self.batches[key], self.members[key]
        if any(job.cancelled for job in jobs):
            batch.drop(lambda r: r.tag.cancelled)
            for job in [j for j in jobs if j.cancelled]:
                job.finish()
        try:
            finished = batch.step() if batch.rows else []
        except Exception as e:               # noqa: BLE001 - every request in the batch hears of it
            for job in jobs:
                job.finish(error=e)
            finished, batch.rows = [], []
        for row in finished:
            self.row_done(batch, row)
        jobs[:] = [j for j in jobs if not j.done.is_set()]
        _, itos = self.models[key[0]]
        streams = sum(job.on_text is not None for job in jobs)      # under load the updates would cost more
        every = max(self.stream_every, streams / self.stream_budget)  # than the steps: fewer, longer pieces
        now = time.monotonic()
        for job in jobs:
            if job.on_text is not None and now - job.told >= every:
                job.told = now
                job.tell(dataUtil.decode(job.rows[0].out, itos))
        if not batch.rows:
            del self.batches[key], self.members[key]

    def row_done(self, batch, row):
        """A candidate is written (or failed): its request is answered when it was the last (or at once)."""
        job = row.tag
        if job.done.is_set():
            return
        if row.error is not None:
            batch.drop(lambda r: r.tag is job)
            job.finish(error=row.error)
            return
        job.left -= 1
        if job.left == 0:
            _, itos = self.models[job.genre]
            job.tell(dataUtil.decode(job.rows[0].out, itos))
            job.finish(requests.best_of([dataUtil.decode(r.out, itos) for r in job.rows],
                                        [r.nll / max(r.count, 1) for r in job.rows], job.request.pairs))


def sampling_key(g):
    """The settings pick_next applies to a whole batch: requests that differ in them are batched apart."""
    # pair_bonus and pair_spare are not in WRITE_KEYS (the page's requests all carry the defaults); keyed all the same
    return (g.temperature, g.top_k, g.top_p, g.repetition_penalty, g.greedy, g.max_gen_len, g.pair_bonus,
            g.pair_spare)


def write_config(body):
    """A GenConfig from a write request's JSON object: the generate flags' names as keys."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    unknown = sorted(set(body) - WRITE_KEYS)
    if unknown:
        raise BadRequest(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(WRITE_KEYS))}")
    g = GenConfig(num=1)
    for key, value in body.items():
        default = getattr(g, key)
        if key == "keywords" and isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise BadRequest(f"{key}: true or false, not {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadRequest(f"{key}: a number, not {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise BadRequest(f"{key}: a finite number, not {value!r}")
            if isinstance(default, int) and value != int(value):
                raise BadRequest(f"{key}: a whole number, not {value!r}")
            try:
                value = type(default)(value)
            except OverflowError:
                raise BadRequest(f"{key}: a number this large is out of range")
        if isinstance(default, str) and not isinstance(value, str):
            raise BadRequest(f"{key}: text, not {value!r}")
        setattr(g, key, value)
    try:
        g = check_config(dataclasses.replace(Config(), gen=g)).gen
    except UserError as e:
        raise BadRequest(api_message(str(e)))
    lead = len("".join(g.start.split())) + len("".join(g.prefix.split()))
    if lead > MAX_LEAD:
        raise BadRequest(f"start and prefix hold {lead} characters; at most {MAX_LEAD} together (what one request "
                         "may cost the others)")
    return g


def result_json(best, request):
    g = request.gcfg
    cand = [{"poem": c.text, "score": round(c.score, 4), "terms": c.terms} for c in [best] + best.others]
    return {"poem": best.text, "candidates": cand, "seed": g.seed,
            "settings": {k: getattr(g, k) for k in sorted(WRITE_KEYS)}}


# ----------------------------------------------------------------------------------------------------------
# the app

def make_app(engine):
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def body_of(request):
        """The request's JSON, read MAX_BODY bytes at most however it is sent (a chunked body has no length to
        check first) and within BODY_SECONDS."""
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
        raw = bytearray()

        async def read():
            async for chunk in request.stream():
                raw.extend(chunk)
                if len(raw) > MAX_BODY:
                    raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
        try:
            await asyncio.wait_for(read(), BODY_SECONDS)
        except asyncio.TimeoutError:
            raise BadRequest(f"the request body did not arrive within {BODY_SECONDS:.0f} s", 408)
        return parse_json(bytes(raw))

    def guarded(handler):
        async def run(request):
            try:
                return await handler(request)
            except BadRequest as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except UserError as e:
                return JSONResponse({"error": api_message(str(e))}, status_code=400)
            except Exception as e:       # noqa: BLE001 - never a traceback in a response
                return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)
        return run

    async def wait(job):
        while not job.done.is_set():
            await asyncio.sleep(0.01)
        if job.error is not None:
            raise job.error
        return job.result

    async def write(request):
        job = engine.write_job(await body_of(request))
        engine.submit(job)
        try:
            best = await wait(job)
        finally:
            job.cancelled = True
        return JSONResponse(result_json(best, job.request))

    async def write_stream(request):
        loop = asyncio.get_running_loop()
        updates = asyncio.Queue()
        job = engine.write_job(await body_of(request),
                               on_text=lambda text: loop.call_soon_threadsafe(updates.put_nowait, text))
        start_text = job.request.gcfg.start

        async def events():
            engine.submit(job)
            sent = None
            try:
                if start_text:
                    yield line({"event": "text", "text": convert_chars("".join(start_text.split()))})
                while (text := await updates.get()) is not None:       # None: the job is over
                    if text != sent:
                        sent = text
                        yield line({"event": "text", "text": text})
                if job.error is not None:
                    message = api_message(str(job.error)) if isinstance(job.error, UserError) else "internal error"
                    yield line({"event": "error", "error": message})
                else:
                    yield line({"event": "done", **result_json(job.result, job.request)})
            finally:
                job.cancelled = True             # the client went away, or the poem is done
        return StreamingResponse(events(), media_type="application/x-ndjson")

    async def revise(request):
        body = await body_of(request)
        if not isinstance(body, dict) or "poem" not in body or "line" not in body:
            raise BadRequest("give poem and line")
        settings = {k: v for k, v in body.items() if k not in ("poem", "line", "num", "from", "free")}
        gcfg = write_config(settings)
        line, num = body["line"], body.get("num", 5)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (line, num)) or not 1 <= num <= 20:
            raise BadRequest("line: a line number; num: 1 to 20")
        for key in ("from", "free", "poem"):
            want = str if key == "poem" else bool
            if key in body and not isinstance(body[key], want):
                raise BadRequest(f"{key}: {'text' if want is str else 'true or false'}, not {body[key]!r}")
        genre = "ci" if gcfg.cipai and "ci" in engine.models else "tang"
        model, itos = engine.models[genre]
        text = prosody.normalise(str(body["poem"]), set(itos))
        pieces = workshop.split_poem(text, gcfg.cipai)
        rewritten = len("".join(pieces[line - 1:] if body.get("from") else pieces[line - 1:line])) + 1
        rows = max(4 * num, gcfg.candidates)                 # workshop.revise's candidates
        if rows * rewritten > REVISE_BUDGET:
            fit = REVISE_BUDGET // rewritten // 4
            raise BadRequest(f"rewriting {rewritten - 1} characters with num {num} is more than one request may cost "
                             f"the others ({REVISE_BUDGET} candidate characters); "
                             + (f"ask for num {fit} or fewer" if fit >= 1 and gcfg.candidates * rewritten <=
                                REVISE_BUDGET else "rewrite fewer lines at a time"))
        found = await asyncio.to_thread(engine.call, lambda: workshop.revise(
            model, itos, text, line, gcfg, engine.tables, engine.device, num, bool(body.get("from")),
            bool(body.get("free")), engine.tables_cache))
        return JSONResponse([dataclasses.asdict(r) for r in found])

    async def check(request):
        body = await body_of(request)
        if not isinstance(body, dict) or not isinstance(body.get("poem"), str):
            raise BadRequest("give poem, the text to check")
        text = prosody.normalise(body["poem"])
        ci = workshop.reads_as_ci(text, engine.tables) and "ci" in engine.models
        model, itos = engine.models["ci" if ci else "tang"]
        report = await asyncio.to_thread(engine.call, lambda: workshop.check_poem(
            text, engine.tables, model, itos, engine.device))
        return JSONResponse(report)

    async def cipai(request):
        table = engine.tables.cipai or {}
        return JSONResponse({name: {**entry, "shape": format_cipai(name, entry)}
                             for name, entry in sorted(table.items(), key=lambda kv: -kv[1]["examples"])})

    async def inspect(request):                 # the 看 tab: what the Tang model's cells do
        from studies import lstm_inspect
        body = await body_of(request)
        model, itos = engine.models["tang"]
        return JSONResponse(await asyncio.to_thread(engine.call, lambda: lstm_inspect.page_answer(
            model, itos, body)))

    async def index(request):
        return FileResponse(os.path.join(STATIC, "index.html"))

    async def favicon(request):
        return FileResponse(os.path.join(STATIC, "favicon.svg"), media_type="image/svg+xml")

    async def http_error(request, exc):          # 404, 405 ... in JSON like every other error
        return JSONResponse({"error": f"{exc.status_code} {exc.detail}: {request.method} {request.url.path}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    from starlette.exceptions import HTTPException
    return Starlette(exception_handlers={HTTPException: http_error}, routes=[
        Route("/", index), Route("/favicon.ico", favicon), Route("/api/write", guarded(write), methods=["POST"]),
        Route("/api/write/stream", guarded(write_stream), methods=["POST"]),
        Route("/api/revise", guarded(revise), methods=["POST"]), Route("/api/check", guarded(check), methods=["POST"]),
        Route("/api/cipai", guarded(cipai)), Route("/api/inspect", guarded(inspect), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC))])


def line(obj):
    return json.dumps(obj, ensure_ascii=False) + "\n"


def url_of(host, port):
    """http://HOST:PORT/ with an IPv6 address in brackets (http://[::1]:8000/)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(engine, host, port):
    """Serve until interrupted: Ctrl-C (or SIGTERM) is a KeyboardInterrupt once uvicorn has shut down, so the
    command line says "interrupted" and exits 130."""
    import uvicorn
    print(f"serving on {url_of(host, port)} (Ctrl-C stops)", flush=True)
    srv = uvicorn.Server(uvicorn.Config(make_app(engine), host=host, port=port, log_level="warning"))
    srv.run()
    if srv.should_exit:                        # only a signal sets it here
        raise KeyboardInterrupt

