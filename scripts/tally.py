#!/usr/bin/env python3
"""Count test results from meson testlog.json files and scripts' result files.

Usage: tally.py RESULTS_FILE
RESULTS_FILE has one line per step:  "meson <label> <path/to/testlog.json>"
or "result PASS|FAIL|SKIP <name> [reason]".  TAP tests count each subtest;
other tests count once.  Prints every failure and skip with its reason, then
the final line "N passed, N failed"; exits 1 if anything failed."""
import json
import re
import sys

passed = failed = 0
skips = []
failures = []

def tap_counts(out):
    ok = len(re.findall(r'^ok \d+', out, re.M))
    bad = re.findall(r'^not ok \d+ - (.*)$', out, re.M)
    return ok, bad

with open(sys.argv[1]) as f:
    for line in f:
        parts = line.rstrip('\n').split(' ', 3)
        if not parts or not parts[0]:
            continue
        if parts[0] == 'meson':
            label, path = parts[1], parts[2]
            try:
                rows = [json.loads(l) for l in open(path) if l.strip()]
            except OSError:
                failed += 1
                failures.append(f'{label}: no test log ({path})')
                continue
            for r in rows:
                name = f"{label}/{r['name']}"
                res = r['result']
                out = r.get('stdout') or ''
                if res == 'SKIP':
                    m = re.search(r'(SKIP:? .*|# SKIP.*)', out)
                    skips.append(f"{name}: {m.group(1) if m else 'skipped'}")
                    continue
                ok, bad = tap_counts(out) if r.get('protocol') == 'tap' or re.search(r'^1\.\.\d+', out, re.M) else (0, [])
                if ok or bad:
                    passed += ok
                    failed += len(bad)
                    for b in bad:
                        failures.append(f'{name}: {b}')
                    if res not in ('OK', 'EXPECTEDFAIL') and not bad:
                        failed += 1
                        failures.append(f'{name}: {res}')
                elif res in ('OK', 'EXPECTEDFAIL'):
                    passed += 1
                else:
                    failed += 1
                    failures.append(f'{name}: {res}')
        elif parts[0] == 'result':
            status, name = parts[1], parts[2]
            reason = parts[3] if len(parts) > 3 else ''
            if status == 'PASS':
                passed += 1
            elif status == 'SKIP':
                skips.append(f'{name}: {reason}')
            else:
                failed += 1
                failures.append(f'{name}: {reason}')

for s in skips:
    print(f'skipped: {s}')
for fl in failures:
    print(f'FAILED: {fl}')
print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
