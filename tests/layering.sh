#!/usr/bin/env bash
# Fails when a source file includes from a layer above its own (DESIGN.md, "Layers: who may include
# whom"), or when the build would not stop such an include (the layer fences, below). Each quoted include is resolved the way the compiler does (the including file's folder
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
)
layers=(kernels core nn mtl data)

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

# The build enforces the same rules: each layer compiles with LADON_LAYER_<NAME> defined, and every
# header of core/, nn/, mtl/ and data/ first includes its layer's layer_fence.h, which rejects the
# layers that may not use it with #error. Check that every header has its fence...
fenced=(core nn mtl data)
for layer in "${fenced[@]}"; do
  while IFS= read -r -d '' header; do
    [[ $header == "$layer/layer_fence.h" ]] && continue
    fence=$(realpath -m --relative-to="$(dirname "$header")" "$layer/layer_fence.h")
    first=$(grep -m1 -E '^[[:space:]]*#[[:space:]]*include' "$header" || true)
    if [[ $first != "#include \"$fence\"" ]]; then
      echo "layering: $header: its first include must be \"$fence\" (found: ${first:-none})"
      violations=$((violations + 1))
    fi
  done < <(find "$layer" -type f -name '*.h' -print0 | sort -z)
done

# ...and that the preprocessor really stops each forbidden include (and lets an allowed one through),
# as a layer's own compile would.
cxx=${CXX:-c++}
probe() {  # probe LAYER HEADER: prints the layering error the preprocessor gives, if any
  printf '#include "%s"\n' "$2" | "$cxx" -std=c++20 -E -I"$root" "-DLADON_LAYER_${1^^}" -x c++ - -o /dev/null 2>&1 |
    grep -o 'layering: [^"]*' | head -n 1 || true
}
declare -A sample=([core]=core/tensor.h [nn]=nn/module.h [mtl]=mtl/model.h [data]=data/dataset.h)
for layer in "${layers[@]}"; do
  for to in "${fenced[@]}"; do
    [[ $to == "$layer" ]] && continue
    got=$(probe "$layer" "${sample[$to]}")
    if [[ " ${allowed[$layer]} " == *" $to "* ]]; then
      [[ -z $got ]] && continue
      echo "layering: $layer/ may include ${sample[$to]}, but the fence says: $got"
    else
      [[ $got == "layering: $layer/ must not include $to/"* ]] && continue
      echo "layering: compiled as $layer/, ${sample[$to]} did not fail with the layering error (got: ${got:-none})"
    fi
    violations=$((violations + 1))
  done
  got=$(probe "$layer" ladon.h)
  if [[ $got != "layering: no layer may include the umbrella ladon.h" ]]; then
    echo "layering: compiled as $layer/, ladon.h did not fail with the layering error (got: ${got:-none})"
    violations=$((violations + 1))
  fi
done

if ((violations > 0)); then
  echo "layering: $violations violation(s) in $checked files"
  exit 1
fi
echo "layering: ok ($checked files, no upward includes; every header fenced, each rule enforced by the preprocessor)"
