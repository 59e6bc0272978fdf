"""The web server under load, on 127.0.0.1 only (a figure, not a test):

    python tools/loadtest.py [--clients 20] [--seconds 60] [--rounds 2]

Starts `main.py serve` twice in subprocesses on free local ports — batched (the default) and one request at a
time (--max-batch 8, one request's candidates) — and, in rounds that alternate the two: ten requests one after
another (an idle server: time to the first generated character on the stream, and to a whole default 七言绝句),
then N clients writing default poems (each its own start and seed) as fast as they can for the given time, every
loop bounded by that time. Prints poems/s, p50/p95 latency, errors, and the batched / one-at-a-time ratio of
each round.

    python tools/loadtest.py --fairness [--clients 20] [--seconds 20]

The batched server alone: N - 1 clients writing default poems for the given time, first on their own, then
beside one client sending the costliest request the API admits, again and again (a start of server.MAX_LEAD
characters and 64 candidates): the small requests' p50 / p95 / max latency in both phases, and the costly one's.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTS = "日月山水风花雪春秋夜江云"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(max_batch):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "main.py", "serve", "--port", str(port), "--max-batch", str(max_batch)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):                                   # at most 60 s for the models to load
        try:
            urllib.request.urlopen(url + "/api/cipai", timeout=2).read()
            return proc, url
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stderr.read()[-500:]}")


def stream(url, body, timeout=60, watch=True):
    """(seconds to the first generated character, seconds to the end, ok) of one streamed write. Without
    watch the events are read at the end, all at once (the load phase: the client, on the same CPU as the
    server, then spends little time of its own)."""
    t0 = time.perf_counter()
    req = urllib.request.Request(url + "/api/write/stream", json.dumps(body, ensure_ascii=False).encode(),
                                 {"Content-Type": "application/json"})
    first, ok = None, False
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for raw in r if watch else r.read().splitlines()[-1:]:
            event = json.loads(raw)
            if event["event"] == "text" and first is None and len(event["text"]) > len(body.get("start", "")):
                first = time.perf_counter() - t0
            ok = event["event"] == "done"
    return first, time.perf_counter() - t0, ok


def idle(url, n=10):
    firsts, totals = [], []
    for k in range(n):
        first, total, ok = stream(url, {"start": STARTS[k % len(STARTS)], "form": 7, "lines": 4, "seed": k})
        assert ok
        firsts.append(first)
        totals.append(total)
    return firsts, totals


def load(url, clients, seconds):
    """N client threads for `seconds`: [(latency, ok)]."""
    results, lock, stop_at = [], threading.Lock(), time.perf_counter() + seconds

    def client(c):
        k = 0
        while time.perf_counter() < stop_at:
            body = {"start": STARTS[(c + k) % len(STARTS)], "seed": 1000 * c + k}
            try:
                _, total, ok = stream(url, body, watch=False)
            except (OSError, ValueError) as e:
                total, ok = float("nan"), False
                print(f"  client {c}: {type(e).__name__}", file=sys.stderr)
            with lock:
                results.append((total, ok))
            k += 1
    return results, run_clients(client, clients, seconds + 120)


def maximal(chars=500):
    """The costliest write the API admits: a start of server.MAX_LEAD (500) characters, 64 candidates."""
    return {"start": ("白日依山尽黄河入海流欲穷千里目更上一层楼" * (chars // 20 + 1))[:chars], "candidates": 64}


def fairness(url, clients, seconds, costly_chars=500):
    """Small requests' latencies on their own, then beside one client repeating maximal()."""
    for label, costly in (("small requests alone", False), ("beside the costliest admitted request", True)):
        results, lock, stop_at, big = [], threading.Lock(), time.perf_counter() + seconds, []

        def client(c):
            k = 0
            while time.perf_counter() < stop_at and (costly or c > 0):     # the same N - 1 small clients
                body = maximal(costly_chars) if costly and c == 0 else {"start": STARTS[(c + k) % len(STARTS)],
                                                                "seed": 1000 * c + k}
                try:
                    _, total, ok = stream(url, body, timeout=300, watch=False)
                except (OSError, ValueError) as e:
                    total, ok = float("nan"), False
                    print(f"  client {c}: {type(e).__name__}", file=sys.stderr)
                with lock:
                    (big if costly and c == 0 else results).append((total, ok))
                k += 1
        run_clients(client, clients, seconds + 300)
        ok = [t for t, good in results if good]
        line = (f"fairness, {label}: {clients - 1} clients for {seconds:.0f} s: {len(ok)} poems, latency p50 "
                f"{pct(ok, .5):.2f} s, p95 {pct(ok, .95):.2f} s, max {max(ok, default=float('nan')):.2f} s, "
                f"errors {len(results) - len(ok)}")
        if costly:
            done = [t for t, good in big if good]
            line += f"; the costly request: {len(done)} done, {' '.join(f'{t:.1f}' for t in done)} s each"
        print(line, flush=True)


