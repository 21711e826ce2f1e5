#!/usr/bin/env bash
# Runs every command of a learning-path page (docs/learn/*.md), so the pages cannot rot
# (ctest learn.<page>). The commands are the lines of the page's ```sh blocks, a trailing
# backslash joining a line to the next. A line `# expect: REGEX` checks the output of the
# command before it (grep -E); other lines starting with # are comments. Commands run in
# WORKDIR, in order, with BUILD_DIR first on PATH (qiusuo, qiusuo-run), and a command that
# starts with build/release/ runs from BUILD_DIR instead (the preset being tested).
#
#   scripts/run_doc.sh PAGE.md BUILD_DIR WORKDIR
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: scripts/run_doc.sh PAGE.md BUILD_DIR WORKDIR" >&2; exit 2; }
page=$(realpath "$1") build=$(realpath "$2") work=$3
[ -f "$page" ] || { echo "run_doc: no page $page" >&2; exit 2; }
rm -rf "$work" && mkdir -p "$work" && cd "$work"
export PATH="$build:$PATH"
out=$(mktemp) && trap 'rm -f "$out"' EXIT
n=0 in_block=0 cmd="" ran=0
run() {
  local c=$1
  [[ $c == build/release/* ]] && c="$build/${c#build/release/}"
  n=$((n + 1))
  echo "[$n] \$ $1"
  local t0=$SECONDS rc=0
  bash -c "$c" >"$out" 2>&1 || rc=$?
  tail -n 8 "$out" | sed 's/^/    /'
  if [ $rc -ne 0 ]; then
    echo "run_doc: $page: command $n failed (exit $rc): $1" >&2
    exit 1
  fi
  echo "    ($((SECONDS - t0)) s)"
  ran=1
}
while IFS= read -r line || [ -n "$line" ]; do
  if [ $in_block -eq 0 ]; then
    [[ $line == '```sh' ]] && in_block=1
    continue
  fi
  if [[ $line == '```' ]]; then
    [ -n "$cmd" ] && { echo "run_doc: $page: a block ends inside a continued line" >&2; exit 1; }
    in_block=0
    continue
  fi
  if [ -n "$cmd" ]; then cmd+=" ${line%\\}"; else cmd=${line%\\}; fi
  [[ $line == *\\ ]] && continue
  line=$cmd cmd=""
  if [[ $line =~ ^[[:space:]]*#[[:space:]]*expect:[[:space:]]*(.*)$ ]]; then
    re=${BASH_REMATCH[1]}
    [ $ran -eq 1 ] || { echo "run_doc: $page: '# expect:' before any command" >&2; exit 1; }
    if ! grep -Eq -- "$re" "$out"; then
      echo "run_doc: $page: the output of command $n does not match /$re/" >&2
      exit 1
    fi
    echo "    expect /$re/: found"
    continue
  fi
  [[ $line =~ ^[[:space:]]*(#.*)?$ ]] && continue
  run "$line"
done <"$page"
[ $in_block -eq 0 ] || { echo "run_doc: $page: an unclosed \`\`\`sh block" >&2; exit 1; }
[ $n -gt 0 ] || { echo "run_doc: $page: no commands" >&2; exit 1; }
echo "run_doc: $page: $n commands ran"
