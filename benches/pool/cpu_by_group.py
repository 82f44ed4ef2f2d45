#!/usr/bin/env python3
# CPU per process group while benches/pool/run.sh runs (with BASELINE=/tmp/runner-before): every ~2 s,
# percent of one core used by the runner servers (before/after), their PostgreSQL backends (by
# database: base/postgres), other postgres processes and the load driver, from /proc/<pid>/stat.
#   python3 benches/pool/cpu_by_group.py > cpu.log &  benches/pool/run.sh …; kill %1
import os, time, sys
tck = os.sysconf('SC_CLK_TCK')
def cat(pid):
    try:
        cmd = open(f'/proc/{pid}/cmdline','rb').read().replace(b'\0',b' ').decode(errors='replace')
        st = open(f'/proc/{pid}/stat').read()
    except Exception:
        return None
    rest = st[st.rfind(')')+2:].split()
    ticks = int(rest[11]) + int(rest[12])
    if 'pool_load' in cmd: g = 'driver'
    elif 'runner-before' in cmd and ' server ' in cmd: g = 'srv-before'
    elif 'release/runner' in cmd and ' server ' in cmd: g = 'srv-after'
    elif cmd.startswith('postgres: postgres base'): g = 'pg-before'
    elif cmd.startswith('postgres: postgres postgres'): g = 'pg-after'
    elif cmd.startswith('postgres:'): g = 'pg-other'
    else: return None
    return g, ticks
prev = {}
last = time.monotonic()
while True:
    cur = {}
    for p in os.listdir('/proc'):
        if p.isdigit():
            r = cat(p)
            if r: cur[p] = r
    groups = {}
    for p,(g,t) in cur.items():
        d = t - prev.get(p,(g,t))[1] if p in prev else 0
        groups[g] = groups.get(g,0) + d
    prev = cur
    now = time.monotonic(); dt = now - last; last = now
    load = open('/proc/loadavg').read().split()[0]
    print(time.strftime('%H:%M:%S'), 'load', load, ' '.join(f'{g}={100*v/tck/dt:.0f}%' for g,v in sorted(groups.items()) if v), flush=True)
    time.sleep(2)
