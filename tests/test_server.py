"""The web API in-process (Starlette's test client, the shipped models): every endpoint, each bad input, and
batching that changes no poem."""
import json
import math
import threading

import pytest
import torch

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from writing import decoding  # noqa: E402
from writing import requests
from serve import server  # noqa: E402
from config import GenConfig  # noqa: E402
from tests_helpers import shipped_models  # noqa: E402

GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


@pytest.fixture(scope="module")
def engine():
    return server.Engine(shipped_models(), torch.device("cpu"))


@pytest.fixture(scope="module")
def client(engine):
    return TestClient(server.make_app(engine))


def cli_poem(cache={}, **settings):
    """What `generate` writes for these settings (poem 0), from a model loaded apart from the server's."""
    if "tang" not in cache:
        cache["tang"] = shipped_models()["tang"]
    model, itos = cache["tang"]
    g = GenConfig(num=1, **settings)
    return next(requests.iter_poems(model, itos, g, torch.device("cpu"))).text


def test_write_is_the_command_lines_poem(client):
    r = client.post("/api/write", json={"start": "日", "form": 7, "lines": 4, "rhyme": True, "seed": 3})
    assert r.status_code == 200
    data = r.json()
    assert data["poem"] == data["candidates"][0]["poem"] == cli_poem(start="日", form=7, lines=4, rhyme=True, seed=3)
    assert len(data["candidates"]) == 8 and data["settings"]["seed"] == 3


def test_concurrent_writes_are_batched_and_unchanged(engine):
    settings = [{"start": "日"}, {"start": "春风", "form": 5, "lines": 4}, {"start": "山", "keywords": "月"},
                {"acrostic": "春夏秋冬", "form": 7, "rhyme": True}]
    jobs = [engine.write_job(dict(s)) for s in settings]
    engine.queue.put(server.Job("call", lambda: __import__("time").sleep(0.5)))   # hold the worker...
    for job in jobs:                                                                 # ...so these queue up
        engine.submit(job)
    for job in jobs:
        job.done.wait(60)
    for s, job in zip(settings, jobs):
        assert job.error is None and job.result.text == cli_poem(**s), s


def test_a_request_joins_a_running_batch_and_leaves_when_done(engine, monkeypatch):
    """Continuous batching: a short poem asked for while a long one is being written joins its batch between
    two steps and is answered before the long one ends; neither poem changes."""
    monkeypatch.setattr(engine, "stream_every", 0.0)          # on_text at every step, however fast the machine
    monkeypatch.setattr(engine, "stream_budget", math.inf)
    long_s, short_s = {"start": "江", "form": 7, "lines": 8, "seed": 5}, {"start": "月", "form": 5, "lines": 4}
    joined = threading.Event()
    short = engine.write_job(dict(short_s))

    def on_text(text):                        # the worker calls this between steps
        if text and len(text) >= 10 and not joined.is_set():
            joined.set()
            engine.submit(short)
    long = engine.write_job(dict(long_s), on_text=on_text)
    engine.submit(long)
    assert short.done.wait(60) and not long.done.is_set()
    assert long.done.wait(60)
    assert short.error is None and short.result.text == cli_poem(**short_s)
    assert long.error is None and long.result.text == cli_poem(**long_s)


def test_a_bf16_server_writes_generate_precision_bf16s_poems():
    """serve --precision bf16 (auto on a CPU with native bfloat16): the poems of `generate --precision bf16`,
    alone and batched with others."""
    models = shipped_models()
    for model, _ in models.values():
        model.precision = "bf16"
    engine = server.Engine(models, torch.device("cpu"))
    settings = [{"start": "日", "seed": 2}, {"start": "春风", "form": 5, "lines": 4}, {"acrostic": "春夏秋冬", "form": 7}]
    jobs = [engine.write_job(dict(s)) for s in settings]
    engine.queue.put(server.Job("call", lambda: __import__("time").sleep(0.5)))
    for job in jobs:
        engine.submit(job)
    model, itos = models["tang"]
    for s, job in zip(settings, jobs):
        assert job.done.wait(60) and job.error is None
        alone = next(requests.iter_poems(model, itos, GenConfig(num=1, **s), torch.device("cpu"))).text
        assert job.result.text == alone, s


