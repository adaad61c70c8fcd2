#!/bin/sh
# Flightdeck local agent `repo-surveyor` (backend `local-survey` in flightdeck.yaml).
# Reads the system prompt and task on stdin, surveys the current folder, prints markdown.
# Uses only POSIX sh, find, wc, sort, head, awk and sed, so it runs on a bare Debian image.
set -u
LC_ALL=C
export LC_ALL

# Stdin holds the system prompt, a blank line, the task, and optionally a blank line,
# "Context:" and JSON. The task is the last paragraph before any context. Reading all of
# stdin also keeps the writer from blocking on a full pipe.
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
[ -n "$task" ] || task="${FLIGHTDECK_TASK:-survey}"

# Every regular file under the folder, minus version control, build output and run state.
list_files() {
    find . \( -path ./target -o -name .git -o -name .flightdeck \) -prune -o -type f "$@" -print 2>/dev/null
}

total_files=$(list_files | awk 'END { print NR }')

printf '## Repository survey: %s\n\n' "$task"
printf 'Folder: `%s`  \nFiles: %s (skipping .git, target, .flightdeck)\n\n' "$(pwd)" "$total_files"

printf '### Files by extension (top 10)\n\n| extension | files |\n|---|---:|\n'
list_files | awk '{
        n = split($0, parts, "/"); base = parts[n]
        sub(/^\.+/, "", base)              # a leading dot marks a hidden file, not an extension
        if (index(base, ".") == 0) ext = "(none)"
        else { ext = base; sub(/^.*\./, ".", ext) }
        count[ext]++
    }
    END { for (e in count) printf "%d\t%s\n", count[e], e }' |
    sort -t "$(printf '\t')" -k1,1nr -k2,2 | head -n 10 |
    awk -F '\t' '{ printf "| `%s` | %d |\n", $2, $1 }'

printf '\n### Lines of source and docs\n\n| kind | files | lines |\n|---|---:|---:|\n'
all_files=0
all_lines=0
for ext in rs md yaml; do
    # awk prints one line count per batch of files that find hands it; sum the batches.
    files=$(list_files -name "*.$ext" | awk 'END { print NR }')
    lines=$(list_files -name "*.$ext" -exec awk 'END { print NR }' {} + 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
    printf '| `.%s` | %d | %d |\n' "$ext" "$files" "$lines"
    all_files=$((all_files + files))
    all_lines=$((all_lines + lines))
done
printf '| **total** | **%d** | **%d** |\n' "$all_files" "$all_lines"

printf '\n### Largest files\n\n| size | path |\n|---:|---|\n'
# wc -c adds a "total" row per batch; real rows always carry a path starting with "./".
list_files -exec wc -c {} + 2>/dev/null |
    awk '{ size = $1; sub(/^[ \t]*[0-9]+[ \t]+/, ""); if (substr($0, 1, 2) == "./") printf "%d\t%s\n", size, $0 }' |
    sort -t "$(printf '\t')" -k1,1nr | head -n 5 |
    awk -F '\t' '{
        s = $1
        if (s >= 1048576) h = sprintf("%.1f MiB", s / 1048576)
        else if (s >= 1024) h = sprintf("%.1f KiB", s / 1024)
        else h = s " B"
        path = $2; sub(/^\.\//, "", path)
        printf "| %s | `%s` |\n", h, path
    }'

if [ "$total_files" -eq 0 ]; then
    printf '\nNotes: the folder holds no files outside the skipped folders.\n'
fi
exit 0
