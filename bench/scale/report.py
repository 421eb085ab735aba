#!/usr/bin/env python3
"""bench/scale's arithmetic: reads wrk and pgbench output into results.json, and prints the table.

  report.py wrk FILE                        -> JSON {rps, p50_ms, p99_ms, errors}
  report.py pgbench FILE [PREFIX]           -> JSON {tps, latency_ms}, with p50_ms/p99_ms from pgbench -l logs PREFIX.*
  report.py pglog PREFIX                    -> JSON {count, p50_ms, p99_ms} from pgbench -l logs PREFIX.*
  report.py add RESULTS SIZE KEY JSON [NAME=VALUE ...]
                                            -> merges JSON, and each NAME=VALUE (a number where it reads as
                                               one), under results[SIZE][KEY]
  report.py table RESULTS                   -> the table, every figure with its anchor from the same run
"""
import glob, json, os, re, sys


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(path):
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    total = re.search(r"(\d+) requests in", text)
    return {"rps": rps, "p50_ms": to_ms(*p50.groups()), "p99_ms": to_ms(*p99.groups()),
            "requests": int(total.group(1)) if total else None,
            "errors": (int(non2xx.group(1)) if non2xx else 0), "socket_errors": sock.group(1) if sock else None}


def parse_pgbench(path):
    text = open(path).read()
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", text).group(1))
    latency = re.search(r"latency average = ([\d.]+) ms", text)
    return {"tps": tps, "latency_ms": float(latency.group(1)) if latency else None}


