//! Rules a single value must follow. Rules across the pool (unique names, fallbacks that
//! exist) live in the registry, which sees every file.

/// The longest allowed agent name.
pub const MAX_NAME_CHARS: usize = 64;

/// Claude Code tool names, current and legacy (from its tools reference), so that files
/// written for Claude Code validate without warnings. `mcp__*` names are always accepted.
pub const KNOWN_TOOLS: &[&str] = &[
    "Agent",
    "AskUserQuestion",
    "Bash",
    "BashOutput",
    "Edit",
    "EnterPlanMode",
    "ExitPlanMode",
    "Glob",
    "Grep",
    "KillBash",
    "KillShell",
    "LS",
    "LSP",
    "MultiEdit",
    "NotebookEdit",
    "NotebookRead",
    "Read",
    "SendMessage",
    "Skill",
    "SlashCommand",
    "Task",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "TeamCreate",
    "TeamDelete",
    "TodoRead",
    "TodoWrite",
    "ToolSearch",
    "WebFetch",
    "WebSearch",
    "Write",
];

/// `Ok` when `name` is a valid agent name, else the message for the user.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if !name.chars().all(allowed) {
        return Err(format!("{name:?} must be lowercase letters, digits, '-' or '.'"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!("{name:?} must start with a letter or digit"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "{name:?} is {chars} characters; at most {MAX_NAME_CHARS} are allowed"
        ));
    }
    Ok(())
}

/// Whether `tool` is a Claude Code tool, optionally with a permission pattern such as
/// `Bash(git diff:*)`, or an MCP tool.
pub fn is_known_tool(tool: &str) -> bool {
    let base = tool.split_once('(').map_or(tool, |(base, _)| base).trim();
    base.starts_with("mcp__") || KNOWN_TOOLS.contains(&base)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("powershell-5.1-expert").is_ok());
        assert!(check_name("3d-artist").is_ok());
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(check_name(&"a".repeat(65)).unwrap_err().contains("at most 64"));
        assert!(check_name("-lead").unwrap_err().contains("must start with"));
        assert!(check_name(".hidden").unwrap_err().contains("must start with"));
        assert!(check_name("Bad Name").unwrap_err().contains("lowercase letters"));
        assert!(check_name("under_score").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn tools() {
        assert!(is_known_tool("Read"));
        assert!(is_known_tool("Bash(git diff:*)"));
        assert!(is_known_tool("mcp__github__create_issue"));
        assert!(!is_known_tool("read"));
        assert!(!is_known_tool("Teleport"));
    }
}
