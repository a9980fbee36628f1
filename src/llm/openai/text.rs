//! The prompt a text-completion model gets for a chat: a rendered task
//! prompt (one user message) as it is, a conversation as NeMo's `general`
//! task writes it for such models: the instructions, the turns as `User:` /
//! `Assistant:` lines, and `Assistant:` to answer after (with `User:` as a
//! stop string, as NeMo sends it, so the model does not write the next turn).

use std::borrow::Cow;

use crate::llm::{ChatMessage, Role};

/// The stop string of a conversation prompt.
pub(super) const TURN_STOP: &str = "User:";

/// Whether `messages` are a conversation (rather than one rendered prompt).
pub(super) fn is_conversation(messages: &[ChatMessage]) -> bool {
    !matches!(messages, [only] if only.role == Role::User)
}

/// The prompt text for `messages`.
pub(super) fn prompt(messages: &[ChatMessage]) -> Cow<'_, str> {
    if let [only] = messages
        && only.role == Role::User
    {
        return Cow::Borrowed(&only.content);
    }
    let mut out = String::new();
    let mut turns = Vec::new();
    for m in messages {
        match m.role {
            Role::System => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(m.content.trim());
            }
            Role::User => turns.push(format!("User: {}", m.content)),
            Role::Assistant => turns.push(format!("Assistant: {}", m.content)),
            Role::Tool => turns.push(format!("Tool: {}", m.content)),
        }
    }
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str(&turns.join("\n"));
    out.push_str("\nAssistant:");
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_prompt_goes_as_is_and_a_conversation_as_nemo_writes_it() {
        let task = [ChatMessage::user("Question: Yes or No?\nAnswer:")];
        assert_eq!(prompt(&task), "Question: Yes or No?\nAnswer:");
        let chat = [
            ChatMessage::system("Be brief."),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Hello!"),
            ChatMessage::user("Weather?"),
        ];
        assert_eq!(
            prompt(&chat),
            "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Weather?\nAssistant:"
        );
        assert!(is_conversation(&chat) && !is_conversation(&task));
    }
}
