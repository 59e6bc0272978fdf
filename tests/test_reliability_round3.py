"""The third reliability search (docs/reliability.md, cases 67 on): nothing overwritten, nothing cut, nothing read
without bound, no 500, nothing misleading. Each test failed on the code before its fix."""
import io
import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest
import torch

from writing import decoding
from writing import requests
from writing import constraints
from common import fileio
from training import loop
from training import perplexity
from training import checkpoint
from config import Config, GenConfig, UserError
from conftest import ROOT
from test_model_train import run, tiny_cfg
from tests_helpers import TINY_ITOS, tiny_checkpoint
from verse.text import encode_start
from verse.tables import load_cipai_table, load_tables

GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


def py(*argv, timeout=300, **kw):
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, **kw)


def one_line(r, code, says):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and says in lines[0] and "Traceback" not in r.stderr, r.stderr[-800:]


@pytest.fixture
def fifo(tmp_path):
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    return path


@pytest.fixture
def ckpt(tmp_path):
    return tiny_checkpoint(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# nothing overwritten

def test_export_npz_needs_overwrite_and_never_writes_a_device(tmp_path, fifo):
    mine = tmp_path / "mine.npz"
    mine.write_bytes(b"a user's file")
    one_line(py("dataUtil.py", "export-npz", str(mine)), 2, "--overwrite")
    assert mine.read_bytes() == b"a user's file"
    one_line(py("dataUtil.py", "export-npz", fifo, "--overwrite"), 2, "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)                       # still the FIFO, not a regular file


def test_export_never_replaces_a_device_even_with_overwrite(ckpt, fifo):
    one_line(run("export", "--ckpt", ckpt, "--out", fifo, "--overwrite"), 2, "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_atomic_write_refuses_a_non_regular_target(fifo, tmp_path):
    with pytest.raises(UserError, match="not a regular file"):
        fileio.write_text(fifo, "x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["fifo"]


@pytest.mark.parametrize("argv", [["experiment", "init", "--steps", "1"], ["experiment", "optim", "--steps", "1"],
                                  ["experiment", "recipe", "--steps", "1"], ["experiment", "rerank"],
                                  ["experiment", "rhyme"], ["experiment", "keywords"]])
def test_a_study_replaces_the_committed_docs_only_with_overwrite(argv):
    which = argv[1]
    doc = os.path.join(ROOT, "docs", f"{which}_study.md")
    before = open(doc, "rb").read()
    one_line(run(*argv), 2, "--overwrite")                  # refused before any work, the committed file kept
    assert open(doc, "rb").read() == before


def test_a_study_writes_elsewhere_without_overwrite(tmp_path):
    from studies import experiments
    with pytest.raises(UserError, match="figures/init_curves.png exists"):
        experiments.cmd_experiment(["init", "--docs-dir", str(tmp_path)])       # the figures are committed too
    (tmp_path / "init_study.md").write_text("mine")
    with pytest.raises(UserError, match="init_study.md exists"):
        experiments.cmd_experiment(["init", "--docs-dir", str(tmp_path), "--figures-dir", str(tmp_path)])


def test_a_dead_writers_temporary_is_removed_a_live_ones_kept(tmp_path):
    path = tmp_path / "table.json"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = tmp_path / f"table.json.{dead.pid}.tmp", tmp_path / f"table.json.{os.getppid()}.tmp"
    stale.write_text("killed at the rename")
    live.write_text("another process still writing")
    other = tmp_path / "notes.123.tmp"                       # not this file's temporary: never touched
    other.write_text("a user's")
    fileio.write_json(str(path), {"a": 1})
    assert not stale.exists() and live.exists() and other.exists() and json.loads(path.read_text()) == {"a": 1}


def test_an_export_onto_a_full_disk_names_the_target_and_replaces_nothing(tmp_path, ckpt):
    out, table = tmp_path / "out" / "m.pt", tmp_path / "out" / "tones.json"
    out.parent.mkdir()
    table.write_text("the old table")

    def full(tmp):
        with open(tmp, "wb") as f:
            f.write(b"{")
        raise OSError(28, "No space left on device")
    with pytest.raises(checkpoint.SaveFailed, match=f"could not write {table} .*nothing was replaced"):
        checkpoint.export_weights(ckpt, str(out), beside=[(str(table), full)])
    assert not out.exists() and table.read_text() == "the old table" and sorted(os.listdir(out.parent)) == ["tones.json"]


def test_an_unwritable_place_is_exit_1_everywhere(tmp_path):
    raw = os.path.join(ROOT, "tests", "fixtures", "raw")
    r = run("train", "--ckpt-dir", "/proc/run", "--max-steps", "1", "--raw-dir", raw, "--min-freq", "1",
            "--data-dir", str(tmp_path / "d"))                     # the corpus is prepared first, then the run
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: cannot use --ckpt-dir /proc/run")
    one_line(run("train", "--data-dir", "/proc/d", "--max-steps", "1"), 1, "cannot write the corpus into /proc/d")


# ----------------------------------------------------------------------------------------------------------
# nothing read without bound

def test_the_numpy_reader_opens_regular_files_only_and_bounds_their_size(ckpt, fifo, monkeypatch):
    import MyLSTM_np
    for path in ("/dev/zero", fifo):                          # never opened: no memory eaten, no hang
        with pytest.raises(ValueError, match="not a regular file"):
            MyLSTM_np.read_torch_checkpoint(path)
    monkeypatch.setattr(MyLSTM_np, "MAX_CKPT_BYTES", 1000)
    with pytest.raises(ValueError, match="over the"):
        MyLSTM_np.read_torch_checkpoint(ckpt)


def test_a_huge_checkpoint_is_refused_before_it_is_read(ckpt, monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_CKPT_BYTES", 1000)
    with pytest.raises(UserError, match="more than a checkpoint"):
        checkpoint.load_checkpoint(ckpt)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """A uvicorn server on 127.0.0.1 with the tiny model: (host, port)."""
    import uvicorn
    from serve import server
    path = tiny_checkpoint(tmp_path_factory.mktemp("srv"))
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(path), torch.device("cpu"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(server.make_app(server.Engine({"tang": (model, itos)}, torch.device("cpu"))),
                                        host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.1)
    yield "127.0.0.1", port
    srv.should_exit = True
    thread.join(10)


def raw_request(addr, head, chunks, pause=0.0, timeout=30):
    """Send head and then chunks (bytes) on a socket, pausing between them; the status line and seconds taken."""
    t0 = time.monotonic()
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(head)
        try:
            for c in chunks:
                s.sendall(c)
                time.sleep(pause)
        except OSError:                   # the server answered and closed while we were still sending
            pass
        reply = b""
        try:
            while b"\r\n\r\n" not in reply or len(reply.split(b"\r\n\r\n", 1)[1]) < content_length(reply):
                got = s.recv(65536)
                if not got:
                    break
                reply += got
        except ConnectionResetError:
            pass
        reply = reply.decode("latin-1")
    return reply.split("\r\n", 1)[0], reply, time.monotonic() - t0


def content_length(reply):
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return next((int(l.split(":", 1)[1]) for l in head.split("\r\n") if l.startswith("content-length:")), 0)


def test_a_chunked_body_is_bounded_however_it_is_sent(live_server):
    head = (b"POST /api/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"x" * 4096
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 5               # 20 KB of a body that has no end yet
    status, reply, took = raw_request(live_server, head, chunks, timeout=10)    # read to its end, it would hang
    assert " 413 " in status and "over 16384 bytes" in reply and took < 10, reply[:300]


def test_a_body_that_never_arrives_is_answered_408(live_server, monkeypatch):
    from serve import server
    monkeypatch.setattr(server, "BODY_SECONDS", 1.0)
    head = b"POST /api/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    status, reply, took = raw_request(live_server, head, [b'{"start": '])
    assert " 408 " in status and "did not arrive" in reply and took < 10, (status, took)


# ----------------------------------------------------------------------------------------------------------
# silent corruption

def damaged(path, tmp_path):
    """A copy of the checkpoint with bytes of a tensor's storage zeroed (its CRC no longer holds)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(open(path, "rb").read())
    name_len, extra_len = np.frombuffer(bytes(data[info.header_offset + 26:info.header_offset + 30]), "<u2")
    at = info.header_offset + 30 + int(name_len) + int(extra_len) + 8              # inside the member's bytes
    data[at:at + 16] = bytes(16)
    out = tmp_path / "damaged.pt"
    out.write_bytes(bytes(data))
    return str(out)


def nonfinite(path, tmp_path, value):
    ck = torch.load(path, weights_only=True)
    name = next(k for k, v in ck["model"].items() if v.is_floating_point())
    ck["model"][name].view(-1)[0] = value
    out = tmp_path / "nan.pt"
    torch.save(ck, out)
    return str(out)


@pytest.mark.parametrize("how", ["crc", "nan", "inf"])
def test_a_damaged_or_nonfinite_checkpoint_is_refused_by_both_readers(ckpt, tmp_path, how):
    import MyLSTM_np
    bad = damaged(ckpt, tmp_path) if how == "crc" else nonfinite(ckpt, tmp_path, math.nan if how == "nan" else math.inf)
    with pytest.raises(UserError, match="damaged"):
        checkpoint.load_checkpoint(bad)
    with pytest.raises(ValueError, match="CRC|NaN or infinite"):
        MyLSTM_np.NumpyLM.from_checkpoint(bad)
    if how == "nan":
        ck = torch.load(bad, weights_only=True)
        with pytest.raises(UserError, match="NaN or infinite"):
            checkpoint.model_from_checkpoint(ck, torch.device("cpu"))
        one_line(run("evaluate", "--ckpt", bad), 2, "damaged")           # never "perplexity nan" with rc 0


# ----------------------------------------------------------------------------------------------------------
# never cut silently

@pytest.fixture(scope="module")
def tang():
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(
        os.path.join(ROOT, "pretrained", "tang.pt")), torch.device("cpu"))
    return model, itos


def test_a_28_head_acrostic_is_written_whole(tang):
    model, itos = tang
    heads = "春夏秋冬风花雪月山高水长日月星辰江河湖海东南西北天地玄黄"
    g = GenConfig(acrostic=heads, form=7, candidates=1)
    poem = next(requests.iter_poems(model, itos, g, torch.device("cpu"))).text
    lines = [l for l in poem.replace("。", "，").split("，") if l]
    assert len(lines) == 28 and all(len(l) == 7 and l[0] == h for l, h in zip(lines, heads)), poem


def test_a_free_acrostic_line_ends_by_head_line():
    t = constraints.Masks(TINY_ITOS)
    a = constraints.Automaton(constraints.Spec(heads="一丁"), t)
    for tok in [t.stoi["一"]] + [t.stoi["丁"]] * (constraints.HEAD_LINE - 1):
        a.advance(tok)
    assert a.pos == constraints.HEAD_LINE and set(np.flatnonzero(a.allowed())) == {t.stoi["，"], t.stoi["。"]}
    assert constraints.form_length(constraints.Spec(heads="一丁")) == 2 * (constraints.HEAD_LINE + 1)


def test_a_drawn_form_fits_max_gen_len_and_an_asked_form_grows_it(tang):
    model, itos = tang
    req = requests.make_request(itos, GenConfig(start="日", max_gen_len=30), told=constraints.reads_formats(model))
    assert req.forms and all(f[1] * (f[0] + 1) - 1 < 30 for f in req.forms)          # 2-line forms and 五言绝句
    req = requests.make_request(itos, GenConfig(start="日", form=7, lines=8, max_gen_len=30))
    assert req.gcfg.max_gen_len == 64 - 1 + 1


def test_revise_from_line_1_of_a_long_poem_writes_it_whole(tang):
    from writing import workshop
    model, itos = tang
    paili = "".join(next(requests.iter_poems(model, itos, GenConfig(start=ch, form=7, lines=8, seed=k),
                                             torch.device("cpu"))).text for k, ch in enumerate("春夏秋冬"))
    assert len(paili) == 256                                            # a 七言排律 of 32 lines
    g = GenConfig(candidates=1)
    found = workshop.revise(model, itos, paili, 1, g, load_tables(strict=False), torch.device("cpu"), 1, True)
    assert len(found[0].poem) == 256 and found[0].poem.endswith("。"), found[0].poem


# ----------------------------------------------------------------------------------------------------------
# no 500: the API

@pytest.fixture(scope="module")
def client():
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient
    from serve import server
    from tests_helpers import shipped_models
    return TestClient(server.make_app(server.Engine(shipped_models(), torch.device("cpu"))))


@pytest.mark.parametrize("raw,says", [('{"start": "日", "seed": NaN}', "NaN is not a JSON number"),
                                      ('{"start": "日", "seed": Infinity}', "Infinity is not a JSON number"),
                                      ('{"start": "日", "candidates": -Infinity}', "-Infinity is not a JSON number"),
                                      ('{"start": "日", "seed": 1e400}', "too large"),
                                      ('{"start": "日", "temperature": 1' + "0" * 400 + '}', "out of range"),
                                      ('{"start": "日", "free": "false"}', "free: true or false"),
                                      ('{"start": "日", "form": 6}', "form 6 is not one of"),
                                      ("[" * 8000 + "]" * 8000, "nested deeper"),
                                      ('{"start": "日", "keywords": [[[[[[[[["x"]]]]]]]]]}', "nested deeper")])
def test_bad_api_numbers_booleans_and_nesting_are_a_400_in_api_words(client, raw, says):
    r = client.post("/api/write", content=raw.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and says in r.json()["error"] and "--" not in r.json()["error"], r.text


@pytest.mark.parametrize("body,says", [({"poem": GUANQUE, "line": 1, "free": "false"}, "free: true or false"),
                                       ({"poem": GUANQUE, "line": 1, "from": 1}, "from: true or false"),
                                       ({"poem": GUANQUE, "line": True}, "line: a line number"),
                                       ({"poem": GUANQUE, "line": 9}, "line 9: the poem has 4 lines")])
def test_revise_takes_json_booleans_and_whole_numbers_only(client, body, says):
    r = client.post("/api/revise", json=body)
    assert r.status_code == 400 and says in r.json()["error"] and "--" not in r.json()["error"], r.text


def test_404_405_and_the_favicon_are_answered(client):
    r = client.get("/nothing/here")
    assert r.status_code == 404 and "404" in r.json()["error"]
    r = client.get("/api/write")
    assert r.status_code == 405 and "405" in r.json()["error"]
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml") and b"<svg" in r.content
    assert 'rel="icon"' in client.get("/").text


def test_admission_limits_bound_what_one_request_costs(client):
    from serve import server
    r = client.post("/api/write", json={"start": "日" * 300, "prefix": "月" * 300, "candidates": 64})
    assert r.status_code == 400 and f"at most {server.MAX_LEAD}" in r.json()["error"]
    long = "".join(GUANQUE for _ in range(12))                           # 48 lines, 288 characters
    r = client.post("/api/revise", json={"poem": long, "line": 1, "from": True, "num": 20})
    assert r.status_code == 400 and "num 3 or fewer" in r.json()["error"], r.text


# ----------------------------------------------------------------------------------------------------------
# fairness: a shared lead is read once

class Recording(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.widths, self.cfg = inner, [], getattr(inner, "cfg", None)

    def forward(self, tokens, state=None, *extra):
        self.widths.append(tuple(tokens.shape))
        return self.inner(tokens, state, *extra)


def test_a_shared_prefix_is_read_once_for_all_rows_with_the_same_poems(ckpt):
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(ckpt), torch.device("cpu"))
    rec = Recording(model)
    prime = [TINY_ITOS.index("丁")] * 300
    g = GenConfig(max_gen_len=5)
    streams = [torch.Generator().manual_seed(k) for k in range(16)]
    decoding.LEAD_CACHE.clear()
    texts, _ = decoding.sample_scored(rec, itos, [[6]] * 16, g, "cpu", streams, None, tables=None, primes=[prime] * 16)
    reads = [w for w in rec.widths if w[0] > 1]
    assert sum(t for t, _ in reads) <= 302 and all(b == 1 for t, b in reads if t > 1), rec.widths   # once, width 1
    rec.widths.clear()
    again, _ = decoding.sample_scored(rec, itos, [[6]] * 16, g, "cpu", [torch.Generator().manual_seed(k)
                                                                          for k in range(16)], None, primes=[prime] * 16)
    assert again == texts and all(t == 1 for t, _ in rec.widths)       # the next batch reuses the reading
    for b in (0, 7):                                                   # each row as if it had been alone
        alone, _ = decoding.sample_scored(model, itos, [[6]], g, "cpu", [torch.Generator().manual_seed(b)], None,
                                          primes=[prime])
        assert alone[0] == texts[b]


# ----------------------------------------------------------------------------------------------------------
# still open from round two

def test_dev_frac_0_is_refused_in_one_line(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=2)
    cfg.data.dev_frac = 0.0
    with pytest.raises(UserError, match="the dev split is empty"):
        loop.train(cfg)
    with pytest.raises(UserError, match="no poems to evaluate"):
        perplexity.evaluate(None, [], 0, 4, "cpu")


def test_a_cipai_table_whose_counts_are_text_is_refused(tmp_path):
    import dataUtil
    table = json.load(open(os.path.join(ROOT, "pretrained", "cipai.json"), encoding="utf-8"))
    name = next(iter(table))
    table[name]["examples"] = str(table[name]["examples"])
    path = tmp_path / "cipai.json"
    path.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
    assert load_cipai_table(str(path)) is None                  # then the shipped table, with a warning


# ----------------------------------------------------------------------------------------------------------
# misleading

class Stdin:
    def __init__(self, data):
        self.buffer = io.BytesIO(data)

    def isatty(self):
        return False


def test_stdin_over_the_limit_is_said_so_and_a_bom_is_read(monkeypatch):
    import main
    monkeypatch.setattr(sys, "stdin", Stdin(("白" * 100_000).encode()))
    with pytest.raises(UserError, match="holds over 100000 bytes"):
        main.read_stdin()
    monkeypatch.setattr(sys, "stdin", Stdin(b"\xef\xbb\xbf" + GUANQUE.encode()))
    assert main.read_stdin() == GUANQUE


def test_a_colon_ends_a_line_for_revise_as_for_check(tang):
    from writing import workshop
    model, itos = tang
    poem = GUANQUE.replace("，", "：", 1)
    assert workshop.check_request(poem, 2, GenConfig(), load_tables(strict=False)) == \
        ["白日依山尽：", "黄河入海流。", "欲穷千里目，", "更上一层楼。"]
    found = workshop.revise(model, itos, poem, 2, GenConfig(candidates=1), load_tables(strict=False), "cpu", 1)
    assert found[0].poem.startswith("白日依山尽：") and found[0].poem.endswith("欲穷千里目，更上一层楼。")
    assert len(found[0].new) == 6 and found[0].new[-1] == "。"


def test_a_start_opening_with_a_mark_is_refused():
    import dataUtil
    with pytest.raises(UserError, match="opens with '，'.*give '日'"):
        encode_start("，日", TINY_ITOS + ["日"])


def test_evaluate_never_creates_a_data_dir_given_explicitly(tmp_path):
    missing = tmp_path / "nonexistent"
    one_line(run("evaluate", "--data-dir", str(missing)), 2, "is not a folder")
    assert not missing.exists()


def test_traditional_acrostic_heads_are_converted_like_the_start():
    assert constraints.spec_from(GenConfig(acrostic="齊龍風雲", form=5)).heads == "齐龙风云"


def test_serve_ctrl_c_is_one_line_and_130(ckpt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "main.py", "serve", "--port", str(port), "--ckpt", ckpt, "--ci-ckpt", ckpt],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = ""
    while "serving on" not in line:
        line = p.stdout.readline()
        assert line or p.poll() is None, p.stderr.read()
    assert f"http://127.0.0.1:{port}/" in line
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", err


def test_an_ipv6_host_is_printed_in_brackets():
    from serve import server
    assert server.url_of("::", 8790) == "http://[::]:8790/" and server.url_of("127.0.0.1", 80) == "http://127.0.0.1:80/"


# ----------------------------------------------------------------------------------------------------------
# help

@pytest.mark.parametrize("argv,has,lacks", [
    (["MyLSTM_np.py", "test", "--help"], "gradient checks", "PASS"),
    (["MyLSTM_np.py", "bench", "--help"], "forward + backward", "nn.LSTM  "),
    (["benchmark.py", "train", "--help"], "--variants", "VARIANT STEPS"),
    (["benchmark.py", "lstm", "--help"], "NumPy", "--variants"),
    (["tools/loadtest.py", "--help"], "client threads", "@@"),
    (["main.py", "--help"], "serve       the web page", "training.py"),
    (["main.py", "experiment", "init", "--help"], "initialisation study", "--dropout-at"),
    (["main.py", "experiment", "optim", "--help"], "optimiser study", "--optimizer "),
    (["main.py", "experiment", "recipe", "--help"], "recipe study", "--resume"),
    (["main.py", "generate", "--help"], "generation:", "gen:"),
])
def test_help_says_what_a_command_does_and_runs_nothing(argv, has, lacks):
    r = py(*argv, timeout=60)
    assert r.returncode == 0 and has in r.stdout and lacks not in r.stdout and not r.stderr.strip(), r.stdout[-600:]
    assert "(default: False)" not in r.stdout and "form) (default" not in r.stdout


def test_the_experiment_help_shows_the_studys_own_defaults():
    r = py("main.py", "experiment", "init", "--help", timeout=60)
    assert "LSTM width H (default: 128)" in r.stdout and "--overwrite" in r.stdout
