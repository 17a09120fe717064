#!/usr/bin/env python3
"""cu2cc.py IN.cu OUT.cc — a .cu source of src/cuda as C++ for cudasim (tests/cudasim/include/cudasim.h):

  NAME<<<G, B[, SMEM[, STREAM]]>>>(ARGS)   ->  sim_launch("NAME", NAME, G, B[, SMEM[, STREAM]])(ARGS)
                                               (.bounded(N) before (ARGS) for a kernel declared with
                                               __launch_bounds__(N): more threads fail the launch)
  extern __shared__ T X[];                 ->  T *X = (T *)sim_dyn_smem();

NAME may carry template arguments (k_mmvq<T>). A launch whose <<< and >>> are not on one line,
or a NAME this cannot read, is an error, so no launch is left unrewritten. Line numbers are kept
(#line), so compiler messages point into the .cu file."""
import re
import sys

LAUNCH = re.compile(r'([A-Za-z_]\w*(?:\s*<[^<>;()]*>)?)\s*<<<(.*?)>>>')
DYN = re.compile(r'extern\s+__shared__\s+([A-Za-z_][\w\s]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;')


BOUNDS = re.compile(r'__launch_bounds__\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*([A-Za-z_]\w*)\s*\(')


def convert(src, path):
    # kernel name -> its __launch_bounds__ expression: a launch with more threads fails, as on a GPU
    bounds = {m.group(2): m.group(1) for m in BOUNDS.finditer(src)}

    def launch(m):
        name = re.sub(r'\s+', '', m.group(1))
        base = name.split('<')[0]
        call = 'sim_launch("%s", %s, %s)' % (name, m.group(1), m.group(2))
        return call + ('.bounded(%s)' % bounds[base] if base in bounds else '')

    out = []
    for no, line in enumerate(src.split('\n'), 1):
        if '<<<' in line:
            line, n = LAUNCH.subn(launch, line)
            if '<<<' in line or '>>>' in line or n == 0:
                sys.exit('%s:%d: cu2cc: cannot rewrite this launch: %s' % (path, no, line.strip()))
        line = DYN.sub(lambda m: '%s *%s = (%s *)sim_dyn_smem();' % (m.group(1), m.group(2), m.group(1)), line)
        if re.search(r'extern\s+__shared__', line):
            sys.exit('%s:%d: cu2cc: cannot rewrite this shared declaration: %s' % (path, no, line.strip()))
        out.append(line)
    return '#line 1 "%s"\n' % path + '\n'.join(out)


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: cu2cc.py IN.cu OUT.cc')
    with open(sys.argv[1]) as f:
        text = convert(f.read(), sys.argv[1])
    with open(sys.argv[2], 'w') as f:
        f.write(text)
