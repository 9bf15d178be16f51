#!/usr/bin/env python3
"""Storage-engine microbenchmarks: Flowstate's native Table against a Python
dict of tuples and sqlite3 (:memory:), measured in the same run.

Everything is driven from a Python loop, one call per row operation, the way
a stored procedure uses a table. Each system gets the same data (fixed seeds)
and the same loop shape; results are checked against each other before
anything is timed, so a fast wrong answer cannot pass.

    1. lookup     primary-key lookup returning a row (random keys, all hits)
    2. insert     insert with a BIGINT primary key, one non-unique secondary
                  index on an INTEGER column, undo on (commit every 1,000)
    3. range      ordered-index range scan of 100 rows from a random start
    4. aggregate  SUM(x) over every row, by scan() in a Python loop and by
                  column_array().sum() (numpy)
    5. memory     bytes per row of the Voter `votes` table with its two
                  materialized views, as process RSS growth; one fresh
                  subprocess per system (``--only memory-flowstate`` etc.)

Timing: time.perf_counter; one warm-up run, then best of three runs of at
least --min-time seconds each. The cyclic garbage collector is off while a
run is timed (as timeit does), for every system alike.

Run ``python bench/storage_bench.py --help``; bench/README.md says more.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import datetime
import gc
import itertools
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from machine import cpu_model, git_revision, load_average

REPO = Path(__file__).resolve().parent.parent
try:
    from flowstate.types import Column, ColumnType
except ImportError:          # not installed: run from a checkout
    sys.path.insert(0, str(REPO))
    from flowstate.types import Column, ColumnType

perf_counter = time.perf_counter

BENCHMARKS = ("lookup", "insert", "range", "aggregate", "memory")
MEMORY_SYSTEMS = ("flowstate", "dict")
COMMIT_EVERY = 1_000          # inserts per transaction in the insert benchmark
RANGE_ROWS = 100              # rows per range scan
VOTE_CHUNK = 100_000          # votes generated per batch in the memory run

# Targets from the storage-engine issue: (kind, bound). "ratio" is
# flowstate/dict throughput (at least), "bytes" is bytes per row (at most).
TARGETS = {
    "lookup": ("ratio", 0.50),
    "insert": ("ratio", 0.40),
    "memory": ("bytes", 64.0),
}


# ---------------------------------------------------------------- engine

def load_engine():
    """(Store class, None) or (None, why it cannot be imported)."""
    try:
        from flowstate.native.storage import Store
    except Exception as exc:            # ImportError, or a broken build
        return None, f"{type(exc).__name__}: {exc}"
    return Store, None


# ---------------------------------------------------------------- timing

def best_rate(step, items, min_time):
    """Items per second of ``step(batch)``, which does one operation per item
    of ``batch``: best of three timed runs.

    A warm-up call on the first 2,000 items sizes the runs: each timed run
    goes through ``items`` (cycling if it must) for at least ``min_time``
    seconds' worth of operations.
    """
    gc.collect()
    gc.disable()
    try:
        probe = items[:2000]
        t0 = perf_counter()
        step(probe)
        per_op = (perf_counter() - t0) / len(probe)
        total = max(len(probe), math.ceil(1.2 * min_time / max(per_op, 1e-9)))
        whole, rest = divmod(total, len(items))
        batches = [items] * whole + ([items[:rest]] if rest else [])
        for batch in batches:            # warm-up: one untimed run
            step(batch)
        best = math.inf
        for _ in range(3):
            t0 = perf_counter()
            for batch in batches:
                step(batch)
            best = min(best, perf_counter() - t0)
    finally:
        gc.enable()
    return total / best


def best_time(fn, min_time):
    """Seconds per call of ``fn()``: one warm-up call, then best of three runs
    of enough calls to last at least ``min_time`` seconds."""
    gc.collect()
    gc.disable()
    try:
        t0 = perf_counter()
        fn()
        repeats = max(1, math.ceil(min_time / max(perf_counter() - t0, 1e-9)))
        best = math.inf
        for _ in range(3):
            t0 = perf_counter()
            for _ in range(repeats):
                fn()
            best = min(best, perf_counter() - t0)
    finally:
        gc.enable()
    return best / repeats


def best_of_3(run):
    """Best of three calls of ``run()``, which returns its own elapsed
    seconds (for benchmarks that need fresh state per run)."""
    best = math.inf
    for _ in range(3):
        gc.collect()
        gc.disable()
        try:
            best = min(best, run())
        finally:
            gc.enable()
    return best


def rss_bytes():
    """Resident set size of this process, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# ---------------------------------------------------------------- data

