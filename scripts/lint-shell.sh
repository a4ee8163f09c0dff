#!/usr/bin/env bash
# Runs shellcheck over every shell script in the repository: files named *.sh, the packaging's
# shell files, and any tracked file whose first line runs sh or bash.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts=()
while IFS= read -r -d '' f; do
  case "$f" in
    *.sh) scripts+=("$f") ;;
    *.rs | *.md | *.toml | *.xml | *.py | *.json | *.lock) ;;
    *) if head -n 1 "$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba)?sh( |$)'; then scripts+=("$f"); fi ;;
  esac
done < <(git ls-files -z)

if [ ${#scripts[@]} -eq 0 ]; then
  echo "lint-shell: no shell scripts found" >&2
  exit 1
fi
shellcheck "${scripts[@]}"
echo "lint-shell: ${#scripts[@]} scripts clean"
