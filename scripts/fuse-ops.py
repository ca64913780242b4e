#!/usr/bin/env python3
"""fuse-ops.py - FUSE requests of one mount, by opcode, from the kernel's
fuse:fuse_request_send/end tracepoints (count, summed time, p50/p90/max
from send to reply), and how long at least one request was outstanding.

The profiles in docs/inline-data.md and bench/history.md were made this
way; this script keeps the arithmetic in one place. Usage:

  perf record -a -e fuse:fuse_request_send -e fuse:fuse_request_end \\
      -o fuse.data -- git clone -q --no-local SRC MOUNT/c
  perf script -i fuse.data | scripts/fuse-ops.py --mount MOUNT [--phases 0.2,1.5]

--mount picks the mount's connection (other mounts on the host trace too);
--conn N names it directly (the number perf script prints). --phases T,...
splits the report at those seconds after the first request. WRITE requests
are reported apart by payload: the request length less the 80-byte
header (fuse_in_header + fuse_write_in).

--self-test checks the parsing and arithmetic on a built-in trace (ctest
test_fuse_ops_script).
"""
import argparse
import collections
import os
import re
import sys

LINE = re.compile(r' (\d+\.\d+): +fuse:fuse_request_(send|end): connection (\d+) req (\d+) (.*)')
WRITE_HDR = 80


def kernel_dev(path):
    """The connection number the tracepoints print for the mount at PATH
    (the kernel's dev_t: major << 20 | minor)."""
    d = os.stat(path).st_dev
    return (os.major(d) << 20) | os.minor(d)


def parse(lines, conn):
    """[(send_s, end_s, op, len, error)] of CONN's completed requests."""
    sent, done = {}, []
    for line in lines:
        m = LINE.search(line)
        if not m or int(m.group(3)) != conn:
            continue
        t, req, rest = float(m.group(1)), m.group(4), m.group(5)
        if m.group(2) == 'send':
            op = re.search(r'\((\w+)\)', rest)
            ln = re.search(r'len (\d+)', rest)
            sent[req] = (t, op.group(1) if op else '?', int(ln.group(1)) if ln else 0)
        elif req in sent:
            ts, op, ln = sent.pop(req)
            err = re.search(r'error (-?\d+)', rest)
            done.append((ts, t, op, ln, int(err.group(1)) if err else 0))
    return sorted(done)


def label(r):
    op = r[2][5:] if r[2].startswith('FUSE_') else r[2]
    if op == 'WRITE':
        n = r[3] - WRITE_HDR
        op += ' <=4K' if n <= 4096 else ' >4K'
    if r[4]:
        op += ' err%d' % r[4]
    return op


def busy(rows):
    """Seconds during which at least one of ROWS was outstanding."""
    total, end = 0.0, None
    for ts, te, *_ in rows:
        if end is None or ts > end:
            total += te - ts
            end = te
        elif te > end:
            total += te - end
            end = te
    return total


def report(rows, lo, hi, out):
    sel = [r for r in rows if lo <= r[0] < hi]
    if not sel:
        return
    agg = collections.defaultdict(list)
    for r in sel:
        agg[label(r)].append(r[1] - r[0])
    span = max(r[1] for r in sel) - min(r[0] for r in sel)
    out.write('%.3f-%.3f s: %d requests over %.3f s, one or more outstanding %.3f s\n' %
              (lo, min(hi, span + lo), len(sel), span, busy(sel)))
    out.write('  %-16s %8s %9s %9s %9s %10s\n' % ('opcode', 'count', 'sum s', 'p50 us', 'p90 us', 'max us'))
    for op, v in sorted(agg.items(), key=lambda kv: -sum(kv[1])):
        v.sort()
        out.write('  %-16s %8d %9.3f %9.0f %9.0f %10.0f\n' %
                  (op, len(v), sum(v), 1e6 * v[len(v) // 2], 1e6 * v[int(len(v) * 0.9)], 1e6 * v[-1]))


def run(lines, conn, phases, out):
    rows = parse(lines, conn)
    if not rows:
        out.write('no completed requests of connection %d\n' % conn)
        return 1
    t0 = rows[0][0]
    rel = [(a - t0, b - t0, op, ln, e) for a, b, op, ln, e in rows]
    cuts = [0.0] + sorted(phases) + [float('inf')]
    for lo, hi in zip(cuts, cuts[1:]):
        report(rel, lo, hi, out)
    return 0


SAMPLE = """\
 git  1 [000] 100.000000: fuse:fuse_request_send: connection 40 req 2 opcode 1 (FUSE_LOOKUP) len 48 
 git  1 [000] 100.000010: fuse:fuse_request_end: connection 40 req 2 len 16 error -2
 git  1 [000] 100.000020: fuse:fuse_request_send: connection 40 req 4 opcode 35 (FUSE_CREATE) len 70 
 git  1 [000] 100.000025: fuse:fuse_request_send: connection 41 req 4 opcode 3 (FUSE_GETATTR) len 56 
 git  1 [000] 100.000060: fuse:fuse_request_end: connection 40 req 4 len 160 error 0
 git  1 [000] 100.000070: fuse:fuse_request_send: connection 40 req 6 opcode 16 (FUSE_WRITE) len 380 
 git  1 [000] 100.000075: fuse:fuse_request_send: connection 40 req 8 opcode 16 (FUSE_WRITE) len 8272 
 git  1 [000] 100.000110: fuse:fuse_request_end: connection 40 req 6 len 24 error 0
 git  1 [000] 100.000175: fuse:fuse_request_end: connection 40 req 8 len 24 error 0
 git  1 [000] 102.000000: fuse:fuse_request_send: connection 40 req 10 opcode 25 (FUSE_FLUSH) len 64 
 git  1 [000] 102.000006: fuse:fuse_request_end: connection 40 req 10 len 16 error 0
"""


def self_test():
    import io
    rows = parse(SAMPLE.splitlines(), 40)
    assert [label(r) for r in rows] == ['LOOKUP err-2', 'CREATE', 'WRITE <=4K', 'WRITE >4K', 'FLUSH'], rows
    rel = [(a - rows[0][0], b - rows[0][0]) for a, b, *_ in rows]
    # LOOKUP 10 us, CREATE 40 us, the two WRITEs overlap (70..175 us), FLUSH 6 us
    assert abs(busy(rel) - (10 + 40 + 105 + 6) * 1e-6) < 1e-9, busy(rel)
    assert not parse(SAMPLE.splitlines(), 42)
    out = io.StringIO()
    assert run(SAMPLE.splitlines(), 40, [1.0], out) == 0
    text = out.getvalue()
    assert '0.000-0.000 s: 4 requests' in text and '1 requests' in text, text
    assert re.search(r'WRITE >4K +1 +0\.000 +100 ', text), text
    assert run(SAMPLE.splitlines(), 7, [], io.StringIO()) == 1
    print('fuse-ops self-test passed')
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument('--mount', help='mount point whose requests to report')
    g.add_argument('--conn', type=int, help='connection number as perf script prints it')
    g.add_argument('--self-test', action='store_true')
    ap.add_argument('--phases', default='', help='comma-separated seconds to split at')
    ap.add_argument('input', nargs='?', help='perf script output (default stdin)')
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    conn = a.conn if a.conn is not None else kernel_dev(a.mount)
    phases = [float(x) for x in a.phases.split(',') if x]
    with (open(a.input) if a.input else sys.stdin) as f:
        return run(f, conn, phases, sys.stdout)


if __name__ == '__main__':
    sys.exit(main())