def run_clients(client, clients, timeout):
    """client(c) for c in range(clients), each on a thread of its own; the seconds until all are done (each
    waited for at most timeout)."""
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return time.perf_counter() - t0


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main(argv):
    parser = argparse.ArgumentParser(prog="tools/loadtest.py", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="client threads writing default poems at once, "
                        "1-200 (default: 20)")
    parser.add_argument("--seconds", type=float, default=60, help="how long the clients write, each round and "
                        "server, 1-600 (default: 60)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both servers, alternating (default: 2)")
    parser.add_argument("--fairness", action="store_true", help="the batched server only: small requests' latency "
                        "alone and beside the costliest request the API admits")
    parser.add_argument("--costly-chars", type=int, default=500, help="--fairness: the costly request's start, in "
                        "characters (default: 500, what the API admits; more to measure an older server)")
    a = parser.parse_args(argv)
    if not 1 <= a.clients <= 200 or not 1 <= a.seconds <= 600 or not 1 <= a.rounds <= 10:
        print("error: --clients 1-200, --seconds 1-600, --rounds 1-10", file=sys.stderr)
        return 2
    if a.fairness:
        proc, url = start_server(256)
        try:
            fairness(url, max(a.clients, 2), a.seconds, a.costly_chars)
        finally:
            proc.terminate()
            proc.wait(10)
        return 0
    servers = {}
    try:
        for label, max_batch in (("batched", 256), ("one at a time", 8)):
            servers[label] = start_server(max_batch)
        ratios = []
        for r in range(1, a.rounds + 1):
            rates = {label: run_round(label, url, a, r) for label, (_, url) in servers.items()}
            ratios.append(rates["batched"] / max(rates["one at a time"], 1e-9))
            print(f"round {r}: batched / one at a time: {ratios[-1]:.2f}x", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    print(f"batched / one at a time over {a.rounds} rounds: {min(ratios):.2f}x to {max(ratios):.2f}x, "
          f"mean {sum(ratios) / len(ratios):.2f}x")
    return 0


def run_round(label, url, a, r):
    """One server's idle figures and load figures; returns its poems/s."""
    firsts, totals = idle(url)
    results, wall = load(url, a.clients, a.seconds)
    ok = [t for t, good in results if good]
    print(f"round {r}, {label}: idle server, 七言绝句: first character p50 {pct(firsts, .5) * 1000:.0f} ms, p95 "
          f"{pct(firsts, .95) * 1000:.0f} ms; whole poem p50 {pct(totals, .5):.2f} s, p95 {pct(totals, .95):.2f} s")
    print(f"round {r}, {label}: {a.clients} clients for {a.seconds:.0f} s: {len(ok)} poems, {len(ok) / wall:.2f} "
          f"poems/s, latency p50 {pct(ok, .5):.2f} s, p95 {pct(ok, .95):.2f} s, errors {len(results) - len(ok)}",
          flush=True)
    return len(ok) / wall


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
