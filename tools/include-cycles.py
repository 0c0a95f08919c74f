#!/usr/bin/env python3
"""The modules of src/ that each module includes, and every cycle among them.

A module is foo.c with foo.h. Layers call downward only, so two modules
that reach each other through their includes are a defect: the script
prints each module's includes, then each cycle (a strongly connected set
of modules), and exits 1 when there is one.

    python3 tools/include-cycles.py [SRC_DIR]
"""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 else 'src'
deps = {}
for name in sorted(os.listdir(src)):
    base, ext = os.path.splitext(name)
    if ext not in ('.c', '.h'):
        continue
    text = open(os.path.join(src, name)).read()
    for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)\.h"', text, re.M):
        if inc != base:
            deps.setdefault(base, set()).add(inc)
    deps.setdefault(base, set())

index, low, stack, on, sccs = {}, {}, [], set(), []
def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v); on.add(v)
    for w in sorted(deps.get(v, ())):
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        scc = []
        while True:
            w = stack.pop(); on.discard(w); scc.append(w)
            if w == v:
                break
        if len(scc) > 1:
            sccs.append(sorted(scc))
for v in sorted(deps):
    if v not in index:
        visit(v)
for m in sorted(deps):
    print(f"{m:10} -> {' '.join(sorted(deps[m])) or '-'}")
for scc in sccs:
    print('cycle among:', ' '.join(scc))
print(f'{len(sccs)} cycle(s)')
sys.exit(1 if sccs else 0)