def item_rows(n, seed):
    """Rows (id, k, x, label) for the read benchmarks.

    id: distinct, scattered 40-bit BIGINTs (a bijection of 0..n-1 mod 2**40);
    k:  distinct INTEGERs, a random permutation of 0, 2, 4, ... (for ranges);
    x:  random INTEGER 0..999,999 (summed);
    label: a short VARCHAR, so rows carry a string as real rows do.
    """
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.int64)
    ids = (i * 2654435761) % (1 << 40)
    ks = rng.permutation(n).astype(np.int64) * 2
    xs = rng.integers(0, 1_000_000, n)
    labels = [f"item-{v:07d}" for v in range(n)]
    return list(zip(ids.tolist(), ks.tolist(), xs.tolist(), labels))


def insert_rows(n, seed):
    """Rows (id, g, x, label) for the insert benchmark, in random key order;
    g repeats about 10 times (a non-unique index)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(n).astype(np.int64) * 2654435761 % (1 << 40)
    gs = rng.integers(0, max(1, n // 10), n)
    xs = rng.integers(0, 1_000_000, n)
    labels = [f"row-{v:07d}" for v in range(n)]
    return list(zip(ids.tolist(), gs.tolist(), xs.tolist(), labels))


def read_area_codes():
    """(area codes as int64 array, their states as an object array)."""
    path = REPO / "procedures" / "voter" / "area_codes.csv"
    codes, states = [], []
    interned = {}
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            codes.append(int(rec["area_code"]))
            states.append(interned.setdefault(rec["state"], sys.intern(rec["state"])))
    return np.array(codes, dtype=np.int64), np.array(states, dtype=object)


def vote_batches(n, seed):
    """Votes as (phones, states, contestants) lists, VOTE_CHUNK at a time:
    10-digit phones = real area code + random 7 digits (so nearly every
    phone is distinct), the area code's state, contestant 1..6."""
    codes, states = read_area_codes()
    rng = np.random.default_rng(seed)
    for start in range(0, n, VOTE_CHUNK):
        m = min(VOTE_CHUNK, n - start)
        pick = rng.integers(0, len(codes), m)
        phones = codes[pick] * 10_000_000 + rng.integers(2_000_000, 10_000_000, m)
        yield phones.tolist(), states[pick].tolist(), rng.integers(1, 7, m).tolist()


# ---------------------------------------------------------------- schemas

BIGINT, INTEGER, VARCHAR = ColumnType.BIGINT, ColumnType.INTEGER, ColumnType.VARCHAR

ITEM_COLUMNS = [
    Column("id", BIGINT, nullable=False),
    Column("k", INTEGER, nullable=False),
    Column("x", INTEGER, nullable=False),
    Column("label", VARCHAR, 16, nullable=False),
]
INSERT_COLUMNS = [
    Column("id", BIGINT, nullable=False),
    Column("g", INTEGER, nullable=False),
    Column("x", INTEGER, nullable=False),
    Column("label", VARCHAR, 16, nullable=False),
]
VOTE_COLUMNS = [
    Column("phone_number", BIGINT, nullable=False),
    Column("state", VARCHAR, 2, nullable=False),
    Column("contestant_number", INTEGER, nullable=False),
]

