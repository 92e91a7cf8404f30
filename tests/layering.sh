#!/usr/bin/env bash
# Fails when a source file includes from a layer above its own (DESIGN.md, "Layers: who may include
# whom"). Each quoted include is resolved the way the compiler does (the including file's folder
# first, then the repository root, which is on the include path), so "../nn/x.h", "../../nn/x.h"
# from core/ops/ and "nn/x.h" are all caught; <ladon/nn/x.h> is caught too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# What each layer may include besides itself. Everything else among the layers is forbidden.
declare -A allowed=(
  [kernels]=""
  [core]="kernels"
  [nn]="core kernels"
  [mtl]="nn core kernels"
  [data]="core"
  [dist]="mtl data nn core kernels"
)
layers=(kernels core nn mtl data dist)

violations=0 checked=0
for layer in "${layers[@]}"; do
  [[ -d $layer ]] || continue
  while IFS= read -r -d '' file; do
    checked=$((checked + 1))
    dir=$(dirname "$file")
    while IFS=: read -r line text; do
      target=""
      if [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
        inc=${BASH_REMATCH[1]}
        # The compiler looks next to the file first, then in the repository root. A file that
        # exists in neither place (yet) is judged by its spelling: "../x" next to the file.
        if [[ -e $dir/$inc || ( ! -e $inc && $inc == .* ) ]]; then
          target=$(realpath -m --relative-to="$root" "$dir/$inc")
        else
          target=$(realpath -m --relative-to="$root" "$inc")
        fi
      elif [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<ladon/([^\>]+)\> ]]; then
        target=$(realpath -m --relative-to="$root" "${BASH_REMATCH[1]}")
      else
        continue
      fi
      if [[ $target == ladon.h ]]; then  # the umbrella pulls in every layer
        echo "layering: $file:$line: $layer/ must not include the umbrella ladon.h"
        violations=$((violations + 1))
        continue
      fi
      to=${target%%/*}
      [[ $to == "$layer" || $target != */* ]] && continue  # own layer, or another root file
      [[ -v "allowed[$to]" ]] || continue                  # not a layer (tests/, a system header)
      if [[ " ${allowed[$layer]} " != *" $to "* ]]; then
        echo "layering: $file:$line: $layer/ must not include $to/ (${text#"${text%%[![:space:]]*}"})"
        violations=$((violations + 1))
      fi
    done < <(grep -n -E '^[[:space:]]*#[[:space:]]*include' "$file" || true)
  done < <(find "$layer" -type f \( -name '*.h' -o -name '*.hpp' -o -name '*.cpp' -o -name '*.cc' \
             -o -name '*.inl' -o -name '*.ipp' \) -print0 | sort -z)
done

if ((violations > 0)); then
  echo "layering: $violations upward include(s) in $checked files"
  exit 1
fi
echo "layering: ok ($checked files, no upward includes)"