def percentile(values, q):
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def parse_pglog(prefix):
    # pgbench -l: client_id transaction_no time_us script_no epoch epoch_us
    latencies = []
    for path in glob.glob(prefix + ".*"):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 3 and parts[2].isdigit():
                latencies.append(int(parts[2]) / 1000.0)
    return {"count": len(latencies), "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies) if latencies else None}


def add(results_path, size, key, value, *fields):
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    entry = json.loads(value)
    for field in fields:
        name, _, text = field.partition("=")
        try:
            entry[name] = json.loads(text)
        except ValueError:
            entry[name] = text
    results.setdefault(size, {})[key] = entry
    with open(results_path + ".new", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(results_path + ".new", results_path)


def human(n):
    n = int(n)
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else (f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n))


def table(results_path):
    results = json.load(open(results_path))
    sizes = sorted(results, key=int)
    base = results.get(sizes[0], {}) if sizes else {}
    rows = []

    def g(size, key, field):
        return results.get(size, {}).get(key, {}).get(field)

    def fmt(v, spec=",.0f"):
        return "—" if v is None else format(v, spec)

    def ratio(a, b):
        return "—" if a is None or not b else f"{a / b:.2f}"

    for size in sizes:
        r = results[size]
        n = human(size)
        pg = g(size, "pgbench_select", "tps")
        scale = r.get("pgbench_select", {}).get("scale") or r.get("claim_anchor_saturated", {}).get("scale")
        for key, label in (("lookup_uniform", "lookups, uniform ids"), ("lookup_hot", "lookups, hot 1 %")):
            if key in r:
                rows.append((n, label, f"{fmt(g(size, key, 'rps'))}/s, p50 {fmt(g(size, key, 'p50_ms'), '.2f')} ms, p99 {fmt(g(size, key, 'p99_ms'), '.2f')} ms"
                             + (f", {g(size, key, 'errors')} errors" if g(size, key, 'errors') else ""),
                             f"pgbench -S scale {scale}: {fmt(pg)} tps" + (f", p99 {fmt(g(size, 'pgbench_select', 'p99_ms'), '.2f')} ms" if g(size, 'pgbench_select', 'p99_ms') is not None else ""),
                             ratio(g(size, key, "rps"), pg),
                             ratio(g(size, key, "rps"), g(sizes[0], key, "rps")) if size != sizes[0] else "1.00"))
        if "lookup_sql" in r:
            e = r["lookup_sql"]
            daemon = g(size, "lookup_uniform", "rps")
            rows.append((n, "lookup statement from pgbench, uniform ids (no daemon)",
                         f"{fmt(e.get('tps'))} tps" + (f"; the daemon's uniform lookups {ratio(daemon, e.get('tps'))}× of it" if daemon else "")
                         + (f"; {e['disk_reads'] / (e['tps'] * e['seconds']):.2f} disk reads per lookup" if e.get("disk_reads") is not None and e.get("tps") else ""),
                         f"pgbench -S scale {scale}: {fmt(pg)} tps", ratio(e.get("tps"), pg),
                         ratio(e.get("tps"), g(sizes[0], "lookup_sql", "tps")) if size != sizes[0] else "1.00"))
        if "pgbench_select_bytes" in r:
            b = r["pgbench_select_bytes"]
            for key, label in (("lookup_uniform", "lookups, uniform ids"), ("lookup_hot", "lookups, hot 1 %")):
                if key in r:
                    rows.append((n, label + " (anchor by bytes)", f"{fmt(g(size, key, 'rps'))}/s, p99 {fmt(g(size, key, 'p99_ms'), '.2f')} ms",
                                 f"pgbench -S scale {b['scale']} ({b['mib']:,} MiB; lookup tables {b['lookup_mib']:,} MiB): {fmt(b.get('tps'))} tps, mean latency {fmt(b.get('latency_ms'), '.2f')} ms"
                                 + (f", p99 {fmt(b.get('p99_ms'), '.2f')} ms" if b.get('p99_ms') is not None else ""),
                                 ratio(g(size, key, "rps"), b.get("tps")), "—"))
        # Disk reads per request (/proc/diskstats, reads completed during each measured run).
        reads = []
        for key, label in (("lookup_uniform", "uniform lookup"), ("lookup_hot", "hot lookup")):
            if g(size, key, "disk_reads") is not None and g(size, key, "requests"):
                reads.append(f"{label} {g(size, key, 'disk_reads') / g(size, key, 'requests'):.2f}")
        anchors = []
        for key, label in (("pgbench_select", "row-matched"), ("pgbench_select_bytes", "byte-matched")):
            a = r.get(key, {})
            if a.get("disk_reads") is not None and a.get("tps"):
                anchors.append(f"pgbench -S {label} (scale {a.get('scale')}) {a['disk_reads'] / (a['tps'] * a['seconds']):.2f}")
        if reads:
            rows.append((n, "disk reads per request", ", ".join(reads), ", ".join(anchors) or "—", "—", "—"))
        # CPU per request (µs): the machine's busy time over each run, and who spent it.
        cpu = []
        for key, label in (("lookup_uniform", "uniform lookup"), ("lookup_hot", "hot lookup")):
            e = r.get(key, {})
            if e.get("busy_ticks") is not None and e.get("requests"):
                per = lambda t: t * 10_000 / e["requests"]
                rest = e["busy_ticks"] - e["daemon_ticks"] - e["client_ticks"]
                cpu.append(f"{label} {per(e['busy_ticks']):.0f} (daemon {per(e['daemon_ticks']):.0f}, PostgreSQL and the rest "
                           f"{per(rest):.0f}, wrk {per(e['client_ticks']):.0f})")
        a = r.get("pgbench_select", {})
        if cpu and a.get("busy_ticks") is not None and a.get("tps"):
            transactions = a["tps"] * a["seconds"]
            per = lambda t: t * 10_000 / transactions
            rows.append((n, "CPU µs per request", "; ".join(cpu),
                         f"pgbench -S scale {a.get('scale')}: {per(a['busy_ticks']):.0f} (PostgreSQL and the rest "
                         f"{per(a['busy_ticks'] - a['client_ticks']):.0f}, pgbench {per(a['client_ticks']):.0f})", "—", "—"))
        if "lookup_uniform" in r and r.get("lookup_rss"):
            rss = r["lookup_rss"]
            rows.append((n, "daemon RSS during lookups", f"peak {rss['peak_mib']} MiB (cache {rss.get('cache_mib', '?')} MiB bound)",
                         f"idle {rss['idle_mib']} MiB", "—", "—"))
        if "intake" in r:
            rows.append((n, "intake, 64 connections", f"{fmt(g(size, 'intake', 'rps'))} acks/s, p50 {fmt(g(size, 'intake', 'p50_ms'), '.2f')} ms, p99 {fmt(g(size, 'intake', 'p99_ms'), '.2f')} ms"
                         + (f", {g(size, 'intake', 'errors')} non-2xx" if g(size, 'intake', 'errors') else ""),
                         f"intake at {human(sizes[0])}: {fmt(g(sizes[0], 'intake', 'rps'))} acks/s",
                         ratio(g(size, "intake", "rps"), g(sizes[0], "intake", "rps")), "—"))
            if "intake_pg" in r and g(size, "intake", "requests"):
                p, acks = r["intake_pg"], g(size, "intake", "requests")
                if "intake_warmup" in r:
                    rows[-1] = (rows[-1][0], rows[-1][1] + f" (after {fmt(g(size, 'intake_warmup', 'requests'))} warm-up webhooks)") + rows[-1][2:]
                rows.append((n, "intake: PostgreSQL per ack",
                             f"{p['wal_bytes'] / acks:,.0f} WAL bytes ({p['wal_fpi'] / acks:.2f} full-page images), "
                             f"{p['blks_read'] / acks:.2f} blocks read, {p['blks_hit'] / acks:.1f} hit; {p['checkpoints']:.0f} checkpoints in the run",
                             f"at {human(sizes[0])}: {g(sizes[0], 'intake_pg', 'wal_bytes') / g(sizes[0], 'intake', 'requests'):,.0f} WAL bytes, "
                             f"{g(sizes[0], 'intake_pg', 'blks_read') / g(sizes[0], 'intake', 'requests'):.2f} blocks read per ack"
                             if g(sizes[0], "intake_pg", "wal_bytes") is not None and g(sizes[0], "intake", "requests") else "—",
                             "—", "—"))
        if "intake_rate" in r:
            e = r["intake_rate"]
            rows.append((n, f"intake at {e.get('rate')}/s, 16 connections",
                         f"{fmt(e.get('rps'))} acks/s reached, p50 {fmt(e.get('p50_ms'), '.2f')} ms, p99 {fmt(e.get('p99_ms'), '.2f')} ms"
                         + (f", {e.get('errors')} non-2xx" if e.get("errors") else ""),
                         (f"pgbench -N, 16 clients at {anchor.get('rate')}/s, scale {anchor.get('scale')}: p50 {fmt(anchor.get('p50_ms'), '.2f')} ms, p99 {fmt(anchor.get('p99_ms'), '.2f')} ms"
                          if (anchor := r.get("intake_rate_anchor")) else f"at {human(sizes[0])}: p99 {fmt(g(sizes[0], 'intake_rate', 'p99_ms'), '.2f')} ms"),
                         f"p99 {ratio(e.get('p99_ms'), anchor.get('p99_ms'))}" if anchor else "—",
                         ratio(e.get("p99_ms"), g(sizes[0], "intake_rate", "p99_ms")) if size != sizes[0] else "1.00"))
        if "claim" in r:
            rows.append((n, f"claim, 100k pending, {r['claim'].get('clients', 8)} workers",
                         f"p50 {fmt(g(size, 'claim', 'p50_ms'), '.2f')} ms, p99 {fmt(g(size, 'claim', 'p99_ms'), '.2f')} ms ({fmt(g(size, 'claim', 'count'))} claims)",
                         f"at {human(sizes[0])}: p99 {fmt(g(sizes[0], 'claim', 'p99_ms'), '.2f')} ms",
                         ratio(g(size, "claim", "p99_ms"), g(sizes[0], "claim", "p99_ms")), "—"))
            if "claim_anchor_saturated" in r:
                a = r["claim_anchor_saturated"]
                rows[-1] = rows[-1][:3] + (f"pgbench -S, 8 clients, scale {a.get('scale')}: p50 {fmt(a.get('p50_ms'), '.2f')} ms, p99 {fmt(a.get('p99_ms'), '.2f')} ms",
                                           f"p99 {ratio(g(size, 'claim', 'p99_ms'), a.get('p99_ms'))}", rows[-1][5])
        if "claim_rate" in r:
            c = r["claim_rate"]
            a = r.get("claim_anchor_rate", {})
            rows.append((n, f"claim, 100k pending, {c.get('clients', 8)} workers at {c.get('rate')}/s",
                         f"p50 {fmt(c.get('p50_ms'), '.2f')} ms, p99 {fmt(c.get('p99_ms'), '.2f')} ms ({fmt(c.get('count'))} claims)",
                         f"pgbench -S, 8 clients at {c.get('rate')}/s: p50 {fmt(a.get('p50_ms'), '.2f')} ms, p99 {fmt(a.get('p99_ms'), '.2f')} ms",
                         f"p99 {ratio(c.get('p99_ms'), a.get('p99_ms'))}",
                         ratio(c.get("p99_ms"), g(sizes[0], "claim_rate", "p99_ms")) if size != sizes[0] else "1.00"))
        for key, label in (("list", "assets list page (100), deep"), ("list_failed", "assets list page, state=failed, deep")):
            if key in r:
                rows.append((n, label, f"p50 {fmt(g(size, key, 'p50_ms'), '.2f')} ms, p99 {fmt(g(size, key, 'p99_ms'), '.2f')} ms ({fmt(g(size, key, 'rps'))}/s at 4 connections)",
                             f"at {human(sizes[0])}: p99 {fmt(g(sizes[0], key, 'p99_ms'), '.2f')} ms",
                             ratio(g(size, key, "p99_ms"), g(sizes[0], key, "p99_ms")), "—"))
        if "size" in r:
            s = r["size"]
            rows.append((n, "database size", f"{s['database_mib']:,} MiB (predictions {s['predictions_mib']:,}, assets {s['assets_mib']:,}, deliveries {s['deliveries_mib']:,})",
                         f"pgbench scale {scale}: {s.get('pgbench_mib', 0):,} MiB", "—", "—"))
    headers = ("size", "hot path", "afterimage", "anchor, same run", "ratio to anchor", "ratio to smallest size")
    widths = [max(len(str(row[i])) for row in rows + [headers]) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |"
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "wrk":
        print(json.dumps(parse_wrk(sys.argv[2])))
    elif command == "pgbench":
        parsed = parse_pgbench(sys.argv[2])
        if len(sys.argv) > 3:
            log = parse_pglog(sys.argv[3])
            parsed.update(p50_ms=log["p50_ms"], p99_ms=log["p99_ms"])
        print(json.dumps(parsed))
    elif command == "pglog":
        print(json.dumps(parse_pglog(sys.argv[2])))
    elif command == "add":
        add(*sys.argv[2:])
    elif command == "table":
        table(sys.argv[2])
    else:
        sys.exit(f"unknown command {command}")