SQLITE_ITEMS = """
CREATE TABLE items (id INTEGER PRIMARY KEY, k INTEGER NOT NULL,
                    x INTEGER NOT NULL, label TEXT NOT NULL);
CREATE INDEX items_k ON items (k);
"""
SQLITE_INSERT = """
CREATE TABLE t (id INTEGER PRIMARY KEY, g INTEGER NOT NULL,
                x INTEGER NOT NULL, label TEXT NOT NULL);
CREATE INDEX t_g ON t (g);
"""


# ---------------------------------------------------------------- loaders

def load_flowstate(Store, rows):
    store = Store()
    table = store.create_table("items", ITEM_COLUMNS, primary_key=["id"])
    store.create_index("items", "items_k", ["k"], unique=False, ordered=True)
    insert = table.insert
    for r in rows:
        insert(*r)
    return store, table


def load_dict(rows):
    """The dict world: rows by id, plus a sorted list of k with the ids in
    the same order (the "ordered index")."""
    d = {r[0]: r for r in rows}
    by_k = sorted((r[1], r[0]) for r in rows)
    return d, [k for k, _ in by_k], [i for _, i in by_k]


def load_sqlite(rows):
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SQLITE_ITEMS)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    return conn


def progress(what, started):
    """Progress on stderr, so that stdout is just the report."""
    print(f"  {what} done ({perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


def timed(label, fn, *args):
    t0 = perf_counter()
    out = fn(*args)
    return out, perf_counter() - t0


# ---------------------------------------------------------------- 1. lookup

def bench_lookup(sys_, keys, min_time, results):
    fs_table, d, conn = sys_["flowstate"], sys_["dict"], sys_["sqlite3"]

    # every system returns the same rows for a sample of the keys
    cur = conn.cursor()
    sql = "SELECT id, k, x, label FROM items WHERE id = ?"
    for key in keys[:2000]:
        want = d[key]
        assert cur.execute(sql, (key,)).fetchone() == want, key
        if fs_table is not None:
            got = fs_table.get(key)
            assert got is not None and tuple(got) == want, (key, got, want)

    def dict_step(keys, get=d.get):
        for k in keys:
            get(k)

    def dict_subscript_step(keys, d=d):
        for k in keys:
            d[k]

    def sqlite_step(keys, execute=cur.execute, sql=sql):
        for k in keys:
            execute(sql, (k,)).fetchone()

    results["lookup"] = out = {}
    if fs_table is not None:
        def fs_step(keys, get=fs_table.get):
            for k in keys:
                get(k)
        out["flowstate"] = best_rate(fs_step, keys, min_time)
    out["dict"] = best_rate(dict_step, keys, min_time)
    out["dict_subscript"] = best_rate(dict_subscript_step, keys, min_time)
    out["sqlite3"] = best_rate(sqlite_step, keys, min_time)


# ---------------------------------------------------------------- 2. insert

def bench_insert(Store, rows, results):
    n = len(rows)
    chunks = [rows[s:s + COMMIT_EVERY] for s in range(0, n, COMMIT_EVERY)]
    warm_chunks = chunks[: max(1, len(chunks) // 20)]

    def run_dict(chunks=chunks):
        d, idx = {}, {}
        t0 = perf_counter()
        for chunk in chunks:
            for id_, g, x, label in chunk:
                d[id_] = (id_, g, x, label)
                lst = idx.get(g)
                if lst is None:
                    idx[g] = [id_]
                else:
                    lst.append(id_)
        elapsed = perf_counter() - t0
        assert len(d) == sum(map(len, chunks)), len(d)
        return elapsed

    def run_sqlite(chunks=chunks):
        conn = sqlite3.connect(":memory:", isolation_level=None)
        conn.executescript(SQLITE_INSERT)
        cur = conn.cursor()
        execute, sql = cur.execute, "INSERT INTO t VALUES (?, ?, ?, ?)"
        t0 = perf_counter()
        for chunk in chunks:
            execute("BEGIN")
            for id_, g, x, label in chunk:
                execute(sql, (id_, g, x, label))
            execute("COMMIT")
        elapsed = perf_counter() - t0
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == sum(map(len, chunks))
        conn.close()
        return elapsed

    def run_flowstate(chunks=chunks):
        store = Store()
        table = store.create_table("t", INSERT_COLUMNS, primary_key=["id"])
        store.create_index("t", "t_g", ["g"], unique=False, ordered=True)
        insert, begin, commit = table.insert, store.begin, store.commit
        t0 = perf_counter()
        for chunk in chunks:
            begin()
            for id_, g, x, label in chunk:
                insert(id_, g, x, label)
            commit()
        elapsed = perf_counter() - t0
        total = sum(map(len, chunks))
        assert len(table) == total, (len(table), total)
        first = chunks[0][0]
        assert tuple(table.get(first[0])) == first
        assert first in [tuple(r) for r in table.index("t_g").find(first[1])]
        return elapsed

    out = {}
    for name, run in (("dict", run_dict), ("sqlite3", run_sqlite),
                      ("flowstate", run_flowstate if Store else None)):
        if run is None:
            continue
        run(warm_chunks)                       # warm-up on 5% of the rows
        out[name] = n / best_of_3(run)
    results["insert"] = out


# ---------------------------------------------------------------- 3. range

def bench_range(sys_, lows, min_time, results):
    fs_table = sys_["flowstate"]
    d, sorted_k, ids_by_k = sys_["dict"], sys_["dict_k"], sys_["dict_ids"]
    conn = sys_["sqlite3"]
    span = 2 * (RANGE_ROWS - 1)        # k values are 0, 2, 4, ...: 100 rows
    cur = conn.cursor()
    sql = ("SELECT id, k, x, label FROM items WHERE k BETWEEN ? AND ? "
           "ORDER BY k LIMIT 100")
    plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, (0, span)))
    assert "items_k" in plan and "TEMP B-TREE" not in plan, plan

    def dict_scan(low, high, sorted_k=sorted_k, ids=ids_by_k, d=d):
        i = bisect.bisect_left(sorted_k, low)
        j = bisect.bisect_right(sorted_k, high, i, i + RANGE_ROWS)
        return [d[id_] for id_ in ids[i:j]]

    fs_index = fs_table.index("items_k") if fs_table is not None else None
    for low in lows[:200]:
        want = dict_scan(low, low + span)
        assert len(want) == RANGE_ROWS
        assert cur.execute(sql, (low, low + span)).fetchall() == want
        if fs_index is not None:
            got = fs_index.range(low, low + span, limit=RANGE_ROWS)
            assert [tuple(r) for r in got] == want, low

    def dict_step(lows, span=span, scan=dict_scan):
        for low in lows:
            scan(low, low + span)

    def sqlite_step(lows, span=span, execute=cur.execute, sql=sql):
        for low in lows:
            execute(sql, (low, low + span)).fetchall()

    results["range"] = out = {}
    if fs_index is not None:
        def fs_step(lows, span=span, rng=fs_index.range, limit=RANGE_ROWS):
            for low in lows:
                rng(low, low + span, limit=limit)
        out["flowstate"] = best_rate(fs_step, lows, min_time)
    out["dict"] = best_rate(dict_step, lows, min_time)
    out["sqlite3"] = best_rate(sqlite_step, lows, min_time)


# ---------------------------------------------------------------- 4. aggregate

def bench_aggregate(sys_, min_time, results):
    fs_table, d, conn = sys_["flowstate"], sys_["dict"], sys_["sqlite3"]

    def dict_sum(d=d):
        return sum(v[2] for v in d.values())

    def sqlite_sum(conn=conn):
        return conn.execute("SELECT SUM(x) FROM items").fetchone()[0]

    want = dict_sum()
    assert sqlite_sum() == want
    ms = lambda fn: 1000.0 * best_time(fn, min_time)     # noqa: E731
    out = {"dict": ms(dict_sum), "sqlite3": ms(sqlite_sum)}
    if fs_table is not None:
        def fs_scan_sum(scan=fs_table.scan):
            return sum(r[2] for r in scan())

        def fs_numpy_sum(column_array=fs_table.column_array):
            return int(column_array("x").sum())

        assert fs_scan_sum() == want, (fs_scan_sum(), want)
        assert fs_numpy_sum() == want, (fs_numpy_sum(), want)
        out["flowstate"] = ms(fs_scan_sum)
        out["flowstate_numpy"] = ms(fs_numpy_sum)
    results["aggregate"] = out


# ---------------------------------------------------------------- 5. memory

def memory_flowstate(n, seed):
    """Votes + the two Voter views in the native engine (no transaction:
    each insert commits on its own)."""
    Store, why = load_engine()
    if Store is None:
        raise SystemExit(f"flowstate engine not importable: {why}")
    batches = vote_batches(n, seed)
    first = next(batches)                       # so the input's own buffers
    gc.collect()                                # are already in the baseline
    gc.disable()
    before = rss_bytes()
    store = Store()
    votes = store.create_table("votes", VOTE_COLUMNS)
    store.create_view("v_votes_by_phone_number", "votes", ["phone_number"],
                      [("COUNT", None)], ["phone_number", "num_votes"])
    store.create_view("v_votes_by_contestant_number_state", "votes",
                      ["contestant_number", "state"], [("COUNT", None)],
                      ["contestant_number", "state", "num_votes"])
    insert = votes.insert
    elapsed = 0.0
    for phones, states, contestants in itertools.chain([first], batches):
        t0 = perf_counter()
        for p, s, c in zip(phones, states, contestants):
            insert(p, s, c)
        elapsed += perf_counter() - t0
    gc.enable()
    gc.collect()
    after = rss_bytes()
    engine = {name: getattr(t, "memory_bytes", None) for name, t in store.tables.items()}
    by_phone = store.tables["v_votes_by_phone_number"]
    by_cs = store.tables["v_votes_by_contestant_number_state"]
    assert len(votes) == n
    return {"rows": n, "rss_growth": after - before, "insert_s": elapsed,
            "engine_bytes": engine, "groups_phone": len(by_phone),
            "groups_contestant_state": len(by_cs)}


def memory_dict(n, seed):
    """Votes as a dict of tuples keyed by row number (the dict equivalent of
    a row id), with the two views as dicts of counts."""
    batches = vote_batches(n, seed)
    first = next(batches)
    gc.collect()
    gc.disable()
    before = rss_bytes()
    votes, by_phone, by_cs = {}, {}, {}
    rowid = itertools.count()
    elapsed = 0.0
    for phones, states, contestants in itertools.chain([first], batches):
        t0 = perf_counter()
        for i, p, s, c in zip(rowid, phones, states, contestants):
            votes[i] = (p, s, c)
            by_phone[p] = by_phone.get(p, 0) + 1
            key = (c, s)
            by_cs[key] = by_cs.get(key, 0) + 1
        elapsed += perf_counter() - t0
    gc.enable()
    gc.collect()
    after = rss_bytes()
    assert len(votes) == n
    return {"rows": n, "rss_growth": after - before, "insert_s": elapsed,
            "groups_phone": len(by_phone), "groups_contestant_state": len(by_cs)}


def bench_memory(args, results):
    """Run each system's memory measurement in its own fresh process."""
    out = {}
    for system in MEMORY_SYSTEMS:
        cmd = [sys.executable, str(Path(__file__).resolve()),
               "--only", f"memory-{system}", "--memory-rows", str(args.memory_rows),
               "--seed", str(args.seed), "--emit-json"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
            out[system] = {"error": err}
            continue
        out[system] = json.loads(proc.stdout.strip().splitlines()[-1])
    results["memory"] = out


# ---------------------------------------------------------------- report

def machine_info():
    model, git, load = cpu_model(), git_revision(), load_average()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return [
        ("date", datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
        ("cpu", f"{model}, {os.cpu_count()} cores ({usable} usable)"),
        ("os", platform.platform()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}, "
                   f"numpy {np.__version__}, sqlite {sqlite3.sqlite_version}"),
        ("git", git),
        ("load", f"{load} (load average at start; other work on the machine skews figures)"),
    ]


def fmt_rate(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    return "—" if v is None else (f"{v:,.1f}" if v >= 10 else f"{v:,.2f}")


def fmt_bytes(v):
    return "—" if v is None else f"{v:,.1f}"


def verdict(name, ratio=None, value=None):
    """(target text, pass/miss) for a benchmark with a target."""
    if name not in TARGETS:
        return "—", ""
    kind, bound = TARGETS[name]
    if kind == "ratio":
        text = f">= {bound:.0%} of dict"
        if ratio is None:
            return text, "n/a"
        return text, "pass" if ratio >= bound else "MISS"
    text = f"<= {bound:.0f} B/row"
    if value is None:
        return text, "n/a"
    return text, "pass" if value <= bound else "MISS"


def report(args, results, engine_error, notes):
    rows = []      # (benchmark, flowstate, dict, sqlite3, ratio, target, result)

    def rate_row(name, label):
        r = results.get(name)
        if r is None:
            return
        fs, dc = r.get("flowstate"), r.get("dict")
        ratio = fs / dc if fs is not None and dc else None
        target, ok = verdict(name, ratio=ratio)
        rows.append((label, fmt_rate(fs), fmt_rate(dc), fmt_rate(r.get("sqlite3")),
                     "—" if ratio is None else f"{ratio:.0%}", target, ok))

    rate_row("lookup", "1. PK lookup, row returned (lookups/s)")
    rate_row("insert", "2. insert, PK + 2nd index, undo (rows/s)")
    rate_row("range", f"3. range scan, {RANGE_ROWS} rows (scans/s)")
    agg = results.get("aggregate")
    if agg is not None:
        for key, label in (("flowstate", "4a. SUM(x), scan() loop (ms)"),
                           ("flowstate_numpy", "4b. SUM(x), column_array().sum() (ms)")):
            fs, dc = agg.get(key), agg["dict"]
            ratio = dc / fs if fs else None
            rows.append((label, fmt_ms(fs), fmt_ms(dc), fmt_ms(agg["sqlite3"]),
                         "—" if ratio is None else f"{ratio:.0%}", "—", ""))
    mem = results.get("memory")
    if mem is not None:
        per = {}
        for system, m in mem.items():
            per[system] = m["rss_growth"] / m["rows"] if "rss_growth" in m else None
        fs, dc = per.get("flowstate"), per.get("dict")
        ratio = fs / dc if fs is not None and dc else None
        target, ok = verdict("memory", value=fs)
        rows.append((f"5. memory per votes row, +2 views (B/row)",
                     fmt_bytes(fs), fmt_bytes(dc), "—",
                     "—" if ratio is None else f"{ratio:.0%}", target, ok))
        rates = {s: (m["rows"] / m["insert_s"] if "insert_s" in m else None)
                 for s, m in mem.items()}
        fr, dr = rates.get("flowstate"), rates.get("dict")
        rows.append(("5b. votes insert +2 views, no txn (rows/s)",
                     fmt_rate(fr), fmt_rate(dr), "—",
                     f"{fr / dr:.0%}" if fr and dr else "—", "—", ""))

    header = ("benchmark", "flowstate", "dict", "sqlite3", "flowstate/dict",
              "target", "result")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(                              # noqa: E731
        (str(c).ljust(w) if i == 0 or i >= 5 else str(c).rjust(w))
        for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    print()
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for r in rows:
        print(line(r))
    print()
    print("flowstate/dict: Flowstate's throughput as a share of the dict's for rates "
          "(1-3, 5b);\n  dict time / Flowstate time for ms (4a, 4b; above 100% = "
          "faster than dict);\n  Flowstate bytes / dict bytes for memory (5; below "
          "100% = smaller).")
    # notes in benchmark order ("2: ..." after "1: ..."), general ones first
    for note in sorted(notes, key=lambda t: t[0] if t[0].isdigit() else ""):
        print(textwrap.fill(note, width=100, subsequent_indent="   "))
    if engine_error:
        print(f"flowstate: engine not importable ({engine_error}); its column is empty.")
    print()


# ---------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Storage-engine microbenchmarks: Flowstate's native Table vs a "
                    "Python dict of tuples vs sqlite3 :memory:, in one run.",
        epilog="benchmarks: " + ", ".join(BENCHMARKS) + "; memory-flowstate and "
               "memory-dict run one system's memory measurement in this process. "
               "See bench/README.md.")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="rows in the table for benchmarks 1-4 (default 1,000,000)")
    p.add_argument("--memory-rows", type=int, default=10_000_000,
                   help="votes inserted for benchmark 5 (default 10,000,000)")
    p.add_argument("--only", metavar="NAME[,NAME...]",
                   help="run only these benchmarks: " + ", ".join(
                       BENCHMARKS + tuple(f"memory-{s}" for s in MEMORY_SYSTEMS)))
    p.add_argument("--min-time", type=float, default=1.0,
                   help="seconds each timed run lasts at least (default 1.0)")
    p.add_argument("--seed", type=int, default=20261121, help="random seed")
    p.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    valid = set(BENCHMARKS) | {f"memory-{s}" for s in MEMORY_SYSTEMS}
    args.only = set(args.only.split(",")) if args.only else set(BENCHMARKS)
    bad = args.only - valid
    if bad:
        p.error(f"unknown benchmark {', '.join(sorted(bad))}; choose from "
                + ", ".join(sorted(valid)))
    if args.rows < 1000 or args.memory_rows < 1:
        p.error("--rows must be at least 1000 and --memory-rows at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)

    # a memory subprocess: measure one system, print one result
    for system in MEMORY_SYSTEMS:
        if f"memory-{system}" in args.only:
            fn = memory_flowstate if system == "flowstate" else memory_dict
            res = fn(args.memory_rows, args.seed)
            if args.emit_json:
                print(json.dumps(res))
            else:
                print(f"{system}: {res['rows']:,} votes, RSS +{res['rss_growth']:,} bytes = "
                      f"{res['rss_growth'] / res['rows']:.1f} B/row; insert "
                      f"{res['rows'] / res['insert_s']:,.0f} rows/s")
                print(json.dumps(res, indent=2))
            return 0

    Store, engine_error = load_engine()
    print("Flowstate storage benchmarks")
    for k, v in machine_info():
        print(f"  {k:7s} {v}")
    if Store is not None:
        import flowstate.native.storage as storage_mod
        print(f"  engine  {storage_mod.__file__}")
    print(f"  command {' '.join([Path(sys.executable).name] + sys.argv)}")
    print(f"  rows {args.rows:,} (benchmarks 1-4), {args.memory_rows:,} votes "
          f"(benchmark 5); best of 3 runs of >= {args.min_time:g} s each, gc off "
          "while timing", flush=True)

    results, notes = {}, []
    rng = np.random.default_rng(args.seed + 1)
    n = args.rows
    started = perf_counter()

    if args.only & {"lookup", "range", "aggregate"}:
        rows = item_rows(n, args.seed)
        sys_ = {"flowstate": None}
        (d, sorted_k, ids_by_k), t_dict = timed("dict", load_dict, rows)
        sys_.update(dict=d, dict_k=sorted_k, dict_ids=ids_by_k)
        sys_["sqlite3"], t_sqlite = timed("sqlite3", load_sqlite, rows)
        load = f"load {n:,} rows: dict {t_dict:.2f} s (with sorted k list), " \
               f"sqlite3 {t_sqlite:.2f} s (executemany, one transaction)"
        if Store is not None:
            (store, table), t_fs = timed("flowstate", load_flowstate, Store, rows)
            sys_["flowstate"] = table
            load += f", flowstate {t_fs:.2f} s (insert() per row, no transaction)"
            mem = getattr(table, "memory_bytes", None)
            if mem is not None:
                load += f"; flowstate items.memory_bytes {mem:,} ({mem / n:.1f} B/row)"
        notes.append(load)
        progress("load", started)
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        if "lookup" in args.only:
            # fresh int objects, as keys decoded from a request would be (the
            # stored rows' own key objects would let the dict match by identity)
            keys = ids[rng.integers(0, n, n)].tolist()
            bench_lookup(sys_, keys, args.min_time, results)
            progress("lookup", started)
            lk = results["lookup"]
            notes.append(f"1: dict is d.get(k), the same call shape and miss semantics "
                         f"as Table.get(k); keys are fresh int objects, as if decoded "
                         f"from requests; d[k] does {lk['dict_subscript']:,.0f}/s"
                         + (f" (Flowstate = {lk['flowstate'] / lk['dict_subscript']:.0%} of that)"
                            if "flowstate" in lk else "")
                         + ". Rows are (id BIGINT PK, k INTEGER, x INTEGER, label VARCHAR(16)).")
        if "range" in args.only:
            sorted_k = np.array(sys_["dict_k"], dtype=np.int64)
            lows = sorted_k[rng.integers(0, n - RANGE_ROWS, 10_000)].tolist()
            bench_range(sys_, lows, args.min_time, results)
            progress("range", started)
            notes.append("3: Flowstate Index.range(low, high, limit=100) on a non-unique "
                         "ordered index; dict = bisect on a sorted list of k + 100 dict "
                         "lookups; sqlite3 = WHERE k BETWEEN ? AND ? ORDER BY k LIMIT 100 "
                         "(index order, no sort).")
        if "aggregate" in args.only:
            bench_aggregate(sys_, args.min_time, results)
            progress("aggregate", started)
            notes.append("4: dict = sum(v[2] for v in d.values()); 4a = sum(r[2] for r in "
                         "table.scan()); 4b = table.column_array('x').sum(), column "
                         "extraction included; sqlite3 = SELECT SUM(x). dict and sqlite3 "
                         "figures are the same in 4a and 4b.")
        del sys_, rows, ids
        if Store is not None:
            del store, table
        gc.collect()

    if "insert" in args.only:
        bench_insert(Store, insert_rows(n, args.seed + 2), results)
        progress("insert", started)
        notes.append(f"2: {n:,} rows into an empty table per run, random key order; "
                     f"transactions of {COMMIT_EVERY:,} inserts (Flowstate: store.begin() "
                     "... store.commit(), undo on; sqlite3: BEGIN ... COMMIT). Secondary "
                     "index: non-unique on g INTEGER (~10 rows per value), ordered in "
                     "Flowstate and sqlite3, a dict of lists for dict (no undo, no "
                     "uniqueness check).")

    if "memory" in args.only:
        bench_memory(args, results)
        progress("memory", started)
        mem = results["memory"]
        for system in MEMORY_SYSTEMS:
            m = mem.get(system, {})
            if "error" in m:
                notes.append(f"5: {system} failed: {m['error']}")
        fs = mem.get("flowstate", {})
        if fs.get("engine_bytes"):
            eb = fs["engine_bytes"]
            known = {k: v for k, v in eb.items() if v is not None}
            total = sum(known.values())
            notes.append("5: Flowstate memory_bytes: " + ", ".join(
                f"{k} {v:,} ({v / fs['rows']:.1f} B/row)" for k, v in known.items())
                + f"; total {total / fs['rows']:.1f} B/row")
        groups = {s: m.get("groups_phone") for s, m in mem.items()}
        notes.append(f"5: {args.memory_rows:,} votes (Voter schema, no primary key) + "
                     "v_votes_by_phone_number + v_votes_by_contestant_number_state, "
                     "one fresh process per system, bytes = VmRSS growth / rows; phone "
                     f"groups {groups}. dict = {{rowid: (phone, state, contestant)}} + "
                     "two dicts of counts.")

    report(args, results, engine_error, notes)
    print(f"total time {perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
