# Custom actions for streamguard's tests (written for them, not NeMo's).
# NeMo's actions server runs them: `nemoguardrails actions-server` started in
# this directory. Its answer's `result` is a string, so they return strings.
from typing import Optional

from nemoguardrails.actions import action


@action(name="check_blocked_terms")
async def check_blocked_terms(context: Optional[dict] = None):
    message = (context or {}).get("user_message") or ""
    return "blocked" if "proprietary" in message.lower() else "ok"


@action()
async def word_count(text: str):
    return str(len(text.split()))