@pytest.mark.parametrize("every", [0.0, 60.0])
def test_stream_sends_the_poem_as_it_is_written(client, engine, monkeypatch, every):
    """Every step's text (stream_every 0), or at most one update per stream_every: the start, the first step's,
    the whole poem's."""
    monkeypatch.setattr(engine, "stream_every", every)
    monkeypatch.setattr(engine, "stream_budget", math.inf)
    with client.stream("POST", "/api/write/stream", json={"start": "日", "form": 5, "lines": 4}) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    texts = [e["text"] for e in events if e["event"] == "text"]          # the first candidate as it is written
    done = events[-1]
    assert done["event"] == "done" and done["poem"] == cli_poem(start="日", form=5, lines=4)
    assert texts[0] == "日" and texts[-1] in [c["poem"] for c in done["candidates"]]
    assert all(b.startswith(a[:-1]) for a, b in zip(texts, texts[1:]))
    assert len(texts) > 10 if every == 0 else len(texts) == 3 and len(texts[1]) == 2


@pytest.mark.parametrize("budget", [math.inf, 4.0])
def test_streamed_updates_share_a_budget(engine, monkeypatch, budget):
    """Four streams at once with a budget of 4 updates a second in all: one update a second each at most
    (the first step's text, then the whole poem); without a budget, every step's."""
    monkeypatch.setattr(engine, "stream_every", 0.0)
    monkeypatch.setattr(engine, "stream_budget", budget)
    seen = [[] for _ in range(4)]
    jobs = [engine.write_job({"start": "日", "form": 5, "lines": 4, "seed": k}, on_text=seen[k].append)
            for k in range(4)]
    engine.queue.put(server.Job("call", lambda: __import__("time").sleep(0.3)))     # so that they start together
    for job in jobs:
        engine.submit(job)
    started = __import__("time").monotonic()
    assert all(job.done.wait(60) for job in jobs)
    took = __import__("time").monotonic() - started
    for texts in seen:
        texts = [t for t in texts if t is not None]
        if budget == math.inf:
            assert len(texts) > 10
        else:
            assert len(texts) <= 2 + took, texts


def test_revise_check_and_cipai(client):
    r = client.post("/api/revise", json={"poem": GUANQUE, "line": 3, "num": 3})
    assert r.status_code == 200 and len(r.json()) == 3
    assert all(c["poem"].endswith("更上一层楼。") and {"poem", "score"} <= set(c) for c in r.json())
    r = client.post("/api/check", json={"poem": GUANQUE.replace("黄河", "黄水")})
    assert r.status_code == 200
    assert {(v["rule"], v["line"], v["char"]) for v in r.json()["violations"]} == {("对", 2, 2)}    # 水 仄 like 日
    table = client.get("/api/cipai").json()
    assert "浣溪沙" in table and table["浣溪沙"]["shape"].startswith("浣溪沙  7。7。7。")


@pytest.mark.parametrize("url,body,status,message", [
    ("/api/write", {"cipai": "不存在"}, 400, "not a known 词牌"),
    ("/api/write", {"start": "<script>alert(1)</script>"}, 400, "not Chinese"),
    ("/api/write", {"start": "𠀀"}, 400, "not in the vocabulary"),
    ("/api/write", {"start": "日", "temperature": -1}, 400, "temperature"),
    ("/api/write", {"start": "日", "candidates": 1000}, 400, "candidates"),
    ("/api/write", {"start": "日", "seed": "x"}, 400, "a number"),
    ("/api/write", {"start": "日", "bogus": 1}, 400, "unknown setting"),
    ("/api/write", [1], 400, "JSON object"),
    ("/api/write", {"start": "日" * 20000}, 413, "over"),
    ("/api/check", {"poem": "<b>x</b>"}, 400, "neither a Chinese"),
    ("/api/check", {}, 400, "give poem"),
    ("/api/revise", {"poem": GUANQUE, "line": 9}, 400, "has 4 lines"),
    ("/api/revise", {"poem": GUANQUE, "line": 1, "num": 99}, 400, "num"),
])
def test_bad_input_is_a_4xx_with_one_line(client, url, body, status, message):
    r = client.post(url, json=body)
    assert r.status_code == status and message in r.json()["error"] and "\n" not in r.json()["error"], r.text
    assert "Traceback" not in r.text


def test_not_json_and_page(client):
    r = client.post("/api/write", content=b"\xff\xfe not json")
    assert r.status_code == 400 and r.json()["error"] == "the request body is not JSON"
    page = client.get("/")
    assert page.status_code == 200 and "<script src=\"/static/app.js\">" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_a_client_gone_stops_its_rows(client, engine, monkeypatch):
    made = []
    original = engine.write_job

    def spy(*args, **kw):
        made.append(original(*args, **kw))
        return made[-1]
    monkeypatch.setattr(engine, "write_job", spy)
    with client.stream("POST", "/api/write/stream", json={"start": "日", "form": 7, "lines": 8}) as r:
        next(r.iter_lines())                                   # the start, then the client goes away
    job = made[0]
    assert job.cancelled
    job.done.wait(60)
    assert job.result is None or len(job.result.text) < 64     # stopped before the whole 律诗 (64 characters)
