#!/usr/bin/env bash
# Test on Colab's versions: Python 3.13 with Colab's own package list (tools/colab/constraints-colab.txt,
# googlecolab/backend-info pip-freeze.gpu.txt) as pip constraints, no mediapipe (no wheel for 3.13).
# Runs the whole test suite there, the notebooks in smoke mode included. Extra arguments go to pytest.
#
# The environment is cached in ${COLAB_UTILS_CACHE:-~/.cache/colab_utils}/colab-env-<hash of the constraints
# and pyproject.toml and this script>; delete that folder to rebuild from nothing. pip must not change a pinned package:
# with -c it fails (ResolutionImpossible) rather than upgrade one, and check_pins.py fails on any drift.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
constraints="$root/tools/colab/constraints-colab.txt"

find_python313() {
  local candidate
  for candidate in "${COLAB_UTILS_PYTHON313:-}" python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13 \
                   "$HOME"/.pyenv/versions/3.13*/bin/python3.13 /usr/local/bin/python3.13 /usr/bin/python3.13; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
      command -v "$candidate" || echo "$candidate"
      return 0
    fi
  done
  return 1
}

py=$(find_python313) || {
  echo "test on Colab's versions: no Python 3.13 here. Install one (pyenv install 3.13, uv python install 3.13," >&2
  echo "or your distribution's python3.13 package) or set COLAB_UTILS_PYTHON313=/path/to/python3.13" >&2
  exit 1
}
cache=${COLAB_UTILS_CACHE:-$HOME/.cache/colab_utils}
key=$(cat "$constraints" "$root/pyproject.toml" "$0" | sha256sum | cut -c1-12)
venv="$cache/colab-env-$key"
start=$(date +%s)
if [ ! -f "$venv/.complete" ]; then
  echo "Building the Colab environment in $venv with $py ($("$py" -V))"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$py" -m venv "$venv"
  # Colab preinstalls these; a fresh venv has to get them with the pinned versions.
  "$venv/bin/python" -m pip install -q -c "$constraints" pip setuptools wheel
  "$venv/bin/python" -m pip install -q -c "$constraints" -e "$root[test]"
  # Colab preinstalls dlib (its HOG face detector is one of the FAN's face-box sources there); dlib-bin is
  # the same release as a wheel, where the dlib sdist would take many minutes to compile.
  dlib_pin=$(awk -F'==' '$1 == "dlib" {print $2}' "$constraints")
  "$venv/bin/python" -m pip install -q "dlib-bin==$dlib_pin"
  "$venv/bin/python" -c "import colab_utils, torch" || { echo "Colab environment: install failed" >&2; exit 1; }
  touch "$venv/.complete"
  echo "Colab environment built in $(( $(date +%s) - start )) s"
else
  echo "Reusing the Colab environment in $venv"
fi
# The cached environment may have been built from another checkout: point the editable install here.
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" "$root/tools/colab/check_pins.py" "$constraints"
if "$venv/bin/python" -c "import mediapipe" >/dev/null 2>&1; then
  echo "mediapipe is importable in the Colab environment; Colab has none" >&2
  exit 1
fi
cd "$root"
exec "$venv/bin/python" -m pytest -q -ra "$@"
