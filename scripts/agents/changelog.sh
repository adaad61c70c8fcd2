#!/bin/sh
# Flightdeck local agent `changelog-writer` (backend `local-changelog` in flightdeck.yaml).
# Reads the system prompt and task on stdin, summarises recent git history, prints markdown.
# Read-only: it never changes git state. Exits 0 when there is no history to report.
set -u
LC_ALL=C
export LC_ALL
GIT_PAGER=cat
GIT_OPTIONAL_LOCKS=0 # `git status` must not take the index lock while others work in the tree
export GIT_PAGER GIT_OPTIONAL_LOCKS

# Stdin holds the system prompt, a blank line, the task, and optionally a blank line,
# "Context:" and JSON. The task is the last paragraph before any context.
task=""
if [ ! -t 0 ]; then
    task=$(awk 'BEGIN { RS = "" }
        { prev = last; last = $0 }
        END {
            if (last ~ /^Context:/) last = prev
            gsub(/[ \t]*\n[ \t]*/, " ", last)
            print substr(last, 1, 160)
        }')
fi
[ -n "$task" ] || task="${FLIGHTDECK_TASK:-recent history}"

printf '## Recent history: %s\n\n' "$task"

if ! command -v git >/dev/null 2>&1; then
    printf 'No git history: `git` is not installed on this machine.\n'
    exit 0
fi
if ! probe=$(git rev-parse --is-inside-work-tree 2>&1) || [ "$probe" != "true" ]; then
    case "$probe" in
        *"dubious ownership"*)
            printf 'No git history: git refuses to read this repository (owned by another user; see `git config --global --add safe.directory`).\n' ;;
        *)
            printf 'No git history: `%s` is not inside a git work tree.\n' "$(pwd)" ;;
    esac
    exit 0
fi

branch=$(git symbolic-ref --quiet --short HEAD 2>/dev/null || printf 'detached HEAD')
dirty=$(git status --porcelain 2>/dev/null | awk 'END { print NR }')

if ! git rev-parse --verify --quiet HEAD >/dev/null 2>&1; then
    printf 'Branch: `%s`  \nNo commits yet. Uncommitted paths: %s\n' "$branch" "$dirty"
    exit 0
fi

log=$(git log --oneline --no-decorate -n 20 2>/dev/null)
shown=$(printf '%s\n' "$log" | awk 'NF { n++ } END { print n + 0 }')
printf 'Branch: `%s`  \nCommits shown: %s  \nUncommitted paths: %s\n\n' "$branch" "$shown" "$dirty"

printf '### Commits by kind\n\n| kind | commits |\n|---|---:|\n'
# Conventional-commit prefixes only; anything else is "other" rather than a guess.
printf '%s\n' "$log" | awk 'NF {
        subject = $0; sub(/^[0-9a-f]+ /, "", subject)
        kind = "other"
        if (match(subject, /^[a-zA-Z]+(\([^)]*\))?!?: /)) {
            prefix = tolower(subject); sub(/[(!:].*$/, "", prefix)
            if (prefix == "feat") kind = "features"
            else if (prefix == "fix") kind = "fixes"
            else if (prefix == "docs") kind = "documentation"
            else if (prefix == "test" || prefix == "tests") kind = "tests"
            else if (prefix ~ /^(refactor|perf|chore|ci|build|style)$/) kind = "maintenance"
        }
        count[kind]++
    }
    END { for (k in count) printf "%d\t%s\n", count[k], k }' |
    sort -t "$(printf '\t')" -k1,1nr -k2,2 |
    awk -F '\t' '{ printf "| %s | %d |\n", $2, $1 }'

printf '\n### Latest commits\n\n'
printf '%s\n' "$log" | sed -n 's/^\([0-9a-f][0-9a-f]*\) \(.*\)$/- `\1` \2/p'

printf '\n### Changes over the last 5 commits\n\n'
if git rev-parse --verify --quiet 'HEAD~5' >/dev/null 2>&1; then
    # Long stats are trimmed to 30 files; the summary line is always kept.
    git diff --stat=100 HEAD~5 2>/dev/null |
        awk '{ line[NR] = $0 } END {
            if (NR == 0) { print "No differences against HEAD~5."; exit }
            print "```"
            for (i = 1; i < NR && i <= 30; i++) print line[i]
            if (NR - 1 > 30) printf " ... %d more files\n", NR - 1 - 30
            print line[NR]
            print "```"
        }'
else
    printf 'Skipped: the history has %s commits, fewer than the 6 needed to compare with HEAD~5.\n' \
        "$(git rev-list --count HEAD 2>/dev/null || printf 'too few')"
fi
exit 0
