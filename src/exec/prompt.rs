//! The text an agent receives, shared by every executor so all backends see the same task.

use super::ExecRequest;

/// The user turn: the task description, then the context as pretty JSON when there is one.
pub fn user_message(req: &ExecRequest) -> String {
    let mut text = req.task_description.clone();
    if !req.context.is_null() {
        // Serializing a `Value` cannot fail; fall back to compact form just in case.
        let pretty =
            serde_json::to_string_pretty(&req.context).unwrap_or_else(|_| req.context.to_string());
        text.push_str("\n\nContext:\n");
        text.push_str(&pretty);
    }
    text
}

/// What a `stdin` process reads: the system prompt, a blank line, then [`user_message`].
pub fn stdin_text(req: &ExecRequest) -> String {
    let mut text = String::with_capacity(req.system_prompt.len() + req.task_description.len() + 64);
    text.push_str(req.system_prompt.trim_end());
    text.push_str("\n\n");
    text.push_str(&user_message(req));
    text.push('\n');
    text
}

/// `prompt.md` of the `files` input mode: the system prompt, the task and where to write the
/// result (the reference implementation guide's convention).
pub fn prompt_file_text(req: &ExecRequest) -> String {
    format!(
        "{}\n\n## Task\n\n{}\n\nThe task's context is in `context.json` in this folder.\n\
         Write your result to `output.json` in this folder as {{\"output\": \"<your result>\"}}.\n",
        req.system_prompt.trim_end(),
        req.task_description.trim_end(),
    )
}
