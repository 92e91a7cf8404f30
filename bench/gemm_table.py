#!/usr/bin/env python3
"""Runs bench_gemm several times under OpenBLAS's default core and under OPENBLAS_CORETYPE=SkylakeX,
and prints GFLOP/s medians and the ratios ours/OpenBLAS for the NN shapes.

usage: bench/gemm_table.py BUILD_DIR/bench/bench_gemm [runs=3] [filter]
"""
import json, os, statistics, subprocess, sys

exe = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
flt = sys.argv[3] if len(sys.argv) > 3 else 'sgemm_NN/(ours|openblas)/'


def run(env_extra):
    env = dict(os.environ, OPENBLAS_NUM_THREADS='1', **env_extra)
    out = subprocess.run([exe, '--benchmark_filter=' + flt, '--benchmark_format=json'], env=env,
                         capture_output=True, text=True, check=True).stdout
    return {b['name'].replace('/min_time:0.200', ''): b['GFLOP/s'] for b in json.loads(out[out.index('{'):])['benchmarks']}


# OPENBLAS_CORETYPE=SkylakeX only where the CPU has AVX-512: elsewhere it dies on an illegal instruction.
with open('/proc/cpuinfo') as f:
    has_avx512 = 'avx512f' in f.read().split()
results = {'default': [], 'skx': []}
for _ in range(runs):  # interleave the two settings so drift hits both alike
    results['default'].append(run({}))
    if has_avx512:
        results['skx'].append(run({'OPENBLAS_CORETYPE': 'SkylakeX'}))
if not has_avx512:
    print('no AVX-512 on this CPU: the SkylakeX columns repeat the default run')
    results['skx'] = results['default']


def med(setting, name):
    return statistics.median(r[name] for r in results[setting])


names = [n for n in results['default'][0] if '/ours/' in n]
print(f'median of {runs} runs, GFLOP/s, single thread')
print('| shape | ours | OpenBLAS default | ours/default | ours (SkylakeX run) | OpenBLAS SkylakeX | ours/SkylakeX |')
print('|---|---|---|---|---|---|---|')
for n in names:
    ob = n.replace('/ours/', '/openblas/')
    layout, _, shape = n.split('/')
    o1, b1, o2, b2 = med('default', n), med('default', ob), med('skx', n), med('skx', ob)
    print(f'| {layout[6:]} {shape} | {o1:.1f} | {b1:.1f} | {o1 / b1:.2f} | {o2:.1f} | {b2:.1f} | {o2 / b2:.2f} |')
