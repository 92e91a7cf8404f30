#!/usr/bin/env bash
# error_exit.sh MPIRUN PROGRAM: at 2 and 4 ranks, PROGRAM's last rank throws a ladon::Error while
# the others block in an allreduce. Every rank must end within 30 s (no hang), the job's exit
# status must be non-zero, and the error's message must be printed with the rank that raised it.
set -uo pipefail
mpirun=$1 program=$2
for np in 2 4; do
  start=$SECONDS
  output=$(timeout 30 "$mpirun" --allow-run-as-root --oversubscribe --bind-to none -np "$np" "$program" 2>&1)
  status=$?
  took=$((SECONDS - start))
  if ((status == 124)); then
    echo "np $np: still running after 30 s: a rank hung"; echo "$output"; exit 1
  fi
  if ((status == 0)); then
    echo "np $np: exit status 0, expected non-zero"; echo "$output"; exit 1
  fi
  expected="ladon rank $((np - 1))/$np: matmul: [2, 3] @ [4, 5]: inner sizes differ (3 vs 4)"
  if ! grep -qF "$expected" <<<"$output"; then
    echo "np $np: the output lacks '$expected'"; echo "$output"; exit 1
  fi
  echo "np $np: every rank ended in ${took}s, exit status $status, with the message"
done
