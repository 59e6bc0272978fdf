"""The web page and its JSON API (`python main.py serve`): write, revise and check poems in a browser.

Starlette on uvicorn: the smallest well-kept ASGI stack that has what this needs (streamed responses, static
files, an in-process test client) without a validation layer of its own — the requests are checked by the
same code as the command line's flags (config.check_config, decoding.spec_from, prosody.normalise), so a
bad value gets the same one-line message in both.

One worker thread owns the models. Write requests that arrive while it is busy wait in a queue and are then
generated together as one batch through the model (every request keeps its own constraints, random streams
and candidates: decoding.sample_scored takes them per row), so twenty clients cost little more than one. A
client that goes away has its rows stopped at the next step. Revise and check run in the same thread, one at a
time, between batches.

    GET  /                  the page (static/)
    POST /api/write         {"start": "日", "form": 7, "lines": 4, "rhyme": true, ...} -> {poem, candidates}
    POST /api/write/stream  the same, as lines of JSON: {"event": "text", "text": ...} as it is written, then
                            {"event": "done", ...} (or {"event": "error", "error": ...})
    POST /api/revise        {"poem": ..., "line": 3, "num": 5} -> [{poem, new, score, nll}, ...]
    POST /api/check         {"poem": ...} -> the check report
    GET  /api/cipai         the 词牌 table
"""
import asyncio
import dataclasses
import json
import os
import queue
import threading

import dataUtil
import decoding
import prosody
import workshop
from config import Config, GenConfig, UserError, check_config

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
MAX_BODY = 16_384                 # bytes of a request body
MAX_ROWS = 256                    # candidate rows generated together at most
WRITE_KEYS = {"start", "keywords", "acrostic", "form", "lines", "rhyme", "tones", "cipai", "temperature", "seed",
              "candidates", "rhyme_system", "rhyme_tone", "tone_system", "top_k", "top_p", "prefix", "free",
              "repetition_penalty"}


class BadRequest(Exception):
    """A request the user can fix: 400 (or the status given) with a one-line message."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------------------
# the engine: one thread, batched writes

@dataclasses.dataclass
class Job:
    """One write request in the queue."""
    genre: str
    request: object             # decoding.Request
    rows: object = None         # decoding.Rows, built in the worker
    on_text: object = None      # called from the worker with the first candidate's text so far
    cancelled: bool = False
    result: object = None
    error: object = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class Engine:
    """The models, the tables, and the worker thread that runs every model call."""

    def __init__(self, models, device, max_rows=MAX_ROWS):
        self.models, self.device, self.max_rows = models, device, max_rows   # models: genre -> (model, itos)
        self.tables = workshop.load_tables()
        self.tables_cache = {}
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    # called from request handlers --------------------------------------------------------------------

    def write_job(self, body, on_text=None):
        gcfg = write_config(body)
        genre = "ci" if gcfg.cipai and "ci" in self.models else "tang"
        _, itos = self.models[genre]
        gcfg.free = gcfg.free or (genre == "ci" and not gcfg.cipai)
        return Job(genre, decoding.make_request(itos, gcfg, self.tables_cache), on_text=on_text)

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
            jobs = [self.queue.get()]
            while not self.queue.empty() and sum(j.request.gcfg.candidates for j in jobs if j.genre != "call") \
                    < self.max_rows:
                jobs.append(self.queue.get_nowait())
            for job in [j for j in jobs if j.genre == "call"]:
                self.run_call(job)
            groups = {}
            for j in jobs:
                if j.genre != "call" and not j.cancelled:
                    groups.setdefault((j.genre, sampling_key(j.request.gcfg)), []).append(j)
            for (genre, _), batch in groups.items():
                self.run_batch(genre, batch)
            for job in jobs:
                job.done.set()

    def run_call(self, job):
        try:
            job.result = job.request()
        except Exception as e:           # noqa: BLE001 - handed to the request's thread, which reports it
            job.error = e

    def run_batch(self, genre, jobs):
        """Every job's candidates as one batch; each job gets the best of its own."""
        model, itos = self.models[genre]
        ready = []
        for job in jobs:
            try:
                job.rows = decoding.rows_of(model, itos, job.request, [0], self.device)
                ready.append(job)
            except Exception as e:       # noqa: BLE001
                job.error = e
        if not ready:
            return
        owner = [(job, j) for job in ready for j in range(len(job.rows.specs))]     # row b -> (job, candidate)

        def joined(field):
            return [x for job in ready for x in getattr(job.rows, field)]

        def on_step(out, done):
            for b, (job, j) in enumerate(owner):
                if job.cancelled:
                    done[b] = True
                elif j == 0 and job.on_text is not None:
                    job.on_text(dataUtil.decode(out[b], itos))
        gcfg = ready[0].request.gcfg
        try:
            texts, nlls = decoding.sample_scored(model, itos, joined("starts"), gcfg, self.device, joined("streams"),
                                                 joined("specs"), tables=joined("tables"), primes=joined("primes"),
                                                 on_step=on_step)
        except Exception as e:           # noqa: BLE001
            for job in ready:
                job.error = e
            return
        k = 0
        for job in ready:
            n = len(job.rows.specs)
            job.result = decoding.best_of(texts[k:k + n], nlls[k:k + n])
            k += n


def sampling_key(g):
    """The settings pick_next applies to a whole batch: requests that differ in them are batched apart."""
    return (g.temperature, g.top_k, g.top_p, g.repetition_penalty, g.greedy, g.max_gen_len)


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
            if isinstance(default, int) and value != int(value):
                raise BadRequest(f"{key}: a whole number, not {value!r}")
            value = type(default)(value)
        if isinstance(default, str) and not isinstance(value, str):
            raise BadRequest(f"{key}: text, not {value!r}")
        setattr(g, key, value)
    return check_config(dataclasses.replace(Config(), gen=g)).gen


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
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
        try:
            return json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("the request body is not JSON")

    def guarded(handler):
        async def run(request):
            try:
                return await handler(request)
            except BadRequest as e:
                return JSONResponse({"error": str(e)}, status_code=e.status)
            except UserError as e:
                return JSONResponse({"error": str(e)}, status_code=400)
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
                    yield line({"event": "text", "text": dataUtil.convert_chars("".join(start_text.split()))})
                while not job.done.is_set() or not updates.empty():
                    try:
                        text = await asyncio.wait_for(updates.get(), 0.05)
                    except asyncio.TimeoutError:
                        continue
                    if text != sent:
                        sent = text
                        yield line({"event": "text", "text": text})
                if job.error is not None:
                    message = str(job.error) if isinstance(job.error, UserError) else "internal error"
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
        if not isinstance(line, int) or not isinstance(num, int) or not 1 <= num <= 20:
            raise BadRequest("line: a line number; num: 1 to 20")
        genre = "ci" if gcfg.cipai and "ci" in engine.models else "tang"
        model, itos = engine.models[genre]
        text = prosody.normalise(str(body["poem"]), set(itos))
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
        return JSONResponse({name: {**entry, "shape": decoding.format_cipai(name, entry)}
                             for name, entry in sorted(table.items(), key=lambda kv: -kv[1]["examples"])})

    async def index(request):
        return FileResponse(os.path.join(STATIC, "index.html"))

    return Starlette(routes=[
        Route("/", index), Route("/api/write", guarded(write), methods=["POST"]),
        Route("/api/write/stream", guarded(write_stream), methods=["POST"]),
        Route("/api/revise", guarded(revise), methods=["POST"]), Route("/api/check", guarded(check), methods=["POST"]),
        Route("/api/cipai", guarded(cipai)), Mount("/static", StaticFiles(directory=STATIC))])


def line(obj):
    return json.dumps(obj, ensure_ascii=False) + "\n"


def serve(engine, host, port):
    """Serve until interrupted."""
    import uvicorn
    print(f"serving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(make_app(engine), host=host, port=port, log_level="warning")

